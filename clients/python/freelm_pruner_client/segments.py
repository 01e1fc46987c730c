"""The one segmenter: lines, paragraphs, sentences and atomic blocks of a trace.

Everything that needs text units asks this module: the loop collapser, the sentence protections,
the anchor guard, ``eval``, ``data`` and ``synth``. All offsets are code points, ``[start, end)``.

- **Lines** end at ``\\r\\n``, ``\\r`` or ``\\n``. A *blank* line holds only spaces and tabs.
- **Paragraphs** are runs of non-blank lines separated by blank lines (any line endings).
- **Blocks** are atomic: a fenced code block (a line opening with three or more backticks or
  tildes, through the closing fence of the same character or the end of the text); an indented
  code block (lines indented by four spaces or a tab, after a blank line or at the start, or two
  or more such lines anywhere when each holds code punctuation: quotes, brackets, ``=``, ``;``); a
  markdown table (two or more consecutive lines starting with ``|``); display math (``$$ … $$``
  or ``\\[ … \\]`` opening a line); and *delimiter lines*, a line holding only reasoning or markup
  tags (``<think>``, ``</think>``, ``<|begin_of_thought|>``, ``<|end_of_solution|>``, …).
  Code, table and math blocks are never split into sentences and never take part in loops.
- **Sentences** run from a non-space character to a sentence end, never across a line end:
  ``.``, ``!`` or ``?`` (a run of them, with any closing quotes or brackets) followed by
  whitespace or the end of the text; or ``。``, ``！``, ``？``, ``｡`` (full-width ends, no space
  needed after them); or the end of the line. Decimals (``3.14``) never end a sentence; neither do
  common abbreviations (``e.g.``, ``i.e.``, ``vs.``, ``Dr.`` …, listed in ``ABBREVIATIONS``) nor
  an enumeration marker (``1.``, ``a)``) at a line's start. A block is one sentence of its own.

A *result sentence* is where the trace first states a number (not given in the question) that it
uses again later: the step that derives an intermediate result. Numbers are read with their sign
(``-11`` and ``11`` are different numbers, and a question giving ``11`` does not give ``-11``).

This module is pure Python with no dependencies; it knows nothing of commands or protection.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property

_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n|$)")
BLANK_LINE = re.compile(r"(?:\r\n|\r(?!\n)|\n)[ \t]*(?:\r\n|\r|\n)")
"""A paragraph break: a line end, then a line of only spaces and tabs, then its line end."""

_FENCE = re.compile(r"[ \t]{0,3}(`{3,}|~{3,})")
_INDENTED = re.compile(r"(?: {4}|\t)")
_TABLE = re.compile(r"[ \t]*\|")
_CODE_LINE = re.compile(r"(?: {4}|\t)[ \t]*\S.*[\"'()\[\]{}=;]")
_MATH_OPEN = re.compile(r"[ \t]*(\$\$|\\\[)")
_DELIMITER = re.compile(r"[ \t]*(?:<\|[^|\r\n]{1,40}\|>|</?[A-Za-z][\w:-]{0,30}\s*/?>)+[ \t]*")
_MATH_CLOSE = {"$$": "$$", "\\[": "\\]"}

_SENTENCE_END = re.compile(
    r"(?:[.!?]+[\"')\]}\u201d\u2019]*(?=\s|$)|[\u3002\uff61\uff01\uff1f]+"
    r"[\"')\]}\u201d\u2019\u300d\u300f\uff09\u3011\u300b]*)"
)
_MARKER = re.compile(r"[ \t]*(?:\d{1,3}|[A-Za-z])[.)]")
ABBREVIATIONS = frozenset(
    ("e.g", "i.e", "vs", "cf", "al", "approx", "fig", "eq", "eqs", "mr", "mrs", "ms", "dr", "prof")
)
"""Words (lower case, without their final period) after which a period ends no sentence."""

_WORD = re.compile(r"\w")
NUMBER = re.compile(r"(?:(?<![\w.\-\u2212])[-\u2212]|(?<![\w.]))\d+(?:[.,]\d+)*(?!\w)")
"""A number as written: an optional minus sign (``-`` or ``−``, not after a word: ``5-3`` is two
numbers), digits with any decimal or thousands separators, not part of a word (``x2``,
``3rd``); ``1,000`` and ``1000`` are different numbers."""


class Kind(enum.Enum):
    """What a block is."""

    CODE = "code"
    TABLE = "table"
    MATH = "math"
    DELIMITER = "delimiter"


@dataclass(frozen=True)
class Block:
    """An atomic block: ``[start, end)`` from its first non-space character to the end of its
    last line (without the line end)."""

    start: int
    end: int
    kind: Kind


@dataclass(frozen=True)
class Line:
    """One line: ``[start, end)`` of its content, without the line end."""

    start: int
    end: int

    def blank(self, text: str) -> bool:
        return not text[self.start : self.end].strip(" \t")


def lines(text: str) -> list[Line]:
    """Every line of ``text`` (an empty text has none; a final line end opens no new line)."""
    found = []
    for match in _LINE.finditer(text):
        if match.start() == len(text):
            break
        content = match.group().rstrip("\r\n")
        found.append(Line(match.start(), match.start() + len(content)))
    return found


class Segmentation:
    """The segments of one text, computed once (time linear in the text)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.lines = lines(text)
        self._block_of: dict[int, Block] = {}
        self.blocks = self._find_blocks()

    # blocks ----------------------------------------------------------------------------------
    def _find_blocks(self) -> list[Block]:
        found: list[Block] = []
        index = 0
        while index < len(self.lines):
            stop, kind = self._block_at(index)
            if kind is None:
                index += 1
                continue
            first, last = self.lines[index], self.lines[stop - 1]
            start = _skip_space(self.text, first.start, first.end)
            end = last.start + len(self.text[last.start : last.end].rstrip())
            block = Block(start, end, kind)
            found.append(block)
            for i in range(index, stop):
                self._block_of[i] = block
            index = stop
        return found

    def _content(self, index: int) -> str:
        line = self.lines[index]
        return self.text[line.start : line.end]

    def _block_at(self, index: int) -> tuple[int, Kind | None]:
        """The block that starts at line ``index``: one past its last line, and its kind."""
        content = self._content(index)
        fence = _FENCE.match(content)
        if fence:
            return self._close_fence(index, fence.group(1)), Kind.CODE
        math = _MATH_OPEN.match(content)
        if math:
            return self._close_math(index, math), Kind.MATH
        if _DELIMITER.fullmatch(content) and content.strip():
            return index + 1, Kind.DELIMITER
        if _TABLE.match(content):
            stop = self._run(index, lambda i: bool(_TABLE.match(self._content(i))))
            if stop - index >= 2:
                return stop, Kind.TABLE
        if _INDENTED.match(content) and content.strip() and self._after_blank(index):
            return self._indented_stop(index), Kind.CODE
        if _CODE_LINE.match(content):
            stop = self._run(index, lambda i: bool(_CODE_LINE.match(self._content(i))))
            if stop - index >= 2:
                return stop, Kind.CODE
        return index + 1, None

    def _run(self, index: int, test: Callable[[int], bool]) -> int:
        """One past the last line from ``index`` on for which ``test(line index)`` holds."""
        stop = index
        while stop < len(self.lines) and test(stop):
            stop += 1
        return stop

    def _close_fence(self, index: int, fence: str) -> int:
        for i in range(index + 1, len(self.lines)):
            closing = self._content(i).strip()
            if closing.startswith(fence[0] * len(fence)) and not closing.strip(fence[0]):
                return i + 1
        return len(self.lines)

    def _close_math(self, index: int, opening: re.Match[str]) -> int:
        close = _MATH_CLOSE[opening.group(1)]
        if close in self._content(index)[opening.end() :]:
            return index + 1
        for i in range(index + 1, len(self.lines)):
            if close in self._content(i):
                return i + 1
        return len(self.lines)

    def _after_blank(self, index: int) -> bool:
        return index == 0 or self.lines[index - 1].blank(self.text)

    def _indented_stop(self, index: int) -> int:
        stop = index + 1
        last = stop
        while stop < len(self.lines):
            line = self._content(stop)
            if line.strip() and not _INDENTED.match(line):
                break
            stop += 1
            if line.strip():
                last = stop
        return last

    def block_of_line(self, index: int) -> Block | None:
        """The block that line ``index`` belongs to, if any."""
        return self._block_of.get(index)

    # paragraphs and sentences ----------------------------------------------------------------
    @cached_property
    def paragraphs(self) -> list[tuple[int, int, bool]]:
        """Each paragraph's ``(start, end, atomic)``; atomic when it holds a code, table or
        math block (delimiter lines excepted)."""
        found: list[tuple[int, int, bool]] = []
        first: int | None = None
        atomic = False
        for index, line in enumerate(self.lines):
            if line.blank(self.text) and self._block_of.get(index) is None:
                if first is not None:
                    found.append((self.lines[first].start, self.lines[index - 1].end, atomic))
                first, atomic = None, False
                continue
            if first is None:
                first = index
            block = self._block_of.get(index)
            atomic = atomic or (block is not None and block.kind is not Kind.DELIMITER)
        if first is not None:
            found.append((self.lines[first].start, self.lines[-1].end, atomic))
        return found

    @cached_property
    def sentences(self) -> list[tuple[int, int, Block | None]]:
        """Each sentence's ``(start, end, block)``; a block is one sentence (``block`` set)."""
        found: list[tuple[int, int, Block | None]] = []
        seen: set[Block] = set()
        for index, line in enumerate(self.lines):
            block = self._block_of.get(index)
            if block is not None:
                if block not in seen:
                    seen.add(block)
                    found.append((block.start, block.end, block))
                continue
            found.extend((s, e, None) for s, e in _line_sentences(self.text, line))
        return found


def _line_sentences(text: str, line: Line) -> Iterator[tuple[int, int]]:
    start = _skip_space(text, line.start, line.end)
    if start >= line.end:
        return
    for end in _SENTENCE_END.finditer(text, start, line.end):
        if end.start() < start or not _ends_here(text, start, end):
            continue
        yield start, end.end()
        start = _skip_space(text, end.end(), line.end)
        if start >= line.end:
            return
    last = len(text[start : line.end].rstrip())
    yield start, start + last


def _skip_space(text: str, position: int, end: int) -> int:
    while position < end and text[position].isspace():
        position += 1
    return position


def _ends_here(text: str, start: int, end: re.Match[str]) -> bool:
    """Whether the sentence end ``end`` really ends the sentence that began at ``start``."""
    if text[end.start()] != ".":
        return True
    if _MARKER.fullmatch(text[start : end.end()]):
        return False
    word_start = end.start()
    while word_start > start and not text[word_start - 1].isspace():
        word_start -= 1
    word = text[word_start : end.start()].lower().lstrip("(\"'")
    return word not in ABBREVIATIONS


def sentences(text: str) -> Iterator[tuple[int, int]]:
    """The ``[start, end)`` of every sentence of ``text`` (blocks included, one each), in order."""
    for start, end, _ in Segmentation(text).sentences:
        yield start, end


def last_sentence(text: str) -> tuple[int, int] | None:
    """The ``[start, end)`` of the last sentence with word content: delimiter lines
    (``</think>``) and sentences without a letter or digit at the end are skipped. None when no
    sentence has word content."""
    for start, end, block in reversed(Segmentation(text).sentences):
        if block is not None and block.kind is Kind.DELIMITER:
            continue
        if _WORD.search(text, start, end):
            return start, end
    return None


def has_paragraph_break(text: str) -> bool:
    """Whether ``text`` holds a blank line (with any line endings): it spans paragraphs."""
    return BLANK_LINE.search(text.strip()) is not None


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
