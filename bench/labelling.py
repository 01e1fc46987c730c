"""The labelling functions' precision and coverage on real labelled traces.

Scores each function of ``pruner_service.training.labelling`` alone, and their combination
(``label``), with the realbench scorer (``../shared/realbench/score_real.py``, imported from
there) on its development split (20 real traces with sentence labels; read only when present),
beside the scorer's baselines (nothing, cue words, the label oracle). Also prints a seeded sample
of sentences the combination labels redundant in ``../shared/data/real_traces.jsonl`` (unlabelled
real traces), for reading by hand. Realbench is for measuring: nothing here fits the functions
to it.

    .venv/bin/python bench/labelling.py [--out bench/results/labelling.json] [--sample 10]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path
from typing import Any

from pruner_service.training.labelling import CANDIDATES, FUNCTIONS, KEEP_FUNCTIONS, label

sys.path.insert(0, str(Path(__file__).resolve().parent))
from realbench import BASELINES, SHARED, load_realbench, scored

REAL = SHARED.parent / "data" / "real_traces.jsonl"


def sample(path: Path, count: int, seed: int) -> list[dict[str, str]]:
    """One sentence labelled redundant in each of ``count`` traces at ``path`` (a loop-heavy
    trace would fill a per-sentence sample), with the text before it; chosen with ``seed``."""
    rng = random.Random(seed)
    found = []
    for line in path.open(encoding="utf-8"):
        record = json.loads(line)
        trace = record["trace"]
        labelled = label(trace, record.get("question") or "")
        if labelled:
            start, end = rng.choice(labelled)
            found.append({"id": record["id"], "before": trace[max(0, start - 200) : start],
                          "labelled": trace[start:end]})  # fmt: skip
    return rng.sample(found, min(count, len(found)))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--realbench", type=Path, default=SHARED)
    parser.add_argument("--sample", type=int, default=10, help="sentences to print for reading")
    parser.add_argument("--out", type=Path, default=Path("bench/results/labelling.json"))
    args = parser.parse_args()
    score, bench, _, data = load_realbench(args.realbench)
    result: dict[str, Any] = {"command": " ".join(["bench/labelling.py", *sys.argv[1:]]),
                              "data": f"{data.name} ({len(bench)} traces)"}  # fmt: skip
    voting = [name for name in CANDIDATES if name not in KEEP_FUNCTIONS]
    for name in [*voting, "combined"]:
        names = list(FUNCTIONS) if name == "combined" else [name, *KEEP_FUNCTIONS]
        spans = {i: label(r["trace"], r["question"], names) for i, r in bench.items()}
        result[name] = scored(score, bench, spans)
    for name in BASELINES:
        result[f"baseline_{name}"] = scored(score, bench, {i: score.baseline_spans(r, name)
                                                           for i, r in bench.items()})  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    if REAL.is_file() and args.sample:
        for item in sample(REAL, args.sample, seed=0):
            print(f"\n--- {item['id']}\n...{item['before'][-160:]}\n>>> {item['labelled']}")


if __name__ == "__main__":
    main()
