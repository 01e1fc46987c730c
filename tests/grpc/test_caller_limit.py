"""Per-caller limits through a real server (fake engine held by a gate): a token past its calls
in flight is RESOURCE_EXHAUSTED while another token's call is admitted and answered."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import grpc
import pytest
from freelm.pruner.v1 import pruner_pb2 as pb
from freelm.pruner.v1 import pruner_pb2_grpc as pb_grpc

from pruner_service.config import Settings
from pruner_service.domain import Limits
from pruner_service.server import build_server
from pruner_service.service import PrunerService
from tests.fakes import FakeEngine


def _bearer(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")]


def test_one_caller_cannot_take_every_place(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("greedy-caller-0001\npolite-caller-0002\n")
    settings = Settings(port=0, max_batch=4, max_wait_ms=1, auth_token_file=str(tokens),
                        max_calls_per_caller=2)  # fmt: skip
    gate = threading.Event()
    engine = FakeEngine(gate)
    service = PrunerService(settings, lambda: engine, Limits(1000, 100, 8))
    running = build_server(settings, service)
    running.server.start()
    service.start()
    assert service.wait_until_settled(10)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub = pb_grpc.PrunerStub(channel)

            def call(token: str, rid: str) -> grpc.Future:
                request = pb.PruneRequest(request_id=rid, trace=f"Step {rid} here. Then more.")
                return stub.Prune.future(request, timeout=30, metadata=_bearer(token))

            held = [call("greedy-caller-0001", "g1"), call("greedy-caller-0001", "g2")]
            while len(engine.computed) < 1:
                time.sleep(0.01)
            with pytest.raises(grpc.RpcError) as caught:
                call("greedy-caller-0001", "g3").result()
            assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "2 calls in flight" in caught.value.details()
            other = call("polite-caller-0002", "p1")
            gate.set()
            assert other.result().request_id == "p1"
            assert [f.result().request_id for f in held] == ["g1", "g2"]
            assert call("greedy-caller-0001", "g4").result().request_id == "g4"
    finally:
        gate.set()
        running.stop(grace=2)


def test_a_caller_limit_without_tokens_is_refused_at_start() -> None:
    settings = Settings(port=0, max_calls_per_caller=2)
    service = PrunerService(settings, FakeEngine, Limits(1000, 100, 8))
    with pytest.raises(ValueError, match="needs --auth-token-file"):
        build_server(settings, service)
