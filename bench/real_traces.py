"""Every real trace, with its question, through a running default server.

Starts ``freelm-pruner serve`` (the shipped default profile and settings) as its own process and
sends each record of ``../shared/data/real_traces.jsonl`` (49 real traces of 2k-60k characters;
the file is read only when present) with its question over one ``PruneStream`` through the Python
SDK, with the SDK's default deadlines. For each it checks that it was answered without error and
that ``pruned_trace`` equals the trace minus ``deletions``, and records windows, question tokens
used, characters removed and time. Summary: the removed fraction per trace (median and p90 over
the answered traces, besides the pooled fraction). ``--deleted-text FILE`` also writes each reply's
deleted spans (code points and text) for reading by hand.

    .venv/bin/python bench/real_traces.py [--out bench/results/real_traces.json]
        [--adapter-path DIR] [--window-tokens N] [--deleted-text FILE.jsonl]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from freelm.pruner.v1 import pruner_pb2 as pb
from freelm_pruner_client.anchors import apply_deletions
from freelm_pruner_client.client import PrunerClient

sys.path.insert(0, str(Path(__file__).resolve().parent))
from long_traces import add_server_options, default_server, server_flags
from proxy_overhead import cpu_model

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real_traces.jsonl"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=REAL)
    parser.add_argument("--out", type=Path, default=Path("bench/results/real_traces.json"))
    parser.add_argument(
        "--deleted-text",
        type=Path,
        metavar="FILE",
        help="write each reply's deleted spans and their text (JSON lines)",
    )
    add_server_options(parser)
    args = parser.parse_args()
    if not args.data.is_file():
        raise SystemExit(f"{args.data} is not here: this benchmark needs the shared real traces")
    records = [json.loads(line) for line in args.data.open(encoding="utf-8")]
    with default_server(server_flags(args)) as (address, _):
        started = time.perf_counter()
        rows, deleted = run(address, records)
        seconds = time.perf_counter() - started
    answered = [r for r in rows if r["answered"]]
    result = {
        "command": " ".join(["bench/real_traces.py", *sys.argv[1:]]),
        "machine": f"{cpu_model()}, 2 cores",
        "data": str(args.data.name),
        "traces": len(records),
        "answered": len(answered),
        "pruned_equals_trace_minus_deletions": sum(r["consistent"] for r in answered),
        "longest_trace_chars": max(len(r["trace"]) for r in records),
        "longest_question_chars": max(len(r.get("question") or "") for r in records),
        "windowed": sum(r["windows"] > 1 for r in answered),
        "most_windows": max((r["windows"] for r in answered), default=0),
        "removed_fraction": round(
            sum(r["removed_chars"] for r in answered) / sum(r["chars"] for r in answered), 4
        ),
        **per_trace(answered),
        "seconds": round(seconds, 1),
        "rows": rows,
    }
    if args.deleted_text:
        args.deleted_text.parent.mkdir(parents=True, exist_ok=True)
        args.deleted_text.write_text("".join(json.dumps(d) + "\n" for d in deleted))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}, indent=2))


def per_trace(answered: list[dict[str, Any]]) -> dict[str, float]:
    """Median and 90th percentile (inclusive method) of the removed fraction per trace."""
    fractions = sorted(r["removed_chars"] / r["chars"] for r in answered)
    if not fractions:
        return {}
    p90 = fractions[0]
    if len(fractions) > 1:
        p90 = statistics.quantiles(fractions, n=10, method="inclusive")[-1]
    return {
        "removed_per_trace_median": round(statistics.median(fractions), 4),
        "removed_per_trace_p90": round(p90, 4),
    }


def run(
    address: str, records: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """One row per reply, and each answered reply's deleted spans with their text."""
    requests = [
        pb.PruneRequest(request_id=r["id"], trace=r["trace"], question=r.get("question") or "")
        for r in records
    ]
    by_id = {r["id"]: r for r in records}
    rows, deleted = [], []
    with PrunerClient(address) as client:
        for reply in client.prune_stream(requests):
            record = by_id[reply.request_id]
            row: dict[str, Any] = {"id": reply.request_id, "chars": len(record["trace"])}
            if reply.HasField("error"):
                row.update(answered=False, error=f"{reply.error.code_name}: {reply.error.message}")
            else:
                response = reply.response
                consistent = response.pruned_trace == apply_deletions(
                    record["trace"], response.deletions
                )
                row.update(
                    answered=True,
                    consistent=consistent,
                    windows=response.usage.windows,
                    question_tokens=response.usage.question_tokens,
                    removed_chars=response.usage.removed_chars,
                    compute_ms=round(response.timing.compute_ms),
                )
                text = record["trace"]
                spans = [{"start": d.start, "end": d.end, "text": text[d.start : d.end]}
                         for d in response.deletions]  # fmt: skip
                deleted.append({"id": reply.request_id, "deleted": spans})
            print(json.dumps(row), file=sys.stderr, flush=True)
            rows.append(row)
    return rows, deleted


if __name__ == "__main__":
    main()
