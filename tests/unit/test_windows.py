"""The window splitter: every code point in a window, windows fit, cuts at the text's joints."""

from __future__ import annotations

import itertools
import re

import pytest
from freelm_pruner_client.anchors import Span
from hypothesis import given, settings
from hypothesis import strategies as st

from pruner_service.engine.windows import Boundaries, split

WORD = re.compile(r"\S+|\s+")


def word_starts(text: str) -> list[int]:
    """A stand-in tokenizer for unit tests: one token per run of spaces or non-spaces."""
    return [m.start() for m in WORD.finditer(text)]


def tokens_in(starts: list[int], window: Span) -> int:
    return sum(1 for s in starts if window.start <= s < window.end)


def check_cover(text: str, windows: list[Span], overlap: int, starts: list[int]) -> None:
    assert windows[0].start == 0 and windows[-1].end == len(text)
    for before, after in itertools.pairwise(windows):
        assert after.start <= before.end, "no code point between two windows is left out"
        assert after.start > before.start and after.end > before.end, "windows advance"
        assert tokens_in(starts, Span(after.start, before.end)) <= overlap + 1


def test_a_text_within_the_budget_is_one_window() -> None:
    text = "One. Two. Three."
    assert split(text, word_starts(text), 100) == [Span(0, len(text))]


def test_windows_end_at_paragraph_breaks_first() -> None:
    paragraphs = [" ".join(f"p{p}w{w}." for w in range(10)) for p in range(6)]
    text = "\n\n".join(paragraphs)
    starts = word_starts(text)
    windows = split(text, starts, 45)
    assert len(windows) > 1
    for window in windows[:-1]:
        assert text[window.end - 2 : window.end] == "\n\n", "each cut follows a blank line"
        assert tokens_in(starts, window) <= 45
    check_cover(text, windows, 0, starts)


def test_without_paragraphs_a_window_ends_at_a_line_then_at_a_sentence() -> None:
    lines = "\n".join(" ".join(f"l{i}w{w}" for w in range(8)) + "." for i in range(10))
    windows = split(lines, word_starts(lines), 40)
    assert all(lines[w.end - 1] == "\n" for w in windows[:-1])
    prose = " ".join(f"Sentence {i} has words." for i in range(40))
    windows = split(prose, word_starts(prose), 30)
    assert all(prose[w.end - 1] == "." for w in windows[:-1])


def test_text_without_any_joint_is_cut_at_a_token() -> None:
    text = " ".join(["x"] * 500)
    starts = word_starts(text)
    windows = split(text, starts, 64)
    assert all(tokens_in(starts, w) <= 64 for w in windows)
    check_cover(text, windows, 0, starts)


def test_a_code_block_is_not_cut_while_another_joint_exists() -> None:
    code = "```\n" + "\n".join(f"x{i} = {i}" for i in range(20)) + "\n```"
    text = "Intro line.\n\n" + code + "\n\nAfter the block. " + "More words here. " * 10
    bounds = Boundaries.of(text)
    inside = (text.index("```"), text.rindex("```") + 3)
    for point in bounds.paragraphs + bounds.lines + bounds.sentences:
        assert not inside[0] < point < inside[1]


def test_a_block_is_cut_only_when_the_window_holds_no_other_joint() -> None:
    code = "```\n" + "\n".join(f"x{i} = {i}" for i in range(60)) + "\n```"
    text = "Intro line one.\n\n" + code + "\n\nAfter the block."
    starts = word_starts(text)
    fence = text.index("```")
    windows = split(text, starts, 40)
    assert windows[0].end == fence, "the paragraph break before the block, though early"
    inside = [w.end for w in windows[:-1] if fence < w.end < text.rindex("```")]
    assert inside and all(text[end - 1] == "\n" for end in inside), "then at its line starts"


def test_many_tokens_at_one_code_point_still_advance() -> None:
    text = "😀😀😀 done."
    starts = [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 4, 9]  # byte-level tokens share offsets
    windows = split(text, starts, 2)
    assert windows[0].start == 0 and windows[-1].end == len(text)
    assert all(b.start > a.start and b.end > a.end for a, b in itertools.pairwise(windows))


def test_overlap_starts_the_next_window_at_a_line_or_sentence_before_the_cut() -> None:
    prose = " ".join(f"Sentence {i} has words." for i in range(60))
    starts = word_starts(prose)
    windows = split(prose, starts, 40, overlap=10)
    check_cover(prose, windows, 10, starts)
    assert any(after.start < before.end for before, after in itertools.pairwise(windows))
    for window in windows[1:]:
        assert prose[window.start - 1] == ".", "the overlap starts after a sentence end"


def test_bad_budgets_are_refused() -> None:
    with pytest.raises(ValueError):
        split("text", [0], 0)
    with pytest.raises(ValueError):
        split("text", [0], 10, overlap=5)


PIECES = st.sampled_from(
    ["word", "Wait.", "x = 3.", "\n", "\n\n", " ", "中文。", "😀", "```\n", "| a |\n"]
)


@settings(max_examples=150, deadline=None)
@given(st.lists(PIECES, min_size=1, max_size=300), st.integers(2, 60), st.integers(0, 20))
def test_any_text_is_covered_by_windows_that_fit(
    pieces: list[str], budget: int, overlap: int
) -> None:
    text = "".join(pieces)
    starts = word_starts(text)
    overlap = min(overlap, budget // 2 - 1) if budget >= 4 else 0
    windows = split(text, starts, budget, overlap)
    check_cover(text, windows, overlap, starts)
    for window in windows:
        first = next((i for i, s in enumerate(starts) if s >= window.start), len(starts))
        whole = [s for s in starts[first:] if s < window.end]
        assert len(whole) <= budget, "a window's tokens fit the budget"
