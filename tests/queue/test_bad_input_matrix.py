"""The bad-input matrix through a real gRPC server, embedded and as a Redis frontend (with a
worker in the same process, a real ``redis-server``, the fake engine): every case gets a named
status and message, and the server answers a good request afterwards."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import grpc
import pytest
from freelm.pruner.v1 import pruner_pb2 as pb
from freelm.pruner.v1 import pruner_pb2_grpc as pb_grpc

from pruner_service.assembly import build_service
from pruner_service.config import Settings
from pruner_service.server import SERVICE_NAME, build_server
from tests.fakes import FakeEngine

GOOD = "First we add two numbers. Then we stop."
UNKNOWN_FIELD = pb.PruneRequest(trace=GOOD).SerializeToString() + b"\xf8\x07\x01"  # field 127
LONE_SURROGATE = b"\x12\x03a\xed\xa0"  # trace: "a" then the first bytes of an encoded U+D800
NOT_PROTOBUF = b"\xff\xff\xff\xff garbage"


@dataclass
class Served:
    address: str
    gate: threading.Event
    engine: FakeEngine
    depth: Callable[[], int]
    held_depth: int
    """The queue's depth with one job computing and one waiting (a Redis frontend counts both)."""


@pytest.fixture(params=["embedded", "redis"])
def served(request: pytest.FixtureRequest) -> Iterator[Served]:
    values: dict = {"port": 0, "max_queue": 2, "max_batch": 1, "max_wait_ms": 1}
    if request.param == "redis":
        redis_server = request.getfixturevalue("redis_server")
        values.update(redis=redis_server.url, namespace="matrix", claim_idle_ms=5000)
    settings = Settings(**values)
    gate = threading.Event()
    gate.set()
    engine = FakeEngine(gate)
    service = build_service(settings, make_engine=lambda: engine)
    running = build_server(settings, service)
    running.server.start()
    service.start(background=False)
    limit = time.monotonic() + 20
    while not service.ready:
        assert time.monotonic() < limit, "the service never became ready"
        time.sleep(0.05)
    held_depth = 2 if request.param == "redis" else 1
    yield Served(f"127.0.0.1:{running.port}", gate, engine, service.queue.depth, held_depth)
    gate.set()
    running.stop(grace=2)


def _raw(channel: grpc.Channel) -> Callable[..., pb.PruneResponse]:
    return channel.unary_unary(  # type: ignore[no-any-return]
        f"/{SERVICE_NAME}/Prune",
        request_serializer=lambda data: data,
        response_deserializer=pb.PruneResponse.FromString,
    )


CASES = [
    ("empty", pb.PruneRequest(trace=""), "INVALID_ARGUMENT", "trace is empty"),
    ("whitespace", pb.PruneRequest(trace=" \n\t "), "INVALID_ARGUMENT", "trace is empty"),
    ("30 MB", pb.PruneRequest(trace="x" * 30_000_000), "INVALID_ARGUMENT", "limit is 2000000"),
    ("nan", pb.PruneRequest(trace=GOOD, options=pb.PruneOptions(max_delete_fraction=float("nan"))),
     "INVALID_ARGUMENT", "max_delete_fraction must be in (0, 1], got nan"),
    ("negative", pb.PruneRequest(trace=GOOD, options=pb.PruneOptions(frozen_prefix_chars=-1)),
     "INVALID_ARGUMENT", "frozen_prefix_chars must be >= 0"),
    ("huge", pb.PruneRequest(trace=GOOD, options=pb.PruneOptions(max_commands=2**31 - 1)),
     "INVALID_ARGUMENT", "max_commands must be in"),
    ("long id", pb.PruneRequest(trace=GOOD, request_id="r" * 129), "INVALID_ARGUMENT",
     "request_id"),
    ("lone surrogate", LONE_SURROGATE, "INVALID_ARGUMENT", "trace is not valid UTF-8 at byte 1"),
    ("garbage bytes", NOT_PROTOBUF, "INVALID_ARGUMENT", "its bytes are not protobuf"),
    ("unknown field", UNKNOWN_FIELD, "OK", ""),
]  # fmt: skip


@pytest.mark.parametrize(("name", "message", "code", "words"), CASES, ids=[c[0] for c in CASES])
def test_each_bad_input_gets_a_named_status_and_the_server_keeps_serving(
    served: Served, name: str, message: pb.PruneRequest | bytes, code: str, words: str
) -> None:
    data = message if isinstance(message, bytes) else message.SerializeToString()
    with grpc.insecure_channel(served.address) as channel:
        call = _raw(channel)
        if code == "OK":
            assert call(data, timeout=30).pruned_trace, name
        else:
            with pytest.raises(grpc.RpcError) as caught:
                call(data, timeout=30)
            assert caught.value.code().name == code, name
            assert words in caught.value.details(), caught.value.details()
        good = pb_grpc.PrunerStub(channel).Prune(pb.PruneRequest(trace=GOOD), timeout=30)
        assert good.usage.trace_chars == len(GOOD)


def test_a_1_ms_deadline_and_a_full_queue_get_their_statuses(served: Served) -> None:
    with grpc.insecure_channel(served.address) as channel:
        stub = pb_grpc.PrunerStub(channel)
        served.gate.clear()  # the engine held: a fast path cannot answer within the 1 ms
        with pytest.raises(grpc.RpcError) as caught:
            stub.Prune(pb.PruneRequest(trace=GOOD), timeout=0.001)
        assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        served.gate.set()
        # Computed after it (one worker, in order; new content, so not from the cache): the
        # expired job no longer holds a place in the queue.
        after = "After the expired one. It is computed."
        assert stub.Prune(pb.PruneRequest(trace=after), timeout=30).usage.trace_chars == len(after)
        limit = time.monotonic() + 10
        while served.depth():  # a Redis worker acknowledges a job just after announcing it
            assert time.monotonic() < limit, "the answered jobs never left the queue"
            time.sleep(0.01)
        served.gate.clear()  # hold the engine: one computes, one waits, the queue fills up
        held = [
            stub.Prune.future(
                pb.PruneRequest(request_id=f"h{i}", trace=f"Item {i} here. More."), timeout=60
            )
            for i in range(2)
        ]
        limit = time.monotonic() + 20
        while served.depth() < served.held_depth:  # both admitted before any extra is sent
            assert time.monotonic() < limit, "the held requests were never admitted"
            time.sleep(0.01)
        codes: list[grpc.StatusCode] = []
        while grpc.StatusCode.RESOURCE_EXHAUSTED not in codes:
            assert time.monotonic() < limit, f"never refused: {codes}"
            try:
                stub.Prune(pb.PruneRequest(trace=f"Extra {len(codes)}. Words."), timeout=0.5)
            except grpc.RpcError as exc:
                codes.append(exc.code())
                if exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                    assert "queue is full" in (exc.details() or "")
        served.gate.set()
        assert all(f.result().pruned_trace for f in held)
        assert stub.Prune(pb.PruneRequest(trace=GOOD), timeout=30).usage.trace_chars == len(GOOD)
