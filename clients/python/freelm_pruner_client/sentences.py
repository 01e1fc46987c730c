"""Sentences of a trace, as the loop collapser and the last-sentence protection see them.

A sentence runs from a non-space character to the first ``.``, ``!`` or ``?`` run (with any
closing quotes or brackets) that is followed by whitespace or the end, or to the end of its line.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

SENTENCE = re.compile(r"\S[^\n]*?(?:[.!?]+[\"')\]]*(?=\s|$)|(?=\n)|$)", re.MULTILINE)


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
