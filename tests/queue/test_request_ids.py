"""A request id is an idempotency key, not an identity: no caller ever gets another's result.

A real gRPC server on a free port, embedded or as a Redis frontend with a worker on a real
redis-server; the engine is the fake (it deletes each trace's first sentence), so every reply
shows which trace it was computed from.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from freelm.pruner.v1 import pruner_pb2 as pb
from freelm.pruner.v1 import pruner_pb2_grpc as pb_grpc

from pruner_service.assembly import build_service
from pruner_service.config import Settings
from pruner_service.server import build_server
from pruner_service.service import PrunerService
from tests.fakes import FakeEngine
from tests.queue.test_redis_queue import wait_ready

FIRST = "Alice adds two and three. She gets five. So the answer is five."
SECOND = "Bob multiplies four by six. He gets twenty-four. So the answer is twenty-four."


def pruned(trace: str) -> str:
    """What the fake engine's reply to ``trace`` keeps: all but its first sentence's words."""
    return trace[trace.index(". ") :]


@pytest.fixture(params=["embedded", "redis"])
def serve(request, redis_server) -> Iterator[Callable[[FakeEngine], pb_grpc.PrunerStub]]:
    """Starts a server over the fake engine given; in Redis mode a worker computes its jobs."""
    started: list[PrunerService] = []
    servers = []
    channels: list[grpc.Channel] = []

    def start(engine: FakeEngine) -> pb_grpc.PrunerStub:
        common = {"port": 0, "max_wait_ms": 20}
        if request.param == "redis":
            common.update(redis=redis_server.url, namespace="ids", claim_idle_ms=5000)
            worker = build_service(Settings(**common, role="worker"), make_engine=lambda: engine)
            worker.start(background=False)
            started.append(worker)
            settings = Settings(**common, role="frontend")
        else:
            settings = Settings(**common)
        service = build_service(settings, make_engine=lambda: engine)
        running = build_server(settings, service)
        running.server.start()
        service.start(background=False)
        servers.append(running)
        wait_ready(service)
        channel = grpc.insecure_channel(f"127.0.0.1:{running.port}")
        channels.append(channel)
        return pb_grpc.PrunerStub(channel)

    yield start
    for channel in channels:
        channel.close()
    for running in servers:
        running.stop(grace=2)
    for service in started:
        service.shutdown(grace=2)


def test_a_reused_request_id_with_other_content_gets_its_own_result(serve) -> None:
    stub = serve(FakeEngine())
    first = stub.Prune(pb.PruneRequest(request_id="shared", trace=FIRST), timeout=30)
    second = stub.Prune(pb.PruneRequest(request_id="shared", trace=SECOND), timeout=30)
    assert first.pruned_trace == pruned(FIRST)
    assert second.pruned_trace == pruned(SECOND)
    assert second.request_id == "shared"


def test_two_callers_sharing_a_request_id_at_once_each_get_their_own(serve) -> None:
    gate = threading.Event()
    engine = FakeEngine(gate)
    stub = serve(engine)
    traces = [FIRST, SECOND, FIRST + " Then stop.", SECOND + " Then stop."]
    with ThreadPoolExecutor(len(traces)) as pool:
        calls = [
            pool.submit(stub.Prune, pb.PruneRequest(request_id="same", trace=t), timeout=30)
            for t in traces
        ]
        deadline = time.monotonic() + 10
        while not engine.batches and time.monotonic() < deadline:
            time.sleep(0.01)
        gate.set()
        replies = [call.result() for call in calls]
    assert [r.pruned_trace for r in replies] == [pruned(t) for t in traces]


def test_a_stream_reusing_request_ids_gets_each_items_own_result(serve) -> None:
    stub = serve(FakeEngine())
    stub.Prune(pb.PruneRequest(request_id="s", trace=FIRST), timeout=30)
    traces = [SECOND, FIRST, SECOND + " Then stop."]
    items = stub.PruneStream(
        iter(pb.PruneRequest(request_id="s", trace=t) for t in traces), timeout=30
    )
    got = [item.response.pruned_trace for item in items]  # in the order they finish
    assert sorted(got) == sorted(pruned(t) for t in traces)


def test_with_tokens_a_stored_result_is_bound_to_its_caller(redis_server, tmp_path) -> None:
    """Two callers (tokens) reuse one request id through a Redis frontend: each job carries its
    caller to the worker and its result is stored under its caller (the ticket), so a caller's
    request can only ever be answered from its own stored result (or the content cache)."""
    import redis

    from pruner_service.auth import parse_tokens
    from pruner_service.queue.keys import RedisKeys, job_ticket

    assert job_ticket("id", "ab" * 32, "alice") != job_ticket("id", "ab" * 32, "bob")
    tokens = tmp_path / "tokens"
    tokens.write_text("token-of-alice-0001\ntoken-of-bob-000002\n")
    alice, bob = (g.fingerprint for g in parse_tokens(tokens.read_text()))
    common = {"port": 0, "max_wait_ms": 20, "redis": redis_server.url, "namespace": "callers"}
    engine = FakeEngine()
    worker = build_service(Settings(**common, role="worker"), make_engine=lambda: engine)
    worker.start(background=False)
    settings = Settings(**common, role="frontend", auth_token_file=str(tokens))
    frontend = build_service(settings, make_engine=lambda: engine)
    running = build_server(settings, frontend)
    running.server.start()
    frontend.start(background=False)
    try:
        wait_ready(frontend)
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub = pb_grpc.PrunerStub(channel)
            as_alice = [("authorization", "Bearer token-of-alice-0001")]
            as_bob = [("authorization", "Bearer token-of-bob-000002")]
            first = pb.PruneRequest(request_id="same-id", trace=FIRST)
            second = pb.PruneRequest(request_id="same-id", trace=SECOND)
            assert stub.Prune(first, timeout=30, metadata=as_alice).pruned_trace == pruned(FIRST)
            streamed = list(stub.PruneStream(iter([second]), timeout=30, metadata=as_bob))
            assert streamed[0].response.pruned_trace == pruned(SECOND)
            again = stub.Prune(first, timeout=30, metadata=as_bob)  # Alice's content: the cache
            assert again.pruned_trace == pruned(FIRST)
        assert engine.callers == [alice, bob]
        stored = redis.Redis(port=redis_server.port).keys(RedisKeys("callers").result("*"))
        assert sorted(k.decode().split(":")[-2] for k in stored) == sorted([alice, bob])
    finally:
        running.stop(grace=2)
        worker.shutdown(grace=2)
