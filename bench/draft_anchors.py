"""Anchors drafted from the trace (prompt lookup): forward passes and time per call, outputs equal.

Runs the engine of a profile (default: the shipped one) over the held-out set (the generator's
``eval`` family, seed 2, as ``freelm-pruner eval`` uses) and, when ``../shared`` is present, over
real traces cut to ``--real-tokens`` tokens, each request alone, with drafting off (the
baseline: ``draft_tokens`` 0) and on, in the same run; counts forward passes (prefill
included) and wall time, and checks that the two give the same raw outputs. With ``--batch N``
it also decodes the requests in batches of N with drafting on and checks them against the
unbatched outputs.

    .venv/bin/python bench/draft_anchors.py [--count 150] [--real 10] [--batch 8]
        [--out bench/results/draft_anchors.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from pruner_service.config import settings_from
from pruner_service.domain import PruneOptions, PruneRequest
from pruner_service.engine.hf import HFEngine
from pruner_service.engine.load import cpu_name, load_model
from pruner_service.engine.profile import Profile
from pruner_service.logging import configure_logging
from pruner_service.training.data import generate

REAL_TRACES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real_traces.jsonl"


def requests(engine: HFEngine, count: int, real: int, real_tokens: int) -> list[PruneRequest]:
    """The held-out set's first ``count`` traces, then ``real`` real traces cut to
    ``real_tokens`` tokens (when ../shared is present)."""
    batch = [
        PruneRequest(r["id"], r["trace"], r["question"], PruneOptions())
        for r in generate(count, seed=2, family="eval")
    ]
    if real and REAL_TRACES.is_file():
        for i, line in enumerate(REAL_TRACES.open()):
            if i >= real:
                break
            record = json.loads(line)
            ids = engine.tokenizer(record["trace"], add_special_tokens=False)["input_ids"]
            trace = engine.tokenizer.decode(ids[:real_tokens])
            batch.append(PruneRequest(f"real-{i}", trace, record.get("question", ""),
                                      PruneOptions()))  # fmt: skip
    return batch


def run(engine: HFEngine, batch: list[PruneRequest], draft: int, size: int) -> dict[str, Any]:
    """Each request's raw output, forward passes and seconds, in groups of ``size``."""
    engine.draft_tokens = draft
    outputs, forwards, seconds = [], [], []
    for start in tqdm(range(0, len(batch), size), desc=f"draft {draft}, batch {size}"):
        before = engine.forward_passes
        started = time.perf_counter()
        proposals = engine.propose(batch[start : start + size])
        seconds.append(time.perf_counter() - started)
        forwards.append(engine.forward_passes - before)
        outputs += [p if isinstance(p, Exception) else p.raw_output for p in proposals]
    return {"outputs": [str(o) for o in outputs], "forwards": forwards, "seconds": seconds}


def summary(plain: dict[str, Any], drafted: dict[str, Any], names: list[str]) -> dict[str, Any]:
    differ = [n for n, a, b in zip(names, plain["outputs"], drafted["outputs"], strict=True)
              if a != b]  # fmt: skip
    return {
        "calls": len(names),
        "outputs_differ": differ,
        "forwards_plain_mean": round(statistics.mean(plain["forwards"]), 2),
        "forwards_draft_mean": round(statistics.mean(drafted["forwards"]), 2),
        "forwards_ratio": round(sum(plain["forwards"]) / sum(drafted["forwards"]), 2),
        "seconds_plain_p50": round(statistics.median(plain["seconds"]), 3),
        "seconds_draft_p50": round(statistics.median(drafted["seconds"]), 3),
        "seconds_ratio": round(sum(plain["seconds"]) / sum(drafted["seconds"]), 2),
    }


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--profile", default="smollm2-135m", help="profile name or path")
    parser.add_argument("--count", type=int, default=150, help="held-out traces")
    parser.add_argument("--real", type=int, default=10, help="real traces (from ../shared)")
    parser.add_argument("--real-tokens", type=int, default=2000)
    parser.add_argument("--draft-tokens", type=int, default=8)
    parser.add_argument("--dtype", default="", help="override the profile's (auto, float32, ...)")
    parser.add_argument("--batch", type=int, default=0, help="also check batches of this size")
    parser.add_argument("--out", type=Path, default=Path("bench/results/draft_anchors.json"))
    return parser.parse_args()


def cpu_engine(profile_name: str, dtype: str) -> HFEngine:
    """The engine of a profile on the CPU (``dtype``: "" for the profile's), logging warnings."""
    configure_logging("warning", "console")
    profile = Profile.load(profile_name)
    return HFEngine(load_model(profile, settings_from().cache_dir, "cpu", dtype), profile)


def main() -> None:
    args = _arguments()
    engine = cpu_engine(args.profile, args.dtype)
    profile = engine.profile
    batch = requests(engine, args.count, args.real, args.real_tokens)
    names = [r.request_id for r in batch]
    held_out = [i for i, n in enumerate(names) if not n.startswith("real-")]
    plain = run(engine, batch, 0, 1)
    drafted = run(engine, batch, args.draft_tokens, 1)
    result: dict[str, Any] = {
        "machine": f"{cpu_name()}, {torch.get_num_threads()} torch threads",
        "profile": profile.name,
        "draft_tokens": args.draft_tokens,
        "dtype": str(engine.model.dtype).removeprefix("torch."),
    }
    real = [i for i in range(len(names)) if i not in held_out]
    for label, picked in (("held_out", held_out), ("real", real)):
        if picked:
            first, second = ({k: [v[i] for i in picked] for k, v in part.items()}
                             for part in (plain, drafted))  # fmt: skip
            result[label] = summary(first, second, [names[i] for i in picked])
    if args.batch > 1:
        batched = run(engine, batch, args.draft_tokens, args.batch)
        result["batched_outputs_differ"] = [n for n, a, b in zip(
            names, drafted["outputs"], batched["outputs"], strict=True) if a != b]  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
