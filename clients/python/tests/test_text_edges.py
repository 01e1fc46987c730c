"""Text validity at the client's edges, against an in-process echo server: a lone surrogate is
refused before sending."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest
from freelm.pruner.v1 import pruner_pb2 as pb
from freelm.pruner.v1 import pruner_pb2_grpc as pb_grpc
from freelm_pruner_client.client import AsyncPrunerClient, PrunerClient
from freelm_pruner_client.errors import InvalidArgumentError

LONE = "\ud83d"  # the first half of a surrogate pair, alone: a str can hold it, UTF-8 cannot


class Echo(pb_grpc.PrunerServicer):
    """Replies with the trace unchanged; counts the calls that reached it."""

    def __init__(self) -> None:
        self.calls = 0

    def Prune(self, request: pb.PruneRequest, context: grpc.ServicerContext) -> pb.PruneResponse:
        self.calls += 1
        return pb.PruneResponse(request_id=request.request_id, pruned_trace=request.trace)

    def GetModelInfo(
        self, request: pb.GetModelInfoRequest, context: grpc.ServicerContext
    ) -> pb.ModelInfo:
        self.calls += 1
        return pb.ModelInfo(profile="echo")


@pytest.fixture
def echo() -> Iterator[tuple[Echo, str]]:
    servicer = Echo()
    server = grpc.server(futures.ThreadPoolExecutor(4))
    pb_grpc.add_PrunerServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield servicer, f"127.0.0.1:{port}"
    server.stop(0)


TEXT = "x" * 35 + LONE + " the secret rest"
CASES = [
    ({"trace": TEXT}, "trace has a lone surrogate at code point 35"),
    ({"trace": "ok", "question": LONE}, "question has a lone surrogate at code point 0"),
    ({"trace": "ok", "request_id": "id" + LONE}, "request_id has a lone surrogate at code point 2"),
]


@pytest.mark.parametrize(("fields", "message"), CASES)
def test_a_lone_surrogate_is_invalid_argument_before_sending_without_the_text(
    echo: tuple[Echo, str], fields: dict[str, str], message: str
) -> None:
    servicer, address = echo
    with PrunerClient(address, timeout=10) as client, pytest.raises(InvalidArgumentError) as sync:
        client.prune(**fields)

    async def call() -> None:
        async with AsyncPrunerClient(address, timeout=10) as client:
            await client.prune(**fields)

    with pytest.raises(InvalidArgumentError) as aio:
        asyncio.run(call())
    assert str(sync.value) == str(aio.value) == message
    assert sync.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert servicer.calls == 0
