"""Who may call the gRPC API: bearer tokens from a file, checked on every call.

A caller sends ``authorization: Bearer TOKEN`` as call metadata. ``serve --auth-token-file FILE``
(or ``FREELM_AUTH_TOKEN_FILE``) names a UTF-8 file of tokens, one per line::

    # comment lines and blank lines are skipped
    3f9c0d...e1                 # every right (prune and info)
    7a41bb...09  info           # may call GetModelInfo only
    c2d8e4...77  prune,info

A token is the line's first word; the rest of the line (up to a ``#``) lists its rights, separated
by commas, from ``RIGHTS``; none listed means all. Several tokens may be valid at once, so a new
one can be added before the old one is removed (rotation). The file is read again when it changes
(its modification time, size or inode, checked on each call) or on SIGHUP; a file that cannot be
read or parsed keeps the tokens read last (and logs why). Tokens are compared by their SHA-256
digests with ``hmac.compare_digest`` against every known token, so the time a check takes does not
depend on how much of a token matched. Neither tokens nor their digests are ever logged: a caller
is named in logs by ``fingerprint`` (the first 12 hex digits of the digest of the digest).

Health (``grpc.health.v1.Health``) and reflection stay open for probes and tools; every other
method needs a token: none, or one not in the file, is ``UNAUTHENTICATED``; a known token without
the method's right is ``PERMISSION_DENIED``.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import structlog

from pruner_service.interceptors import Streaming, Unary, wrap_handler

log = structlog.get_logger(__name__)

MIN_TOKEN_CHARS = 16
"""Shortest token accepted: a token must not be guessable, and a line caught half-written while
the file is rewritten in place must not become a short valid token."""

RIGHTS = ("prune", "info")
"""``prune``: ``Prune`` and ``PruneStream``; ``info``: ``GetModelInfo``."""

METHOD_RIGHTS = {"Prune": "prune", "PruneStream": "prune", "GetModelInfo": "info"}
"""The right each method of ``freelm.pruner.v1.Pruner`` needs."""

OPEN_SERVICES = ("grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection",
                 "grpc.reflection.v1.ServerReflection")  # fmt: skip
"""Services any caller may reach (reflection only when the server offers it)."""


CALLER: ContextVar[str] = ContextVar("freelm_caller", default="")
"""The fingerprint of the token of the call being handled (``""`` without authentication), set
by ``AuthInterceptor`` around the handler: the servicer puts it on each request so a stored
result is bound to its caller."""


class TokenFileError(ValueError):
    """The token file cannot be read or a line of it is not a token with known rights."""


@dataclass(frozen=True)
class Grant:
    """One token, held as its SHA-256 digest (32 bytes), and the rights it has."""

    digest: bytes
    rights: frozenset[str]

    @property
    def fingerprint(self) -> str:
        """12 hex digits naming the caller in logs (derived from the digest, not the token)."""
        return hashlib.sha256(self.digest).hexdigest()[:12]


def parse_tokens(text: str, source: str = "token file") -> list[Grant]:
    """The grants of a token file's ``text``. Raises ``TokenFileError`` naming the line (never
    its token) when a right is unknown or a line has more than a token and its rights."""
    grants = []
    for number, raw in enumerate(text.splitlines(), 1):
        words = raw.split("#", 1)[0].split()
        if not words:
            continue
        if len(words) > 2:
            raise TokenFileError(f"{source} line {number}: expected TOKEN [RIGHT,...]")
        if len(words[0]) < MIN_TOKEN_CHARS:
            raise TokenFileError(
                f"{source} line {number}: a token has at least {MIN_TOKEN_CHARS} characters"
            )
        rights = frozenset(r for r in (words[1].split(",") if len(words) == 2 else RIGHTS) if r)
        unknown = sorted(rights - set(RIGHTS))
        if unknown or not rights:
            raise TokenFileError(
                f"{source} line {number}: unknown right {', '.join(unknown) or '(none)'}; "
                f"rights are {', '.join(RIGHTS)}"
            )
        grants.append(Grant(hashlib.sha256(words[0].encode()).digest(), rights))
    return grants


class TokenFile:
    """The valid tokens, read from ``path`` and read again when it changes or ``reload()`` is
    called (SIGHUP). Raises ``TokenFileError`` at construction when the file cannot be read or
    holds no token; later failures keep the tokens read last."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._forced = False
        self._grants = self._read()
        if not self._grants:
            raise TokenFileError(f"{self.path} holds no token")

    def reload(self) -> None:
        """Reads the file again before the next check (safe to call from a signal handler)."""
        self._forced = True

    def find(self, token: str) -> Grant | None:
        """The grant of ``token``, or None; compares with every known token in constant time."""
        presented = hashlib.sha256(token.encode()).digest()
        found = None
        for grant in self._current():
            if hmac.compare_digest(presented, grant.digest):
                found = grant
        return found

    def _current(self) -> list[Grant]:
        stamp = self._stat()
        if self._forced or (stamp is not None and stamp != self._stamp):
            with self._lock:
                self._forced = False
                try:
                    self._grants = self._read()
                    log.info("auth_tokens_reloaded", tokens=len(self._grants))
                except TokenFileError as exc:
                    log.error("auth_tokens_not_reloaded", reason=str(exc))
        return self._grants

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            status = os.stat(self.path)
        except OSError:
            return None
        return status.st_mtime_ns, status.st_size, status.st_ino

    def _read(self) -> list[Grant]:
        self._stamp = self._stat()
        try:
            text = self.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise TokenFileError(f"cannot read token file {self.path}: {exc}") from exc
        return parse_tokens(text, str(self.path))


def bearer(metadata: Iterable[tuple[str, Any]] | None) -> str | None:
    """The token of the call's ``authorization: Bearer TOKEN`` metadata, or None."""
    for key, value in metadata or ():
        if key.lower() == "authorization" and isinstance(value, str):
            scheme, _, token = value.strip().partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    return None


class CallLimit:
    """Calls in flight per caller, at most ``limit`` each (thread-safe)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._calls: Counter[str] = Counter()

    def enter(self, caller: str) -> bool:
        """Counts a call of ``caller`` in; False (nothing counted) when it has ``limit``."""
        with self._lock:
            if self._calls[caller] >= self.limit:
                return False
            self._calls[caller] += 1
            return True

    def leave(self, caller: str) -> None:
        with self._lock:
            self._calls[caller] -= 1
            if self._calls[caller] <= 0:
                del self._calls[caller]


class AuthInterceptor(grpc.ServerInterceptor):  # type: ignore[misc]
    """Refuses calls to the Pruner service without a valid token (``UNAUTHENTICATED``) or
    without the method's right (``PERMISSION_DENIED``) before the request is parsed or handled; with
    ``max_calls_per_caller`` (> 0), a caller's ``Prune``/``PruneStream`` calls past that many in
    flight are ``RESOURCE_EXHAUSTED``, so one caller cannot take every place in the queue."""

    def __init__(self, tokens: TokenFile, max_calls_per_caller: int = 0) -> None:
        self.tokens = tokens
        self.limit = CallLimit(max_calls_per_caller) if max_calls_per_caller > 0 else None

    def intercept_service(self, continuation: Callable[[Any], Any], details: Any) -> Any:
        service, _, method = details.method.lstrip("/").rpartition("/")
        if service in OPEN_SERVICES:
            return continuation(details)
        token = bearer(details.invocation_metadata)
        grant = self.tokens.find(token) if token is not None else None
        if grant is None:
            reason = "no bearer token" if token is None else "unknown token"
            log.info("rpc_refused", method=method, code="UNAUTHENTICATED", reason=reason)
            message = (
                "this server needs a bearer token (metadata authorization: Bearer TOKEN)"
                if token is None
                else "the bearer token is not valid here"
            )
            return _refusal(continuation(details), grpc.StatusCode.UNAUTHENTICATED, message)
        right = METHOD_RIGHTS.get(method)
        if right is None or right not in grant.rights:
            log.info("rpc_refused", method=method, code="PERMISSION_DENIED",
                     caller=grant.fingerprint)  # fmt: skip
            message = f"this token may not call {method} (it needs the right {right or 'none'})"
            return _refusal(continuation(details), grpc.StatusCode.PERMISSION_DENIED, message)
        handler = continuation(details)
        if handler is None:
            return None
        limit = self.limit if right == "prune" else None
        return _as_caller(handler, grant.fingerprint, limit)


def _as_caller(handler: Any, caller: str, limit: CallLimit | None) -> Any:
    """``handler`` run with ``CALLER`` set to ``caller`` and, with a ``limit``, counted against
    the caller's calls in flight: past ``limit.limit`` a call is ``RESOURCE_EXHAUSTED`` before its
    request is handled."""
    message = (
        f"this caller has {limit.limit if limit else 0} calls in flight, the most one caller may "
        "have; retry when one has finished"
    )

    def admit(context: grpc.ServicerContext) -> None:
        if limit is not None and not limit.enter(caller):
            log.info("rpc_refused", code="RESOURCE_EXHAUSTED", caller=caller, reason="caller limit")
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, message)

    def leave() -> None:
        if limit is not None:
            limit.leave(caller)

    def unary(inner: Unary) -> Unary:
        def run(request: Any, context: grpc.ServicerContext) -> Any:
            admit(context)
            token = CALLER.set(caller)
            try:
                return inner(request, context)
            finally:
                CALLER.reset(token)
                leave()

        return run

    def streaming(stream: Streaming) -> Streaming:
        def run(requests: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            admit(context)
            try:
                CALLER.set(caller)  # the handler thread's context, read where the stream starts
                yield from stream(requests, context)
            finally:
                CALLER.set("")  # the thread serves other calls next
                leave()

        return run

    return wrap_handler(handler, unary, streaming)


def _refusal(handler: Any, code: grpc.StatusCode, message: str) -> Any:
    """A handler of the same kind as ``handler`` that aborts with ``code`` without parsing or
    handling the request (no deserializer: gRPC receives a unary request's bytes, nothing reads
    them)."""

    def refuse(_: Any, context: grpc.ServicerContext) -> Any:
        context.abort(code, message)

    if handler is None:
        return None
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(refuse)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(refuse)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(refuse)
    return grpc.stream_stream_rpc_method_handler(refuse)
