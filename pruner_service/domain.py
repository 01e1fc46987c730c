"""Domain types of one pruning request and its result, and the validation of a request.

These are what the queue carries and the worker computes; the proto types stay at the edge
(``convert``). Validation lives here so every entry point (gRPC, CLI, a Redis frontend) applies
the same limits with the same messages.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass

from freelm_pruner_client.anchors import Protection, PruneOutcome

from pruner_service.errors import InvalidArgument

DEFAULT_MAX_DELETE_FRACTION = 0.6


@dataclass(frozen=True)
class Limits:
    """The server-side limits a request is validated against."""

    max_trace_chars: int
    max_question_chars: int
    max_commands: int


@dataclass(frozen=True)
class PruneOptions:
    """Per-request options, validated."""

    frozen_prefix_chars: int = 0
    protect_tail_chars: int = 0
    max_delete_fraction: float = DEFAULT_MAX_DELETE_FRACTION
    max_commands: int = 8
    return_pruned_trace: bool = True
    collapse_loops: bool = True
    protect_last_sentence: bool = True
    protect_results: bool = True

    def protection(self) -> Protection:
        """The resolver's view of these options."""
        return Protection(
            self.frozen_prefix_chars,
            self.protect_tail_chars,
            self.max_delete_fraction,
            self.protect_last_sentence,
            self.protect_results,
        )


@dataclass(frozen=True)
class PruneRequest:
    """A validated request."""

    request_id: str
    trace: str
    question: str
    options: PruneOptions


@dataclass(frozen=True)
class Usage:
    trace_tokens: int
    kept_tokens: int
    trace_chars: int
    removed_chars: int
    first_changed_byte: int
    prompt_tokens: int
    generated_tokens: int


@dataclass(frozen=True)
class Timing:
    queue_ms: float
    compute_ms: float
    batch_size: int
    total_ms: float


@dataclass(frozen=True)
class PruneResult:
    """The answer to one request."""

    request_id: str
    outcome: PruneOutcome
    raw_output: str
    usage: Usage
    timing: Timing
    model_id: str
    adapter_id: str
    return_pruned_trace: bool = True
    output_truncated: bool = False


def new_request_id() -> str:
    """A fresh request id for requests that came without one."""
    return uuid.uuid4().hex


def validate_request(
    request_id: str, trace: str, question: str, options: PruneOptions, limits: Limits
) -> PruneRequest:
    """Checks a request against ``limits``; raises ``InvalidArgument`` naming the problem."""
    if len(request_id) > 128:
        raise InvalidArgument("request_id is longer than 128 characters")
    if not trace.strip():
        raise InvalidArgument("trace is empty")
    if len(trace) > limits.max_trace_chars:
        raise InvalidArgument(
            f"trace has {len(trace)} characters; the limit is {limits.max_trace_chars}"
        )
    if len(question) > limits.max_question_chars:
        raise InvalidArgument(
            f"question has {len(question)} characters; the limit is {limits.max_question_chars}"
        )
    _validate_options(options, len(trace), limits)
    return PruneRequest(request_id or new_request_id(), trace, question, options)


def _validate_options(options: PruneOptions, trace_chars: int, limits: Limits) -> None:
    for name in ("frozen_prefix_chars", "protect_tail_chars"):
        if getattr(options, name) < 0:
            raise InvalidArgument(f"options.{name} must be >= 0, got {getattr(options, name)}")
    fraction = options.max_delete_fraction
    if math.isnan(fraction) or not 0.0 < fraction <= 1.0:
        raise InvalidArgument(f"options.max_delete_fraction must be in (0, 1], got {fraction}")
    if not 0 <= options.max_commands <= limits.max_commands:
        raise InvalidArgument(
            f"options.max_commands must be in [0, {limits.max_commands}], "
            f"got {options.max_commands}"
        )
