"""Realbench through a running default server: the real-trace quality measure.

Starts ``freelm-pruner serve`` (the shipped default profile and settings) as its own process,
sends each record of ``../shared/realbench/realbench_dev.jsonl`` (20 real R1-distill traces with
sentence labels; read only when present) with its question over one ``PruneStream``, and scores the
replies' deletions with the realbench scorer (``../shared/realbench/score_real.py``, imported from
there): characters removed, traces with an essential chunk hit (>= 20% of it deleted), essential
characters deleted, redundant-candidate recall and precision, importance damage; beside the
scorer's baselines (nothing, cue words, the label oracle), all in the same run. A second pass with
``collapse_loops`` off gives the model's own deletions alone.

    .venv/bin/python bench/realbench.py [--out bench/results/realbench.json]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from freelm.pruner.v1 import pruner_pb2 as pb
from freelm_pruner_client.client import PrunerClient

sys.path.insert(0, str(Path(__file__).resolve().parent))
from long_traces import add_server_options, default_server, server_flags
from proxy_overhead import cpu_model

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "realbench"
BASELINES = ("none", "cue", "oracle")
MEASURES = ("removed_micro", "ess_hit_trace_share", "ess_chars_deleted_micro", "rc_recall_micro",
            "precision_micro", "prec_lenient_micro", "dmg_share_mean")  # fmt: skip
"""The scorer's aggregates reported (``score_real.aggregate``; its docstring defines them)."""


def scorer(folder: Path) -> ModuleType:
    """The realbench scorer module (``score_real.py``) from ``folder``."""
    spec = importlib.util.spec_from_file_location("score_real", folder / "score_real.py")
    if spec is None or spec.loader is None:
        raise SystemExit(f"no score_real.py in {folder}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_realbench(folder: Path) -> tuple[ModuleType, dict[str, Any], list[str], Path]:
    """The scorer module, the records by id, their ids in file order and the split's path, from
    the realbench ``folder``; exits with a message when the split is not there."""
    data = folder / "realbench_dev.jsonl"
    if not data.is_file():
        raise SystemExit(f"{data} is not here: this benchmark needs the shared realbench split")
    score = scorer(folder)
    bench, order = score.load_bench(data)
    return score, bench, order, data


def predict(address: str, records: list[dict[str, Any]], loops: bool) -> dict[str, list[Any]]:
    """Each record's deletions (code-point spans) from the server, with its question."""
    options = pb.PruneOptions(collapse_loops=loops, return_pruned_trace=False)
    requests = [pb.PruneRequest(request_id=r["id"], trace=r["trace"], question=r["question"],
                                options=options) for r in records]  # fmt: skip
    spans: dict[str, list[Any]] = {}
    with PrunerClient(address) as client:
        for reply in client.prune_stream(requests):
            if reply.HasField("error"):
                raise SystemExit(
                    f"{reply.request_id}: {reply.error.code_name}: {reply.error.message}"
                )
            spans[reply.request_id] = [(d.start, d.end) for d in reply.response.deletions]
    return spans


def scored(score: ModuleType, bench: dict[str, Any], spans: dict[str, list[Any]]) -> dict[str, Any]:
    rows = [score.score_trace(bench[i], spans[i]) for i in bench]
    total = score.aggregate(rows)
    return {m: None if total[m] is None else round(total[m], 4) for m in MEASURES}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--realbench", type=Path, default=SHARED)
    parser.add_argument("--out", type=Path, default=Path("bench/results/realbench.json"))
    add_server_options(parser)
    args = parser.parse_args()
    score, bench, order, data = load_realbench(args.realbench)
    records = [bench[i] for i in order]
    with default_server(server_flags(args)) as (address, _):
        started = time.perf_counter()
        service = predict(address, records, loops=True)
        model = predict(address, records, loops=False)
        seconds = time.perf_counter() - started
    result: dict[str, Any] = {
        "command": " ".join(["bench/realbench.py", *sys.argv[1:]]),
        "machine": f"{cpu_model()}, 2 cores",
        "data": f"{data.name} ({len(records)} traces)",
        "seconds_both_passes": round(seconds, 1),
        "service": scored(score, bench, service),
        "model_alone": scored(score, bench, model),
    }
    for name in BASELINES:
        baseline = {i: score.baseline_spans(bench[i], name) for i in bench}
        result[f"baseline_{name}"] = scored(score, bench, baseline)
    result["per_trace_removed"] = {
        i: round(sum(e - s for s, e in service[i]) / bench[i]["chars"], 4) for i in order
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "per_trace_removed"}, indent=2))


if __name__ == "__main__":
    main()
