"""One proxied request: the shared ``LoopCore`` driven over the async upstream and pruner.

``Session.pieces()`` runs the rounds (each a streamed upstream request of at most
``prune_every_tokens`` tokens while the model reasons), yields the model's output as classified
``Piece`` lists as it arrives, and between rounds sends the reasoning to the pruner and applies
the deletions. A pruner that fails or passes ``prune_timeout_s`` costs that round its pruning,
never the request. Upstream failures raise ``UpstreamError``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

import structlog
from freelm_pruner_client.client import AsyncPrunerClient
from freelm_pruner_client.errors import PrunerClientError
from freelm_pruner_client.loopcore import (
    Delimiters,
    LoopCore,
    LoopSettings,
    Mode,
    Piece,
    PruneCall,
    continuation_body,
)

from pruner_service.proxy import wire
from pruner_service.proxy.metrics import ProxyMetrics
from pruner_service.proxy.settings import ProxySettings
from pruner_service.proxy.upstream import Upstream

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Context:
    """What every session shares: settings, the upstream and pruner clients, the metrics."""

    settings: ProxySettings
    upstream: Upstream
    pruner: AsyncPrunerClient
    metrics: ProxyMetrics


def loop_settings(settings: ProxySettings, max_tokens: int) -> LoopSettings:
    """The loop's settings for one request with a budget of ``max_tokens`` tokens."""
    return LoopSettings(
        prune_every_tokens=settings.prune_every_tokens,
        max_tokens=max_tokens,
        frozen_prefix_chars=settings.frozen_prefix_chars,
        protect_tail_chars=settings.protect_tail_chars,
        max_delete_fraction=settings.max_delete_fraction,
        max_trace_chars=settings.max_trace_chars,
        max_commands=settings.max_commands,
    )


def delimiters_for(mode: Mode, body: Mapping[str, Any], settings: ProxySettings) -> Delimiters:
    """The configured delimiters; a completions prompt that ends with the start delimiter
    opens the reasoning itself, so the output starts inside it."""
    delimiters = settings.delimiters
    prompt = body.get("prompt")
    opens = isinstance(prompt, str) and prompt.rstrip().endswith(delimiters.start)
    return (
        replace(delimiters, starts_inside=True) if mode == "completions" and opens else delimiters
    )


class Session:
    """One request's loop. Read ``pieces()`` once; then ``core`` and ``finish`` hold the run."""

    def __init__(
        self, context: Context, mode: Mode, body: dict[str, Any], headers: Mapping[str, str]
    ) -> None:
        settings = context.settings
        self.context = context
        self.mode = mode
        self.headers = dict(headers)
        self.prompt = wire.prompt_of(mode, body)
        self.question = wire.question_of(mode, body, settings.max_question_chars)
        self.base = wire.base_body(body)
        budget = wire.max_tokens_of(body, settings.default_max_tokens)
        self.core = LoopCore(loop_settings(settings, budget), delimiters_for(mode, body, settings))
        self.finish = "length"
        self.reasoning_key = ""

    async def pieces(self) -> AsyncGenerator[list[Piece]]:
        """Runs the loop, yielding the output as it arrives (non-empty lists only)."""
        while (budget := self.core.next_max_tokens()) is not None:
            partial = self.core.partial(self.mode)
            body = continuation_body(self.base, self.mode, self.prompt, partial, budget)
            async for pieces in self._round(body):
                yield pieces
            if self.core.result.finished:
                break
        tail = self.core.finish()
        if tail:
            yield tail

    async def _round(self, body: dict[str, Any]) -> AsyncIterator[list[Piece]]:
        """One upstream round: streams its pieces, then accounts it and prunes if due."""
        finish, chunks = "", 0
        usage: dict[str, int] = {}
        rounds = self.context.upstream.stream_round(self.mode, body, self.headers)
        async for delta in rounds:
            finish = delta.finish or finish
            usage = dict(delta.usage) or usage
            chunks += bool(delta.content or delta.reasoning)
            self.reasoning_key = delta.reasoning_key or self.reasoning_key
            pieces = self.core.feed(delta.content, delta.reasoning)
            if pieces:
                yield pieces
        self.finish = finish or "length"
        call = self.core.end_round(
            finish, usage.get("prompt_tokens", 0), usage.get("completion_tokens", chunks)
        )
        if call is not None:
            await self._prune(call)

    async def _prune(self, call: PruneCall) -> None:
        settings, metrics = self.context.settings, self.context.metrics
        started = time.perf_counter()
        try:
            reply = await asyncio.wait_for(
                self.context.pruner.prune(
                    call.trace, self.question, timeout=settings.prune_timeout_s, **call.options
                ),
                settings.prune_timeout_s,
            )
        except (PrunerClientError, TimeoutError) as exc:
            self._skipped(exc, time.perf_counter() - started)
            return
        metrics.pruner_seconds.observe(time.perf_counter() - started)
        try:
            before = self.core.result.tokens_pruned
            self.core.apply(call, reply)
        except ValueError as exc:
            self._skipped(exc, 0.0)
            return
        metrics.pruning_rounds.inc()
        metrics.pruned_tokens.inc(self.core.result.tokens_pruned - before)

    def _skipped(self, exc: Exception, seconds: float) -> None:
        code = exc.code.name if isinstance(exc, PrunerClientError) else type(exc).__name__
        self.core.failed()
        self.context.metrics.pruner_failures.labels(code).inc()
        log.warning("pruning skipped", code=code, error=str(exc)[:200], seconds=round(seconds, 3))
