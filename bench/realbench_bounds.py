"""What deleting could reach on realbench: bounds from the labels and importances, no model.

Scores, with realbench's own scorer (``score_real.py``), deletions chosen with knowledge no
service has: the label oracle (every redundant candidate), an *importance oracle* (non-essential
chunks in ascending order of counterfactual importance per character, until a share of each
trace is deleted), and the non-essential chunks of given function tags. It answers whether
issue-style targets (a share removed, no essential chunk hit, importance damage no higher than
the label oracle's) are consistent with each other on these traces, and which chunks a
service would have to find. Realbench is for measuring: nothing here is fitted or trained on it.

    .venv/bin/python bench/realbench_bounds.py [--shares 0.10 0.15 0.25 0.40]
        [--out bench/results/realbench_bounds.json]
"""

from __future__ import annotations

import argparse
import json
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
        spans: list[tuple[int, int]] = []
        deleted = 0
        for chunk in chunks:
            if deleted >= share * record["chars"]:
                break
            spans.append((chunk["start"], chunk["end"]))
            deleted += chunk["end"] - chunk["start"]
        return spans

    return pick


def tagged(tags: set[str]) -> Chunks:
    """Every non-essential chunk with one of ``tags``."""

    def pick(record: dict[str, Any]) -> list[tuple[int, int]]:
        return [(c["start"], c["end"]) for c in record["chunks"]
                if c["label"] != "essential" and set(c["tags"]) & tags]  # fmt: skip

    return pick


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bench", type=Path, default=REALBENCH / "realbench_dev.jsonl")
    parser.add_argument("--shares", type=float, nargs="+", default=[0.10, 0.15, 0.25, 0.40])
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
    result: dict[str, Any] = {"bench": args.bench.name, "traces": len(records), "rows": {}}
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
