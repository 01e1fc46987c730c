"""Windows of a long trace: ranges (``Span``, code points) that each fit one model call.

A trace whose prompt does not fit the model's context, or longer than the profile's
``window_tokens`` when it is set, is cleaned in windows. ``split`` cuts it
into ranges of at most ``budget`` tokens, each ending at the last paragraph boundary that keeps
the window at least half full, else the last line boundary, else the last sentence end (all from
the one segmenter, ``freelm_pruner_client.segments``), else the last of any of these, else a
line start inside an atomic block (code, table, display math), else a token boundary: a block is
only cut when the window holds no other joint. Consecutive windows
overlap by up to ``overlap`` tokens: the next window starts at the first line or sentence start
at most ``overlap`` tokens before the previous one's end, so a sentence cut by a border is seen
whole by one window.

Token counts come from the tokenizer's offsets for the whole trace (``token_starts``: the code
point at which each token starts, ascending), so the split is one pass over the trace plus a
binary search per window: time O(n log n) in the trace's length. Re-tokenizing a window alone
can differ from those counts by a token or two at its edges; callers keep a margin.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from freelm_pruner_client.anchors import Span
from freelm_pruner_client.segments import BLANK_LINE, Segmentation


@dataclass(frozen=True)
class Boundaries:
    """Where a window may end, by preference: paragraph starts, line starts, sentence ends
    (code points, ascending), none of them inside an atomic block."""

    paragraphs: list[int]
    lines: list[int]
    sentences: list[int]
    inner: list[int]
    """Line starts inside atomic blocks: the last resort before a token boundary."""

    @classmethod
    def of(cls, text: str) -> Boundaries:
        seg = Segmentation(text)
        inside = [(b.start, b.end) for b in seg.blocks]
        starts = [start for start, _ in inside]

        def free(point: int) -> bool:
            i = bisect.bisect_right(starts, point - 1) - 1  # the last block starting before point
            return i < 0 or point >= inside[i][1]

        paragraphs = [m.end() for m in BLANK_LINE.finditer(text)]
        lines = [line.start for line in seg.lines[1:]]
        ends = [end for _, end, _ in seg.sentences]
        return cls(
            [p for p in paragraphs if free(p)],
            [p for p in lines if free(p)],
            [p for p in ends if free(p)],
            [p for p in lines if not free(p)],
        )

    def cut(self, low: int, floor: int, limit: int) -> int:
        """The best end for a window that must end after ``low`` and by ``limit``, and should
        end after ``floor``; 0 when there is no joint in ``(low, limit]``."""
        for points in (self.paragraphs, self.lines, self.sentences):
            if end := _last_in(points, floor, limit):
                return end
        joints = (self.paragraphs, self.lines, self.sentences)
        return max(_last_in(p, low, limit) for p in joints) or _last_in(self.inner, low, limit)


def token_starts(tokenizer: Any, text: str) -> list[int]:
    """The code point at which each token of ``text`` starts (a Hugging Face fast tokenizer's
    offsets, no special tokens), ascending: what ``split`` counts tokens by."""
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    return [start for start, _ in encoded["offset_mapping"]]


def split(text: str, token_starts: Sequence[int], budget: int, overlap: int = 0) -> list[Span]:
    """Windows of ``text`` of at most ``budget`` tokens each (by ``token_starts``), covering
    every code point, in order; consecutive windows overlap by at most ``overlap`` tokens.

    ``budget`` must be at least 1 and ``overlap`` less than half of it (``ValueError``). A text
    of at most ``budget`` tokens is one window."""
    if budget < 1 or not 0 <= overlap < max(budget // 2, 1):
        raise ValueError(f"window budget {budget} with overlap {overlap}: need budget >= 1 and "
                         "0 <= overlap < budget / 2")  # fmt: skip
    n = len(token_starts)
    if n <= budget:
        return [Span(0, len(text))]
    bounds = Boundaries.of(text)
    windows: list[Span] = []
    start = 0
    while True:
        first = _token_at(token_starts, start)
        if n - first <= budget:
            windows.append(Span(start, len(text)))
            return windows
        limit = token_starts[first + budget]  # the window ends at or before this code point
        if limit <= start:  # more than ``budget`` tokens start at one code point
            limit = next((s for s in token_starts[first + budget :] if s > start), len(text))
        floor = token_starts[first + budget // 2]
        end = bounds.cut(windows[-1].end if windows else start, floor, limit) or limit
        windows.append(Span(start, end))
        if end >= len(text):
            return windows
        start = _next_start(bounds, token_starts, start, end, overlap)


def _token_at(token_starts: Sequence[int], point: int) -> int:
    """The index of the first token starting at or after ``point``."""
    return bisect.bisect_left(token_starts, point)


def _last_in(points: list[int], low: int, high: int) -> int:
    """The last of ``points`` in ``(low, high]``, or 0."""
    i = bisect.bisect_right(points, high) - 1
    return points[i] if i >= 0 and points[i] > low else 0


def _first_in(points: list[int], low: int, high: int) -> int:
    """The first of ``points`` in ``[low, high)``, or ``high``."""
    i = bisect.bisect_left(points, low)
    return points[i] if i < len(points) and points[i] < high else high


def _next_start(
    bounds: Boundaries, token_starts: Sequence[int], start: int, end: int, overlap: int
) -> int:
    """Where the window after ``[start, end)`` starts: ``end``, or with ``overlap`` the first
    line start or sentence start at most ``overlap`` tokens before ``end`` (never at or before
    ``start``, so the split always advances)."""
    if overlap <= 0:
        return end
    back = token_starts[max(_token_at(token_starts, end) - overlap, 0)]
    low = max(back, start + 1)
    line = _first_in(bounds.lines, low, end)
    sentence = _first_in(bounds.sentences, low, end)  # a sentence ends where the next may start
    return min(line, sentence)
