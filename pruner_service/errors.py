"""Domain errors and the one table that maps them to gRPC status codes.

The service raises these; one interceptor (``interceptors.ErrorInterceptor``) turns them into
statuses, and the streaming RPC uses the same table for its per-item errors. Anything else is
INTERNAL.
"""

from __future__ import annotations

import grpc


class PrunerError(Exception):
    """Base of the errors a caller can see; the message is shown to the caller as is."""


class InvalidArgument(PrunerError):
    """Bad input: empty or oversized trace, bad options."""


class QueueFull(PrunerError):
    """Admission refused: the queue holds ``max_queue`` requests."""


class DeadlineExceeded(PrunerError):
    """The request's deadline passed before its result was ready."""


class Unavailable(PrunerError):
    """Not ready (model loading) or shutting down."""


class Internal(PrunerError):
    """The engine failed on this item."""


STATUS_CODES: dict[type[PrunerError], grpc.StatusCode] = {
    InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    QueueFull: grpc.StatusCode.RESOURCE_EXHAUSTED,
    DeadlineExceeded: grpc.StatusCode.DEADLINE_EXCEEDED,
    Unavailable: grpc.StatusCode.UNAVAILABLE,
    Internal: grpc.StatusCode.INTERNAL,
}


def status_of(error: BaseException) -> tuple[grpc.StatusCode, str]:
    """The gRPC status code and message for ``error``; unknown errors are INTERNAL."""
    for kind in type(error).__mro__:
        code = STATUS_CODES.get(kind)
        if code is not None:
            return code, str(error)
    return grpc.StatusCode.INTERNAL, f"internal error: {type(error).__name__}"


def error_from_status(code_name: str, message: str) -> PrunerError:
    """The domain error for a status computed elsewhere (a queue worker); unknown → Internal."""
    for kind, code in STATUS_CODES.items():
        if code.name == code_name:
            return kind(message)
    return Internal(message)
