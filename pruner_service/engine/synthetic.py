"""Random-weight checkpoints of real architectures, with a random Free-Module in PEFT format.

Real weights cannot always be fetched (machines without a model hub); the service path, its speed
and its memory can still be measured at real size with the exact architecture and random weights.
``qwen3-8b`` is Qwen3-8B's architecture; ``qwen3-tiny`` the same family at test size. The adapter
is a LoRA on the official Free()LM adapters' target modules, with non-zero weights.

The tokenizer is taken from a folder given by the caller (any fast tokenizer whose ids fit the
vocabulary; the embedded SmolLM2 tokenizer serves when Qwen3's is not available).

    python -m pruner_service.engine.synthetic --arch qwen3-8b --tokenizer DIR --out DIR \
        [--device cuda]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch

ARCHITECTURES: dict[str, dict[str, Any]] = {
    "qwen3-8b": {
        "hidden_size": 4096,
        "intermediate_size": 12288,
        "num_hidden_layers": 36,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "head_dim": 128,
        "vocab_size": 151936,
        "max_position_embeddings": 40960,
        "rope_theta": 1_000_000.0,
        "rms_norm_eps": 1e-6,
        "tie_word_embeddings": False,
    },
    "qwen3-tiny": {
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "vocab_size": 49152,
        "max_position_embeddings": 8192,
        "rope_theta": 1_000_000.0,
        "rms_norm_eps": 1e-6,
        "tie_word_embeddings": False,
    },
}

FREELM_TARGET_MODULES = [
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
]


def make_base(
    arch: str, tokenizer_dir: Path, out: Path, dtype: torch.dtype, device: str = "cpu"
) -> Path:
    """Saves a random-weight model of ``arch`` (and the tokenizer) to ``out``."""
    from transformers import AutoTokenizer, Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(0)
    config = Qwen3Config(**ARCHITECTURES[arch])
    with torch.device(device):
        model = Qwen3ForCausalLM(config).to(dtype)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(out)
    return out


def make_adapter(base_dir: Path, out: Path, rank: int = 16, device: str = "cpu") -> Path:
    """Saves a LoRA adapter with random, non-zero weights for the model at ``base_dir``."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype="auto", device_map=device)
    config = LoraConfig(
        r=rank,
        lora_alpha=2 * rank,
        target_modules=FREELM_TARGET_MODULES,
        init_lora_weights=False,
        task_type="CAUSAL_LM",
    )
    get_peft_model(model, config).save_pretrained(out)
    (out / "freelm_adapter.json").write_text(
        json.dumps({"id": f"random-{base_dir.name}", "version": "0"})
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--arch", choices=sorted(ARCHITECTURES), default="qwen3-8b")
    parser.add_argument("--tokenizer", type=Path, required=True, help="folder of a fast tokenizer")
    parser.add_argument("--out", type=Path, required=True, help="folder for base/ and adapter/")
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    base = make_base(
        args.arch, args.tokenizer, args.out / "base", getattr(torch, args.dtype), args.device
    )
    make_adapter(base, args.out / "adapter", device=args.device)
    print(f"base: {base}\nadapter: {args.out / 'adapter'}")


if __name__ == "__main__":
    main()
