"""The decode's attention on a CPU: transformers' ``sdpa`` against ``cpu_decode_attention``.

Loads a profile's model (default: the shipped one, dtype ``auto``) on the CPU and, in the same
run, with each attention implementation:

1. times a decode forward (one query token, ``logits_to_keep=1``) after a prefill of
   ``--contexts`` random tokens (median of ``--steps`` forwards);
2. runs the engine (each request alone, the service's defaults) over the first ``--count``
   traces of the held-out set (the generator's ``eval`` family, seed 2) and, when
   ``../shared`` is present, ``--real`` real traces cut to ``--real-tokens`` tokens; reports the
   raw outputs that differ and the time per call.

The implementation is only switched on a CPU in bfloat16 or float16; in float32 both runs use
``sdpa`` and the script says so.

    .venv/bin/python bench/decode_attention.py [--contexts 512 2048 5120] [--count 40]
        [--real 5] [--out bench/results/decode_attention.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))

from draft_anchors import cpu_engine, requests

from pruner_service.engine import attention
from pruner_service.engine.hf import HFEngine, _cache_argument
from pruner_service.engine.load import cpu_name, fast_bf16_cpu


@torch.inference_mode()
def decode_forward_ms(model: Any, context: int, steps: int) -> float:
    """Median milliseconds of a one-token forward after a ``context``-token prefill."""
    generator = torch.Generator().manual_seed(context)
    ids = torch.randint(100, 30000, (1, context), generator=generator)
    argument = _cache_argument(model)
    cache = getattr(model(input_ids=ids, use_cache=True), argument)
    token = torch.tensor([[123]])
    times = []
    for step in range(steps + 2):
        mask = torch.ones((1, context + step + 1), dtype=torch.long)
        started = time.perf_counter()
        model(input_ids=token, attention_mask=mask, logits_to_keep=1, **{argument: cache})
        times.append(time.perf_counter() - started)
    return round(1000 * statistics.median(times[2:]), 1)


def engine_run(engine: HFEngine, batch: list) -> dict[str, list]:
    """Each request's raw output and seconds, one request per call."""
    outputs, seconds = [], []
    for request in tqdm(batch, desc=engine.model.config._attn_implementation):
        started = time.perf_counter()
        proposal = engine.propose([request])[0]
        seconds.append(time.perf_counter() - started)
        outputs.append(str(proposal if isinstance(proposal, Exception) else proposal.raw_output))
    return {"outputs": outputs, "seconds": seconds}


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--profile", default="smollm2-135m", help="profile name or path")
    parser.add_argument("--dtype", default="", help="override the profile's (auto, float32, ...)")
    parser.add_argument("--contexts", type=int, nargs="+", default=[512, 2048, 5120])
    parser.add_argument("--steps", type=int, default=10, help="decode forwards timed per context")
    parser.add_argument("--count", type=int, default=40, help="held-out traces")
    parser.add_argument("--real", type=int, default=5, help="real traces (from ../shared)")
    parser.add_argument("--real-tokens", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=Path("bench/results/decode_attention.json"))
    return parser.parse_args()


def compare(engine: HFEngine, args: argparse.Namespace, implementations: list[str]) -> dict:
    """Both parts of the benchmark for each implementation, switched on the same model."""
    batch = requests(engine, args.count, args.real, args.real_tokens)
    result: dict[str, Any] = {"decode_forward_ms": {}, "engine": {}}
    runs = {}
    for name in implementations:
        engine.model.set_attn_implementation(name)
        result["decode_forward_ms"][name] = {
            str(n): decode_forward_ms(engine.model, n, args.steps) for n in args.contexts
        }
        runs[name] = engine_run(engine, batch)
        result["engine"][name] = {
            "seconds_p50": round(statistics.median(runs[name]["seconds"]), 3),
            "seconds_total": round(sum(runs[name]["seconds"]), 1),
        }
    if len(implementations) == 2:
        first, second = (runs[name] for name in implementations)
        result["engine"]["calls"] = len(batch)
        result["engine"]["outputs_differ"] = [
            r.request_id
            for r, a, b in zip(batch, first["outputs"], second["outputs"], strict=True)
            if a != b
        ]
        result["engine"]["time_ratio"] = round(sum(first["seconds"]) / sum(second["seconds"]), 2)
        slow, fast = (result["decode_forward_ms"][name] for name in implementations)
        result["decode_forward_ratio"] = {n: round(slow[n] / fast[n], 2) for n in slow}
    return result


def main() -> None:
    args = _arguments()
    engine = cpu_engine(args.profile, args.dtype)
    profile = engine.profile
    switched = engine.model.config._attn_implementation == attention.NAME
    implementations = ["sdpa", attention.NAME] if switched else ["sdpa"]
    result: dict[str, Any] = {
        "machine": f"{cpu_name()}, {torch.get_num_threads()} torch threads",
        "cpu_bf16": fast_bf16_cpu(),
        "profile": profile.name,
        "dtype": str(engine.model.dtype).removeprefix("torch."),
        "note": "" if switched else "float32 (or not a CPU): sdpa is kept, nothing to compare",
    }
    result.update(compare(engine, args, implementations))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
