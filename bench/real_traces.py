"""Every real trace, with its question, through a running default server.

Starts ``freelm-pruner serve`` (the shipped default profile and settings) as its own process and
sends each record of ``../shared/data/real_traces.jsonl`` (49 real traces of 2k-60k characters;
the file is read only when present) with its question over one ``PruneStream`` through the Python
SDK, with the SDK's default deadlines. For each it checks that it was answered without error and
that ``pruned_trace`` equals the trace minus ``deletions``, and records windows, question tokens
used, characters removed and time.

    .venv/bin/python bench/real_traces.py [--out bench/results/real_traces.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from freelm.pruner.v1 import pruner_pb2 as pb
from freelm_pruner_client.anchors import apply_deletions
from freelm_pruner_client.client import PrunerClient

sys.path.insert(0, str(Path(__file__).resolve().parent))
from long_traces import default_server
from proxy_overhead import cpu_model

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real_traces.jsonl"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=REAL)
    parser.add_argument("--out", type=Path, default=Path("bench/results/real_traces.json"))
    args = parser.parse_args()
    if not args.data.is_file():
        raise SystemExit(f"{args.data} is not here: this benchmark needs the shared real traces")
    records = [json.loads(line) for line in args.data.open(encoding="utf-8")]
    with default_server() as (address, _):
        started = time.perf_counter()
        rows = run(address, records)
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
        "seconds": round(seconds, 1),
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}, indent=2))


def run(address: str, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    requests = [
        pb.PruneRequest(request_id=r["id"], trace=r["trace"], question=r.get("question") or "")
        for r in records
    ]
    by_id = {r["id"]: r for r in records}
    rows = []
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
            print(json.dumps(row), file=sys.stderr, flush=True)
            rows.append(row)
    return rows


if __name__ == "__main__":
    main()
