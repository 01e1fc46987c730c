"""Frontends and workers as separate processes on a real redis-server, with the real model."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
import redis
from freelm.pruner.v1 import pruner_pb2 as pb
from freelm.pruner.v1 import pruner_pb2_grpc as pb_grpc
from freelm_pruner_client.anchors import Deletion, Source, apply_deletions

from pruner_service.queue.keys import RedisKeys
from tests.conftest import wait_for_health
from tests.queue.conftest import free_port

NAMESPACE = "proc"


def trace(i: int, words: int = 12) -> str:
    body = " ".join(f"term{i}x{j}" for j in range(words))
    return f"Case {i}: I add {i} and {i + 1}. Wait, no. Wait, no. Wait, no. {body}. So {2 * i + 1}."


@pytest.fixture
def spawn(redis_server, cache_dir: Path) -> Iterator[Callable[..., tuple[subprocess.Popen, str]]]:
    processes: list[subprocess.Popen] = []
    env = {**os.environ, "FREELM_CACHE_DIR": str(cache_dir), "FREELM_LOG_FORMAT": "json"}

    def start(role: str, *flags: str) -> tuple[subprocess.Popen, str]:
        process = subprocess.Popen(
            [
                sys.executable, "-m", "pruner_service", "serve", "--role", role,
                "--redis", redis_server.url, "--namespace", NAMESPACE, "--port", "0",
                "--device", "cpu", "--threads", "1", *flags,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
        )  # fmt: skip
        processes.append(process)
        assert process.stdout is not None
        first = process.stdout.readline()
        match = re.search(r"listening on (\S+)", first)
        return process, match.group(1) if match else ""

    yield start
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()


def prune(address: str, request: pb.PruneRequest, timeout: float = 120) -> pb.PruneResponse:
    with grpc.insecure_channel(address) as channel:
        return pb_grpc.PrunerStub(channel).Prune(request, timeout=timeout)


def answer_key(reply: pb.PruneResponse) -> tuple:
    return (
        [(c.prefix, c.suffix, c.status) for c in reply.commands],
        [(d.start, d.end, d.source) for d in reply.deletions],
        reply.pruned_trace,
    )


def test_two_frontends_two_workers_answer_500_requests_once_each(
    spawn, redis_server, test_settings
) -> None:
    from pruner_service.assembly import build_service
    from pruner_service.config import Settings
    from pruner_service.convert import request_from_proto, result_to_proto

    for _ in range(2):
        spawn("worker")
    fronts = [spawn("frontend", "--max-queue", "1000")[1] for _ in range(2)]
    for address in fronts:
        with grpc.insecure_channel(address) as channel:
            wait_for_health(channel)
    traces = [trace(i) for i in range(50)]
    requests = [pb.PruneRequest(request_id=f"q{n}", trace=traces[n % 50]) for n in range(500)]

    def call(n: int) -> pb.PruneResponse:
        return prune(fronts[n % 2], requests[n], timeout=300)

    with ThreadPoolExecutor(50) as pool:
        replies = list(pool.map(call, range(500)))
    assert [r.request_id for r in replies] == [f"q{n}" for n in range(500)]

    embedded = build_service(Settings(cache_dir=test_settings.cache_dir, device="cpu"))
    embedded.start(background=False)
    try:
        want = {}
        for text in traces:
            domain = request_from_proto(pb.PruneRequest(trace=text), embedded.limits)
            want[text] = answer_key(result_to_proto(embedded.prune(domain, time.time() + 120)))
    finally:
        embedded.shutdown(grace=1)
    for n, reply in enumerate(replies):
        assert answer_key(reply) == want[traces[n % 50]], f"request q{n} differs"
    counts = redis.Redis(port=redis_server.port).hgetall(RedisKeys(NAMESPACE).computations)
    assert counts and all(int(v) == 1 for v in counts.values()), "a job was computed twice"
    assert {k.decode() for k in counts} <= {f"q{n}" for n in range(500)}


def test_a_reused_request_id_never_gets_another_callers_result(spawn) -> None:
    spawn("worker")
    _, front = spawn("frontend")
    with grpc.insecure_channel(front) as channel:
        wait_for_health(channel)
    first = prune(front, pb.PruneRequest(request_id="shared", trace=trace(1)))
    second = prune(front, pb.PruneRequest(request_id="shared", trace=trace(2)))
    for reply, text in ((first, trace(1)), (second, trace(2))):
        deletions = [
            Deletion(
                d.start, d.end, d.byte_start, d.byte_end, Source(pb.DeletionSource.Name(d.source))
            )
            for d in reply.deletions
        ]
        assert reply.pruned_trace == apply_deletions(text, deletions)
    assert first.pruned_trace.endswith("So 3.") and second.pruned_trace.endswith("So 5.")


def test_a_killed_workers_jobs_are_reclaimed_by_the_other(spawn, redis_server) -> None:
    idle_ms = 3000
    flags = ("--claim-idle-ms", str(idle_ms), "--max-batch", "4")
    workers = {spawn("worker", *flags)[0] for _ in range(2)}
    _, front = spawn("frontend")
    with grpc.insecure_channel(front) as channel:
        wait_for_health(channel)
    client = redis.Redis(port=redis_server.port)
    keys = RedisKeys(NAMESPACE)
    requests = [pb.PruneRequest(request_id=f"k{i}", trace=trace(i, 120)) for i in range(8)]
    replies: dict[str, pb.PruneResponse] = {}

    def call(request: pb.PruneRequest) -> None:
        replies[request.request_id] = prune(front, request, timeout=300)

    threads = [threading.Thread(target=call, args=(r,)) for r in requests]
    for t in threads:
        t.start()
    victim = None
    while victim is None:
        for consumer in client.xinfo_consumers(keys.jobs, keys.group):
            pid = int(consumer["name"].decode().split("-")[-2])
            if consumer["pending"] and any(p.pid == pid for p in workers):
                victim = next(p for p in workers if p.pid == pid)
        time.sleep(0.05)
    os.kill(victim.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    for t in threads:
        t.join(300)
    elapsed = time.monotonic() - killed_at
    assert sorted(replies) == sorted(r.request_id for r in requests)
    assert all(reply.pruned_trace for reply in replies.values())
    # The survivor may be mid-batch when the idle time ends; then it runs the reclaimed batch.
    # The margin covers the reclaim poll (idle / 4), result polling and a loaded CI machine.
    batch_s = max(reply.timing.compute_ms for reply in replies.values()) / 1000
    bound = idle_ms / 1000 * 1.25 + 2 * batch_s + 10
    assert elapsed < bound, f"answered {elapsed:.1f}s after the kill; bound {bound:.1f}s"
    assert client.xlen(keys.jobs) == 0


def test_redis_restart_under_load_never_hangs_and_service_resumes(spawn, redis_server) -> None:
    metrics_port = free_port()
    _, address = spawn("all", "--metrics-port", str(metrics_port))
    with grpc.insecure_channel(address) as channel:
        wait_for_health(channel)
    durations: list[float] = []
    codes: list[grpc.StatusCode] = []
    stop = threading.Event()

    def load(k: int) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            started = time.monotonic()
            try:
                prune(address, pb.PruneRequest(request_id=f"l{k}-{n}", trace=trace(n)), timeout=5)
                codes.append(grpc.StatusCode.OK)
            except grpc.RpcError as exc:
                codes.append(exc.code())
            durations.append(time.monotonic() - started)

    threads = [threading.Thread(target=load, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    time.sleep(2)
    redis_server.stop()
    time.sleep(2)
    redis_server.start()
    time.sleep(2)
    stop.set()
    for t in threads:
        t.join(30)
    assert max(durations) < 5 + 2, f"a call hung for {max(durations):.1f}s past its 5s deadline"
    assert grpc.StatusCode.UNAVAILABLE in codes or grpc.StatusCode.DEADLINE_EXCEEDED in codes
    limit = time.monotonic() + 60
    while True:
        try:
            reply = prune(address, pb.PruneRequest(request_id="after", trace=trace(999)), 10)
            break
        except grpc.RpcError:
            assert time.monotonic() < limit, "no success after Redis came back"
            time.sleep(0.5)
    assert reply.request_id == "after"
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics") as response:
        text = response.read().decode()
    assert 'freelm_requests_total{method="Prune",status="OK"}' in text
    assert "freelm_batch_size_count" in text and "freelm_queue_depth" in text
