"""Redis over TLS with an ACL user of its own: a real ``redis-server`` with ``--tls-port`` and
generated certificates, the default user switched off, and a frontend and a worker (fake
engine) behind a real gRPC server reaching it with a ``rediss://USER:PASSWORD@`` URL."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import redis
from freelm.pruner.v1 import pruner_pb2 as pb
from freelm.pruner.v1 import pruner_pb2_grpc as pb_grpc

from pruner_service.assembly import build_service
from pruner_service.config import Settings
from pruner_service.server import build_server
from tests.fakes import FakeEngine
from tests.queue.conftest import free_port
from tests.support.certs import HAVE_OPENSSL, Certificates, make_certificates

pytestmark = pytest.mark.skipif(not HAVE_OPENSSL, reason="needs openssl for the certificates")

NAMESPACE = "tls"
ACL = ["pruner", "on", ">pruner-password", f"~{NAMESPACE}:*", f"&{NAMESPACE}:*", "+@all",
       "-@admin", "-@dangerous"]  # fmt: skip
"""The user the README recommends: its namespace's keys and channels, no admin commands."""


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[tuple[int, Certificates]]:
    certs = make_certificates(tmp_path)
    port = free_port()
    process = subprocess.Popen(
        ["redis-server", "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
         "--tls-cert-file", str(certs.server_cert), "--tls-key-file", str(certs.server_key),
         "--tls-ca-cert-file", str(certs.ca), "--tls-auth-clients", "no",
         "--save", "", "--appendonly", "no", "--dir", str(tmp_path),
         "--user", "default", "off", "--user", *ACL],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"rediss://pruner:pruner-password@127.0.0.1:{port}/0?ssl_ca_certs={certs.ca}"
    for _ in range(200):
        try:
            redis.Redis.from_url(url).ping()
            break
        except redis.ConnectionError:
            time.sleep(0.02)
    yield port, certs
    process.terminate()
    process.wait(10)


def _url(port: int, certs: Certificates, user: str = "pruner:pruner-password") -> str:
    return f"rediss://{user}@127.0.0.1:{port}/0?ssl_ca_certs={certs.ca}"


def test_a_frontend_and_worker_over_tls_as_an_acl_user(tls_redis) -> None:
    port, certs = tls_redis
    settings = Settings(port=0, redis=_url(port, certs), namespace=NAMESPACE, max_wait_ms=5)
    engine = FakeEngine()
    service = build_service(settings, make_engine=lambda: engine)
    running = build_server(settings, service)
    running.server.start()
    service.start(background=False)
    try:
        limit = time.monotonic() + 20
        while not service.ready:
            assert time.monotonic() < limit, "never ready over TLS"
            time.sleep(0.05)
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            reply = pb_grpc.PrunerStub(channel).Prune(
                pb.PruneRequest(request_id="over-tls", trace="First we add. Then we stop."),
                timeout=30,
            )
        assert reply.request_id == "over-tls" and engine.computed == ["over-tls"]
    finally:
        running.stop(grace=2)


def test_plain_connections_and_other_users_are_refused(tls_redis) -> None:
    port, certs = tls_redis
    with pytest.raises(redis.ConnectionError):
        redis.Redis(port=port, socket_timeout=2).ping()  # no TLS
    with pytest.raises(redis.AuthenticationError):
        redis.Redis.from_url(_url(port, certs, "pruner:wrong")).ping()
    with pytest.raises(redis.AuthenticationError):
        redis.Redis.from_url(_url(port, certs, "default:")).ping()
    user = redis.Redis.from_url(_url(port, certs))
    with pytest.raises(redis.exceptions.NoPermissionError):
        user.set("other:key", b"1")  # outside its namespace
    with pytest.raises(redis.exceptions.NoPermissionError):
        user.flushall()
