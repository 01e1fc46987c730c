"""Supervised LoRA training of a Free-Module: cleaning prompt → JSON commands, loss on JSON only.

The prompt is rendered with the profile's own template (``engine.prompt``), so serving and training
cannot disagree, and the target is the command list exactly as the output grammar writes it. The
run is seeded; it saves a checkpoint (adapter, optimizer, scheduler, step) every ``save_every``
steps and resumes from the newest one; the final adapter is a PEFT folder the profile can name.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import structlog
import torch
from freelm_pruner_client.anchors import AnchorCommand
from tqdm import tqdm

from pruner_service.engine.grammar import canonical_json
from pruner_service.engine.profile import Profile
from pruner_service.engine.prompt import render_prompt

log = structlog.get_logger(__name__)

TARGET_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one run."""

    steps: int = 1000
    learning_rate: float = 2e-4
    rank: int = 16
    alpha: int = 32
    dropout: float = 0.05
    grad_accum: int = 4
    max_tokens: int = 1024
    warmup_steps: int = 20
    save_every: int = 100
    seed: int = 0
    save_dtype: str = "float32"
    init_adapter: str = ""  # start from this adapter's weights (the optimizer starts fresh)


@dataclass
class Example:
    input_ids: list[int]
    labels: list[int]


def build_examples(
    records: Sequence[dict[str, Any]], profile: Profile, tokenizer: Any, max_tokens: int
) -> list[Example]:
    """Tokenized examples; the prompt's labels are -100 so only the JSON is learned."""
    examples = []
    for record in records:
        prompt = render_prompt(profile.template, record["trace"], record.get("question", ""))
        commands = tuple(AnchorCommand(c["prefix"], c["suffix"]) for c in record["commands"])
        target = canonical_json(commands)
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        target_ids = tokenizer(target, add_special_tokens=False)["input_ids"]
        target_ids.append(tokenizer.eos_token_id)
        if len(prompt_ids) + len(target_ids) > max_tokens:
            continue
        examples.append(Example(prompt_ids + target_ids, [-100] * len(prompt_ids) + target_ids))
    return examples


def _schedule(config: TrainConfig) -> Any:
    def factor(step: int) -> float:
        if step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        remaining = config.steps - step
        return max(0.0, remaining / max(1, config.steps - config.warmup_steps))

    return factor


def _order(count: int, seed: int) -> Iterator[int]:
    """An endless, seeded sequence of example indices, reshuffled every epoch."""
    rng = random.Random(seed)
    while True:
        indices = list(range(count))
        rng.shuffle(indices)
        yield from indices


def _latest_checkpoint(output: Path) -> Path | None:
    checkpoints = sorted(output.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    return checkpoints[-1] if checkpoints else None


def train(
    model: Any,
    tokenizer: Any,
    examples: Sequence[Example],
    output: Path,
    config: TrainConfig,
    progress: bool = True,
) -> list[float]:
    """Trains a LoRA on ``model`` (resuming from ``output`` if it holds checkpoints); returns the
    loss of every step of this run and saves the adapter to ``output``."""
    if not examples:
        raise ValueError("no training examples (all longer than max_tokens?)")
    torch.manual_seed(config.seed)
    checkpoint = _latest_checkpoint(output)
    model = _with_lora(model, config, checkpoint)
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.learning_rate, weight_decay=0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(config))
    start = 0
    if checkpoint is not None:
        state = torch.load(checkpoint / "trainer.pt", weights_only=False)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start = int(state["step"])
        log.info("resumed", checkpoint=str(checkpoint), step=start)
    order = _order(len(examples), config.seed)
    for _ in range(start * config.grad_accum):
        next(order)  # the same example sequence as an uninterrupted run
    losses: list[float] = []
    bar = tqdm(range(start, config.steps), initial=start, total=config.steps, disable=not progress)
    for step in bar:
        loss = _step(model, examples, order, config.grad_accum)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss)
        bar.set_postfix(loss=f"{loss:.4f}")
        if (step + 1) % config.save_every == 0 and step + 1 < config.steps:
            _save_checkpoint(model, optimizer, scheduler, output, step + 1)
    _save(model, output, config, start, losses)
    return losses


def _with_lora(model: Any, config: TrainConfig, checkpoint: Path | None) -> Any:
    """``model`` with a trainable LoRA: the checkpoint's or ``config.init_adapter``'s weights
    (in float32) when there is one, else a fresh adapter of ``config.rank``."""
    from peft import LoraConfig, PeftModel, get_peft_model

    if checkpoint is not None or config.init_adapter:
        source = checkpoint if checkpoint is not None else Path(config.init_adapter)
        model = PeftModel.from_pretrained(model, source, is_trainable=True)
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.data = parameter.data.float()  # a float16 adapter trains in float32
        return model
    lora = LoraConfig(
        r=config.rank,
        lora_alpha=config.alpha,
        lora_dropout=config.dropout,
        target_modules=TARGET_MODULES,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lora)


def _save(model: Any, output: Path, config: TrainConfig, start: int, losses: list[float]) -> None:
    """Saves the adapter (in ``config.save_dtype``) and the run's record (``training.json``)."""
    model.save_pretrained(output)
    if config.save_dtype != "float32":
        _cast_adapter(output / "adapter_model.safetensors", getattr(torch, config.save_dtype))
    record = {
        "config": asdict(config),
        "first_step": start,
        "losses": [round(x, 5) for x in losses],
    }
    (output / "training.json").write_text(json.dumps(record, indent=2))


def _cast_adapter(path: Path, dtype: torch.dtype) -> None:
    """Rewrites a saved adapter's weights in ``dtype`` (half the size in float16); loading casts
    them back to the base model's dtype."""
    from safetensors.torch import load_file, save_file

    weights = {name: tensor.to(dtype) for name, tensor in load_file(path).items()}
    save_file(weights, path, metadata={"format": "pt"})


def _step(model: Any, examples: Sequence[Example], order: Iterator[int], accum: int) -> float:
    total = 0.0
    for _ in range(accum):
        example = examples[next(order)]
        ids = torch.tensor([example.input_ids])
        labels = torch.tensor([example.labels])
        loss = model(input_ids=ids, labels=labels).loss / accum
        loss.backward()
        total += loss.item()
    return total


def _save_checkpoint(model: Any, optimizer: Any, scheduler: Any, output: Path, step: int) -> None:
    folder = output / f"checkpoint-{step}"
    model.save_pretrained(folder)
    state = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "step": step}
    torch.save(state, folder / "trainer.pt")
    log.info("checkpoint", step=step, path=str(folder))
