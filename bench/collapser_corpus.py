"""What the loop collapser deletes on real traces, no model involved.

Runs ``loop_spans`` and ``prune`` with the service's default protection (what a request without
model commands gets) over each trace of the given JSON-lines files (default: the shared real
corpus and ``real_traces.jsonl``, when present) and reports the traces with deletions, the code
points removed, and per trace the code points removed, so that two runs (two commits) can be
compared trace by trace (``--compare OLD.json``). ``--show N`` prints N deleted spans, sampled
with ``--seed``, for reading by hand.

    .venv/bin/python bench/collapser_corpus.py --out bench/results/collapser_corpus.json
        [--compare OLD.json] [--show 25 --seed 0]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path
from typing import Any

from freelm_pruner_client.anchors import prune
from freelm_pruner_client.loop_collapser import loop_spans
from tqdm import tqdm

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
DEFAULT_FILES = [SHARED / "real_corpus" / "traces.jsonl", SHARED / "real_traces.jsonl"]


def removed_per_trace(files: list[Path], show: int, seed: int) -> tuple[dict[str, int], int, list]:
    """Code points removed per trace id (traces with deletions only), all code points read, and
    ``show`` deleted spans sampled (trace id, text)."""
    removed: dict[str, int] = {}
    total = 0
    deleted: list[tuple[str, str]] = []
    for path in files:
        with path.open() as lines:
            for line in tqdm(lines, desc=path.name):
                record = json.loads(line)
                trace = record["trace"]
                total += len(trace)
                result = prune(trace, [], loop_spans=loop_spans(trace))
                count = result.removed_chars
                if count:
                    removed[record["id"]] = count
                    deleted += [(record["id"], trace[s.start : s.end]) for s in result.deletions]
    sample = random.Random(seed).sample(deleted, min(show, len(deleted)))
    return removed, total, sample


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("files", nargs="*", type=Path, help="JSON lines with id and trace")
    parser.add_argument("--compare", type=Path, help="an earlier run's --out: traces that differ")
    parser.add_argument("--show", type=int, default=0, help="deleted spans to print")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("bench/results/collapser_corpus.json"))
    return parser.parse_args()


def main() -> int:
    args = _arguments()
    files = args.files or [path for path in DEFAULT_FILES if path.is_file()]
    if not files:
        print("no traces: give JSON-lines files or provide ../shared/data", file=sys.stderr)
        return 2
    removed, total, sample = removed_per_trace(files, args.show, args.seed)
    result: dict[str, Any] = {
        "files": [path.name for path in files],
        "code_points": total,
        "traces_with_deletions": len(removed),
        "removed_code_points": sum(removed.values()),
        "removed_share": round(sum(removed.values()) / max(total, 1), 5),
        "removed_per_trace": removed,
    }
    if args.compare:
        before = json.loads(args.compare.read_text())["removed_per_trace"]
        result["differ_from_compare"] = {
            key: [before.get(key, 0), removed.get(key, 0)]
            for key in sorted(set(before) | set(removed))
            if before.get(key, 0) != removed.get(key, 0)
        }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    summary = {k: v for k, v in result.items() if k != "removed_per_trace"}
    print(json.dumps(summary, indent=2))
    for trace_id, text in sample:
        print(f"--- {trace_id}\n{text.strip()[:300]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
