"""Synchronous and asynchronous gRPC clients of the pruning service.

Both share one channel recipe: TLS when asked, and gRPC's own retry policy (exponential backoff
with jitter) for ``UNAVAILABLE`` and ``RESOURCE_EXHAUSTED``, so a server that is loading, draining
or momentarily full is retried transparently within the call's deadline. Failures surface as the
typed errors of ``errors`` (one mapping from status codes).
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
from freelm.pruner.v1 import pruner_pb2 as pb
from freelm.pruner.v1 import pruner_pb2_grpc as pb_grpc

from freelm_pruner_client.errors import InvalidArgumentError, from_rpc_error

SERVICE = "freelm.pruner.v1.Pruner"
DEFAULT_TIMEOUT_S = 300.0

SECONDS_PER_KCHAR = 3.0
"""Seconds a ``prune`` call's default deadline grows by per 1,000 code points of trace. The
embedded default on a 2-core CPU cleaned a 35,927-code-point real trace in 33 s (0.9 s per
1,000, docs/BENCHMARKS.md, "Long traces"); this leaves three times that for slower or busier
machines."""


TOKEN_FILE_ENV = "FREELM_PRUNER_TOKEN_FILE"
"""The environment variable naming a file whose first token the clients send when given none."""


def read_token(path: str | Path) -> str:
    """The first token of a token file: its first line that is not blank or a ``#`` comment
    (the server's token-file format: the first word; rights after it are ignored). Raises
    ``OSError`` when the file cannot be read and ``ValueError`` when it holds no token."""
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        words = line.split("#", 1)[0].split()
        if words:
            return words[0]
    raise ValueError(f"{path} holds no token")


def default_token() -> str | None:
    """The token of the file named by ``FREELM_PRUNER_TOKEN_FILE``, or None when it is unset.
    Raises as ``read_token``."""
    path = os.environ.get(TOKEN_FILE_ENV)
    return read_token(path) if path else None


def scaled_timeout(trace: str, base_s: float = DEFAULT_TIMEOUT_S) -> float:
    """A deadline (seconds) that lets a long trace finish: ``base_s`` plus
    ``SECONDS_PER_KCHAR`` per 1,000 code points of ``trace``."""
    return base_s + SECONDS_PER_KCHAR * len(trace) / 1000.0


@dataclass(frozen=True)
class RetryPolicy:
    """gRPC retry policy for the service's RPCs (``max_attempts`` is capped at 5 by gRPC)."""

    max_attempts: int = 5
    initial_backoff_s: float = 0.5
    max_backoff_s: float = 8.0
    backoff_multiplier: float = 2.0
    codes: tuple[str, ...] = ("UNAVAILABLE", "RESOURCE_EXHAUSTED")

    def method_config(self) -> dict[str, Any]:
        """The service config's ``methodConfig`` entry enabling this policy."""
        policy = {
            "maxAttempts": self.max_attempts,
            "initialBackoff": f"{self.initial_backoff_s}s",
            "maxBackoff": f"{self.max_backoff_s}s",
            "backoffMultiplier": self.backoff_multiplier,
            "retryableStatusCodes": list(self.codes),
        }
        return {"name": [{"service": SERVICE}], "retryPolicy": policy}

    def service_config(self) -> str:
        """A service config enabling this policy (JSON)."""
        return json.dumps({"methodConfig": [self.method_config()]})


@dataclass(frozen=True)
class Tls:
    """TLS settings: a CA bundle to trust (default: the system's), and a client certificate."""

    root_certificates: Path | None = None
    private_key: Path | None = None
    certificate_chain: Path | None = None
    server_name: str | None = None

    def credentials(self) -> grpc.ChannelCredentials:
        def read(path: Path | None) -> bytes | None:
            return path.read_bytes() if path else None

        return grpc.ssl_channel_credentials(
            read(self.root_certificates), read(self.private_key), read(self.certificate_chain)
        )


def addresses_of(addresses: str | Sequence[str]) -> list[str]:
    """The addresses ``target`` takes, as a list (a string split at commas)."""
    if isinstance(addresses, str):
        return [a.strip() for a in addresses.split(",") if a.strip()]
    return list(addresses)


def target(addresses: str | Sequence[str]) -> str:
    """The gRPC target of one address or several frontends.

    One address is used as it is (``HOST:PORT``, ``dns:///NAME:PORT`` whose name resolves to
    several frontends, or any gRPC target); a comma in a string separates several ``HOST:PORT``.
    Several are resolved here, once (``getaddrinfo``), into one ``ipv4:`` (or ``ipv6:``) target
    listing every address, which the channel balances round robin. Raises ``ValueError`` for an
    address without a port, one that does not resolve, or one that would be left out because
    the others resolve only to the other IP family.
    """
    listed = addresses_of(addresses)
    if len(listed) == 1:
        return listed[0]
    per_address = [_resolve(address) for address in listed]
    for family, scheme in ((socket.AF_INET, "ipv4:"), (socket.AF_INET6, "ipv6:")):
        if all(any(f == family for f, _ in pairs) for pairs in per_address):
            texts = [text for pairs in per_address for f, text in pairs if f == family]
            return scheme + ",".join(dict.fromkeys(texts))
    raise ValueError(f"{listed} do not all resolve to one IP family (IPv4 or IPv6)")


def _resolve(address: str) -> list[tuple[int, str]]:
    """The (family, ``IP:PORT``) pairs ``HOST:PORT`` resolves to. Raises ``ValueError``."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"{address!r} is not HOST:PORT")
    host = host.strip("[]")
    try:
        infos = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ValueError(f"cannot resolve {host!r}: {exc.strerror}") from None
    pairs: list[tuple[int, str]] = []
    for family, _, _, _, sockaddr in infos:
        if family == socket.AF_INET:
            pairs.append((family, f"{sockaddr[0]}:{port}"))
        elif family == socket.AF_INET6:
            pairs.append((family, f"[{sockaddr[0]}]:{port}"))
    return pairs


@dataclass(frozen=True)
class ChannelConfig:
    """How to reach the server: one address or several frontends (``target``), balanced round
    robin; a frontend that goes away is left at once and the call retried on another (the
    retry policy)."""

    address: str | Sequence[str]
    tls: Tls | None = None
    retry: RetryPolicy | None = field(default_factory=RetryPolicy)
    max_message_bytes: int = 64 * 1024 * 1024
    token: str | None = field(default=None, repr=False)

    def metadata(self) -> tuple[tuple[str, str], ...] | None:
        """The call metadata: ``authorization: Bearer TOKEN`` when there is a token."""
        return (("authorization", f"Bearer {self.token}"),) if self.token else None

    def options(self) -> list[tuple[str, Any]]:
        options: list[tuple[str, Any]] = [
            ("grpc.max_send_message_length", self.max_message_bytes),
            ("grpc.max_receive_message_length", self.max_message_bytes),
            ("grpc.enable_retries", int(self.retry is not None)),
            ("grpc.service_config", json.dumps(self.service_config())),
        ]
        if self.tls is not None:
            listed = addresses_of(self.address)
            # Several frontends become one target of IP addresses: without a name the
            # certificates would be checked against that list, so check the first host's.
            name = self.tls.server_name or (
                listed[0].rpartition(":")[0].strip("[]") if len(listed) > 1 else None
            )
            if name:
                options.append(("grpc.ssl_target_name_override", name))
        return options

    def service_config(self) -> dict[str, Any]:
        """Round-robin balancing over every address, and the retry policy (when on)."""
        config: dict[str, Any] = {"loadBalancingConfig": [{"round_robin": {}}]}
        if self.retry is not None:
            config["methodConfig"] = [self.retry.method_config()]
        return config

    def channel(self, aio: bool = False) -> Any:
        """A channel (``grpc.aio`` when ``aio``) with TLS, retries and message limits applied.
        Raises ``ValueError`` as ``target``."""
        api: Any = grpc.aio if aio else grpc
        where = target(self.address)
        if self.tls is None:
            return api.insecure_channel(where, options=self.options())
        return api.secure_channel(where, self.tls.credentials(), options=self.options())


def lone_surrogate(text: str) -> int | None:
    """The position, in code points, of the first lone surrogate (U+D800 to U+DFFF) in ``text``,
    or None. A Python str can hold one (the JSON escape ``\\ud83d`` alone decodes to it), but
    UTF-8, and so protobuf, cannot."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return int(exc.start)
    return None


def check_text(**fields: str) -> None:
    """Raises ``InvalidArgumentError`` naming the first field that holds a lone surrogate and
    its position in code points; the text itself is never echoed."""
    for name, text in fields.items():
        position = lone_surrogate(text)
        if position is not None:
            raise InvalidArgumentError(f"{name} has a lone surrogate at code point {position}")


def build_request(
    trace: str, question: str = "", request_id: str = "", **options: Any
) -> pb.PruneRequest:
    """A ``PruneRequest``; ``options`` are ``PruneOptions`` fields (unset: server defaults).
    Raises ``InvalidArgumentError`` (before anything is sent) when a text field cannot be
    encoded (``check_text``)."""
    check_text(trace=trace, question=question, request_id=request_id)
    return pb.PruneRequest(
        request_id=request_id, trace=trace, question=question, options=pb.PruneOptions(**options)
    )


class PrunerClient:
    """A blocking client; raises ``PrunerClientError`` subclasses on failure.

    ``token`` is sent on every call as ``authorization: Bearer TOKEN`` (default: the token of
    the file named by ``FREELM_PRUNER_TOKEN_FILE``, if set; see ``default_token``). ``tls``
    with ``private_key`` and ``certificate_chain`` presents a client certificate (mutual TLS).
    ``address``: one address or several frontends (``target``). Raises ``ValueError`` for an
    address that does not resolve, and ``OSError``/``ValueError`` when the token file named by
    the environment cannot be read or holds no token."""

    def __init__(
        self,
        address: str | Sequence[str],
        timeout: float = DEFAULT_TIMEOUT_S,
        tls: Tls | None = None,
        retry: RetryPolicy | None = RetryPolicy(),
        token: str | None = None,
    ) -> None:
        self.config = ChannelConfig(address, tls, retry, token=token or default_token())
        self.timeout = timeout
        self._channel = self.config.channel()
        self._stub = pb_grpc.PrunerStub(self._channel)

    def prune(
        self,
        trace: str,
        question: str = "",
        request_id: str = "",
        timeout: float | None = None,
        **options: Any,
    ) -> pb.PruneResponse:
        """Prunes ``trace`` within ``timeout`` seconds (retries included; default: the client's
        ``timeout`` scaled to the trace, ``scaled_timeout``); a text with a lone surrogate raises
        ``InvalidArgumentError`` without a call (``build_request``)."""
        request = build_request(trace, question, request_id, **options)
        timeout = timeout or scaled_timeout(trace, self.timeout)
        try:
            response: pb.PruneResponse = self._stub.Prune(
                request, timeout=timeout, metadata=self.config.metadata()
            )
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from None
        return response

    def prune_stream(
        self, requests: Iterable[pb.PruneRequest], timeout: float | None = None
    ) -> Iterator[pb.PruneStreamResponse]:
        """Prunes many traces on one call; replies come in completion order, per-item errors
        inside the replies. Raises only if the whole call fails. Without ``timeout`` the call
        has no deadline of its own: each item has the server's, scaled to its trace."""
        try:
            yield from self._stub.PruneStream(
                iter(requests), timeout=timeout, metadata=self.config.metadata()
            )
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from None

    def model_info(self, timeout: float | None = None) -> pb.ModelInfo:
        try:
            info: pb.ModelInfo = self._stub.GetModelInfo(
                pb.GetModelInfoRequest(),
                timeout=timeout or self.timeout,
                metadata=self.config.metadata(),
            )
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from None
        return info

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> PrunerClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class AsyncPrunerClient:
    """An asyncio client (``grpc.aio``) with the same behaviour as ``PrunerClient``."""

    def __init__(
        self,
        address: str | Sequence[str],
        timeout: float = DEFAULT_TIMEOUT_S,
        tls: Tls | None = None,
        retry: RetryPolicy | None = RetryPolicy(),
        token: str | None = None,
    ) -> None:
        self.config = ChannelConfig(address, tls, retry, token=token or default_token())
        self.timeout = timeout
        self._channel = self.config.channel(aio=True)
        self._stub = pb_grpc.PrunerStub(self._channel)

    async def prune(
        self,
        trace: str,
        question: str = "",
        request_id: str = "",
        timeout: float | None = None,
        **options: Any,
    ) -> pb.PruneResponse:
        """As ``PrunerClient.prune``."""
        request = build_request(trace, question, request_id, **options)
        timeout = timeout or scaled_timeout(trace, self.timeout)
        try:
            response: pb.PruneResponse = await self._stub.Prune(
                request, timeout=timeout, metadata=self.config.metadata()
            )
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from None
        return response

    async def prune_stream(
        self, requests: Iterable[pb.PruneRequest], timeout: float | None = None
    ) -> AsyncIterator[pb.PruneStreamResponse]:
        """As ``PrunerClient.prune_stream``."""
        call = self._stub.PruneStream(
            iter(requests), timeout=timeout, metadata=self.config.metadata()
        )
        try:
            async for reply in call:
                yield reply
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from None

    async def model_info(self, timeout: float | None = None) -> pb.ModelInfo:
        try:
            info: pb.ModelInfo = await self._stub.GetModelInfo(
                pb.GetModelInfoRequest(),
                timeout=timeout or self.timeout,
                metadata=self.config.metadata(),
            )
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from None
        return info

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> AsyncPrunerClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()
