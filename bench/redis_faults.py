"""Faults on the Redis deployment with the real default model: nothing lost, nothing mixed up,
nothing computed twice by live workers.

Starts a redis-server (append-only file, fsync always, so a restart keeps the stream), two
worker processes and two frontend processes (``freelm-pruner serve``, the shipped default), and
sends ``--requests`` distinct short traces through one SDK client given both frontends (round
robin, failover), ``--clients`` at a time. While they run it SIGKILLs a worker, restarts Redis,
and SIGKILLs a frontend. A request the SDK reports failed is sent again with the same request id
and trace (what a caller of an idempotent API does), up to ``--attempts`` times.

Counts: answered, lost (never answered), conflicting (a reply whose request id, trace length or
``pruned_trace`` does not match its own request: trace minus deletions), computations per request
id (the workers' ``NAMESPACE:computations`` hash), and the request ids the killed worker was
computing when it died (its ``computing`` log lines without an ``answered`` line). A request
computed more than once that the killed worker was not computing is work done twice by live
workers.

    .venv/bin/python bench/redis_faults.py [--requests 300] [--clients 16]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import redis
from freelm_pruner_client.anchors import apply_deletions
from freelm_pruner_client.client import PrunerClient
from freelm_pruner_client.errors import PrunerClientError

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from proxy_overhead import cpu_model
from redis_queue import wait_serving

from tests.support.redis_server import RedisServer

NAMESPACE = "faults"


def serve(role: str, url: str, log: Path) -> subprocess.Popen[str]:
    """A ``serve`` process of ``role`` logging JSON into ``log``."""
    flags = ["--role", role, "--redis", url, "--namespace", NAMESPACE, "--device", "cpu",
             "--log-format", "json", "--max-batch", "8"]  # fmt: skip
    if role == "worker":
        flags += ["--threads", "1"]
    else:
        flags += ["--port", "0", "--max-queue", "1024"]
    return subprocess.Popen(
        [sys.executable, "-m", "pruner_service", "serve", *flags],
        stdout=log.open("w"), stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},  # a SIGKILLed process's log is complete
    )  # fmt: skip


def address_of(log: Path, timeout: float = 120) -> str:
    limit = time.monotonic() + timeout
    while time.monotonic() < limit:
        match = re.search(r"listening on (\S+)", log.read_text())
        if match:
            return match.group(1)
        time.sleep(0.1)
    raise TimeoutError(f"no address in {log}")


def trace_of(n: int) -> str:
    return (
        f"Request {n}: I need {n} plus {n + 1}. Let me add them: {n} + {n + 1} = {2 * n + 1}. "
        f"Wait, let me check that again. {n} + {n + 1} = {2 * n + 1}. Yes. "
        f"So the answer is {2 * n + 1}."
    )


def send(client: PrunerClient, n: int, attempts: int, rows: dict[int, dict[str, Any]]) -> None:
    trace, errors = trace_of(n), []
    for _ in range(attempts):
        try:
            reply = client.prune(trace, request_id=f"req-{n}", timeout=600)
        except PrunerClientError as exc:
            errors.append(exc.code.name)
            time.sleep(1.0)
            continue
        consistent = (
            reply.request_id == f"req-{n}"
            and reply.usage.trace_chars == len(trace)
            and reply.pruned_trace == apply_deletions(trace, reply.deletions)
        )
        rows[n] = {"answered": True, "consistent": consistent, "errors": errors}
        return
    rows[n] = {"answered": False, "consistent": False, "errors": errors}


def _events(log: Path, name: str) -> list[dict[str, Any]]:
    found = []
    for line in log.read_text().splitlines():
        if f'"{name}"' in line:
            try:
                found.append(json.loads(line))
            except ValueError:
                continue
    return found


def died_computing(log: Path) -> set[str]:
    """The request ids the killed worker had started (``computing``) and not answered
    (``answered``: stored and acknowledged) when it died."""
    started = {rid for e in _events(log, "computing") for rid in e.get("request_ids", [])}
    return started - {rid for e in _events(log, "answered") for rid in e.get("request_ids", [])}


def faults(
    redis_server: RedisServer, workers: list[subprocess.Popen[str]], frontends: list[Any],
    rows: dict[int, dict[str, Any]], total: int, events: list[dict[str, Any]],
) -> None:  # fmt: skip
    """Kills a worker at 15% answered, restarts Redis at 40%, kills a frontend at 65%."""
    plan = [(0.15, "kill a worker"), (0.40, "restart Redis"), (0.65, "kill a frontend")]
    for fraction, what in plan:
        while len(rows) < fraction * total:
            time.sleep(0.2)
        if what == "kill a worker":
            workers[0].send_signal(signal.SIGKILL)
        elif what == "restart Redis":
            redis_server.restart()
        else:
            frontends[0].send_signal(signal.SIGKILL)
        events.append({"event": what, "answered_before": len(rows), "at_s": time.time()})
        print(f"{what} after {len(rows)} answered", file=sys.stderr, flush=True)


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--clients", type=int, default=16, help="requests in flight")
    parser.add_argument("--attempts", type=int, default=5, help="sends of one request at most")
    parser.add_argument("--out", type=Path, default=Path("bench/results/redis_faults.json"))
    return parser.parse_args()


def _run(
    args: argparse.Namespace, folder: Path, rows: dict[int, dict[str, Any]],
    events: list[dict[str, Any]],
) -> tuple[float, dict[str, int]]:  # fmt: skip
    """Runs the load with faults injected; (seconds, computations per request id)."""
    redis_server = RedisServer(folder, durable=True)
    redis_server.start()
    url = redis_server.url
    workers = [serve("worker", url, folder / f"worker-{i}.log") for i in range(2)]
    front_logs = [folder / f"frontend-{i}.log" for i in range(2)]
    frontends = [serve("frontend", url, log) for log in front_logs]
    try:
        addresses = [address_of(log) for log in front_logs]
        for address in addresses:
            wait_serving(address, timeout=300)
        started = time.perf_counter()
        injector = threading.Thread(
            target=faults,
            args=(redis_server, workers, frontends, rows, args.requests, events),
            daemon=True,
        )
        injector.start()
        with (
            PrunerClient(addresses, timeout=600) as client,
            ThreadPoolExecutor(args.clients) as pool,
        ):
            list(pool.map(lambda n: send(client, n, args.attempts, rows), range(args.requests)))
        seconds = time.perf_counter() - started
        stored = redis.Redis(port=redis_server.port).hgetall(f"{NAMESPACE}:computations")
        return seconds, {k.decode(): int(v) for k, v in stored.items()}
    finally:
        for process in [*workers, *frontends]:
            if process.poll() is None:
                process.terminate()
        for process in [*workers, *frontends]:
            process.wait(60)
        redis_server.stop()


def main() -> None:
    args = _arguments()
    folder = Path(tempfile.mkdtemp(prefix="freelm-faults-"))
    rows: dict[int, dict[str, Any]] = {}
    events: list[dict[str, Any]] = []
    seconds, computations = _run(args, folder, rows, events)
    lost_with_worker = died_computing(folder / "worker-0.log")
    reclaimed = {
        rid for e in _events(folder / "worker-1.log", "reclaimed") for rid in e["request_ids"]
    }
    twice = sorted(rid for rid, count in computations.items() if count > 1)
    result = {
        "command": " ".join(["bench/redis_faults.py", *sys.argv[1:]]),
        "machine": f"{cpu_model()}, {len(os.sched_getaffinity(0))} cores",
        "requests": args.requests,
        "seconds": round(seconds, 1),
        "faults": events,
        "answered": sum(r["answered"] for r in rows.values()),
        "lost": args.requests - sum(r["answered"] for r in rows.values()),
        "conflicting": sum(r["answered"] and not r["consistent"] for r in rows.values()),
        "resent_after_an_error": sum(bool(r["errors"]) for r in rows.values()),
        "errors_seen": sorted({e for r in rows.values() for e in r["errors"]}),
        "computed": len(computations),
        "computed_twice": len(twice),
        "computing_when_the_worker_was_killed": len(lost_with_worker),
        "reclaimed_by_the_survivor": len(reclaimed),
        "computed_twice_not_of_the_killed_worker": sorted(set(twice) - lost_with_worker),
        "logs": str(folder),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
