"""The deterministic loop collapser: finds loops and returns the spans that remove their copies.

Degenerate loops (``Wait, no. Wait, no. Wait, no. ...``) cannot be deleted by anchor commands,
because every anchor inside a loop recurs. This module finds, at each level of the segmenter
(paragraphs, lines, sentences; see ``segments``), runs of at least ``MIN_REPEATS`` consecutive
copies of a unit *sequence* of 1 to ``MAX_PERIOD`` units, and inside each sentence runs of at
least ``MIN_REPEATS`` copies of a phrase of 2 to ``MAX_PHRASE_WORDS`` words (a single word needs
``MIN_SINGLE_WORD_REPEATS``). Copies are compared near-verbatim: whitespace, letter case and
trailing punctuation do not count. The first copy stays; each extra copy gives one span: the gap
before it plus the copy (for a phrase, from the end of the previous copy's last word to the end of
its own, so the sentence keeps its final punctuation).

Code blocks, tables and display math are atomic: nothing inside them is ever a copy, and they
break any run. A run whose copies are all items of an enumeration (``enumeration_lines``: lines
that hold data, a digit or a relation, and are list items or follow a lead-in ending with a colon;
or items of a marked list whose items differ, one per step or case), or of words that are all
elements of an inline list (``positive, negative,`` repeated), is not a loop up to
``MAX_ENUMERATION_COPIES`` copies: identical items are one per digit, case or element
(``A is 1010 in binary.`` four times for ``AAAA``), so their number carries information;
a sequence that mixes items with other text is compared as usual. Periods are
collapsed shortest first, each pass over the units the previous passes kept, so a loop of period 2
made of period-1 loops is still found. Time is linear in the text (``MAX_PERIOD`` and
``MAX_PHRASE_WORDS`` passes over its units).

It only computes spans. Protection and merging with model spans happen in ``anchors.prune``.
"""

from __future__ import annotations

import bisect
import itertools
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from freelm_pruner_client.anchors import Span
from freelm_pruner_client.segments import Kind, Line, Segmentation

MIN_REPEATS = 3
"""A run needs this many consecutive copies to count as a loop."""

MAX_PERIOD = 8
"""The longest repeating unit sequence looked for, in paragraphs, lines or sentences."""

MAX_PHRASE_WORDS = 8
"""The longest repeating phrase looked for inside a sentence, in words."""

MIN_SINGLE_WORD_REPEATS = 5
"""A phrase of one word needs this many copies: ``right, right, right`` may be three moves, while
``wait, wait, wait, wait, wait`` is a stutter."""

_MIN_WORD_CHARS = 3
"""A repeating sequence with fewer word characters (``}``, ``---``, ``= 0``) is never a loop, nor
one whose word characters are less than a third letters (``6 is 0110``, ``1 1 1``): such copies
are data, one per case or digit, not reasoning."""

_TRAILING = ".,;:!?\u3002\uff61\uff01\uff1f\u3001\uff0c\u2026"
_LIST_MARKER = re.compile(
    r"[ \t]*(?:[-*+\u2022\u2023\u25e6]|\d{1,3}[.)]|[A-Za-z][.)]|\([A-Za-z0-9]{1,4}\))[ \t]"
)
"""A list item's marker at a line start: a bullet (``-``, ``*``, ``+``, ``•``) or an enumerator
(``1.``, ``b)``, ``(iv)``), then a space."""
_DATA = re.compile(r"\d|->|=|\u2192|\uff1d")
"""What makes a line data rather than a remark: a digit or a relation (``=``, ``->``, ``→``)."""
_REMARK = re.compile(
    r"[ \t]*(?:wait|hmm+|so|let me|let's|ok|okay|but|actually|no|yes|alright|"
    r"right|again|recheck|check again)\b",
    re.IGNORECASE,
)
"""A line opening like a remark (``Wait, step 2 is wrong.``, ``So x = 5.``) is never an item."""

MIN_VARIED_ITEMS = 2
"""Distinct items (not remarks) that make a marked list varied (``_varied_lists``)."""

MAX_ENUMERATION_COPIES = 16
"""The most identical items an enumeration is taken to hold (a hex number's repeated digit, the
cases of a small case split); a longer run of them is a loop."""
_WORD = re.compile(r"\w")
_TOKEN = re.compile(r"\S+")


@dataclass(frozen=True)
class _Unit:
    """A unit of one level: its span, where its content ends (before trailing punctuation) and
    its comparison key (None: never a copy)."""

    span: Span
    key: str | None
    core_end: int
    item: bool = False
    """Whether the unit is made of whole enumeration items (``enumeration_lines``)."""
    word: bool = False
    """Whether the unit is one word of a sentence (``_phrases``)."""

    def word_chars(self, text: str) -> int:
        return len(_WORD.findall(text, self.span.start, self.span.end))

    def letters(self, text: str) -> int:
        return sum(ch.isalpha() for ch in text[self.span.start : self.span.end])


def _key(text: str) -> str:
    return " ".join(text.split()).casefold().rstrip(_TRAILING).rstrip()


def _unit(
    text: str, start: int, end: int, atomic: bool = False, item: bool = False, word: bool = False
) -> _Unit:
    raw = text[start:end]
    core = raw.rstrip().rstrip(_TRAILING)
    return _Unit(Span(start, end), None if atomic else _key(raw), start + len(core), item, word)


def enumeration_lines(segmentation: Segmentation) -> list[Span]:
    """The lines of ``segmentation`` that are items of an enumeration, in order. A line that
    opens like a remark (``Wait``, ``So``, ``Let me`` …) never is. Any other line is an item when
    it holds data (a digit, ``=``, ``->``, ``→``) and either starts with a list marker (a bullet
    or an enumerator such as ``1.``, ``b)``, ``(iv)``, then a space) or belongs to the lines
    right after a line ending with a colon (up to the first blank line or line that is not an
    item); or when it starts with a list marker in a *varied list* (``_varied_lists``), such as
    ``- From U to U: no change`` among ``- From R to U: change`` items of a walk through a
    sequence. Spans are the lines' stripped content."""
    found: list[Span] = []
    lines = [_ListLine.of(segmentation.text, line) for line in segmentation.lines]
    varied = _varied_lists(lines)
    listed = False  # inside the lines that follow a lead-in ending with a colon
    for index, (line, parsed) in enumerate(zip(segmentation.lines, lines, strict=True)):
        content = parsed.content
        if not content.strip():
            listed = False
            continue
        data = _DATA.search(content) is not None and not parsed.remark
        marked = parsed.opening is not None
        item = (data and (listed or marked)) or (index in varied and not parsed.remark)
        if item:
            lead = len(content) - len(content.lstrip())
            found.append(Span(line.start + lead, line.start + len(content.rstrip())))
        listed = (listed and item) or content.rstrip().endswith((":", "\uff1a"))
    return found


@dataclass(frozen=True)
class _ListLine:
    """A line as ``enumeration_lines`` reads it: its text, its text after a list marker (None
    without one), and whether it opens like a remark (after its marker, if any)."""

    content: str
    opening: str | None
    remark: bool

    @staticmethod
    def of(text: str, line: Line) -> _ListLine:
        content = text[line.start : line.end]
        marker = _LIST_MARKER.match(content)
        opening = content[marker.end() :] if marker else None
        remark = _REMARK.match(content if opening is None else opening) is not None
        return _ListLine(content, opening, remark)


def _varied_lists(lines: Sequence[_ListLine]) -> set[int]:
    """Indices of the lines that belong to a varied list: consecutive lines starting with a list
    marker (blank lines between them allowed) among which at least ``MIN_VARIED_ITEMS`` distinct
    items do not open like a remark, and at most half of which a loop covers (``_longest_loop``).
    In such a list each item is one step or case, so identical items in a row (``- From U to U:
    no change`` four times while walking ``RRRUUUUR…``) are counted, not looped; a list that is
    mostly one item or one group of items repeated is a loop, not varied."""
    varied: set[int] = set()
    members: list[int] = []
    keys: set[str] = set()
    sequence: list[str] = []

    def close() -> None:
        if len(keys) >= MIN_VARIED_ITEMS and 2 * _longest_loop(sequence) <= len(sequence):
            varied.update(members)
        members.clear()
        keys.clear()
        sequence.clear()

    for index, line in enumerate(lines):
        if not line.content.strip():
            continue
        if line.opening is None:
            close()
            continue
        members.append(index)
        sequence.append(_key(line.opening))
        if not line.remark:
            keys.add(sequence[-1])
    close()
    return varied


def _longest_loop(keys: Sequence[str]) -> int:
    """How many of ``keys`` the longest run of ``MIN_REPEATS`` or more consecutive copies of a
    sequence of 1 to ``MAX_PERIOD`` keys covers (0: none)."""
    longest = 0
    for period in range(1, MAX_PERIOD + 1):
        i = 0
        while i + period <= len(keys):
            copies = 1
            while keys[i + copies * period : i + (copies + 1) * period] == keys[i : i + period]:
                copies += 1
            if copies >= MIN_REPEATS:
                longest = max(longest, copies * period)
            i += (copies - 1) * period if copies > 1 else 1
    return longest


def _levels(segmentation: Segmentation) -> Iterator[list[_Unit]]:
    """The units of each level; a unit is an ``item`` when it is exactly enumeration items:
    a line or a sentence that is one whole item, a paragraph whose lines all are."""
    text = segmentation.text
    items = {(span.start, span.end) for span in enumeration_lines(segmentation)}

    def whole(start: int, end: int) -> bool:  # [start, end) is one item, give or take spaces
        raw = text[start:end]
        lead = len(raw) - len(raw.lstrip())
        return (start + lead, start + len(raw.rstrip())) in items

    starts = [line.start for line in segmentation.lines]
    filled, other = [0], [0]  # running counts of non-blank lines, and of those not an item
    for line in segmentation.lines:
        blank = line.blank(text)
        filled.append(filled[-1] + (not blank))
        other.append(other[-1] + (not blank and not whole(line.start, line.end)))

    def paragraph(start: int, end: int) -> bool:
        first, last = bisect.bisect_left(starts, start), bisect.bisect_left(starts, end)
        return filled[last] > filled[first] and other[last] == other[first]

    yield [_unit(text, s, e, atomic, not atomic and paragraph(s, e))
           for s, e, atomic in segmentation.paragraphs]  # fmt: skip
    units = []
    for index, line in enumerate(segmentation.lines):
        if line.blank(text):
            continue
        block = segmentation.block_of_line(index)
        units.append(_unit(text, line.start, line.end, _atomic(block), whole(line.start, line.end)))
    yield units
    yield [_unit(text, s, e, _atomic(b), whole(s, e)) for s, e, b in segmentation.sentences]


def _atomic(block: object) -> bool:
    return block is not None and block.kind is not Kind.DELIMITER  # type: ignore[attr-defined]


def _phrases(segmentation: Segmentation) -> Iterator[list[_Unit]]:
    """The words of each sentence that can hold a phrase loop (a word that occurs three times)."""
    text = segmentation.text
    for start, end, block in segmentation.sentences:
        if block is not None:
            continue
        words = [w.rstrip(_TRAILING) for w in text[start:end].casefold().split()]
        if len(words) < MIN_REPEATS or max(Counter(words).values()) < MIN_REPEATS:
            continue
        yield [_unit(text, m.start(), m.end(), item=_listed(m.group()), word=True)
               for m in _TOKEN.finditer(text, start, end)]  # fmt: skip


def _listed(word: str) -> bool:
    """Whether a word is an element of an inline list: it ends with a list separator (``,``,
    ``;``, a fullwidth or an ideographic comma) and is not a remark (``wait,``, ``no,``). A
    phrase of two or more words that all are (``positive, negative,`` in ``the signs are
    positive, negative, positive, negative, positive, negative.``) is one element per interval or
    case, counted like enumeration items; one word repeated stays a stutter."""
    return word.endswith((",", ";", "\uff0c", "\u3001")) and not _REMARK.match(word)


_Run = list[list[_Unit]]
"""A loop's copies, in order; each copy is a list of ``period`` units."""


def _collapse(
    text: str, units: Sequence[_Unit], period: int, minimum: int
) -> tuple[list[_Unit], list[_Run]]:
    """Units left after removing the extra copies of each run of ``period`` with at least
    ``minimum`` copies, and each such run's copies (every copy a list of ``period`` units)."""
    kept: list[_Unit] = []
    runs: list[_Run] = []
    i = 0
    while i < len(units):
        copies = _copies_at(text, units, i, period)
        if len(copies) >= minimum:
            runs.append([list(units[c : c + period]) for c in copies])
            kept.extend(units[i : i + period])
            i = copies[-1] + period
        else:
            kept.append(units[i])
            i += 1
    return kept, runs


def _copies_at(text: str, units: Sequence[_Unit], i: int, period: int) -> list[int]:
    """Start indices of the consecutive copies of ``units[i : i + period]`` from ``i`` on."""
    end = i + period
    if end + period > len(units) or units[i].key is None or units[end].key != units[i].key:
        return [i]
    head = units[i:end]
    if any(u.key is None for u in head) or not _informative(text, head):
        return [i]
    copies = [i]
    while end + period <= len(units) and all(
        units[end + k].key == head[k].key for k in range(period)
    ):
        copies.append(end)
        end += period
    if all(u.item for u in head) and len(copies) <= MAX_ENUMERATION_COPIES and not (
        head[0].word and len({u.key for u in head}) == 1  # one word repeated: ``um, um, um``
    ):
        return [i]  # one item per digit or case: the number of copies is information
    return copies


def _informative(text: str, head: Sequence[_Unit]) -> bool:
    """Whether a repeating sequence is prose: enough word characters, at least a third of them
    letters."""
    words = sum(u.word_chars(text) for u in head)
    return words >= _MIN_WORD_CHARS and 3 * sum(u.letters(text) for u in head) >= words


def _runs(text: str, units: list[_Unit], max_period: int, phrase: bool = False) -> Iterator[_Run]:
    for period in range(1, max_period + 1):
        minimum = MIN_SINGLE_WORD_REPEATS if phrase and period == 1 else MIN_REPEATS
        units, runs = _collapse(text, units, period, minimum)
        yield from runs


def _spans(copies: _Run, phrase: bool) -> Iterator[Span]:
    for previous, copy in itertools.pairwise(copies):
        if phrase:
            yield Span(previous[-1].core_end, copy[-1].core_end)
        else:
            yield Span(previous[-1].span.end, copy[-1].span.end)


def _all_runs(text: str) -> Iterator[tuple[_Run, bool]]:
    segmentation = Segmentation(text)
    for units in _levels(segmentation):
        for run in _runs(text, units, MAX_PERIOD):
            yield run, False
    for words in _phrases(segmentation):
        for run in _runs(text, words, MAX_PHRASE_WORDS, phrase=True):
            yield run, True


def loop_spans(text: str) -> list[Span]:
    """Spans that remove every extra copy of each loop in ``text``; sorted, may overlap.

    Each span covers one extra copy and the whitespace before it, so deleting any subset of them
    leaves whole copies behind. Text with no loop gives an empty list.
    """
    spans = {span for run, phrase in _all_runs(text) for span in _spans(run, phrase)}
    return sorted(span for span in spans if len(span) > 0)


def loop_runs(text: str) -> list[Span]:
    """The whole extent of each loop in ``text``, from its first copy's start to its last
    copy's end; sorted, may overlap (a loop of paragraphs is also a loop of lines)."""
    return sorted({Span(run[0][0].span.start, run[-1][-1].span.end) for run, _ in _all_runs(text)})
