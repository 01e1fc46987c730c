"""Steering strategies compared on one unguarded decode per generated set.

``stop`` and ``skip`` only ever drop commands the model wrote (``stop`` the first that fails the
anchor guard and every one after it, ``skip`` each one that fails), so the model's unjudged
decode (``steering: none``) holds them all: this script decodes each set once with ``none`` on the
profile's engine (the shipped one by default, its dtype), passes every reply's commands through
each strategy's ``finish`` with the request's question (the same objects the decoder uses),
resolves them with the service's own ``compute.resolve`` (default ``PruneOptions``: last
sentence and result sentences protected, loop copies collapsed, the delete limit) and scores them
with ``freelm-pruner eval``'s measures. ``steer`` changes the decode itself and is not covered
(``freelm-pruner eval --profile`` of a profile copy with ``"steering": "steer"`` measures it).

Sets: ``freelm-pruner data --count N --seed S --family eval`` (unseen phrasings), one per seed:
2 is the held-out set, 13 and 17 the check sets, others fresh.

    .venv/bin/python bench/steering.py [--seeds 2 13 17 23 29] [--count 150]
        [--out bench/results/steering.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from pruner_service.compute import resolve
from pruner_service.domain import PruneOptions, PruneRequest
from pruner_service.engine.hf import HFEngine
from pruner_service.engine.load import cpu_name
from pruner_service.engine.steering import SteeringMode, steering_for
from pruner_service.training.data import generate
from pruner_service.training.evaluate import score

sys.path.insert(0, str(Path(__file__).resolve().parent))
from draft_anchors import cpu_engine

MODES = (SteeringMode.NONE, SteeringMode.STOP, SteeringMode.SKIP)
MEASURES = ("precision", "recall", "f1", "essential_violation_rate", "answer_preservation")
BATCH = 8


def decode(engine: HFEngine, records: list[dict[str, Any]]) -> list[Any]:
    """Each record's proposal from the engine with steering ``none``, in batches of ``BATCH``."""
    engine.steering = SteeringMode.NONE
    found: list[Any] = []
    for i in tqdm(range(0, len(records), BATCH), desc="decode", unit="batch"):
        batch = [PruneRequest(r["id"], r["trace"], r["question"], PruneOptions())
                 for r in records[i : i + BATCH]]  # fmt: skip
        found += engine.propose(batch)
    return found


def deletions(engine: HFEngine, record: dict[str, Any], proposal: Any, mode: SteeringMode) -> Any:
    """The record's deletions (code-point spans) once ``mode`` keeps its commands."""
    if isinstance(proposal, Exception):
        raise SystemExit(f"{record['id']}: {proposal}")
    if proposal.windows > 1:  # commands scoped to windows: each window has its own guard
        raise SystemExit(f"{record['id']}: read in {proposal.windows} windows; sets are short")
    request = PruneRequest(record["id"], record["trace"], record["question"], PruneOptions())
    strategy = steering_for(mode, request.trace, engine.profile.max_anchor_chars, request.question)
    kept, _ = strategy.finish(proposal.commands)
    outcome = resolve(request, replace(proposal, commands=kept))  # as the service resolves
    return [(d.start, d.end) for d in outcome.deletions]


def one_set(engine: HFEngine, seed: int, count: int) -> dict[str, Any]:
    """Every mode's measures on the set of ``seed``."""
    records = list(generate(count, seed=seed, family="eval"))
    started = time.perf_counter()
    proposals = decode(engine, records)
    result: dict[str, Any] = {"decode_s": round(time.perf_counter() - started, 1)}
    for mode in MODES:
        pairs = zip(records, proposals, strict=True)
        found = {r["id"]: deletions(engine, r, p, mode) for r, p in pairs}
        measured = score(records, found)
        result[mode.value] = {m: round(measured[m], 4) for m in MEASURES}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[2, 13, 17, 23, 29])
    parser.add_argument("--count", type=int, default=150, help="traces per set (default 150)")
    parser.add_argument("--profile", default="smollm2-135m", help="name or folder")
    parser.add_argument("--dtype", default="", help="override the profile's (auto, float32, ...)")
    parser.add_argument("--out", type=Path, default=Path("bench/results/steering.json"))
    args = parser.parse_args()
    engine = cpu_engine(args.profile, args.dtype)
    result: dict[str, Any] = {
        "command": " ".join(["bench/steering.py", *sys.argv[1:]]),
        "machine": f"{cpu_name()}, {torch.get_num_threads()} torch threads",
        "dtype": str(engine.model.dtype).removeprefix("torch."),
        "sets": {},
    }
    for seed in args.seeds:
        result["sets"][str(seed)] = one_set(engine, seed, args.count)
        print(seed, json.dumps(result["sets"][str(seed)]), flush=True)
    pooled = {}
    for mode in MODES:
        rates = [s[mode.value]["essential_violation_rate"] for s in result["sets"].values()]
        pooled[mode.value] = round(sum(rates) / len(rates), 4)
    result["essential_violation_rate_pooled"] = pooled
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(pooled))


if __name__ == "__main__":
    main()
