"""Status codes through a real gRPC server whose engine is a fake held in place by a gate."""

from __future__ import annotations

import threading
import time

import grpc
import pytest
from freelm.pruner.v1 import pruner_pb2 as pb
from freelm.pruner.v1 import pruner_pb2_grpc as pb_grpc

from pruner_service.config import Settings
from pruner_service.domain import Limits
from pruner_service.server import build_server
from pruner_service.service import PrunerService
from tests.fakes import FakeEngine


def test_unavailable_while_loading_then_resource_exhausted_when_full() -> None:
    gate, loaded = threading.Event(), threading.Event()
    engine = FakeEngine(gate)

    def slow_load() -> FakeEngine:
        loaded.wait(10)
        return engine

    settings = Settings(port=0, max_queue=1, max_batch=1, max_wait_ms=1)
    service = PrunerService(settings, slow_load, Limits(1000, 100, 8))
    running = build_server(settings, service)
    running.server.start()
    service.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{running.port}")
    stub = pb_grpc.PrunerStub(channel)
    try:
        with pytest.raises(grpc.RpcError) as caught:
            stub.Prune(pb.PruneRequest(trace="a b. c d."), timeout=5)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "still loading" in caught.value.details()
        loaded.set()
        assert service.wait_until_settled(10)
        in_flight = [stub.Prune.future(pb.PruneRequest(trace="a b. c d."), timeout=30)]
        while not engine.batches:  # the first request is computing (held by the gate)
            time.sleep(0.01)
        in_flight.append(stub.Prune.future(pb.PruneRequest(trace="e f. g h."), timeout=30))
        while service.queue.depth() < 1:
            time.sleep(0.01)
        with pytest.raises(grpc.RpcError) as caught:
            stub.Prune(pb.PruneRequest(trace="i j. k l."), timeout=5)
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "queue is full (1 requests waiting)" in caught.value.details()
        gate.set()
        assert all(f.result().pruned_trace for f in in_flight)
    finally:
        gate.set()
        loaded.set()
        channel.close()
        running.stop(grace=5)
