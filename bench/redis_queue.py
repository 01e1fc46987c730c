"""The Redis queue's cost per request, and worker scaling with the real model.

1. Transport: the engine replaced by a zero-cost one (empty proposals, no model), the same gRPC
   server in embedded mode (in-process queue) and with the Redis queue (frontend and worker in one
   process on a local redis-server): p50/p99 latency and requests/s at 1, 8 and 32 concurrent
   clients, and the mean batch size at each load.
2. Real default model: requests/s through one frontend process with 1 and with 2 worker processes.

Starts its own redis-server on a free port. Writes bench/results/redis_queue.json.

    .venv/bin/python bench/redis_queue.py [--requests 400] [--model-requests 60]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
from freelm.pruner.v1 import pruner_pb2 as pb
from freelm.pruner.v1 import pruner_pb2_grpc as pb_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from pruner_service.assembly import build_service
from pruner_service.config import settings_from
from pruner_service.domain import PruneRequest
from pruner_service.engine.base import EngineInfo, Proposal
from pruner_service.logging import configure_logging
from pruner_service.server import build_server

ZERO_INFO = EngineInfo("zero", "zero-cost", "", "", "0" * 64, "none", "cpu", 1 << 20, 8, 48, "")


class ZeroCostEngine:
    """Answers every request with no commands at once: only the transport is measured."""

    info = ZERO_INFO

    def propose(self, requests: Sequence[PruneRequest]) -> list[Proposal | Exception]:
        return [Proposal((), "[]", 0, 0) for _ in requests]

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [len(t) // 4 for t in texts]

    def warmup(self) -> None:
        pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_serving(address: str, timeout: float = 180) -> None:
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        limit = time.monotonic() + timeout
        while time.monotonic() < limit:
            try:
                if stub.Check(health_pb2.HealthCheckRequest(), timeout=2).status == 1:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.1)
    raise TimeoutError(address)


def load(address: str, clients: int, total: int, tag: str) -> dict[str, float]:
    """``total`` distinct requests from ``clients`` threads; latency percentiles and rate."""
    channel = grpc.insecure_channel(address)
    stub = pb_grpc.PrunerStub(channel)
    latencies: list[float] = []
    batches: list[int] = []

    def one(n: int) -> None:
        text = f"{tag} request {n}: I add {n} and 1. Then I check it. So {n + 1}."
        started = time.perf_counter()
        reply = stub.Prune(pb.PruneRequest(request_id=f"{tag}-{n}", trace=text), timeout=300)
        latencies.append(time.perf_counter() - started)
        batches.append(reply.timing.batch_size)

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, range(total)))
    wall = time.perf_counter() - started
    channel.close()
    latencies.sort()
    return {
        "clients": clients,
        "requests": total,
        "p50_ms": round(statistics.median(latencies) * 1000, 2),
        "p99_ms": round(latencies[int(0.99 * (len(latencies) - 1))] * 1000, 2),
        "rps": round(total / wall, 1),
        "mean_batch": round(statistics.mean(batches), 2),
    }


def transport(redis_url: str | None, total: int, tag: str) -> list[dict[str, float]]:
    overrides = {"port": 0, "max_batch": 32, "max_wait_ms": 2.0, "max_queue": 4096}
    if redis_url:
        overrides.update(redis=redis_url, namespace=f"bench-{tag}")
    settings = settings_from(overrides)
    service = build_service(settings, make_engine=ZeroCostEngine)
    running = build_server(settings, service)
    running.server.start()
    service.start(background=False)
    address = f"127.0.0.1:{running.port}"
    wait_serving(address)
    load(address, 8, 100, f"{tag}-warm")
    rows = [load(address, clients, total, f"{tag}-{clients}") for clients in (1, 8, 32)]
    running.stop(grace=2)
    return rows


def spawn(args: list[str]) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "pruner_service", "serve", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "FREELM_LOG_LEVEL": "warning"},
    )
    assert process.stdout is not None
    match = re.search(r"listening on (\S+)", process.stdout.readline())
    return process, match.group(1) if match else ""


def model_workers(redis_url: str, workers: int, total: int) -> dict[str, float]:
    common = ["--redis", redis_url, "--namespace", f"bench-w{workers}", "--device", "cpu"]
    procs = [spawn(["--role", "worker", "--threads", str(2 // workers), *common])[0]
             for _ in range(workers)]  # fmt: skip
    front, address = spawn(["--role", "frontend", "--port", "0", *common])
    try:
        wait_serving(address)
        load(address, 8, 8, f"w{workers}-warm")
        return {"workers": workers, **load(address, 16, total, f"w{workers}")}
    finally:
        for process in [*procs, front]:
            process.terminate()
            process.wait(60)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--model-requests", type=int, default=60)
    parser.add_argument("--out", type=Path, default=Path("bench/results/redis_queue.json"))
    args = parser.parse_args()
    configure_logging("warning", "console")
    port = free_port()
    folder = tempfile.mkdtemp()
    redis = subprocess.Popen(
        [shutil.which("redis-server") or "redis-server", "--port", str(port), "--save", "",
         "--appendonly", "no", "--dir", folder],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    time.sleep(0.5)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        result = {
            "machine": "x86_64, 2 cores, no GPU",
            "embedded_zero_cost": transport(None, args.requests, "mem"),
            "redis_zero_cost": transport(url, args.requests, "redis"),
            "model_1_worker": model_workers(url, 1, args.model_requests),
            "model_2_workers": model_workers(url, 2, args.model_requests),
        }
    finally:
        redis.terminate()
        shutil.rmtree(folder, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
