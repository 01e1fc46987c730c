"""What deleting could reach on realbench: bounds from the labels and importances (no model), and
what a deleter that cannot see the labels faces (the base model only with ``--surprisal``; a run
without it leaves the surprisal rows out of the results file).

Scores, with realbench's own scorer (``score_real.py``), deletions chosen with knowledge no
service has: the label oracle (every redundant candidate), an *importance oracle* (non-essential
chunks in ascending order of counterfactual importance per character, until a share of each
trace is deleted), and the non-essential chunks of given function tags. It answers whether
issue-style targets (a share removed, no essential chunk hit, importance damage no higher than
the label oracle's) are consistent with each other on these traces, and which chunks a
service would have to find. Realbench is for measuring: nothing here is fitted or trained on it.

Beside them, what a deleter that does not see the labels faces: the per-chunk precision it needs
(a trace whose ``n`` deleted chunks are each non-essential with probability ``p`` escapes an
essential hit with probability ``p ** n``; ``precision_needed`` solves ``p ** n = 1 - hit share``
for the median trace's ``n`` at a removed share), and two label-blind rankings taken to the same
shares: chunks in a seeded random order, and (``--surprisal``) chunks in ascending mean token
surprisal (negative log-likelihood, nats per token) under the embedded base model reading the
trace from its start, the most predictable text first.

    .venv/bin/python bench/realbench_bounds.py [--shares 0.10 0.15 0.25 0.40] [--surprisal]
        [--out bench/results/realbench_bounds.json]
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

REALBENCH = Path(__file__).resolve().parents[2] / "shared" / "realbench"

Chunks = Callable[[dict[str, Any]], list[tuple[int, int]]]


def importance_oracle(share: float) -> Chunks:
    """Non-essential chunks, least important per character first, until ``share`` of the
    trace's code points are deleted."""

    def pick(record: dict[str, Any]) -> list[tuple[int, int]]:
        chunks = [c for c in record["chunks"] if c["label"] != "essential"]
        chunks.sort(key=lambda c: max(float(c.get("importance") or 0.0), 0.0)
                    / max(c["end"] - c["start"], 1))  # fmt: skip
        return first_to_share(chunks, share * record["chars"])

    return pick


def first_to_share(chunks: list[dict[str, Any]], chars: float) -> list[tuple[int, int]]:
    """The spans of ``chunks``, in their order, until at least ``chars`` code points are taken."""
    spans: list[tuple[int, int]] = []
    deleted = 0
    for chunk in chunks:
        if deleted >= chars:
            break
        spans.append((chunk["start"], chunk["end"]))
        deleted += chunk["end"] - chunk["start"]
    return spans


def ranked(share: float, key: Callable[[dict[str, Any], int], float]) -> Chunks:
    """Chunks in ascending ``key(record, chunk index)``, label-blind, until ``share`` of the
    trace's code points are deleted."""

    def pick(record: dict[str, Any]) -> list[tuple[int, int]]:
        order = sorted(range(len(record["chunks"])), key=lambda k: key(record, k))
        return first_to_share([record["chunks"][k] for k in order], share * record["chars"])

    return pick


def precision_needed(records: list[dict[str, Any]], share: float, hit_share: float) -> dict:
    """Chunks a deleter removes from the median trace to delete ``share`` of it (at the mean
    non-essential chunk length, code points), and the share ``p`` of its deleted chunks that must
    be non-essential for a trace to escape an essential hit with probability ``1 - hit_share``
    (``p ** n = 1 - hit_share``, deletions taken as independent)."""
    counts = []
    for record in records:
        lengths = [c["end"] - c["start"] for c in record["chunks"] if c["label"] != "essential"]
        if sum(lengths):  # a trace with nothing non-essential has no count
            counts.append(share * record["chars"] / (sum(lengths) / len(lengths)))
    n = statistics.median(counts)
    return {"median_chunks_deleted": round(n, 1),
            "nonessential_precision_needed": round((1 - hit_share) ** (1 / n), 4)}  # fmt: skip


def chunk_surprisal(records: list[dict[str, Any]], window: int = 2048) -> dict[str, list[float]]:
    """Per record id, each chunk's mean token surprisal (nats per token) under the embedded
    base model (the default profile's, float32), reading the trace from its start in windows of
    ``window`` tokens that keep the previous half as context. The trace's first token (no
    context) is left out; a chunk holding no other token's start gets ``inf`` (never picked
    first)."""
    import torch
    from tqdm import tqdm

    from pruner_service.config import settings_from
    from pruner_service.engine.load import load_base
    from pruner_service.engine.profile import Profile

    settings = settings_from()
    model, tokenizer = load_base(Profile.load(settings.profile), settings.cache_dir, "float32")
    model.eval()
    result: dict[str, list[float]] = {}
    for record in tqdm(records, desc="surprisal", unit="trace"):
        encoded = tokenizer(record["trace"], return_offsets_mapping=True, add_special_tokens=False)
        ids = torch.tensor(encoded["input_ids"])
        nll = torch.full((len(ids),), math.nan)  # the first token has no context: left out
        for start in range(0, len(ids), window // 2):
            low = max(0, start - window // 2)
            high = min(len(ids), start + window // 2)
            with torch.no_grad():
                logits = model(ids[low:high].unsqueeze(0)).logits[0].float()
            logp = torch.log_softmax(logits[:-1], dim=-1)
            token_nll = -logp.gather(1, ids[low + 1 : high].unsqueeze(1)).squeeze(1)
            first = max(start, 1)
            nll[first:high] = token_nll[first - low - 1 :]
        starts = torch.tensor([a for a, _ in encoded["offset_mapping"]])
        means = []
        for chunk in record["chunks"]:
            inside = (starts >= chunk["start"]) & (starts < chunk["end"]) & ~nll.isnan()
            means.append(float(nll[inside].mean()) if inside.any() else math.inf)
        result[record["id"]] = means
    return result


def tagged(tags: set[str]) -> Chunks:
    """Every non-essential chunk with one of ``tags``."""

    def pick(record: dict[str, Any]) -> list[tuple[int, int]]:
        return [(c["start"], c["end"]) for c in record["chunks"]
                if c["label"] != "essential" and set(c["tags"]) & tags]  # fmt: skip

    return pick


def label_blind(records: list[dict[str, Any]], shares: list[float], surprisal: bool) -> dict:
    """The label-blind rankings by name, each taken to every share: chunks in a seeded random
    order, and (``surprisal``) the least surprising chunks first (``chunk_surprisal``)."""
    order = random.Random(15)
    draws = {r["id"]: [order.random() for _ in r["chunks"]] for r in records}
    picks: dict[str, Chunks] = {}
    for share in shares:
        picks[f"random chunks to {share:.0%} (label-blind)"] = ranked(
            share, lambda r, k: draws[r["id"]][k]
        )
    if surprisal:
        means = chunk_surprisal(records)
        for share in shares:
            picks[f"least surprising chunks to {share:.0%} (label-blind)"] = ranked(
                share, lambda r, k: means[r["id"]][k]
            )
    return picks


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bench", type=Path, default=REALBENCH / "realbench_dev.jsonl")
    parser.add_argument("--shares", type=float, nargs="+", default=[0.10, 0.15, 0.25, 0.40])
    parser.add_argument("--hit-share", type=float, default=0.10,
                        help="share of traces allowed an essential hit")  # fmt: skip
    parser.add_argument("--surprisal", action="store_true",
                        help="also rank chunks by surprisal under the base model")  # fmt: skip
    parser.add_argument("--out", type=Path, default=Path("bench/results/realbench_bounds.json"))
    args = parser.parse_args()
    if not args.bench.is_file():
        print(f"{args.bench} is missing: realbench lives in ../shared", file=sys.stderr)
        return 2
    sys.path.insert(0, str(args.bench.parent))
    import score_real  # the benchmark's own scorer

    records = [json.loads(line) for line in args.bench.open()]
    picks: dict[str, Chunks] = {
        "label oracle": lambda r: score_real.baseline_spans(r, "oracle"),
        **{f"importance oracle to {s:.0%}": importance_oracle(s) for s in args.shares},
        "non-essential self_checking + uncertainty_management": tagged(
            {"self_checking", "uncertainty_management"}
        ),
        "non-essential, also plan_generation": tagged(
            {"self_checking", "uncertainty_management", "plan_generation"}
        ),
    }
    picks.update(label_blind(records, args.shares, args.surprisal))
    result: dict[str, Any] = {"bench": args.bench.name, "traces": len(records), "rows": {}}
    result["precision_needed"] = {
        f"{share:.0%}": precision_needed(records, share, args.hit_share) for share in args.shares
    }
    print("precision needed", result["precision_needed"])
    for name, pick in picks.items():
        rows = [score_real.score_trace(r, pick(r)) for r in records]
        totals = score_real.aggregate(rows)
        result["rows"][name] = {
            key: round(totals[key], 4)
            for key in ("removed_micro", "ess_hit_trace_share", "dmg_share_mean", "rc_recall_micro")
        }
        print(f"{name:55s} {result['rows'][name]}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
