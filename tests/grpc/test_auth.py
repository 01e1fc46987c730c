"""Who may call: bearer tokens and mutual TLS through a real server over the real model.

A server with ``auth_token_file`` refuses calls without a known token (``UNAUTHENTICATED``) and
calls a token has no right to (``PERMISSION_DENIED``); health and reflection stay open; a token
removed from the file stops working without a restart. With ``tls_client_ca_file`` a client
without a certificate the CA signed cannot connect.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from freelm.pruner.v1 import pruner_pb2 as pb
from freelm.pruner.v1 import pruner_pb2_grpc as pb_grpc
from freelm_pruner_client.client import PrunerClient, Tls, build_request
from freelm_pruner_client.errors import (
    PermissionDeniedError,
    UnauthenticatedError,
    UnavailableError,
)
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from pruner_service.config import Settings
from tests.conftest import running_server, wait_for_health
from tests.support.certs import HAVE_OPENSSL, make_certificates
from tests.support.processes import start_server

pytestmark = pytest.mark.model

TRACE = "Let me add 2 and 3. So 2 + 3 = 5. Wait, let me check: 2 + 3 = 5. The answer is 5."
ADMIN, READER, LATER = "tok-admin-8f2c1e", "tok-reader-77ab0d", "tok-later-1c9e44"


@pytest.fixture(scope="module")
def token_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("auth") / "tokens"
    path.write_text(f"# tokens of this test\n{ADMIN}\n{READER} info  # GetModelInfo only\n")
    return path


@pytest.fixture(scope="module")
def auth_server(test_settings: Settings, token_file: Path) -> Iterator[str]:
    settings = dataclasses.replace(test_settings, auth_token_file=str(token_file))
    yield from running_server(settings)


def _code(call: object) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as caught:
        call()  # type: ignore[operator]
    return caught.value.code()  # type: ignore[no-any-return]


def _bearer(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")]


def test_each_method_needs_a_known_token_with_its_right(auth_server: str) -> None:
    with grpc.insecure_channel(auth_server) as channel:
        stub = pb_grpc.PrunerStub(channel)
        request = build_request(TRACE)
        info = pb.GetModelInfoRequest()
        assert _code(lambda: stub.Prune(request, timeout=60)) == grpc.StatusCode.UNAUTHENTICATED
        assert _code(lambda: stub.GetModelInfo(info, timeout=60)) == grpc.StatusCode.UNAUTHENTICATED
        assert (
            _code(lambda: list(stub.PruneStream(iter([request]), timeout=60)))
            == grpc.StatusCode.UNAUTHENTICATED
        )
        wrong = _bearer(ADMIN + "x")
        assert (
            _code(lambda: stub.Prune(request, timeout=60, metadata=wrong))
            == grpc.StatusCode.UNAUTHENTICATED
        )
        not_bearer = [("authorization", f"Basic {ADMIN}")]
        assert (
            _code(lambda: stub.Prune(request, timeout=60, metadata=not_bearer))
            == grpc.StatusCode.UNAUTHENTICATED
        )
        reader = _bearer(READER)
        assert stub.GetModelInfo(info, timeout=60, metadata=reader).max_trace_chars > 0
        assert (
            _code(lambda: stub.Prune(request, timeout=60, metadata=reader))
            == grpc.StatusCode.PERMISSION_DENIED
        )
        admin = _bearer(ADMIN)
        assert stub.Prune(request, timeout=120, metadata=admin).usage.trace_chars == len(TRACE)
        replies = list(stub.PruneStream(iter([request]), timeout=120, metadata=admin))
        assert replies[0].response.usage.trace_chars == len(TRACE)


def test_health_and_reflection_stay_open(auth_server: str) -> None:
    with grpc.insecure_channel(auth_server) as channel:
        health = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=10
        )
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        ask = reflection_pb2.ServerReflectionRequest(list_services="")
        reply = next(
            reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
                iter([ask]), timeout=10
            )
        )
        names = {s.name for s in reply.list_services_response.service}
        assert "freelm.pruner.v1.Pruner" in names


def test_the_sdk_sends_its_token_and_raises_typed_errors(
    auth_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FREELM_PRUNER_TOKEN_FILE", raising=False)
    with (
        PrunerClient(auth_server, timeout=60, retry=None) as anonymous,
        pytest.raises(UnauthenticatedError, match="bearer token"),
    ):
        anonymous.prune(TRACE)
    with PrunerClient(auth_server, timeout=60, token=READER) as reader:
        assert reader.model_info().window_tokens > 0
        with pytest.raises(PermissionDeniedError, match="Prune"):
            reader.prune(TRACE)
    mine = tmp_path / "my-token"
    mine.write_text(f"{ADMIN}\n")
    monkeypatch.setenv("FREELM_PRUNER_TOKEN_FILE", str(mine))
    with PrunerClient(auth_server, timeout=120) as from_environment:
        assert from_environment.prune(TRACE).usage.trace_chars == len(TRACE)


def test_tokens_are_rotated_without_a_restart(auth_server: str, token_file: Path) -> None:
    original = token_file.read_text()
    try:
        with PrunerClient(auth_server, timeout=60, token=LATER, retry=None) as later:
            with pytest.raises(UnauthenticatedError):
                later.model_info()
            token_file.write_text(f"{ADMIN}\n{LATER}\n{READER} info\n")  # the new one added
            assert later.model_info().max_trace_chars > 0
        token_file.write_text(f"{LATER}\n{READER} info\n")  # the old one revoked
        with (
            PrunerClient(auth_server, timeout=60, token=ADMIN, retry=None) as revoked,
            pytest.raises(UnauthenticatedError),
        ):
            revoked.model_info()
    finally:
        token_file.write_text(original)


def test_the_cli_reads_its_token_from_a_file(auth_server: str, tmp_path: Path) -> None:
    mine = tmp_path / "token"
    mine.write_text(f"{READER}\n")
    command = [sys.executable, "-m", "pruner_service", "info", "--server", auth_server]
    environment = {k: v for k, v in os.environ.items() if k != "FREELM_PRUNER_TOKEN_FILE"}
    refused = subprocess.run(command, capture_output=True, text=True, env=environment, check=False)
    assert refused.returncode == 1
    assert "UNAUTHENTICATED" in refused.stderr
    allowed = subprocess.run(
        [*command, "--token-file", str(mine), "--json"],
        capture_output=True,
        text=True,
        env=environment,
        check=False,
    )
    assert allowed.returncode == 0, allowed.stderr
    assert '"max_trace_chars"' in allowed.stdout
    assert READER not in allowed.stdout + allowed.stderr


def test_reflection_can_be_closed(test_settings: Settings) -> None:
    settings = dataclasses.replace(test_settings, reflection="off")
    server = running_server(settings)
    address = next(server)
    try:
        with grpc.insecure_channel(address) as channel:
            stub = reflection_pb2_grpc.ServerReflectionStub(channel)
            ask = reflection_pb2.ServerReflectionRequest(list_services="")
            code = _code(lambda: next(stub.ServerReflectionInfo(iter([ask]), timeout=10)))
            assert code == grpc.StatusCode.UNIMPLEMENTED
    finally:
        server.close()


@pytest.mark.skipif(not HAVE_OPENSSL, reason="needs the openssl command to make certificates")
def test_mutual_tls_needs_a_client_certificate_the_ca_signed(
    test_settings: Settings, tmp_path: Path
) -> None:
    from pruner_service.assembly import build_service
    from pruner_service.server import build_server

    certs = make_certificates(tmp_path)
    settings = dataclasses.replace(
        test_settings,
        tls_cert_file=str(certs.server_cert),
        tls_key_file=str(certs.server_key),
        tls_client_ca_file=str(certs.ca),
    )
    running = build_server(settings, build_service(settings))
    running.server.start()
    running.service.start()
    address = f"localhost:{running.port}"
    signed = Tls(root_certificates=certs.ca, private_key=certs.client_key,
                 certificate_chain=certs.client_cert)  # fmt: skip
    try:
        credentials = signed.credentials()
        with grpc.secure_channel(address, credentials) as channel:
            wait_for_health(channel)
        with PrunerClient(address, timeout=120, tls=signed) as client:
            assert client.prune(TRACE).usage.trace_chars == len(TRACE)
        for tls in (
            Tls(root_certificates=certs.ca),  # no client certificate
            Tls(
                root_certificates=certs.ca,
                private_key=certs.rogue_key,
                certificate_chain=certs.rogue_cert,
            ),
        ):
            with (
                PrunerClient(address, timeout=5, tls=tls, retry=None) as refused,
                pytest.raises(UnavailableError),
            ):
                refused.model_info()
    finally:
        running.stop(grace=5)


def _non_loopback_address() -> str | None:
    """An IPv4 address of this machine that is not loopback, or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: nothing is sent, a route is chosen
            address = str(probe.getsockname()[0])
        except OSError:
            return None
    return None if address.startswith("127.") or address == "0.0.0.0" else address


def test_metrics_bind_the_servers_host_unless_told_otherwise(cache_dir: Path) -> None:
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "pruner_service", "serve", "--port", "0", "--device", "cpu",
         "--metrics-port", str(port), "--cache-dir", str(cache_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        assert "listening on" in process.stdout.readline()
        deadline, body = time.monotonic() + 60, ""
        while time.monotonic() < deadline and not body:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                    body = r.read().decode()
            except OSError:
                time.sleep(0.2)
        assert "freelm_requests" in body
        outside = _non_loopback_address()
        if outside is not None:
            with pytest.raises(OSError):
                urllib.request.urlopen(f"http://{outside}:{port}/metrics", timeout=5)
    finally:
        process.terminate()
        process.wait(60)


def test_tokens_and_trace_text_never_reach_logs_or_error_messages(
    cache_dir: Path, tmp_path: Path
) -> None:
    """A server logging at debug level, called with a good token, a wrong one, a bad request
    and a stream with a bad item: neither the tokens nor the texts appear in its output or in
    any status message."""
    from tests.conftest import FEWSHOT_PROFILE

    good, wrong, secret = "tok-GOOD-4d1f9a0e", "tok-WRONG-77e0c2", "ZQXJ-PRIVATE-TEXT"
    tokens = tmp_path / "tokens"
    tokens.write_text(f"{good}\n")
    trace = f"Let me add 2 and 3 for {secret}. So 2 + 3 = 5. Wait, 2 + 3 = 5. The answer is 5."
    process, address = start_server(
        "--port", "0", "--device", "cpu", "--profile", str(FEWSHOT_PROFILE), "--cache-dir",
        str(cache_dir), "--max-trace-chars", "6000", "--auth-token-file", str(tokens),
        "--log-level", "debug", "--log-format", "json",
    )  # fmt: skip
    messages: list[str] = []
    output = ""
    try:
        with grpc.insecure_channel(address) as channel:
            wait_for_health(channel)
            stub = pb_grpc.PrunerStub(channel)
            assert stub.Prune(build_request(trace, question=secret), timeout=120,
                              metadata=_bearer(good)).usage.trace_chars == len(trace)  # fmt: skip
            bad = build_request(trace, question=secret, max_delete_fraction=2.0)
            for metadata in (_bearer(wrong), _bearer(good)):
                with pytest.raises(grpc.RpcError) as caught:
                    stub.Prune(bad, timeout=60, metadata=metadata)
                messages.append(caught.value.details() or "")
            items = [build_request(trace), build_request("", request_id="empty-item")]
            replies = list(stub.PruneStream(iter(items), timeout=120, metadata=_bearer(good)))
            messages += [r.error.message for r in replies if r.HasField("error")]
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=60)
    assert len(messages) == 3 and "max_delete_fraction" in messages[1]
    seen = output + "\n".join(messages)
    assert '"event": "prune"' in output and '"rpc_refused"' in output  # it logged the calls
    for text in (good, wrong, secret):
        assert text not in seen, f"{text} leaked"
