"""The anchor guard: judges whether a command being written can resolve (``steering`` acts on it).

The grammar makes every anchor a substring of the trace, but a substring can still fail the
resolver: a prefix that occurs more than once (rule 2), most often a sentence of a verbatim loop,
which no command can delete (the loop collapser does), or a suffix with no occurrence after its
prefix (rule 3). The guard judges a command as it is written, token by token:

- a prefix must start where a unique anchor can start: outside every loop run, at a position
  from which a writable anchor of at most ``max_anchor_chars`` characters occurs once;
- a finished prefix must occur exactly once;
- a suffix must occur in the trace from its prefix's occurrence on, and a finished command must
  resolve (rule 3) to a span that ends where a sentence ends (as ``segments`` splits them, or
  at the trace's end), so it never leaves half a sentence behind, and that stays within one
  paragraph (no blank line inside it, whatever the line endings). Every gold span the training
  data teach is so; a command
  running past a paragraph's end is the model overshooting into the next step;
- a finished command's span must not reach into a loop from a sentence before the one the loop
  starts in (a loop is the collapser's, and such a span deletes the step before the loop with
  its first copy), nor into a restatement of the question (``restatements``) from a sentence
  before the one the restatement starts in (a restatement is deleted on its own, with the words
  that lead into it in its sentence). Both are the commonest shape of an essential step lost on
  the generated sets: a command that starts one sentence early (``docs/BENCHMARKS.md``); no gold
  span of those sets has either shape. Without a question there is no restatement rule.

What the decoder does with a failing command (steer a failing token to the best one that passes,
end the command list there, or leave the command out once the list is written) is the steering
strategy's choice; the guard only judges.
"""

from __future__ import annotations

from collections.abc import Sequence

from freelm_pruner_client.anchors import (
    AnchorCommand,
    Span,
    occurs_more_than_once,
    resolve_anchor,
)
from freelm_pruner_client.loop_collapser import loop_runs
from freelm_pruner_client.segments import has_paragraph_break, sentences

from pruner_service.engine.grammar import Writing, writable_head


class AnchorGuard:
    """Judges partial commands against one trace (see the module's rules)."""

    def __init__(self, trace: str, max_anchor_chars: int, question: str = "") -> None:
        self.trace = trace
        self.max_anchor_chars = max_anchor_chars
        self._loops = loop_runs(trace)
        self._sentence_ends = {end for _, end in sentences(trace)} | {len(trace)}
        self._restatements = restatements(trace, question)
        self._startable: dict[int, bool] = {}

    def passes(self, command: Writing) -> bool:
        """Whether ``command`` can still become (or is) a command that resolves."""
        if not command.prefix:
            return True
        if not self._prefix_passes(command.prefix, command.prefix_closed):
            return False
        if not command.suffix:
            return True
        return self._suffix_passes(command.prefix, command.suffix, command.suffix_closed)

    def leading_passes(self, commands: Sequence[AnchorCommand]) -> tuple[AnchorCommand, ...]:
        """``commands`` up to (not including) the first that fails the guard."""
        for index, command in enumerate(commands):
            if not self._finished_passes(command):
                return tuple(commands[:index])
        return tuple(commands)

    def passing(self, commands: Sequence[AnchorCommand]) -> tuple[AnchorCommand, ...]:
        """The commands of ``commands`` that pass the guard, in order."""
        return tuple(command for command in commands if self._finished_passes(command))

    def _finished_passes(self, command: AnchorCommand) -> bool:
        return self.passes(Writing(command.prefix, True, command.suffix, True))

    def ends_sentence(self, position: int) -> bool:
        """Whether ``position`` is a sentence's end, spaces or tabs after it allowed."""
        return len(self.trace[:position].rstrip(" \t")) in self._sentence_ends

    def enters_loop(self, start: int, end: int) -> bool:
        """Whether the span ``[start, end)`` reaches into a loop from a sentence before the one
        the loop starts in: a step deleted together with the loop's first copy, which the
        collapser keeps (a phrase loop inside the span's first sentence does not count)."""
        return any(self._reaches_into(start, end, run.start) for run in self._loops)

    def enters_restatement(self, start: int, end: int) -> bool:
        """Whether the span ``[start, end)`` reaches into a restatement of the question from a
        sentence before the one the restatement starts in."""
        return any(self._reaches_into(start, end, copy.start) for copy in self._restatements)

    def _reaches_into(self, start: int, end: int, position: int) -> bool:
        """Whether ``position`` lies in ``[start, end)`` with a sentence end in between."""
        return start <= position < end and any(
            start < stop <= position for stop in self._sentence_ends
        )

    def can_start(self, position: int) -> bool:
        """Whether a prefix starting at ``position`` can be unique: outside every loop, with a
        writable anchor from there (at most ``max_anchor_chars``) that occurs once."""
        known = self._startable.get(position)
        if known is None:
            known = self._startable[position] = self._can_start(position)
        return known

    def _can_start(self, position: int) -> bool:
        if any(run.start <= position < run.end for run in self._loops):
            return False
        window = writable_head(self.trace, position, self.max_anchor_chars)
        return bool(window) and not occurs_more_than_once(self.trace, window)

    def _prefix_passes(self, prefix: str, closed: bool) -> bool:
        position = self.trace.find(prefix)
        if closed:
            return (
                position >= 0
                and not occurs_more_than_once(self.trace, prefix)
                and self.can_start(position)
            )
        while position >= 0:
            if self.can_start(position):
                return True
            position = self.trace.find(prefix, position + 1)
        return False

    def _suffix_passes(self, prefix: str, suffix: str, closed: bool) -> bool:
        if closed:
            _, span = resolve_anchor(self.trace, prefix, suffix)
            return (
                span is not None
                and self.ends_sentence(span.end)
                and not has_paragraph_break(self.trace[span.start : span.end])
                and not self.enters_loop(span.start, span.end)
                and not self.enters_restatement(span.start, span.end)
            )
        return self.trace.find(suffix, self.trace.find(prefix)) >= 0


MIN_RESTATED_CHARS = 15
"""The shortest sentence of a question whose verbatim copy in a trace counts as a restatement
(shorter ones, such as ``What is x?``, also occur as the trace's own words)."""


def restatements(trace: str, question: str) -> list[Span]:
    """Where ``trace`` copies ``question`` verbatim: each occurrence of a question sentence of at
    least ``MIN_RESTATED_CHARS`` code points (stripped), widened over the copies of any other
    question sentence (short ones too) that follow or precede it with only whitespace between;
    sorted, disjoint ``[start, end)`` in code points."""
    pieces = [question[s:e].strip() for s, e in sentences(question)]
    pieces = [piece for piece in pieces if piece]
    found: list[tuple[int, int]] = []
    for piece in pieces:
        if len(piece) >= MIN_RESTATED_CHARS:
            position = trace.find(piece)
            while position >= 0:
                found.append(_widened(trace, pieces, position, position + len(piece)))
                position = trace.find(piece, position + 1)
    joined: list[list[int]] = []
    for start, end in sorted(found):
        if joined and start <= joined[-1][1]:
            joined[-1][1] = max(joined[-1][1], end)
        else:
            joined.append([start, end])
    return [Span(start, end) for start, end in joined]


def _widened(trace: str, pieces: list[str], start: int, end: int) -> tuple[int, int]:
    """``[start, end)`` grown over adjacent copies of ``pieces`` (only whitespace between; each
    piece is non-empty, so every step grows the span and the loop ends)."""
    grown = True
    while grown:
        after = len(trace) - len(trace[end:].lstrip())
        before = len(trace[:start].rstrip())
        following = next((p for p in pieces if trace.startswith(p, after)), None)
        preceding = next((p for p in pieces if trace.endswith(p, 0, before)), None)
        if following is not None:
            end = after + len(following)
        if preceding is not None:
            start = before - len(preceding)
        grown = following is not None or preceding is not None
    return start, end
