"""Training a Free-Module: a few steps on a tiny model make the loss fall; runs resume."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from pruner_service.engine.hf import HFEngine
from pruner_service.engine.load import load_model
from pruner_service.engine.profile import AdapterConfig, Profile
from pruner_service.engine.synthetic import make_base
from pruner_service.training.data import generate
from pruner_service.training.train import TrainConfig, build_examples, train


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory, base_model_dir: Path) -> Path:
    return make_base("qwen3-tiny", base_model_dir, tmp_path_factory.mktemp("tiny"), torch.float32)


def examples_for(tiny: Path, count: int = 12):
    tokenizer = AutoTokenizer.from_pretrained(tiny)
    records = list(generate(count, seed=5, family="train"))
    return build_examples(records, Profile.load("smollm2-135m"), tokenizer, 1024), tokenizer


def test_only_the_json_is_learned(tiny: Path) -> None:
    examples, tokenizer = examples_for(tiny, 3)
    for example in examples:
        learned = [
            t for t, label in zip(example.input_ids, example.labels, strict=True) if label != -100
        ]
        text = tokenizer.decode(learned, skip_special_tokens=True)
        assert text.startswith("[") and text.endswith("]")


def test_a_few_steps_on_the_embedded_model_make_the_loss_fall(
    base_model_dir: Path, tmp_path: Path
) -> None:
    tokenizer = AutoTokenizer.from_pretrained(base_model_dir)
    records = list(generate(3, seed=5, family="train"))
    examples = build_examples(records, Profile.load("smollm2-135m"), tokenizer, 1024)
    model = AutoModelForCausalLM.from_pretrained(base_model_dir, dtype=torch.float32)
    config = TrainConfig(steps=8, learning_rate=1e-3, grad_accum=1, warmup_steps=1, save_every=100)
    losses = train(model, tokenizer, examples, tmp_path, config, progress=False)
    assert statistics.mean(losses[-3:]) < 0.6 * statistics.mean(losses[:2])


def test_a_trained_adapter_saved_in_half_precision_is_servable(tiny: Path, tmp_path: Path) -> None:
    examples, tokenizer = examples_for(tiny, 2)
    config = TrainConfig(steps=2, grad_accum=1, warmup_steps=1, save_every=100,
                         save_dtype="float16")  # fmt: skip
    train(AutoModelForCausalLM.from_pretrained(tiny), tokenizer, examples, tmp_path, config,
          progress=False)  # fmt: skip
    weights = load_file(tmp_path / "adapter_model.safetensors")
    assert weights and {w.dtype for w in weights.values()} == {torch.float16}
    adapter = AdapterConfig.load(tmp_path)
    profile = Profile.load("qwen3-8b-freelm").with_paths(str(tiny), str(tmp_path))
    engine = HFEngine(load_model(profile, tmp_path, "cpu"), profile, max_new_tokens=8)
    assert engine.info.adapter_id == adapter.adapter_id


def test_a_run_resumes_from_its_newest_checkpoint(tiny: Path, tmp_path: Path) -> None:
    examples, tokenizer = examples_for(tiny, 6)
    config = TrainConfig(steps=10, grad_accum=1, warmup_steps=1, save_every=5)
    model = AutoModelForCausalLM.from_pretrained(tiny)
    first = train(model, tokenizer, examples, tmp_path, config, progress=False)
    assert len(first) == 10 and (tmp_path / "checkpoint-5" / "trainer.pt").exists()
    longer = TrainConfig(steps=12, grad_accum=1, warmup_steps=1, save_every=5)
    model = AutoModelForCausalLM.from_pretrained(tiny)
    second = train(model, tokenizer, examples, tmp_path, longer, progress=False)
    assert len(second) == 7  # steps 5..11, from checkpoint-5
    recorded = json.loads((tmp_path / "training.json").read_text())
    assert recorded["first_step"] == 5 and len(recorded["losses"]) == 7


def test_a_run_can_start_from_an_existing_adapter(tiny: Path, tmp_path: Path) -> None:
    examples, tokenizer = examples_for(tiny, 2)
    first = tmp_path / "first"
    config = TrainConfig(steps=2, grad_accum=1, warmup_steps=1, save_every=100,
                         save_dtype="float16")  # fmt: skip
    train(AutoModelForCausalLM.from_pretrained(tiny), tokenizer, examples, first, config,
          progress=False)  # fmt: skip
    start = load_file(first / "adapter_model.safetensors")
    untouched = TrainConfig(steps=0, init_adapter=str(first))
    train(AutoModelForCausalLM.from_pretrained(tiny), tokenizer, examples, tmp_path / "same",
          untouched, progress=False)  # fmt: skip
    same = load_file(tmp_path / "same" / "adapter_model.safetensors")
    assert same.keys() == start.keys()
    assert all(torch.equal(same[k].half(), start[k]) for k in start)
    further = TrainConfig(steps=2, grad_accum=1, warmup_steps=1, init_adapter=str(first))
    train(AutoModelForCausalLM.from_pretrained(tiny), tokenizer, examples, tmp_path / "more",
          further, progress=False)  # fmt: skip
    more = load_file(tmp_path / "more" / "adapter_model.safetensors")
    assert {w.dtype for w in more.values()} == {torch.float32}
    assert any(not torch.equal(more[k].half(), start[k]) for k in start)


def test_silver_writes_a_record_per_window_with_the_profile_tokenizer(
    tmp_path: Path,
    cache_dir: Path,
    base_model_dir: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from freelm_pruner_client.anchors import resolve_anchor

    from pruner_service import cli

    monkeypatch.setattr(cli, "configure_logging", lambda *_: None)  # not onto captured stderr
    paragraphs = [
        f"We need {n} * 4. So {n} * 4 = {n * 4}.\nLet me verify that. {n} * 4 = {n * 4}, yes."
        for n in range(11, 31)
    ]
    trace = "\n\n".join(paragraphs)
    source, out = tmp_path / "real.jsonl", tmp_path / "silver.jsonl"
    source.write_text(json.dumps({"id": "long", "trace": trace, "question": "Q?"}) + "\n")
    args = ["silver", str(source), "-o", str(out), "--cache-dir", str(cache_dir)]
    assert cli.main([*args, "--window-tokens", "64"]) == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    tokenizer = AutoTokenizer.from_pretrained(base_model_dir)
    assert len(records) > 3
    assert "".join(trace[r["window"][0] : r["window"][1]] for r in records) == trace
    for record in records:
        start, end = record["window"]
        assert record["trace"] == trace[start:end]
        assert len(tokenizer(record["trace"], add_special_tokens=False)["input_ids"]) <= 66
        resolved = [resolve_anchor(record["trace"], c["prefix"], c["suffix"])[1]
                    for c in record["commands"]]  # fmt: skip
        assert [(r.start, r.end) for r in resolved if r is not None] == [
            (s, e) for s, e, _ in record["redundant_spans"]
        ] != []
    assert cli.main([*args, "--window-tokens", "64", "--keep-empty", "0"]) == 0
    assert len(out.read_text().splitlines()) == sum(1 for r in records if r["commands"])
    assert cli.main([*args, "--keep-empty", "2"]) == cli.EXIT_USAGE
    assert "--keep-empty between 0 and 1" in capsys.readouterr().err
