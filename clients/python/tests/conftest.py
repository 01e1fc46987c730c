"""Fixtures of the client's tests: real servers in their own processes.

The client package does not depend on the service. Its tests start one with the interpreter named
by ``FREELM_SERVER_PYTHON`` (default: this one), so they run from a venv that has only the client.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

REPO = Path(__file__).resolve().parents[3]
SERVER_PYTHON = os.environ.get("FREELM_SERVER_PYTHON", sys.executable)


def start_server(*flags: str) -> tuple[subprocess.Popen, str]:
    """``freelm-pruner serve`` on a free port; returns the process and its address once SERVING."""
    process = subprocess.Popen(
        [SERVER_PYTHON, "-m", "pruner_service", "serve", "--port", "0", "--device", "cpu", *flags],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=REPO,
    )
    assert process.stdout is not None
    match = re.search(r"listening on (\S+)", process.stdout.readline())
    assert match, "the server did not print its address"
    return process, match.group(1)


def wait_serving(channel: grpc.Channel, timeout: float = 120.0) -> None:
    stub = health_pb2_grpc.HealthStub(channel)
    limit = time.monotonic() + timeout
    while time.monotonic() < limit:
        reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=5)
        if reply.status == health_pb2.HealthCheckResponse.SERVING:
            return
        time.sleep(0.1)
    raise TimeoutError("server not SERVING")


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.fixture(scope="session")
def server() -> Iterator[str]:
    """A real server on the embedded default profile."""
    process, address = start_server()
    with grpc.insecure_channel(address) as channel:
        wait_serving(channel)
    yield address
    stop(process)
