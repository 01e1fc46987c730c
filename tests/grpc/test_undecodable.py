"""Requests whose bytes are not a valid message, sent raw through a real server over the fake
engine: INVALID_ARGUMENT naming the problem (not gRPC's INTERNAL), and the server keeps serving."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from freelm.pruner.v1 import pruner_pb2 as pb
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from pruner_service.config import Settings
from pruner_service.domain import Limits
from pruner_service.server import SERVICE_NAME, build_server
from pruner_service.service import PrunerService
from tests.fakes import FakeEngine

# field 2 (trace), wire type 2, 3 bytes: "a", then the first two bytes of an encoded surrogate
BAD_TRACE = b"\x12\x03a\xed\xa0"
NOT_PROTOBUF = b"\xff\xff\xff\xff garbage"


@pytest.fixture(scope="module")
def channel() -> Iterator[grpc.Channel]:
    settings = Settings(port=0, max_batch=2, max_wait_ms=1)
    service = PrunerService(settings, FakeEngine, Limits(1000, 100, 8))
    running = build_server(settings, service)
    running.server.start()
    service.start()
    assert service.wait_until_settled(10)
    with grpc.insecure_channel(f"127.0.0.1:{running.port}") as ch:
        yield ch
    running.stop(grace=1)


def raw(channel: grpc.Channel, method: str, reply: type) -> grpc.UnaryUnaryMultiCallable:
    return channel.unary_unary(
        f"/{SERVICE_NAME}/{method}",
        request_serializer=lambda data: data,
        response_deserializer=reply.FromString,
    )


def refused(call: grpc.UnaryUnaryMultiCallable, data: bytes) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call(data, timeout=10)
    return caught.value


def test_prune_with_invalid_utf8_is_invalid_argument_naming_the_field(
    channel: grpc.Channel,
) -> None:
    error = refused(raw(channel, "Prune", pb.PruneResponse), BAD_TRACE)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == (
        "the request is not a valid PruneRequest: trace is not valid UTF-8 at byte 1"
    )


def test_prune_and_model_info_with_bytes_that_are_not_protobuf_are_invalid_argument(
    channel: grpc.Channel,
) -> None:
    for method, reply, kind in [
        ("Prune", pb.PruneResponse, "PruneRequest"),
        ("GetModelInfo", pb.ModelInfo, "GetModelInfoRequest"),
    ]:
        error = refused(raw(channel, method, reply), NOT_PROTOBUF)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, method
        assert error.details() == f"the request is not a valid {kind}: its bytes are not protobuf"


def test_a_stream_item_that_does_not_decode_is_an_error_item_and_the_stream_goes_on(
    channel: grpc.Channel,
) -> None:
    stream = channel.stream_stream(
        f"/{SERVICE_NAME}/PruneStream",
        request_serializer=lambda data: data,
        response_deserializer=pb.PruneStreamResponse.FromString,
    )
    good = [pb.PruneRequest(request_id=f"ok{i}", trace="a b. c d.") for i in range(2)]
    bad_with_id = pb.PruneRequest(request_id="bad").SerializeToString() + BAD_TRACE
    items = [good[0].SerializeToString(), bad_with_id, NOT_PROTOBUF, good[1].SerializeToString()]
    replies = list(stream(iter(items), timeout=10))
    assert len(replies) == 4
    by_id = {r.request_id: r for r in replies}
    assert by_id["ok0"].response.pruned_trace and by_id["ok1"].response.pruned_trace
    bad = by_id["bad"].error
    assert bad.code_name == "INVALID_ARGUMENT"
    assert (
        bad.message == "the request is not a valid PruneRequest: trace is not valid UTF-8 at byte 1"
    )
    (anonymous,) = [r for r in replies if r.request_id not in {"ok0", "ok1", "bad"}]
    assert anonymous.request_id  # generated, as for any item sent without an id
    assert anonymous.error.message.endswith("its bytes are not protobuf")


def test_the_server_keeps_serving_and_reflection_lists_the_service(channel: grpc.Channel) -> None:
    refused(raw(channel, "Prune", pb.PruneResponse), BAD_TRACE)
    call = channel.unary_unary(
        f"/{SERVICE_NAME}/Prune",
        request_serializer=pb.PruneRequest.SerializeToString,
        response_deserializer=pb.PruneResponse.FromString,
    )
    assert call(pb.PruneRequest(trace="a b. c d."), timeout=10).pruned_trace == ". c d."
    assert SERVICE_NAME in ProtoReflectionDescriptorDatabase(channel).get_services()
