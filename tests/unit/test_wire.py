"""``wire.tolerant``: bytes that are not a valid request become ``Undecodable`` with a reason
that names the field, never an exception (gRPC would answer INTERNAL)."""

from __future__ import annotations

import pytest
from freelm.pruner.v1 import pruner_pb2 as pb

from pruner_service.errors import InvalidArgument
from pruner_service.wire import Undecodable, decoded, tolerant

parse = tolerant(pb.PruneRequest)


def test_valid_bytes_decode_to_the_message() -> None:
    message = pb.PruneRequest(request_id="r", trace="a b.", question="q?")
    assert parse(message.SerializeToString()) == message


def test_the_first_string_field_with_invalid_utf8_is_named_and_a_readable_id_kept() -> None:
    data = pb.PruneRequest(request_id="r1", trace="ok").SerializeToString()
    data += b"\x1a\x04ab\xff\xfe"  # question (field 3): invalid from its byte 2
    data += b"\x12\x02\xc3("  # trace again (the last value wins): invalid from its byte 0
    result = parse(data)
    assert isinstance(result, Undecodable)
    assert result.request_id == "r1"
    assert str(result.error) == (
        "the request is not a valid PruneRequest: question is not valid UTF-8 at byte 2"
    )


def test_an_unreadable_request_id_is_left_empty() -> None:
    result = parse(b"\x0a\x01\xff")
    assert isinstance(result, Undecodable) and result.request_id == ""
    assert str(result.error).endswith("request_id is not valid UTF-8 at byte 0")


def test_decoded_raises_the_invalid_argument_of_an_undecodable_request() -> None:
    result = parse(b"\xff\xff\xff")
    with pytest.raises(InvalidArgument, match="its bytes are not protobuf"):
        decoded(result)
    assert decoded(pb.PruneRequest(trace="x")).trace == "x"
