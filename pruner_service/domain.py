"""Domain types of one pruning request and its result, and the validation of a request.

These are what the queue carries and the worker computes; the proto types stay at the edge
(``convert``). Validation lives here so every entry point (gRPC, CLI, a Redis frontend) applies
the same limits with the same messages. The options type and its validation are the client
package's (``freelm_pruner_client.options``), shared with every client.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from freelm_pruner_client.anchors import PruneOutcome
from freelm_pruner_client.options import DEFAULT_MAX_DELETE_FRACTION, PruneOptions

from pruner_service.errors import InvalidArgument

__all__ = [
    "DEFAULT_MAX_DELETE_FRACTION",
    "Limits",
    "PruneOptions",
    "PruneRequest",
    "PruneResult",
    "Timing",
    "Usage",
    "new_request_id",
    "validate_request",
]


@dataclass(frozen=True)
class Limits:
    """The server-side limits a request is validated against."""

    max_trace_chars: int
    max_question_chars: int
    max_commands: int


@dataclass(frozen=True)
class PruneRequest:
    """A validated request."""

    request_id: str
    trace: str
    question: str
    options: PruneOptions
    caller: str = ""
    """Who sent it: the fingerprint of its bearer token (``auth.Grant.fingerprint``), ``""``
    without authentication. Not content: it keys the stored result, not the cache."""


@dataclass(frozen=True)
class Usage:
    trace_tokens: int
    kept_tokens: int
    trace_chars: int
    removed_chars: int
    first_changed_byte: int
    prompt_tokens: int
    generated_tokens: int
    question_tokens: int = 0
    windows: int = 0


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
    _validate_options(options, limits)
    return PruneRequest(request_id or new_request_id(), trace, question, options)


def _validate_options(options: PruneOptions, limits: Limits) -> None:
    try:
        options.check(limits.max_commands)
    except ValueError as exc:
        raise InvalidArgument(str(exc)) from None
