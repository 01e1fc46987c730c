"""The proxy's routes (Starlette): the two completion routes prune, everything else passes.

- ``POST /v1/chat/completions`` and ``POST /v1/completions``: a request the loop can handle runs
  a ``Session`` (streamed as SSE when it asks for ``stream``); any other is passed through.
- ``/health``: the proxy is up (it does not probe the upstream or the pruner: the proxy works,
  unpruned, without the pruner). ``/metrics``: Prometheus text.
- every other path (``/v1/models``, ...): passed through unchanged; an event stream is relayed
  as it comes, any other reply is read whole and sent in one piece.

An upstream error before anything was sent is answered with the upstream's status and body; in
a stream already started it becomes an ``error`` event. A client that disconnects cancels the
upstream request.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx2
import structlog
from freelm_pruner_client.client import AsyncPrunerClient
from freelm_pruner_client.loopcore import Mode, Piece
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from pruner_service.proxy import wire
from pruner_service.proxy.metrics import ProxyMetrics
from pruner_service.proxy.session import Context, Session
from pruner_service.proxy.settings import ProxySettings
from pruner_service.proxy.upstream import Upstream, UpstreamError, forwarded_headers

log = structlog.get_logger(__name__)

CLIENT_CLOSED = 499
"""Status logged for a request whose client went away (nginx's convention; never sent)."""

METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"]


def build_app(settings: ProxySettings, metrics: ProxyMetrics | None = None) -> Starlette:
    """The ASGI app. Its upstream and pruner clients are opened and closed with its lifespan
    (a ``grpc.aio`` channel belongs to the running event loop)."""
    metrics = metrics or ProxyMetrics()
    state: dict[str, Context] = {}

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        upstream = Upstream(settings.upstream_base, settings.upstream_timeout_s)
        pruner = AsyncPrunerClient(
            settings.pruner,
            timeout=settings.prune_timeout_s,
            tls=settings.pruner_tls,
            token=settings.pruner_token,
        )
        state["context"] = Context(settings, upstream, pruner, metrics)
        try:
            yield
        finally:
            await upstream.close()
            await pruner.close()

    def completion(mode: Mode) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            return await _completion(state["context"], mode, request)

        return endpoint

    async def passthrough(request: Request) -> Response:
        return await _forward(state["context"], request, await request.body(), "other")

    async def expose(_: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    routes = [
        Route("/v1/chat/completions", completion("chat"), methods=["POST"]),
        Route("/v1/completions", completion("completions"), methods=["POST"]),
        Route("/health", lambda _: PlainTextResponse("ok"), methods=["GET"]),
        Route("/metrics", expose, methods=["GET"]),
        Route("/{path:path}", passthrough, methods=METHODS),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


async def _completion(context: Context, mode: Mode, request: Request) -> Response:
    raw = await request.body()
    try:
        body = json.loads(raw)
        reason = wire.passthrough_reason(mode, body, context.settings)
    except (ValueError, TypeError):  # not JSON, or a field of the wrong type: upstream says why
        body, reason = None, "unreadable"
    if reason or not isinstance(body, dict):
        log.debug("passthrough", route=mode, reason=reason)
        return await _forward(context, request, raw, mode)
    headers = {k: v for k, v in request.headers.items() if k.lower() == "authorization"}
    session = Session(context, mode, body, headers)
    renderer = wire.Renderer(mode, str(body.get("model", "")), context.settings.show_reasoning)
    if body.get("stream"):
        options = body.get("stream_options") or {}
        return await _stream(session, renderer, bool(options.get("include_usage")))
    return await _whole(session, renderer, request)


async def _whole(session: Session, renderer: wire.Renderer, request: Request) -> Response:
    """Runs the session to its end and answers the whole response; cancels it (and the
    upstream request) if the client disconnects first."""

    async def run() -> None:
        async for _ in session.pieces():
            pass

    task = asyncio.ensure_future(run())
    watcher = asyncio.ensure_future(_disconnected(request))
    done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    if task not in done:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, UpstreamError):
            await task
        _done(session, "cancelled")
        return Response(status_code=CLIENT_CLOSED)
    watcher.cancel()
    try:
        task.result()
    except UpstreamError as exc:
        _done(session, "upstream_error", status=exc.status)
        return Response(exc.body, exc.status, media_type=exc.content_type)
    renderer.reasoning_key = session.reasoning_key
    _done(session, "completed")
    return JSONResponse(renderer.response(session.core, session.finish))


async def _stream(session: Session, renderer: wire.Renderer, with_usage: bool) -> Response:
    """Answers SSE; waits for the first output (or error) before choosing the status."""
    pieces = session.pieces()
    try:
        first: list[Piece] = await anext(pieces, [])
    except UpstreamError as exc:
        _done(session, "upstream_error", status=exc.status)
        return Response(exc.body, exc.status, media_type=exc.content_type)

    async def events() -> AsyncIterator[str]:
        outcome = "cancelled"
        try:
            async for chunk in _chunks(session, renderer, first, pieces, with_usage):
                yield f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"
            outcome = "completed"
        except UpstreamError as exc:
            outcome = "upstream_error"
            yield f"data: {json.dumps(exc.payload())}\n\n"
        finally:
            await pieces.aclose()
            _done(session, outcome)
        yield "data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")


async def _chunks(
    session: Session,
    renderer: wire.Renderer,
    first: list[Piece],
    rest: AsyncIterator[list[Piece]],
    with_usage: bool,
) -> AsyncIterator[dict[str, Any]]:
    renderer.reasoning_key = session.reasoning_key
    for chunk in renderer.pieces(first, session.core):
        yield chunk
    async for pieces in rest:
        renderer.reasoning_key = session.reasoning_key
        for chunk in renderer.pieces(pieces, session.core):
            yield chunk
    for chunk in renderer.closing(session.core, session.finish, with_usage):
        yield chunk


async def _forward(context: Context, request: Request, body: bytes, route: str) -> Response:
    """Passes a request through; the reply streams back as it comes."""
    upstream = context.upstream
    try:
        reply = await upstream.forward(
            request.method, request.url.path, request.url.query, request.headers, body
        )
    except UpstreamError as exc:
        context.metrics.requests.labels(route, "upstream_error").inc()
        return Response(exc.body, exc.status, media_type=exc.content_type)

    context.metrics.requests.labels(route, "passthrough").inc()
    headers = forwarded_headers(reply.headers, drop=frozenset({"date", "server"}))  # uvicorn's
    if not reply.headers.get("content-type", "").startswith("text/event-stream"):
        # A whole reply is read and sent in one piece: fewer ASGI messages than relaying it
        # chunk by chunk (the raw bytes, with the upstream's own content-encoding and length).
        try:
            content = b"".join([part async for part in reply.aiter_raw()])  # still encoded
        except httpx2.HTTPError as exc:
            failed = UpstreamError.unreachable(exc)
            return Response(failed.body, failed.status, media_type=failed.content_type)
        finally:
            await reply.aclose()
        return Response(content, reply.status_code, headers)

    async def events() -> AsyncIterator[bytes]:
        try:
            async for part in reply.aiter_raw():
                yield part
        finally:
            await reply.aclose()

    return StreamingResponse(events(), reply.status_code, headers)


async def _disconnected(request: Request) -> None:
    """Returns when the client has gone away (its body already read)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _done(session: Session, outcome: str, status: int = 200) -> None:
    """Counts and logs the one summary line of a request."""
    context, result = session.context, session.core.result
    context.metrics.requests.labels(session.mode, outcome).inc()
    if outcome == "completed":
        context.metrics.peak_saved.inc(result.peak_tokens_saved)
    log.info(
        "proxy",
        route=session.mode,
        outcome=outcome,
        status=status,
        rounds=result.rounds,
        pruning_rounds=result.prune_calls,
        pruning_skipped=result.prune_failures,
        tokens_generated=result.tokens_generated,
        tokens_pruned=result.tokens_pruned,
        peak_tokens_saved=result.peak_tokens_saved,
    )
