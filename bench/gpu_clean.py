"""Cleaning-call speed on one GPU at real size: plain ``generate`` vs the service's engine.

Builds a Qwen3-8B-architecture checkpoint with random weights and a random Free()LM-shaped LoRA on
the GPU itself (GPU machines cannot receive large files), loads it through the normal profile code
(adapter merged, bf16, SDPA), and measures in the same run:

- batch 1 at 2k / 8k / 32k-token contexts: plain ``model.generate`` (96 new tokens, the baseline)
  and the engine's constrained cleaning call;
- 8 concurrent requests at 8k: ``generate`` on a padded batch of 8 vs one engine batch of 8;
- the second call after the trace grew by 1k tokens, starting from the first call's prompt KV
  cache (``engine.reuse``), against the grown trace cold;
- ratios to the baseline and to the physical floor (prefill at matmul peak + one weight read per
  output token at the measured bandwidth).

The tokenizer comes from ``--tokenizer`` (a folder carried to the machine: any fast tokenizer whose
ids fit Qwen3's vocabulary; the embedded SmolLM2 tokenizer serves). Writes ``$OUT/gpu_clean.json``.

    python bench/gpu_clean.py --tokenizer .gpu/tokenizer --work /tmp/freelm-gpu
    python bench/gpu_clean.py --tokenizer DIR --arch qwen3-tiny --device cpu --contexts 256  # smoke
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from pruner_service.domain import PruneOptions, PruneRequest
from pruner_service.engine.hf import HFEngine
from pruner_service.engine.load import load_model
from pruner_service.engine.profile import Profile
from pruner_service.engine.reuse import PrefixCache
from pruner_service.engine.synthetic import make_adapter, make_base

NEW_TOKENS = 96
PEAK_FLOPS = 765e12  # measured bf16 matmul peak (H200)
BANDWIDTH = 4.2e12  # measured HBM bytes/s (H200)
PREFIX_CACHE_BYTES = 8 * 2**30  # prompt KV caches kept for the grown call


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn: Any, repeats: int = 3) -> float:
    """Median seconds of ``repeats`` calls after a warm-up call; one call when 0."""
    if repeats == 0:
        started = time.perf_counter()
        fn()
        sync()
        return time.perf_counter() - started
    fn()
    sync()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def trace_of(tokenizer: Any, tokens: int, seed: int = 0) -> str:
    words = [f"step{seed}x{i} adds {i % 97} to the running total." for i in range(tokens)]
    ids = tokenizer(" ".join(words), add_special_tokens=False)["input_ids"][:tokens]
    return str(tokenizer.decode(ids))


def plain_generate(engine: HFEngine, traces: list[str]) -> float:
    from pruner_service.engine.prompt import render_prompt

    prompts = [render_prompt(engine.profile.template, t) for t in traces]
    engine.tokenizer.padding_side = "left"
    batch = engine.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    batch = {k: v.to(engine.device) for k, v in batch.items()}

    def run() -> None:
        engine.model.generate(
            **batch,
            max_new_tokens=NEW_TOKENS,
            min_new_tokens=NEW_TOKENS,
            do_sample=False,
            pad_token_id=engine.pad_id,
        )

    return timed(run)


def engine_call(engine: HFEngine, traces: list[str], repeats: int = 3) -> tuple[float, int]:
    requests = [PruneRequest(f"r{i}", t, "", PruneOptions()) for i, t in enumerate(traces)]
    tokens = 0

    def run() -> None:
        nonlocal tokens
        results = engine.propose(requests, max_new_tokens=NEW_TOKENS)
        tokens = max(getattr(r, "generated_tokens", 0) for r in results)

    return timed(run, repeats), tokens


def floor_s(params: int, param_bytes: int, context: int, batch: int = 1) -> float:
    return 2 * params * context * batch / PEAK_FLOPS + NEW_TOKENS * param_bytes / BANDWIDTH


def _one_call(engine: HFEngine, context: int, params: int) -> dict[str, Any]:
    """One trace of ``context`` tokens: plain generation vs the engine vs the floor."""
    trace = trace_of(engine.tokenizer, context)
    plain = plain_generate(engine, [trace])
    ours, generated = engine_call(engine, [trace])
    floor = floor_s(params, 2 * params, context)
    row = {
        "context": context,
        "generate_s": round(plain, 3),
        "engine_s": round(ours, 3),
        "engine_generated_tokens": generated,
        "speedup": round(plain / ours, 2),
        "floor_s": round(floor, 3),
        "engine_over_floor": round(ours / floor, 2),
    }
    print(json.dumps(row), flush=True)
    return row


def _batched_and_grown(engine: HFEngine, contexts: list[int]) -> dict[str, Any]:
    """Eight traces at once, and one trace grown by 1,024 tokens after its first call."""
    at = 8192 if 8192 in contexts else contexts[-1]
    eight = [trace_of(engine.tokenizer, at, seed) for seed in range(8)]
    plain8 = plain_generate(engine, eight)
    ours8, _ = engine_call(engine, eight)
    grown = eight[0] + " " + trace_of(engine.tokenizer, 1024, 99)
    engine.prefix_cache = PrefixCache(0)
    cold, _ = engine_call(engine, [grown])
    engine.prefix_cache = PrefixCache(PREFIX_CACHE_BYTES)
    first, _ = engine_call(engine, [eight[0]], repeats=0)
    second, _ = engine_call(engine, [grown], repeats=0)
    return {
        "concurrent8": {
            "context": at,
            "generate_calls_per_s": round(8 / plain8, 2),
            "engine_calls_per_s": round(8 / ours8, 2),
            "ratio": round(plain8 / ours8, 2),
        },
        "grown_by_1k": {
            "first_s": round(first, 3),
            "second_s": round(second, 3),
            "second_over_first": round(second / first, 2),
            "grown_cold_s": round(cold, 3),
            "second_over_cold": round(second / cold, 2),
            "prefix_reuse": True,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tokenizer", type=Path, required=True)
    parser.add_argument("--work", type=Path, default=Path("/tmp/freelm-gpu"))
    parser.add_argument("--contexts", type=int, nargs="+", default=[2048, 8192, 32768])
    parser.add_argument("--arch", default="qwen3-8b", help="qwen3-tiny for a CPU smoke test")
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()
    out_dir = Path(os.environ.get("OUT", "bench/results"))
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    base = make_base(args.arch, args.tokenizer, args.work / "base", torch.bfloat16, args.device)
    adapter = make_adapter(base, args.work / "adapter", device=args.device)
    profile = Profile.load("qwen3-8b-freelm").with_paths(str(base), str(adapter))
    engine = HFEngine(load_model(profile, args.work, args.device), profile, NEW_TOKENS)
    engine.warmup()
    params = sum(p.numel() for p in engine.model.parameters())
    result: dict[str, Any] = {
        "device": torch.cuda.get_device_name() if args.device == "cuda" else args.device,
        "setup_s": round(time.perf_counter() - started, 1),
        "params": params,
    }
    result["batch1"] = [_one_call(engine, context, params) for context in args.contexts]
    result.update(_batched_and_grown(engine, args.contexts))
    (out_dir / "gpu_clean.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
