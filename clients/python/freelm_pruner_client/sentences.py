"""Sentences of a trace, as the loop collapser and the sentence protections see them.

A sentence runs from a non-space character to the first ``.``, ``!`` or ``?`` run (with any
closing quotes or brackets) that is followed by whitespace or the end, or to the end of its line.

A *result sentence* is where the trace first states a number (not given in the question) that it
uses again later: the step that derives an intermediate result. Deleting it leaves later steps
using a number that no longer comes from anywhere, so the service protects these by default.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

SENTENCE = re.compile(r"\S[^\n]*?(?:[.!?]+[\"')\]]*(?=\s|$)|(?=\n)|$)", re.MULTILINE)

NUMBER = re.compile(r"(?<![\w.])\d+(?:[.,]\d+)*(?!\w)")
"""A number as written: digits with any decimal or thousands separators, not part of a word
(``x2``, ``3rd``) and without its sign; ``1,000`` and ``1000`` are different numbers."""


def sentences(text: str) -> Iterator[tuple[int, int]]:
    """The ``[start, end)`` code-point offsets of every sentence of ``text``, in order."""
    for match in SENTENCE.finditer(text):
        yield match.start(), match.end()


def last_sentence(text: str) -> tuple[int, int] | None:
    """The ``[start, end)`` of the last sentence of ``text`` (None for blank text)."""
    last = None
    for last in sentences(text):  # noqa: B007
        pass
    return last


def result_sentences(text: str, question: str = "") -> list[tuple[int, int]]:
    """The ``[start, end)`` of every result sentence of ``text``, in order and without repeats:
    each sentence holding the first occurrence of a number that occurs again later in ``text``
    and does not occur in ``question``."""
    given = {m.group() for m in NUMBER.finditer(question)}
    first: dict[str, int] = {}
    recurring: set[str] = set()
    for match in NUMBER.finditer(text):
        number = match.group()
        if number in first:
            recurring.add(number)
        elif number not in given:
            first[number] = match.start()
    points = sorted(first[n] for n in recurring)
    found: list[tuple[int, int]] = []
    spans = sentences(text)
    span = next(spans, None)
    for point in points:
        while span is not None and span[1] <= point:
            span = next(spans, None)
        if span is None:
            break
        if span[0] <= point and (not found or found[-1] != span):
            found.append(span)
    return found
