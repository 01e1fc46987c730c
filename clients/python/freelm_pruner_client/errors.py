"""Typed client errors, mapped from gRPC status codes in one table."""

from __future__ import annotations

import grpc


class PrunerClientError(Exception):
    """A call failed; ``code`` is the gRPC status code and the message is the server's."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(self, message: str, code: grpc.StatusCode | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class InvalidArgumentError(PrunerClientError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class QueueFullError(PrunerClientError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class DeadlineExceededError(PrunerClientError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class UnavailableError(PrunerClientError):
    code = grpc.StatusCode.UNAVAILABLE


class UnauthenticatedError(PrunerClientError):
    """No bearer token was sent, or the server does not know it (revoked, mistyped)."""

    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDeniedError(PrunerClientError):
    """The token is known but lacks the right this call needs."""

    code = grpc.StatusCode.PERMISSION_DENIED


_BY_CODE: dict[grpc.StatusCode, type[PrunerClientError]] = {
    cls.code: cls
    for cls in (
        InvalidArgumentError,
        QueueFullError,
        DeadlineExceededError,
        UnavailableError,
        UnauthenticatedError,
        PermissionDeniedError,
    )
}


def from_rpc_error(error: grpc.RpcError) -> PrunerClientError:
    """The typed error for a failed call."""
    code = error.code()
    details = error.details() or code.name
    return _BY_CODE.get(code, PrunerClientError)(details, code)
