"""Pure conversions between the proto messages and the domain types. No I/O, no model."""

from __future__ import annotations

import dataclasses

from freelm.pruner.v1 import pruner_pb2 as pb
from freelm_pruner_client.anchors import (
    ByteSpan,
    Cancellation,
    Deletion,
    OffsetSpan,
    PruneOutcome,
    Reason,
    ResolvedCommand,
    Source,
    Status,
)

from pruner_service.config import Settings
from pruner_service.domain import (
    Limits,
    PruneOptions,
    PruneRequest,
    PruneResult,
    Timing,
    Usage,
    validate_request,
)
from pruner_service.engine.base import EngineInfo
from pruner_service.errors import PrunerError, status_of


def options_from_proto(message: pb.PruneOptions, limits: Limits) -> PruneOptions:
    """Request options with the server's defaults for unset fields."""
    defaults = PruneOptions(max_commands=limits.max_commands)
    has = message.HasField
    return PruneOptions(
        frozen_prefix_chars=message.frozen_prefix_chars,
        protect_tail_chars=message.protect_tail_chars,
        max_delete_fraction=(
            message.max_delete_fraction
            if has("max_delete_fraction")
            else defaults.max_delete_fraction
        ),
        max_commands=message.max_commands if has("max_commands") else defaults.max_commands,
        return_pruned_trace=(
            message.return_pruned_trace
            if has("return_pruned_trace")
            else defaults.return_pruned_trace
        ),
        collapse_loops=message.collapse_loops if has("collapse_loops") else defaults.collapse_loops,
        protect_last_sentence=(
            message.protect_last_sentence
            if has("protect_last_sentence")
            else defaults.protect_last_sentence
        ),
        protect_results=(
            message.protect_results if has("protect_results") else defaults.protect_results
        ),
    )


def request_from_queue(message: pb.PruneRequest) -> PruneRequest:
    """The domain request of a queued job, read as it is: the frontend that admitted it validated
    it (``request_from_proto``) and set every option (``request_to_proto``), so a worker neither
    validates it again nor applies its own defaults or limits."""
    options = message.options
    values = {f.name: getattr(options, f.name) for f in dataclasses.fields(PruneOptions)}
    return PruneRequest(message.request_id, message.trace, message.question, PruneOptions(**values))


def request_from_proto(message: pb.PruneRequest, limits: Limits) -> PruneRequest:
    """A validated domain request; raises ``InvalidArgument`` naming the problem."""
    return validate_request(
        message.request_id,
        message.trace,
        message.question,
        options_from_proto(message.options, limits),
        limits,
    )


def command_to_proto(command: ResolvedCommand) -> pb.Command:
    message = pb.Command(
        prefix=command.prefix,
        suffix=command.suffix,
        status=command.status.value,
    )
    if command.span is not None:
        message.start = command.span.start
        message.end = command.span.end
        message.byte_start = command.span.byte_start
        message.byte_end = command.span.byte_end
    if command.scope is not None:
        message.scope.CopyFrom(pb.Scope(**_offsets(command.scope)))
    return message


def _offsets(span: OffsetSpan) -> dict[str, int]:
    """A span's code-point and byte offsets as proto fields."""
    return {
        "start": span.start,
        "end": span.end,
        "byte_start": span.byte_start,
        "byte_end": span.byte_end,
    }


def deletion_to_proto(deletion: Deletion) -> pb.Deletion:
    return pb.Deletion(**_offsets(deletion), source=deletion.source.value)


def cancellation_to_proto(cancellation: Cancellation) -> pb.Cancellation:
    return pb.Cancellation(
        **_offsets(cancellation),
        source=cancellation.source.value,
        reason=cancellation.reason.value,
    )


def result_to_proto(result: PruneResult, return_pruned_trace: bool = True) -> pb.PruneResponse:
    """The reply to a request; ``return_pruned_trace``: the request's option (the reply is the
    one place it applies; results are computed, stored and cached with the pruned trace)."""
    usage, timing = result.usage, result.timing
    return pb.PruneResponse(
        request_id=result.request_id,
        commands=[command_to_proto(c) for c in result.outcome.commands],
        deletions=[deletion_to_proto(d) for d in result.outcome.deletions],
        pruned_trace=result.outcome.pruned_trace if return_pruned_trace else "",
        usage=pb.Usage(
            trace_tokens=usage.trace_tokens,
            kept_tokens=usage.kept_tokens,
            trace_chars=usage.trace_chars,
            removed_chars=usage.removed_chars,
            first_changed_byte=usage.first_changed_byte,
            prompt_tokens=usage.prompt_tokens,
            generated_tokens=usage.generated_tokens,
            question_tokens=usage.question_tokens,
            windows=usage.windows,
        ),
        timing=pb.Timing(
            queue_ms=timing.queue_ms,
            compute_ms=timing.compute_ms,
            batch_size=timing.batch_size,
            total_ms=timing.total_ms,
        ),
        model_id=result.model_id,
        adapter_id=result.adapter_id,
        raw_output=result.raw_output,
        output_truncated=result.output_truncated,
        cancellations=[cancellation_to_proto(c) for c in result.outcome.cancellations],
    )


def error_to_proto(error: PrunerError) -> pb.ItemError:
    code, message = status_of(error)
    return pb.ItemError(code=code.value[0], code_name=code.name, message=message)


def stream_item_to_proto(
    request_id: str, item: PruneResult | PrunerError, return_pruned_trace: bool = True
) -> pb.PruneStreamResponse:
    if isinstance(item, PruneResult):
        response = result_to_proto(item, return_pruned_trace)
        return pb.PruneStreamResponse(request_id=request_id, response=response)
    return pb.PruneStreamResponse(request_id=request_id, error=error_to_proto(item))


def info_to_proto(info: EngineInfo, settings: Settings, limits: Limits) -> pb.ModelInfo:
    return pb.ModelInfo(
        profile=info.profile,
        model_id=info.model_id,
        adapter_id=info.adapter_id,
        adapter_version=info.adapter_version,
        adapter_merged=bool(info.adapter_id),
        template_sha256=info.template_sha256,
        dtype=info.dtype,
        device=info.device,
        max_trace_chars=limits.max_trace_chars,
        max_context_tokens=info.max_context_tokens,
        max_commands=info.max_commands,
        max_anchor_chars=info.max_anchor_chars,
        max_batch=settings.max_batch,
        note=info.note,
        window_tokens=info.window_tokens,
        window_overlap_tokens=info.window_overlap_tokens,
        question_tokens=info.question_tokens,
        max_question_chars=limits.max_question_chars,
    )


def request_to_proto(request: PruneRequest) -> pb.PruneRequest:
    """A validated request with every option set explicitly (so no default can differ later)."""
    o = request.options
    return pb.PruneRequest(
        request_id=request.request_id,
        trace=request.trace,
        question=request.question,
        options=pb.PruneOptions(
            frozen_prefix_chars=o.frozen_prefix_chars,
            protect_tail_chars=o.protect_tail_chars,
            max_delete_fraction=o.max_delete_fraction,
            max_commands=o.max_commands,
            return_pruned_trace=o.return_pruned_trace,
            collapse_loops=o.collapse_loops,
            protect_last_sentence=o.protect_last_sentence,
            protect_results=o.protect_results,
        ),
    )


def command_from_proto(message: pb.Command) -> ResolvedCommand:
    span = scope = None
    if message.HasField("start"):
        span = ByteSpan(message.start, message.end, message.byte_start, message.byte_end)
    if message.HasField("scope"):
        s = message.scope
        scope = ByteSpan(s.start, s.end, s.byte_start, s.byte_end)
    status = Status(pb.CommandStatus.Name(message.status))
    return ResolvedCommand(message.prefix, message.suffix, status, span, scope)


def cancellation_from_proto(message: pb.Cancellation) -> Cancellation:
    return Cancellation(
        message.start,
        message.end,
        message.byte_start,
        message.byte_end,
        Source(pb.DeletionSource.Name(message.source)),
        Reason(pb.CancelReason.Name(message.reason)),
    )


def result_from_proto(message: pb.PruneResponse) -> PruneResult:
    """The domain result of a reply computed elsewhere (a queue worker, which always stores the
    pruned trace)."""
    deletions = tuple(
        Deletion(d.start, d.end, d.byte_start, d.byte_end, Source(pb.DeletionSource.Name(d.source)))
        for d in message.deletions
    )
    u, t = message.usage, message.timing
    return PruneResult(
        request_id=message.request_id,
        outcome=PruneOutcome(
            commands=tuple(command_from_proto(c) for c in message.commands),
            deletions=deletions,
            pruned_trace=message.pruned_trace,
            removed_chars=u.removed_chars,
            cancellations=tuple(cancellation_from_proto(c) for c in message.cancellations),
        ),
        raw_output=message.raw_output,
        usage=Usage(
            u.trace_tokens,
            u.kept_tokens,
            u.trace_chars,
            u.removed_chars,
            u.first_changed_byte,
            u.prompt_tokens,
            u.generated_tokens,
            u.question_tokens,
            u.windows,
        ),
        timing=Timing(t.queue_ms, t.compute_ms, t.batch_size, t.total_ms),
        model_id=message.model_id,
        adapter_id=message.adapter_id,
        output_truncated=message.output_truncated,
    )
