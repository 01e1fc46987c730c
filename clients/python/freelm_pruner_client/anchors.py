"""The normative anchor resolver: commands → statuses, spans, deletions and the pruned trace.

This module owns the anchor semantics that the server and every client share (DESIGN, "Anchor
semantics"). It is pure Python with no dependencies, so any caller can run the executor without the
model. It does not know where commands come from (a model, a file) nor how loops are found: loop
spans arrive already computed (see ``loops``) and are merged here under the same protection and
safety rules as model spans.

Every command is resolved against the original trace, independently of the others, inside its
scope: a command written for one window of a long trace carries that window's range
``[scope.start, scope.end)`` of the trace (code points) and is resolved as if the trace were that
range; a command without a scope has the whole trace as its scope.

1. prefix and suffix must be non-empty and the scope must lie inside the trace, else
   ``INVALID_COMMAND``;
2. the prefix must occur exactly once in the scope (overlapping occurrences count), else
   ``PREFIX_NOT_FOUND`` / ``PREFIX_AMBIGUOUS``;
3. the suffix match is the first occurrence of the suffix in the scope starting at or after the
   prefix and ending at or after the prefix's end, else ``SUFFIX_NOT_FOUND``;
4. the span runs from the prefix's start to the suffix's end (offsets in the whole trace);
5. a span intersecting the frozen prefix or the protected tail is ``PROTECTED``; with
   ``protect_last_sentence`` the trace's last sentence with word content
   (``segments.last_sentence``) and everything after it is protected, and with
   ``protect_results`` every result sentence (``segments.result_sentences``) is protected too;
6. applicable spans are merged, independent of order;
7. the pruned trace is the trace minus the union;
8. loop copies (``loops``) lose no information, so the safety limit never cancels them: it bounds
   the model's spans. If the union of every deletion (loop copies included) would exceed
   ``max_delete_fraction`` of the trace, no model span is applied (``OVER_LIMIT``) and the loop
   spans still are. A trace that is mostly loop is still collapsed, and the model may only add
   what the limit leaves.

Every candidate span that a protection or the limit cancels is reported in
``PruneOutcome.cancellations`` with its source and the reason, so a caller can tell "nothing to
prune" from "pruning was refused".
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol, TypeGuard

from freelm_pruner_client.segments import last_sentence, result_sentences


class Status(enum.Enum):
    """What became of one command; names equal the proto's ``CommandStatus``."""

    APPLIED = "APPLIED"
    INVALID_COMMAND = "INVALID_COMMAND"
    PREFIX_NOT_FOUND = "PREFIX_NOT_FOUND"
    PREFIX_AMBIGUOUS = "PREFIX_AMBIGUOUS"
    SUFFIX_NOT_FOUND = "SUFFIX_NOT_FOUND"
    PROTECTED = "PROTECTED"
    OVER_LIMIT = "OVER_LIMIT"


class Source(enum.Enum):
    """Where a deleted span came from; names equal the proto's ``DeletionSource``."""

    MODEL = "MODEL"
    LOOP = "LOOP"
    MODEL_AND_LOOP = "MODEL_AND_LOOP"


class Reason(enum.Enum):
    """Why a candidate span was not applied; names equal the proto's ``CancelReason``."""

    FROZEN_PREFIX = "FROZEN_PREFIX"
    PROTECTED_TAIL = "PROTECTED_TAIL"
    LAST_SENTENCE = "LAST_SENTENCE"
    RESULT_SENTENCE = "RESULT_SENTENCE"
    DELETE_LIMIT = "DELETE_LIMIT"


@dataclass(frozen=True, order=True)
class Span:
    """A half-open range ``[start, end)`` of code points."""

    start: int
    end: int

    def __len__(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class AnchorCommand:
    """One command as emitted: delete from ``prefix`` through the next ``suffix``, both found
    inside ``scope`` (code points of the trace; ``None``: the whole trace)."""

    prefix: str
    suffix: str
    scope: Span | None = None


@dataclass(frozen=True)
class ByteSpan:
    """A span in code points and in UTF-8 bytes."""

    start: int
    end: int
    byte_start: int
    byte_end: int


@dataclass(frozen=True)
class ResolvedCommand:
    """A command with its status, its span when both anchors resolved, and its scope (``None``:
    the whole trace)."""

    prefix: str
    suffix: str
    status: Status
    span: ByteSpan | None = None
    scope: ByteSpan | None = None


@dataclass(frozen=True)
class Deletion:
    """One span actually removed, with its source."""

    start: int
    end: int
    byte_start: int
    byte_end: int
    source: Source


@dataclass(frozen=True)
class Cancellation:
    """A candidate span that was not applied: its offsets, its source and why."""

    start: int
    end: int
    byte_start: int
    byte_end: int
    source: Source
    reason: Reason


def check_limits(frozen_prefix_chars: int, protect_tail_chars: int, fraction: float) -> None:
    """Raises ``ValueError`` naming the first invalid option (``options.NAME must be …, got …``):
    protected ranges are >= 0 code points, ``max_delete_fraction`` is in (0, 1]."""
    for name, value in (
        ("frozen_prefix_chars", frozen_prefix_chars),
        ("protect_tail_chars", protect_tail_chars),
    ):
        if value < 0:
            raise ValueError(f"options.{name} must be >= 0, got {value}")
    if math.isnan(fraction) or not 0.0 < fraction <= 1.0:
        raise ValueError(f"options.max_delete_fraction must be in (0, 1], got {fraction}")


@dataclass(frozen=True)
class Protection:
    """The resolver's view of a request's protection and safety options (rules 5 and 8).

    Its defaults protect nothing and limit nothing (the bare resolver); a request's defaults are
    ``options.PruneOptions``'s, whose ``protection()`` builds this."""

    frozen_prefix_chars: int = 0
    protect_tail_chars: int = 0
    max_delete_fraction: float = 1.0
    protect_last_sentence: bool = False
    protect_results: bool = False
    ranges: tuple[tuple[Span, Reason], ...] = ()
    """Protected ranges of one trace with their reasons, in code points (``for_trace``)."""

    def __post_init__(self) -> None:
        check_limits(self.frozen_prefix_chars, self.protect_tail_chars, self.max_delete_fraction)

    def for_trace(self, trace: str, question: str = "") -> Protection:
        """The same protection as ranges of ``trace``: the frozen prefix, the protected tail,
        with ``protect_last_sentence`` the last sentence with word content and all after it,
        and with ``protect_results`` the result sentences (numbers of ``question`` excepted)."""
        n = len(trace)
        ranges = list(self.ranges)
        if self.frozen_prefix_chars:
            ranges.append((Span(0, min(n, self.frozen_prefix_chars)), Reason.FROZEN_PREFIX))
        if self.protect_tail_chars:
            ranges.append((Span(max(0, n - self.protect_tail_chars), n), Reason.PROTECTED_TAIL))
        last = last_sentence(trace) if self.protect_last_sentence else None
        if last is not None:
            ranges.append((Span(last[0], n), Reason.LAST_SENTENCE))
        if self.protect_results:
            results = result_sentences(trace, question)
            ranges += [(Span(*r), Reason.RESULT_SENTENCE) for r in results]
        return replace(
            self,
            frozen_prefix_chars=0,
            protect_tail_chars=0,
            protect_last_sentence=False,
            protect_results=False,
            ranges=tuple(ranges),
        )

    def reason(self, span: Span) -> Reason | None:
        """Why ``span`` may not be deleted (the first protected range it intersects), or None.
        Call it on ``for_trace``'s result."""
        for protected, reason in self.ranges:
            if span.start < protected.end and protected.start < span.end:
                return reason
        return None


@dataclass(frozen=True)
class PruneOutcome:
    """The resolver's full answer: per-command statuses, the merged deletions and the result."""

    commands: tuple[ResolvedCommand, ...]
    deletions: tuple[Deletion, ...]
    pruned_trace: str
    removed_chars: int
    cancellations: tuple[Cancellation, ...] = ()


def occurs_more_than_once(trace: str, text: str, start: int = 0, end: int | None = None) -> bool:
    """Whether ``text`` occurs in ``trace[start:end]`` twice or more, overlapping occurrences
    counted: the ambiguity of rule 2."""
    end = len(trace) if end is None else end
    first = trace.find(text, start, end)
    return first >= 0 and trace.find(text, first + 1, end) >= 0


def resolve_anchor(
    trace: str, prefix: str, suffix: str, scope: Span | None = None
) -> tuple[Status, Span | None]:
    """Resolves one command against ``trace`` inside ``scope`` (rules 1-4; ``None``: the whole
    trace), ignoring protection and limits. The span is in code points of the whole trace."""
    low, high = (0, len(trace)) if scope is None else (scope.start, scope.end)
    if not prefix or not suffix or not 0 <= low <= high <= len(trace):
        return Status.INVALID_COMMAND, None
    p = trace.find(prefix, low, high)
    if p < 0:
        return Status.PREFIX_NOT_FOUND, None
    if occurs_more_than_once(trace, prefix, low, high):
        return Status.PREFIX_AMBIGUOUS, None
    s = trace.find(suffix, max(p, p + len(prefix) - len(suffix)), high)
    if s < 0:
        return Status.SUFFIX_NOT_FOUND, None
    return Status.APPLIED, Span(p, s + len(suffix))


def merge_spans(spans: Iterable[tuple[Span, Source]]) -> list[tuple[Span, Source]]:
    """Unions overlapping or touching spans; a merged span of mixed origin is ``MODEL_AND_LOOP``."""
    merged: list[tuple[Span, set[Source]]] = []
    for span, source in sorted(spans, key=lambda item: (item[0].start, item[0].end)):
        if merged and span.start <= merged[-1][0].end:
            last, sources = merged[-1]
            merged[-1] = (Span(last.start, max(last.end, span.end)), sources | {source})
        else:
            merged.append((span, {source}))
    return [(span, _combine(sources)) for span, sources in merged]


def _combine(sources: set[Source]) -> Source:
    if len(sources) == 1:
        return next(iter(sources))
    return Source.MODEL_AND_LOOP


def byte_offsets(text: str, points: Iterable[int]) -> dict[int, int]:
    """Maps code-point offsets of ``text`` to UTF-8 byte offsets in one pass."""
    result: dict[int, int] = {}
    position = nbytes = 0
    for point in sorted(set(points)):
        nbytes += len(text[position:point].encode("utf-8", "surrogatepass"))
        position = point
        result[point] = nbytes
    return result


def apply_spans(text: str, spans: Sequence[Span]) -> str:
    """Returns ``text`` without the sorted, non-overlapping ``spans``."""
    pieces: list[str] = []
    cursor = 0
    for span in spans:
        pieces.append(text[cursor : span.start])
        cursor = span.end
    pieces.append(text[cursor:])
    return "".join(pieces)


def prune(
    trace: str,
    commands: Sequence[AnchorCommand],
    *,
    loop_spans: Iterable[Span] = (),
    protection: Protection | None = None,
    question: str = "",
) -> PruneOutcome:
    """Applies the anchor semantics to ``commands`` and ``loop_spans`` over ``trace``.

    Returns every command with its status (and span when resolved), the merged deletions in code
    points and UTF-8 bytes, the candidate spans that were cancelled and why, and the pruned trace.
    The result does not depend on command order. ``question`` matters only to
    ``protection.protect_results``: numbers it gives are not results.
    """
    protection = (protection or Protection()).for_trace(trace, question)
    resolved = [_resolve_protected(trace, c, protection) for c in commands]
    cancelled = [(sp, Source.MODEL, r) for _, sp, r in resolved if sp is not None and r is not None]
    loops: list[tuple[Span, Source]] = []
    for span in loop_spans:
        reason = protection.reason(span)
        if reason is None:
            loops.append((span, Source.LOOP))
        else:
            cancelled.append((span, Source.LOOP, reason))
    model = [(sp, Source.MODEL) for st, sp, _ in resolved if st is Status.APPLIED and sp]
    merged = merge_spans(model + loops)
    removed = sum(len(span) for span, _ in merged)
    if model and removed > protection.max_delete_fraction * len(trace):
        cancelled += [(span, Source.MODEL, Reason.DELETE_LIMIT) for span, _ in model]
        resolved = [
            (Status.OVER_LIMIT if st is Status.APPLIED else st, sp, r) for st, sp, r in resolved
        ]
        merged = merge_spans(loops)
        removed = sum(len(span) for span, _ in merged)
    return _outcome(trace, commands, resolved, merged, cancelled, removed)


def _outcome(
    trace: str,
    commands: Sequence[AnchorCommand],
    resolved: list[tuple[Status, Span | None, Reason | None]],
    merged: list[tuple[Span, Source]],
    cancelled: list[tuple[Span, Source, Reason]],
    removed: int,
) -> PruneOutcome:
    points = [p for _, sp, _ in resolved if sp for p in (sp.start, sp.end)]
    points += [p for c in commands if _fits(c.scope, trace) for p in (c.scope.start, c.scope.end)]
    points += [p for span, _ in merged for p in (span.start, span.end)]
    points += [p for span, _, _ in cancelled for p in (span.start, span.end)]
    to_bytes = byte_offsets(trace, points)
    return PruneOutcome(
        commands=tuple(
            ResolvedCommand(
                c.prefix,
                c.suffix,
                st,
                _byte_span(sp, to_bytes),
                _byte_span(c.scope, to_bytes) if _fits(c.scope, trace) else None,
            )
            for c, (st, sp, _) in zip(commands, resolved, strict=True)
        ),
        deletions=tuple(
            Deletion(span.start, span.end, to_bytes[span.start], to_bytes[span.end], source)
            for span, source in merged
        ),
        pruned_trace=apply_spans(trace, [span for span, _ in merged]),
        removed_chars=removed,
        cancellations=tuple(
            Cancellation(sp.start, sp.end, to_bytes[sp.start], to_bytes[sp.end], source, reason)
            for sp, source, reason in sorted(cancelled, key=lambda c: (c[0], c[1].value))
        ),
    )


def _resolve_protected(
    trace: str, command: AnchorCommand, protection: Protection
) -> tuple[Status, Span | None, Reason | None]:
    status, span = resolve_anchor(trace, command.prefix, command.suffix, command.scope)
    reason = protection.reason(span) if span is not None else None
    if reason is not None:
        return Status.PROTECTED, span, reason
    return status, span, None


def _fits(scope: Span | None, trace: str) -> TypeGuard[Span]:
    """Whether ``scope`` is a range of ``trace`` (an invalid one is reported as no scope)."""
    return scope is not None and 0 <= scope.start <= scope.end <= len(trace)


def _byte_span(span: Span | None, to_bytes: dict[int, int]) -> ByteSpan | None:
    if span is None:
        return None
    return ByteSpan(span.start, span.end, to_bytes[span.start], to_bytes[span.end])


class OffsetSpan(Protocol):
    """Anything with code-point and byte offsets: a ``Deletion`` or the proto's ``Deletion``."""

    @property
    def start(self) -> int: ...
    @property
    def end(self) -> int: ...
    @property
    def byte_start(self) -> int: ...
    @property
    def byte_end(self) -> int: ...


def apply_deletions(trace: str, deletions: Sequence[OffsetSpan]) -> str:
    """Applies a reply's ``deletions`` by code-point offset, checking that they fit ``trace``.

    Accepts this module's ``Deletion`` objects or the proto messages of a ``PruneResponse``.

    Raises ``ValueError`` if the deletions are unsorted, overlapping, out of bounds, or if their
    byte offsets disagree with the trace (the trace is not the one that was pruned).
    """
    spans = [Span(d.start, d.end) for d in deletions]
    cursor = 0
    for span in spans:
        if span.start < cursor or span.end <= span.start or span.end > len(trace):
            raise ValueError(f"deletion [{span.start}, {span.end}) does not fit the trace")
        cursor = span.end
    to_bytes = byte_offsets(trace, [p for s in spans for p in (s.start, s.end)])
    for d in deletions:
        if (to_bytes[d.start], to_bytes[d.end]) != (d.byte_start, d.byte_end):
            raise ValueError(f"deletion [{d.start}, {d.end}) byte offsets do not match the trace")
    return apply_spans(trace, spans)
