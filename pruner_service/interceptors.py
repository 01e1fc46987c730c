"""The gRPC server's interceptors, one job each, applied to unary and streaming calls alike.

Outermost first (after ``auth.AuthInterceptor`` where tokens are on):

- ``LogContextInterceptor``: gives every request without an id one (the one place the server
  makes request ids) and runs the call in its own copy of the logging context, bound to the
  method and a request id: a unary call's request's, a stream's own (each item's log lines name
  the item's id too), so every log line of a call carries one;
- ``MetricsInterceptor``: counts each answered call of the Pruner service in
  ``freelm_requests_total{method, status}``;
- ``ErrorInterceptor``: maps domain errors to status codes (``errors.STATUS_CODES``), others to
  INTERNAL, and raises a unary request's ``wire.Undecodable`` as its ``InvalidArgument``.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import structlog
from freelm.pruner.v1 import pruner_pb2 as pb

from pruner_service.domain import new_request_id
from pruner_service.errors import PrunerError, status_of
from pruner_service.metrics import Metrics
from pruner_service.wire import decoded

log = structlog.get_logger(__name__)

PRUNER_SERVICE = pb.DESCRIPTOR.services_by_name["Pruner"].full_name

Unary = Callable[[Any, grpc.ServicerContext], Any]
Streaming = Callable[[Iterator[Any], grpc.ServicerContext], Iterator[Any]]


def _method(details: Any) -> tuple[str, str]:
    """(service, method) of a call, e.g. ("freelm.pruner.v1.Pruner", "Prune")."""
    service, _, method = details.method.lstrip("/").rpartition("/")
    return service, method


def wrap_handler(
    handler: Any,
    unary: Callable[[Unary], Unary] | None = None,
    streaming: Callable[[Streaming], Streaming] | None = None,
) -> Any:
    """``handler`` with its unary-unary behaviour passed through ``unary`` and its stream-stream
    behaviour through ``streaming`` (other kinds, and ``None``, unchanged)."""
    if handler is None:
        return None
    if handler.unary_unary and unary is not None:
        return grpc.unary_unary_rpc_method_handler(
            unary(handler.unary_unary),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    if handler.stream_stream and streaming is not None:
        return grpc.stream_stream_rpc_method_handler(
            streaming(handler.stream_stream),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    return handler


def with_request_id(message: Any) -> Any:
    """``message`` with a fresh request id when it has the field and it is empty."""
    if hasattr(message, "request_id") and not message.request_id:
        message.request_id = new_request_id()
    return message


class LogContextInterceptor(grpc.ServerInterceptor):  # type: ignore[misc]
    """Request ids for requests without one, and a logging context per call (module doc)."""

    def intercept_service(self, continuation: Callable[[Any], Any], details: Any) -> Any:
        _, method = _method(details)

        def unary(behaviour: Unary) -> Unary:
            def run(request: Any, context: grpc.ServicerContext) -> Any:
                request = with_request_id(request)
                scope = contextvars.copy_context()
                request_id = getattr(request, "request_id", None) or new_request_id()
                scope.run(structlog.contextvars.bind_contextvars, method=method,
                          request_id=request_id)  # fmt: skip
                return scope.run(behaviour, request, context)

            return run

        def streaming(behaviour: Streaming) -> Streaming:
            def run(requests: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
                scope = contextvars.copy_context()
                scope.run(structlog.contextvars.bind_contextvars, method=method,
                          request_id=new_request_id())  # fmt: skip
                replies = scope.run(behaviour, (with_request_id(m) for m in requests), context)
                try:
                    while True:
                        try:
                            reply = scope.run(next, replies)
                        except StopIteration:
                            return
                        yield reply
                finally:
                    close = getattr(replies, "close", None)
                    if close is not None:
                        scope.run(close)

            return run

        return wrap_handler(continuation(details), unary, streaming)


class MetricsInterceptor(grpc.ServerInterceptor):  # type: ignore[misc]
    """Counts answered calls of the Pruner service by method and status code."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def intercept_service(self, continuation: Callable[[Any], Any], details: Any) -> Any:
        service, method = _method(details)
        handler = continuation(details)
        if service != PRUNER_SERVICE:
            return handler
        count = self.metrics.requests.labels

        def unary(behaviour: Unary) -> Unary:
            def run(request: Any, context: grpc.ServicerContext) -> Any:
                try:
                    reply = behaviour(request, context)
                except BaseException:
                    count(method, _code(context, "UNKNOWN")).inc()
                    raise
                count(method, _code(context, "OK")).inc()
                return reply

            return run

        def streaming(behaviour: Streaming) -> Streaming:
            def run(requests: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
                try:
                    yield from behaviour(requests, context)
                except GeneratorExit:  # the caller went away mid-stream
                    count(method, "CANCELLED").inc()
                    raise
                except BaseException:
                    count(method, _code(context, "UNKNOWN")).inc()
                    raise
                count(method, _code(context, "OK")).inc()

            return run

        return wrap_handler(handler, unary, streaming)


def _code(context: grpc.ServicerContext, default: str) -> str:
    """The status code the call ended with (``default`` when none was set)."""
    code = context.code()
    return code.name if isinstance(code, grpc.StatusCode) else default


class ErrorInterceptor(grpc.ServerInterceptor):  # type: ignore[misc]
    """Maps domain errors to status codes; others are INTERNAL (module doc)."""

    def intercept_service(self, continuation: Callable[[Any], Any], details: Any) -> Any:
        _, method = _method(details)

        def unary(behaviour: Unary) -> Unary:
            def run(request: Any, context: grpc.ServicerContext) -> Any:
                try:
                    return behaviour(decoded(request), context)
                except Exception as exc:
                    if _is_abort(context):
                        raise
                    _abort(context, method, exc)

            return run

        def streaming(behaviour: Streaming) -> Streaming:
            def run(requests: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
                try:
                    yield from behaviour(requests, context)
                except Exception as exc:
                    if _is_abort(context):
                        raise
                    _abort(context, method, exc)

            return run

        return wrap_handler(continuation(details), unary, streaming)


def _abort(context: grpc.ServicerContext, method: str, error: BaseException) -> None:
    code, message = status_of(error)
    if isinstance(error, PrunerError):
        log.info("rpc_error", method=method, code=code.name, message=message)
    else:
        log.error("rpc_internal_error", method=method, exc_info=error)
    context.abort(code, message)


def _is_abort(context: grpc.ServicerContext) -> bool:
    return context.code() is not None


def interceptors(metrics: Metrics | None) -> list[grpc.ServerInterceptor]:
    """The server's own interceptors, outermost first (metrics only when given)."""
    counting = [MetricsInterceptor(metrics)] if metrics is not None else []
    return [LogContextInterceptor(), *counting, ErrorInterceptor()]
