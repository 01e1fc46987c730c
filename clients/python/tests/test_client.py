"""The sync and async clients against a real server."""

from __future__ import annotations

import asyncio

import pytest
from freelm.pruner.v1 import pruner_pb2 as pb
from freelm_pruner_client import apply_deletions
from freelm_pruner_client.client import AsyncPrunerClient, PrunerClient, RetryPolicy, build_request
from freelm_pruner_client.errors import InvalidArgumentError, UnavailableError

LOOPY = "First I add 2 and 3. Wait, no. Wait, no. Wait, no. So 2 + 3 = 5. The answer is 5."


def test_prune_and_apply_deletions_agree(server: str) -> None:
    with PrunerClient(server) as client:
        reply = client.prune(LOOPY, question="What is 2 + 3?", request_id="c-1")
    assert reply.request_id == "c-1"
    assert reply.deletions, "the loop must be collapsed"
    assert apply_deletions(LOOPY, reply.deletions) == reply.pruned_trace
    assert reply.pruned_trace.count("Wait, no.") == 1


def test_bad_input_raises_the_typed_error_with_the_message(server: str) -> None:
    with (
        PrunerClient(server) as client,
        pytest.raises(InvalidArgumentError, match="trace is empty"),
    ):
        client.prune("")


def test_an_unreachable_server_is_unavailable_after_retries() -> None:
    fast = RetryPolicy(max_attempts=3, initial_backoff_s=0.05, max_backoff_s=0.1)
    with (
        PrunerClient("127.0.0.1:9", timeout=20, retry=fast) as client,
        pytest.raises(UnavailableError),
    ):
        client.model_info()


def test_async_client_prunes_streams_and_describes(server: str) -> None:
    async def scenario() -> tuple[pb.PruneResponse, list[pb.PruneStreamResponse], pb.ModelInfo]:
        async with AsyncPrunerClient(server) as client:
            reply = await client.prune(LOOPY)
            requests = [build_request(LOOPY, request_id=f"a{i}") for i in range(3)]
            requests.append(build_request("", request_id="bad"))
            stream = [r async for r in client.prune_stream(requests)]
            return reply, stream, await client.model_info()

    reply, stream, info = asyncio.run(scenario())
    assert apply_deletions(LOOPY, reply.deletions) == reply.pruned_trace
    assert {r.request_id for r in stream} == {"a0", "a1", "a2", "bad"}
    assert [r.request_id for r in stream if r.WhichOneof("result") == "error"] == ["bad"]
    assert info.profile == "smollm2-135m"


def test_sync_stream_answers_each_request_once(server: str) -> None:
    with PrunerClient(server) as client:
        replies = list(
            client.prune_stream(build_request(LOOPY, request_id=f"s{i}") for i in range(5))
        )
    assert sorted(r.request_id for r in replies) == [f"s{i}" for i in range(5)]
