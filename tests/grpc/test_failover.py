"""The SDK over several frontends: calls are balanced round robin, and when one frontend goes
away the next calls go to the other, each within a 1-second deadline."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from freelm_pruner_client.client import PrunerClient, Tls, target

from pruner_service.config import Settings
from pruner_service.domain import Limits
from pruner_service.server import Running, build_server
from pruner_service.service import PrunerService
from tests.fakes import FakeEngine
from tests.support.certs import HAVE_OPENSSL, make_certificates

TRACE = "First we add two numbers. Then we stop."


@pytest.fixture
def frontends() -> Iterator[list[tuple[Running, FakeEngine]]]:
    started = []
    for _ in range(2):
        settings = Settings(port=0, max_batch=1, max_wait_ms=1)
        engine = FakeEngine()
        service = PrunerService(settings, lambda engine=engine: engine, Limits(1000, 100, 8))
        running = build_server(settings, service)
        running.server.start()
        service.start()
        assert service.wait_until_settled(10)
        started.append((running, engine))
    yield started
    for running, _ in started:
        running.stop(grace=0)


def test_calls_are_spread_and_survive_a_frontend_going_away(frontends) -> None:
    (first, first_engine), (second, second_engine) = frontends
    addresses = [f"127.0.0.1:{first.port}", f"localhost:{second.port}"]
    with PrunerClient(addresses, timeout=10) as client:
        for i in range(10):
            assert client.prune(TRACE, request_id=f"a{i}").request_id == f"a{i}"
        assert first_engine.computed and second_engine.computed  # round robin, not one server
        first.server.stop(grace=0)  # gone: its connections close
        before = len(second_engine.computed)
        for i in range(10):
            assert client.prune(TRACE, request_id=f"b{i}", timeout=1.0).request_id == f"b{i}"
        assert len(second_engine.computed) == before + 10


def test_a_comma_separated_string_is_several_frontends() -> None:
    assert target("127.0.0.1:1,127.0.0.1:2") == "ipv4:127.0.0.1:1,127.0.0.1:2"
    assert target("127.0.0.1:1") == "127.0.0.1:1"
    assert target("dns:///pruner.internal:50051") == "dns:///pruner.internal:50051"
    with pytest.raises(ValueError, match="is not HOST:PORT"):
        target(["127.0.0.1:1", "no-port"])
    with pytest.raises(ValueError, match="one IP family"):
        target(["127.0.0.1:1", "[::1]:2"])


@pytest.mark.skipif(not HAVE_OPENSSL, reason="needs openssl for the certificates")
def test_several_frontends_over_tls_check_the_first_hosts_name(tmp_path) -> None:
    certs = make_certificates(tmp_path)
    started = []
    try:
        for _ in range(2):
            settings = Settings(port=0, max_batch=1, max_wait_ms=1,
                                tls_cert_file=str(certs.server_cert),
                                tls_key_file=str(certs.server_key))  # fmt: skip
            service = PrunerService(settings, FakeEngine, Limits(1000, 100, 8))
            running = build_server(settings, service)
            running.server.start()
            service.start()
            assert service.wait_until_settled(10)
            started.append(running)
        addresses = [f"localhost:{r.port}" for r in started]
        with PrunerClient(addresses, timeout=10, tls=Tls(root_certificates=certs.ca)) as client:
            for i in range(4):
                assert client.prune(TRACE, request_id=f"t{i}").request_id == f"t{i}"
    finally:
        for running in started:
            running.stop(grace=0)
