"""Request bytes → messages without raising: the Pruner service's handlers, with deserializers
that turn bytes which are not a valid message into ``Undecodable``.

gRPC answers a deserializer's exception with ``INTERNAL: Exception deserializing request!``, yet
a request with invalid UTF-8 in a string field (a client in a language whose strings are bytes
can send one) or with bytes that are not protobuf is the caller's mistake. ``Undecodable`` holds
an ``InvalidArgument`` naming the problem: ``interceptors.ErrorInterceptor`` raises it for a unary
call, and the servicer answers a stream item with it as an error item, so the mapping to a
status stays in ``errors.STATUS_CODES``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
from freelm.pruner.v1 import pruner_pb2 as pb
from google.protobuf import empty_pb2
from google.protobuf.message import DecodeError, Message
from google.protobuf.unknown_fields import UnknownFieldSet

from pruner_service.errors import InvalidArgument

SERVICE = pb.DESCRIPTOR.services_by_name["Pruner"]
LENGTH_DELIMITED = 2  # the wire type of strings, bytes and messages

T = TypeVar("T")


@dataclass
class Undecodable:
    """A request whose bytes are not a valid message: ``error`` says why; ``request_id`` is the
    request's id when that field itself could be read, else empty."""

    error: InvalidArgument
    request_id: str = ""


def decoded(request: T | Undecodable) -> T:
    """``request``, or its ``InvalidArgument`` raised when it did not decode."""
    if isinstance(request, Undecodable):
        raise request.error
    return request


def tolerant(message_class: type[Message]) -> Callable[[bytes], Any]:
    """A deserializer of ``message_class`` that returns ``Undecodable`` instead of raising."""

    def deserialize(data: bytes) -> Message | Undecodable:
        try:
            return message_class.FromString(data)
        except DecodeError as exc:
            return undecodable(message_class, data, exc)

    return deserialize


def undecodable(message_class: type[Message], data: bytes, error: DecodeError) -> Undecodable:
    """Why ``data`` is not a ``message_class``: the first top-level string field that is not
    UTF-8 (by name, with the offset of the first bad byte within the field), or bytes that are
    not protobuf, else protobuf's own reason. Keeps the request's id when it is readable."""
    kind = message_class.DESCRIPTOR.name
    try:
        strings = _string_fields(message_class, data)
    except DecodeError:
        reason = "its bytes are not protobuf"
        return Undecodable(InvalidArgument(f"the request is not a valid {kind}: {reason}"))
    problems = [problem for name, raw in strings if (problem := _utf8_problem(name, raw))]
    reason = problems[0] if problems else str(error).rsplit(": ", 1)[-1]
    ids = [raw for name, raw in strings if name == "request_id" and not _utf8_problem(name, raw)]
    request_id = ids[-1].decode("utf-8") if ids else ""
    return Undecodable(InvalidArgument(f"the request is not a valid {kind}: {reason}"), request_id)


def _string_fields(message_class: type[Message], data: bytes) -> list[tuple[str, bytes]]:
    """``(field name, raw bytes)`` of each top-level string field in ``data``, in wire order;
    raises ``DecodeError`` when ``data`` is not protobuf wire format."""
    names = {f.number: f.name for f in message_class.DESCRIPTOR.fields if f.type == f.TYPE_STRING}
    fields = UnknownFieldSet(empty_pb2.Empty.FromString(data))  # every field is unknown to Empty
    found = (fields[i] for i in range(len(fields)))
    return [
        (names[f.field_number], f.data)
        for f in found
        if f.wire_type == LENGTH_DELIMITED and f.field_number in names
    ]


def _utf8_problem(name: str, raw: bytes) -> str:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"{name} is not valid UTF-8 at byte {exc.start}"
    return ""


def handlers(servicer: Any) -> dict[str, grpc.RpcMethodHandler]:
    """The Pruner service's method handlers over ``servicer``, with ``tolerant`` deserializers."""
    kinds = {
        (False, False): grpc.unary_unary_rpc_method_handler,
        (False, True): grpc.unary_stream_rpc_method_handler,
        (True, False): grpc.stream_unary_rpc_method_handler,
        (True, True): grpc.stream_stream_rpc_method_handler,
    }
    result: dict[str, grpc.RpcMethodHandler] = {}
    for method in SERVICE.methods:
        build = kinds[(method.client_streaming, method.server_streaming)]
        result[method.name] = build(
            getattr(servicer, method.name),
            request_deserializer=tolerant(getattr(pb, method.input_type.name)),
            response_serializer=getattr(pb, method.output_type.name).SerializeToString,
        )
    return result


def add_pruner_servicer(servicer: Any, server: grpc.Server) -> None:
    """Registers ``servicer`` as the Pruner service, as the generated ``add_PrunerServicer_to_
    server`` does, but with ``tolerant`` deserializers."""
    methods = handlers(servicer)
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(SERVICE.full_name, methods),)
    )
    server.add_registered_method_handlers(SERVICE.full_name, methods)
