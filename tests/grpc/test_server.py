"""The real gRPC server on a free port with the real SmolLM2 model, end to end."""

from __future__ import annotations

import json

import grpc
import pytest
from freelm.pruner.v1 import pruner_pb2 as pb
from freelm.pruner.v1 import pruner_pb2_grpc as pb_grpc
from freelm_pruner_client.anchors import (
    AnchorCommand,
    Deletion,
    Protection,
    Source,
    apply_deletions,
    prune,
)
from freelm_pruner_client.loop_collapser import loop_spans
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tests.conftest import REALISTIC_TRACE

QUESTION = "Maria has 48 apples, gives 1/4 to her brother and 9 to a friend. How many are left?"


def stub(channel: grpc.Channel) -> pb_grpc.PrunerStub:
    return pb_grpc.PrunerStub(channel)


def deletions_of(reply: pb.PruneResponse) -> list[Deletion]:
    return [
        Deletion(d.start, d.end, d.byte_start, d.byte_end, Source[pb.DeletionSource.Name(d.source)])
        for d in reply.deletions
    ]


def test_health_goes_from_not_serving_to_serving(server) -> None:
    _, seen = server
    assert seen[0] == health_pb2.HealthCheckResponse.NOT_SERVING
    assert seen[-1] == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_the_service(channel) -> None:
    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    reply = next(reflection.ServerReflectionInfo(iter([request]), timeout=10))
    names = {s.name for s in reply.list_services_response.service}
    assert {"freelm.pruner.v1.Pruner", "grpc.health.v1.Health"} <= names
    request = reflection_pb2.ServerReflectionRequest(
        file_containing_symbol="freelm.pruner.v1.Pruner"
    )
    reply = next(reflection.ServerReflectionInfo(iter([request]), timeout=10))
    assert reply.file_descriptor_response.file_descriptor_proto


def test_prune_end_to_end_agrees_with_the_resolver(channel) -> None:
    options = pb.PruneOptions(frozen_prefix_chars=20, protect_tail_chars=30)
    reply = stub(channel).Prune(
        pb.PruneRequest(
            request_id="e2e-1", trace=REALISTIC_TRACE, question=QUESTION, options=options
        ),
        timeout=120,
    )
    assert reply.request_id == "e2e-1"
    assert reply.commands, "the few-shot profile makes the model emit commands"
    for command in reply.commands:
        assert command.prefix in REALISTIC_TRACE and command.suffix in REALISTIC_TRACE
    assert json.loads(reply.raw_output) == [
        {"prefix": c.prefix, "suffix": c.suffix} for c in reply.commands
    ]
    expected = prune(
        REALISTIC_TRACE,
        [AnchorCommand(c.prefix, c.suffix) for c in reply.commands],
        loop_spans=loop_spans(REALISTIC_TRACE),
        protection=Protection(20, 30, 0.6, protect_last_sentence=True, protect_results=True),
        question=QUESTION,  # the server's default protection: the question's numbers are given
    )
    assert [pb.CommandStatus.Name(c.status) for c in reply.commands] == [
        c.status.value for c in expected.commands
    ]
    deletions = deletions_of(reply)
    assert deletions == list(expected.deletions)
    assert any(d.source is not Source.MODEL for d in deletions), "the loop must be collapsed"
    for command in reply.commands:
        if command.status == pb.APPLIED:
            assert any(d.start <= command.start and command.end <= d.end for d in deletions)
    assert reply.pruned_trace == apply_deletions(REALISTIC_TRACE, deletions)
    assert reply.usage.trace_chars == len(REALISTIC_TRACE)
    assert reply.usage.removed_chars == len(REALISTIC_TRACE) - len(reply.pruned_trace)
    assert reply.usage.first_changed_byte == deletions[0].byte_start
    assert 0 < reply.usage.kept_tokens < reply.usage.trace_tokens
    assert reply.timing.batch_size >= 1 and reply.timing.compute_ms > 0
    assert reply.model_id


def test_the_last_sentence_is_protected_unless_the_request_says_otherwise(channel) -> None:
    trace = "So x = 7. Hmm, wait. Hmm, wait. Hmm, wait."
    collapser_only = {"max_commands": 0}
    replies = [
        stub(channel).Prune(pb.PruneRequest(trace=trace, options=options), timeout=60)
        for options in (
            pb.PruneOptions(**collapser_only),
            pb.PruneOptions(**collapser_only, protect_last_sentence=True),
            pb.PruneOptions(**collapser_only, protect_last_sentence=False),
        )
    ]
    assert [r.pruned_trace for r in replies] == [
        "So x = 7. Hmm, wait. Hmm, wait.",  # the copy that ends the trace stays
        "So x = 7. Hmm, wait. Hmm, wait.",
        "So x = 7. Hmm, wait.",
    ]


@pytest.mark.parametrize(
    ("request_kwargs", "code", "words"),
    [
        ({"trace": ""}, grpc.StatusCode.INVALID_ARGUMENT, "trace is empty"),
        ({"trace": "   \n"}, grpc.StatusCode.INVALID_ARGUMENT, "trace is empty"),
        ({"trace": "x" * 6001}, grpc.StatusCode.INVALID_ARGUMENT, "limit is 6000"),
        ({"trace": "x" * 3_000_000}, grpc.StatusCode.INVALID_ARGUMENT, "limit is 6000"),
        ({"trace": "ok", "question": "q" * 501}, grpc.StatusCode.INVALID_ARGUMENT, "limit is 500"),
        (
            {"trace": "ok", "options": pb.PruneOptions(frozen_prefix_chars=-1)},
            grpc.StatusCode.INVALID_ARGUMENT,
            "frozen_prefix_chars must be >= 0",
        ),
        (
            {"trace": "ok", "options": pb.PruneOptions(protect_tail_chars=-5)},
            grpc.StatusCode.INVALID_ARGUMENT,
            "protect_tail_chars must be >= 0",
        ),
        (
            {"trace": "ok", "options": pb.PruneOptions(max_delete_fraction=float("nan"))},
            grpc.StatusCode.INVALID_ARGUMENT,
            "max_delete_fraction must be in (0, 1], got nan",
        ),
        (
            {"trace": "ok", "options": pb.PruneOptions(max_delete_fraction=1.5)},
            grpc.StatusCode.INVALID_ARGUMENT,
            "max_delete_fraction",
        ),
        (
            {"trace": "ok", "options": pb.PruneOptions(max_delete_fraction=0)},
            grpc.StatusCode.INVALID_ARGUMENT,
            "max_delete_fraction",
        ),
        (
            {"trace": "ok", "options": pb.PruneOptions(max_commands=99)},
            grpc.StatusCode.INVALID_ARGUMENT,
            "max_commands must be in [0, 4]",
        ),
        (
            {"trace": "ok", "options": pb.PruneOptions(max_commands=-1)},
            grpc.StatusCode.INVALID_ARGUMENT,
            "max_commands",
        ),
        ({"trace": "ok", "request_id": "r" * 129}, grpc.StatusCode.INVALID_ARGUMENT, "request_id"),
    ],
)
def test_bad_input_gets_a_clear_status_and_the_server_keeps_serving(
    channel, request_kwargs, code, words
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        stub(channel).Prune(pb.PruneRequest(**request_kwargs), timeout=30)
    assert caught.value.code() == code
    assert words in caught.value.details()
    reply = stub(channel).Prune(
        pb.PruneRequest(trace="I add 2 and 2. I get 4.", options=pb.PruneOptions(max_commands=0)),
        timeout=30,
    )
    assert reply.pruned_trace == "I add 2 and 2. I get 4."


def test_a_message_over_the_transport_limit_is_refused_and_the_server_keeps_serving(
    channel,
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        stub(channel).Prune(pb.PruneRequest(trace="y" * (65 * 1024 * 1024)), timeout=60)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    info = stub(channel).GetModelInfo(pb.GetModelInfoRequest(), timeout=10)
    assert info.max_trace_chars == 6000


def test_stream_of_twenty_with_one_invalid_item(channel) -> None:
    traces = [f"Step {i}: I add {i} and {i}. So {i} + {i} = {2 * i}. Done." for i in range(20)]
    requests = [pb.PruneRequest(request_id=f"s{i}", trace=t) for i, t in enumerate(traces)]
    requests[13] = pb.PruneRequest(request_id="s13", trace="")
    replies = list(stub(channel).PruneStream(iter(requests), timeout=300))
    by_id = {r.request_id: r for r in replies}
    assert len(replies) == 20 and set(by_id) == {f"s{i}" for i in range(20)}
    errors = [r for r in replies if r.WhichOneof("result") == "error"]
    assert [e.request_id for e in errors] == ["s13"]
    assert errors[0].error.code_name == "INVALID_ARGUMENT"
    assert errors[0].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    for i in set(range(20)) - {13}:
        reply = by_id[f"s{i}"].response
        assert reply.request_id == f"s{i}"
        assert reply.pruned_trace == apply_deletions(traces[i], deletions_of(reply))


def test_model_info_names_the_profile_and_says_there_is_no_adapter(channel) -> None:
    info = stub(channel).GetModelInfo(pb.GetModelInfoRequest(), timeout=10)
    assert info.profile == "test-fewshot"
    assert info.adapter_id == "" and not info.adapter_merged
    assert len(info.template_sha256) == 64
    assert info.max_commands == 4 and info.max_batch == 4


def test_a_past_deadline_is_deadline_exceeded(channel) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        stub(channel).Prune(pb.PruneRequest(trace=REALISTIC_TRACE), timeout=0.01)
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
