"""The deterministic loop collapser: finds verbatim loops and returns the spans that remove them.

Degenerate loops (``Wait, no. Wait, no. Wait, no. ...``) cannot be deleted by anchor commands,
because every anchor inside a loop recurs. This module finds runs of at least ``min_repeats``
consecutive identical units (sentences, lines or paragraphs; identical after collapsing whitespace)
and returns one span per extra copy: the gap before the copy plus the copy. Deleting them keeps the
first copy and the text around the loop intact.

It only computes spans. Protection, the safety limit and merging with model spans happen in
``anchors.prune``, so both sources obey the same rules.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from freelm_pruner_client.anchors import Span
from freelm_pruner_client.sentences import SENTENCE

MIN_REPEATS = 3
"""A run needs this many consecutive identical units to count as a loop."""

_MIN_WORD_CHARS = 3
"""Units with fewer word characters (``}``, ``---``, ``= 0``) are never loops: code and tables."""

_PARAGRAPH = re.compile(r"\S(?:.|\n(?![ \t]*\n))*", re.MULTILINE)
_LINE = re.compile(r"[^\n]*\S[^\n]*")
_WORD = re.compile(r"\w")


def _units(pattern: re.Pattern[str], text: str) -> Iterator[tuple[Span, str]]:
    for match in pattern.finditer(text):
        yield Span(match.start(), match.end()), " ".join(match.group().split())


def _runs(units: list[tuple[Span, str]], min_repeats: int) -> Iterator[list[Span]]:
    """Each run of at least ``min_repeats`` consecutive identical units: its copies' spans."""
    start = 0
    while start < len(units):
        stop = start + 1
        while stop < len(units) and units[stop][1] == units[start][1]:
            stop += 1
        if stop - start >= min_repeats and len(_WORD.findall(units[start][1])) >= _MIN_WORD_CHARS:
            yield [span for span, _ in units[start:stop]]
        start = stop


def _all_runs(text: str, min_repeats: int) -> Iterator[list[Span]]:
    if min_repeats < 2:
        raise ValueError("min_repeats must be at least 2")
    for pattern in (_PARAGRAPH, _LINE, SENTENCE):
        yield from _runs(list(_units(pattern, text)), min_repeats)


def loop_spans(text: str, min_repeats: int = MIN_REPEATS) -> list[Span]:
    """Spans that remove every extra copy of each verbatim loop in ``text``; sorted, may overlap.

    Each span covers one extra copy and the whitespace before it, so deleting any subset of them
    leaves whole copies behind. Text with no loop gives an empty list.
    """
    spans = {
        Span(copies[i - 1].end, copies[i].end)
        for copies in _all_runs(text, min_repeats)
        for i in range(1, len(copies))
    }
    return sorted(spans)


def loop_runs(text: str, min_repeats: int = MIN_REPEATS) -> list[Span]:
    """The whole extent of each verbatim loop in ``text``, from its first copy's start to its
    last copy's end; sorted, may overlap (a loop of paragraphs is also a loop of lines)."""
    runs = _all_runs(text, min_repeats)
    return sorted({Span(copies[0].start, copies[-1].end) for copies in runs})
