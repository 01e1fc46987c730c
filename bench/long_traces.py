"""Long traces through a running default server: time per 1,000 code points and peak memory.

Starts ``freelm-pruner serve`` (the shipped default profile, its default settings) as its own
process and sends it, one at a time and in this order, traces of ``--sizes`` code points (default
25,000, 250,000 and 2,000,000), each cut from the same material: real traces from
``../shared/data/real_corpus/traces.jsonl`` (else ``../shared/data/real_traces.jsonl``) joined in
file order, or, without them, generated long traces (``freelm-pruner data --long-chars``).

For each size it records the call's wall time, the time per 1,000 code points, the windows, the
characters removed, and the server's peak resident memory after the call (``VmHWM`` of
``/proc/PID/status``: the high-water mark since start, so the figure after a size includes every
smaller one before it), and checks that ``pruned_trace`` equals the trace minus ``deletions``.
Ratios: time per 1,000 code points of each size to the first size's, and peak memory of each
size to the first size's.

    .venv/bin/python bench/long_traces.py [--sizes 25000 250000 2000000]
        [--out bench/results/long_traces.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import grpc
from freelm.pruner.v1 import pruner_pb2 as pb
from freelm.pruner.v1 import pruner_pb2_grpc as pb_grpc
from freelm_pruner_client.anchors import apply_deletions

sys.path.insert(0, str(Path(__file__).resolve().parent))
from proxy_overhead import cpu_model
from redis_queue import wait_serving

from pruner_service.training.data import generate

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SOURCES = [SHARED / "real_corpus" / "traces.jsonl", SHARED / "real_traces.jsonl"]


def material(chars: int) -> tuple[str, str]:
    """At least ``chars`` code points of trace and where they came from."""
    for source in SOURCES:
        if source.is_file():
            parts, total = [], 0
            with source.open(encoding="utf-8") as lines:
                for line in lines:
                    trace = json.loads(line)["trace"]
                    parts.append(trace)
                    total += len(trace) + 2
                    if total >= chars:
                        break
            if total >= chars:
                return "\n\n".join(parts), f"{source.name} (real traces, joined in file order)"
    record = next(generate(1, 7, "eval", long_chars=chars))
    return record["trace"], "freelm-pruner data --long-chars (generated)"


def add_server_options(parser: argparse.ArgumentParser) -> None:
    """``--window-tokens`` and ``--adapter-path``: the server flags a quality benchmark can vary."""
    parser.add_argument("--window-tokens", type=int, default=0,
                        help="the server's --window-tokens (0: the default's)")  # fmt: skip
    parser.add_argument("--adapter-path", type=Path,
                        help="the server's --adapter-path: another adapter for the default "
                        "profile's base (default: the shipped one)")  # fmt: skip


def server_flags(args: argparse.Namespace) -> list[str]:
    """The ``serve`` flags for the options ``add_server_options`` added (none by default)."""
    flags = ["--window-tokens", str(args.window_tokens)] if args.window_tokens else []
    return flags + (["--adapter-path", str(args.adapter_path)] if args.adapter_path else [])


@contextlib.contextmanager
def default_server(flags: Sequence[str] = ()) -> Iterator[tuple[str, int]]:
    """A ``freelm-pruner serve`` process with the shipped default profile and settings (plus
    ``flags``), once it is SERVING: its address and process id."""
    command = [sys.executable, "-m", "pruner_service", "serve", "--port", "0"]
    server = subprocess.Popen(
        [*command, "--log-level", "warning", *flags],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        match = re.search(r"listening on (\S+)", server.stdout.readline())
        if not match:
            raise RuntimeError("the server did not start")
        wait_serving(match.group(1))
        yield match.group(1), server.pid
    finally:
        server.terminate()
        server.wait(timeout=60)


def peak_rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"VmHWM:\s+(\d+) kB", status)
    return int(match.group(1)) / 1024 if match else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[25_000, 250_000, 2_000_000])
    parser.add_argument("--out", type=Path, default=Path("bench/results/long_traces.json"))
    args = parser.parse_args()
    text, source = material(max(args.sizes))
    with default_server() as (address, pid):
        rows = [measure(address, pid, text[:size]) for size in args.sizes]
    first = rows[0]
    for row in rows:
        row["time_per_kchar_ratio"] = round(row["s_per_kchar"] / first["s_per_kchar"], 3)
        row["peak_rss_ratio"] = round(row["peak_rss_mib"] / first["peak_rss_mib"], 3)
    result = {
        "command": " ".join(["bench/long_traces.py", *sys.argv[1:]]),
        "machine": f"{cpu_model()}, 2 cores",
        "material": source,
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


def measure(address: str, pid: int, trace: str) -> dict[str, Any]:
    options = [("grpc.max_send_message_length", 64 * 2**20),
               ("grpc.max_receive_message_length", 64 * 2**20)]  # fmt: skip
    with grpc.insecure_channel(address, options=options) as channel:
        stub = pb_grpc.PrunerStub(channel)
        started = time.perf_counter()
        reply = stub.Prune(pb.PruneRequest(trace=trace), timeout=6 * 3600)
        seconds = time.perf_counter() - started
    assert reply.pruned_trace == apply_deletions(trace, reply.deletions)
    row = {
        "chars": len(trace),
        "seconds": round(seconds, 2),
        "s_per_kchar": round(seconds / len(trace) * 1000, 4),
        "windows": reply.usage.windows,
        "trace_tokens": reply.usage.trace_tokens,
        "removed_chars": reply.usage.removed_chars,
        "commands": len(reply.commands),
        "peak_rss_mib": round(peak_rss_mib(pid), 1),
    }
    print(json.dumps(row), file=sys.stderr, flush=True)
    return row


if __name__ == "__main__":
    main()
