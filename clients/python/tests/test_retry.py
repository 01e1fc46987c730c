"""gRPC's retry policy in the client: transient statuses are retried, others are not.

A fake server (this module's unit under test is the client) fails a set number of calls first.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest
from freelm.pruner.v1 import pruner_pb2 as pb
from freelm.pruner.v1 import pruner_pb2_grpc as pb_grpc
from freelm_pruner_client.client import PrunerClient, RetryPolicy
from freelm_pruner_client.errors import InvalidArgumentError, QueueFullError, UnavailableError


class Flaky(pb_grpc.PrunerServicer):
    def __init__(self, failures: int, code: grpc.StatusCode) -> None:
        self.failures, self.code, self.calls = failures, code, 0

    def Prune(self, request: pb.PruneRequest, context: grpc.ServicerContext) -> pb.PruneResponse:
        self.calls += 1
        if self.calls <= self.failures:
            context.abort(self.code, f"failure {self.calls}")
        return pb.PruneResponse(request_id=request.request_id, pruned_trace=request.trace)


@pytest.fixture
def flaky() -> Iterator:
    servers = []

    def start(failures: int, code: grpc.StatusCode) -> tuple[Flaky, str]:
        servicer = Flaky(failures, code)
        server = grpc.server(futures.ThreadPoolExecutor(4))
        pb_grpc.add_PrunerServicer_to_server(servicer, server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        servers.append(server)
        return servicer, f"127.0.0.1:{port}"

    yield start
    for server in servers:
        server.stop(0)


FAST = RetryPolicy(max_attempts=4, initial_backoff_s=0.01, max_backoff_s=0.05)


@pytest.mark.parametrize("code", [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED])
def test_transient_statuses_are_retried_until_success(flaky, code: grpc.StatusCode) -> None:
    servicer, address = flaky(2, code)
    with PrunerClient(address, timeout=10, retry=FAST) as client:
        assert client.prune("x", request_id="r").pruned_trace == "x"
    assert servicer.calls == 3


def test_retries_stop_at_the_attempt_limit(flaky) -> None:
    servicer, address = flaky(10, grpc.StatusCode.RESOURCE_EXHAUSTED)
    with PrunerClient(address, timeout=10, retry=FAST) as client, pytest.raises(QueueFullError):
        client.prune("x")
    assert servicer.calls == 4


def test_invalid_argument_is_not_retried(flaky) -> None:
    servicer, address = flaky(1, grpc.StatusCode.INVALID_ARGUMENT)
    with (
        PrunerClient(address, timeout=10, retry=FAST) as client,
        pytest.raises(InvalidArgumentError),
    ):
        client.prune("x")
    assert servicer.calls == 1


def test_retries_can_be_turned_off(flaky) -> None:
    servicer, address = flaky(1, grpc.StatusCode.UNAVAILABLE)
    with PrunerClient(address, timeout=10, retry=None) as client, pytest.raises(UnavailableError):
        client.prune("x")
    assert servicer.calls == 1
