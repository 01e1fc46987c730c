"""TLS end to end: the real server with a certificate, the client trusting its CA."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import grpc
import pytest
from conftest import start_server, stop, wait_serving
from freelm_pruner_client.client import PrunerClient, Tls
from freelm_pruner_client.errors import UnavailableError


def self_signed(folder: Path) -> tuple[Path, Path]:
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_tls_round_trip_and_an_untrusted_client_is_refused(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    process, address = start_server("--tls-cert-file", str(cert), "--tls-key-file", str(key))
    try:
        credentials = grpc.ssl_channel_credentials(cert.read_bytes())
        with grpc.secure_channel(address, credentials) as channel:
            wait_serving(channel)
        with PrunerClient(address, tls=Tls(root_certificates=cert)) as client:
            reply = client.prune("Hmm. Let me add 1 and 1. So 1 + 1 = 2.")
        assert reply.usage.trace_chars > 0
        with PrunerClient(address, timeout=5, retry=None) as plain, pytest.raises(UnavailableError):
            plain.model_info()
    finally:
        stop(process)
