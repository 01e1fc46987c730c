"""Computing results: batches of jobs through the engine and the resolver, each job settled.

One batch is one engine call. If the batched call fails as a whole, each item is retried alone,
so one poison item fails only itself. ``BatchRunner`` knows the engine interface and the anchor
semantics, not where jobs come from (a consumer in ``queue`` brings them).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import structlog
from freelm_pruner_client.anchors import PruneOutcome, prune
from freelm_pruner_client.loop_collapser import loop_spans

from pruner_service.domain import PruneRequest, PruneResult, Timing, Usage
from pruner_service.engine.base import Engine, Proposal
from pruner_service.errors import Internal, PrunerError
from pruner_service.job import Job

log = structlog.get_logger(__name__)

_NO_MODEL = Proposal((), "[]", 0, 0, windows=0)


class BatchRunner:
    """Turns batches of jobs into results."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def run_batch(self, jobs: Sequence[Job]) -> None:
        """Computes and settles ``jobs``; expired or cancelled ones are settled without compute."""
        started = time.time()
        live = [job for job in jobs if job.claim(started)]
        if not live:
            return
        proposals = self._propose([job.request for job in live])
        compute_ms = (time.time() - started) * 1000.0
        for job, proposal in zip(live, proposals, strict=True):
            if isinstance(proposal, Exception):
                job.fail(as_pruner_error(proposal))
                continue
            try:
                job.finish(self._result(job, proposal, compute_ms, len(live)))
            except Exception as exc:  # one item's failure must not fail its neighbours
                log.exception("item_failed", request_id=job.request.request_id)
                job.fail(as_pruner_error(exc))

    def _propose(self, requests: list[PruneRequest]) -> list[Proposal | Exception]:
        wanted = [r for r in requests if r.options.max_commands > 0]
        try:
            computed = iter(self.engine.propose(wanted)) if wanted else iter([])
        except Exception:
            log.exception("batch_failed", size=len(wanted))
            computed = iter(self._one_by_one(wanted))
        return [next(computed) if r.options.max_commands > 0 else _NO_MODEL for r in requests]

    def _one_by_one(self, requests: list[PruneRequest]) -> list[Proposal | Exception]:
        results: list[Proposal | Exception] = []
        for request in requests:
            try:
                results.extend(self.engine.propose([request]))
            except Exception as exc:
                log.exception("item_failed", request_id=request.request_id)
                results.append(exc)
        return results

    def _result(self, job: Job, proposal: Proposal, compute_ms: float, size: int) -> PruneResult:
        request = job.request
        outcome = resolve(request, proposal)
        trace_tokens, kept_tokens = self.engine.count_tokens([request.trace, outcome.pruned_trace])
        now = time.time()
        first_byte = (
            outcome.deletions[0].byte_start
            if outcome.deletions
            else len(request.trace.encode("utf-8", "surrogatepass"))
        )
        return PruneResult(
            request_id=request.request_id,
            outcome=outcome,
            raw_output=proposal.raw_output,
            usage=Usage(
                trace_tokens=trace_tokens,
                kept_tokens=kept_tokens,
                trace_chars=len(request.trace),
                removed_chars=outcome.removed_chars,
                first_changed_byte=first_byte,
                prompt_tokens=proposal.prompt_tokens,
                generated_tokens=proposal.generated_tokens,
                question_tokens=proposal.question_tokens,
                windows=proposal.windows,
            ),
            timing=Timing(
                queue_ms=max(0.0, (now - job.enqueued_at) * 1000.0 - compute_ms),
                compute_ms=compute_ms,
                batch_size=size,
                total_ms=(now - job.enqueued_at) * 1000.0,
            ),
            model_id=self.engine.info.model_id,
            adapter_id=self.engine.info.adapter_id,
            output_truncated=proposal.truncated,
        )


def resolve(request: PruneRequest, proposal: Proposal) -> PruneOutcome:
    """The proposal's commands and the loop spans, resolved under the request's rules."""
    loops = loop_spans(request.trace) if request.options.collapse_loops else []
    return prune(
        request.trace,
        proposal.commands,
        loop_spans=loops,
        protection=request.options.protection(),
        question=request.question,
    )


def as_pruner_error(error: BaseException) -> PrunerError:
    if isinstance(error, PrunerError):
        return error
    return Internal(f"the engine failed on this request: {type(error).__name__}: {error}")
