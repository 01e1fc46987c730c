"""The upstream model server, over one pooled ``httpx2.AsyncClient``.

``stream_round`` runs one generation round as a streamed request and yields its chunks read;
``forward`` passes a request through unchanged. Failures are ``UpstreamError`` carrying the
status and body to give the caller (the upstream's own, or 502 when it could not be reached).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx2
from freelm_pruner_client.loopcore import Delta, Mode, parse_chunk, parse_completion

HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
     "trailer", "transfer-encoding", "upgrade", "host"}
)  # fmt: skip
"""Headers that belong to one connection and are never forwarded (RFC 9110, 7.6.1)."""

PATHS: dict[Mode, str] = {"chat": "/v1/chat/completions", "completions": "/v1/completions"}


class UpstreamError(Exception):
    """The upstream answered ``status`` (not 200) or could not be reached (502)."""

    def __init__(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        super().__init__(f"upstream answered {status}")
        self.status = status
        self.body = body
        self.content_type = content_type

    @classmethod
    def unreachable(cls, exc: Exception) -> UpstreamError:
        message = f"upstream unreachable: {type(exc).__name__}: {exc}"
        return cls(502, json.dumps({"error": {"message": message, "type": "bad_gateway"}}).encode())

    def payload(self) -> dict[str, Any]:
        """The error as an OpenAI error object (for an event in a stream already started)."""
        try:
            data = json.loads(self.body)
        except ValueError:
            data = None
        if isinstance(data, dict) and isinstance(data.get("error"), dict):
            return {"error": {**data["error"], "code": self.status}}
        text = self.body.decode(errors="replace")[:500]
        return {"error": {"message": text, "type": "upstream_error", "code": self.status}}


def forwarded_headers(
    headers: Mapping[str, str], drop: frozenset[str] = frozenset()
) -> dict[str, str]:
    """``headers`` without the hop-by-hop ones and those named in ``drop`` (lower case)."""
    return {k: v for k, v in headers.items() if k.lower() not in HOP_BY_HOP | drop}


class Upstream:
    """One pooled HTTP client to the upstream's base URL (without ``/v1``)."""

    def __init__(self, base_url: str, timeout_s: float) -> None:
        timeout = httpx2.Timeout(timeout_s, connect=min(timeout_s, 10.0))
        limits = httpx2.Limits(max_connections=None, max_keepalive_connections=64)
        self.client = httpx2.AsyncClient(base_url=base_url, timeout=timeout, limits=limits)

    async def stream_round(
        self, mode: Mode, body: dict[str, Any], headers: Mapping[str, str]
    ) -> AsyncIterator[Delta]:
        """Streams one round (``stream`` and ``include_usage`` set here) and yields each chunk
        read. Raises ``UpstreamError``; closing the iterator closes the upstream request."""
        body = {**body, "stream": True, "stream_options": {"include_usage": True}}
        try:
            async with self.client.stream("POST", PATHS[mode], json=body, headers=headers) as reply:
                content_type = reply.headers.get("content-type", "application/json")
                if reply.status_code != 200:
                    raise UpstreamError(reply.status_code, await reply.aread(), content_type)
                if not content_type.startswith("text/event-stream"):  # a server that never streams
                    yield _chunk((await reply.aread()).decode(errors="replace"), mode, whole=True)
                    return
                async for event in httpx2.EventSource(reply):
                    if event.data.strip() == "[DONE]":
                        return
                    yield _chunk(event.data, mode)
        except httpx2.HTTPError as exc:
            raise UpstreamError.unreachable(exc) from exc

    async def forward(
        self, method: str, path: str, query: str, headers: Mapping[str, str], body: bytes
    ) -> httpx2.Response:
        """Sends a request through unchanged; the reply's body is left to stream (the caller
        closes it). Raises ``UpstreamError`` (502) when the upstream cannot be reached."""
        request = self.client.build_request(
            method, path, params=query or None, headers=forwarded_headers(headers), content=body
        )
        try:
            return await self.client.send(request, stream=True)
        except httpx2.HTTPError as exc:
            raise UpstreamError.unreachable(exc) from exc

    async def close(self) -> None:
        await self.client.aclose()


def _chunk(data: str, mode: Mode, whole: bool = False) -> Delta:
    """One SSE event's chunk read (``whole``: a non-streamed reply); an error event or a chunk
    that is not one becomes an ``UpstreamError`` (502, or the error's own code)."""
    try:
        chunk = json.loads(data)
        if isinstance(chunk, dict) and "error" in chunk and not chunk.get("choices"):
            raise UpstreamError(_code(chunk["error"]), json.dumps(chunk).encode())
        return parse_completion(chunk, mode) if whole else parse_chunk(chunk, mode)
    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
        message = f"unreadable upstream chunk: {data[:200]!r} ({exc})"
        raise UpstreamError(502, json.dumps({"error": {"message": message}}).encode()) from exc


def _code(error: Any) -> int:
    code = error.get("code") if isinstance(error, dict) else None
    return code if isinstance(code, int) and 400 <= code <= 599 else 502
