"""The segmenter: lines, paragraphs, sentences and atomic blocks as real traces have them."""

from __future__ import annotations

from freelm_pruner_client.segments import (
    Kind,
    Segmentation,
    has_paragraph_break,
    last_sentence,
    lines,
    result_sentences,
    sentences,
)
from hypothesis import given
from hypothesis import strategies as st


def texts(text: str) -> list[str]:
    return [text[s:e] for s, e in sentences(text)]


def test_lines_end_at_lf_crlf_and_cr() -> None:
    text = "one\r\ntwo\nthree\rfour"
    assert [text[line.start : line.end] for line in lines(text)] == ["one", "two", "three", "four"]
    assert lines("") == [] and len(lines("a\n")) == 1


def test_paragraphs_split_at_blank_lines_of_any_ending() -> None:
    for ending in ("\n", "\r\n", "\r"):
        text = f"A b.{ending}C d.{ending} \t{ending}E f."
        paragraphs = Segmentation(text).paragraphs
        assert [text[s:e] for s, e, _ in paragraphs] == [f"A b.{ending}C d.", "E f."]
        assert has_paragraph_break(text) and not has_paragraph_break(f"A b.{ending}C d.")


def test_sentences_end_at_ascii_stops_before_space_and_at_line_ends() -> None:
    assert texts("So x = 3. Wait, no! Really? Yes\nNext line") == [
        "So x = 3.",
        "Wait, no!",
        "Really?",
        "Yes",
        "Next line",
    ]


def test_cjk_and_full_width_stops_end_a_sentence_without_a_space() -> None:
    assert texts("先算。等等，不对！真的吗？好\uff0e") == [
        "先算。",
        "等等，不对！",
        "真的吗？",
        "好\uff0e",
    ]


def test_decimals_abbreviations_and_list_markers_do_not_end_a_sentence() -> None:
    text = "Pi is 3.14, e.g. a number. Compare vs. Dr. Smith here.\n1. First item. 2) Second."
    assert texts(text) == [
        "Pi is 3.14, e.g. a number.",
        "Compare vs. Dr. Smith here.",
        "1. First item.",
        "2) Second.",
    ]


def test_blocks_are_atomic_sentences() -> None:
    text = (
        "Intro.\n```python\nx = 1. y = 2.\n```\n| a | b |\n| 1 | 2 |\n"
        "$$\nx. y.\n$$\n\\[ a. b. \\]\n\n    code. more.\n\n<think>\nEnd."
    )
    segmentation = Segmentation(text)
    kinds = [b.kind for b in segmentation.blocks]
    assert kinds == [Kind.CODE, Kind.TABLE, Kind.MATH, Kind.MATH, Kind.CODE, Kind.DELIMITER]
    assert texts(text)[1] == "```python\nx = 1. y = 2.\n```"
    assert texts(text)[-2:] == ["<think>", "End."]


def test_an_unclosed_fence_runs_to_the_end() -> None:
    text = "Look:\n```\na. b.\nc. d."
    assert texts(text) == ["Look:", "```\na. b.\nc. d."]


def test_indented_lines_inside_a_paragraph_are_not_code() -> None:
    text = "The sum is:\n    3 + 4 = 7. Then more.\nDone."
    assert Segmentation(text).blocks == []


def test_the_last_sentence_skips_delimiter_lines_and_wordless_ends() -> None:
    text = "Hmm. So the capital is Canberra.\n</think>\n"
    start, end = last_sentence(text) or (0, 0)
    assert text[start:end] == "So the capital is Canberra."
    text = "<|begin_of_thought|>\nSo 4.\n<|end_of_thought|>\n<|end_of_solution|>\n..."
    start, end = last_sentence(text) or (0, 0)
    assert text[start:end] == "So 4."
    assert last_sentence("</think>\n") is None


def test_signed_numbers_are_not_the_unsigned_ones() -> None:
    text = "So x = -11. Then -11 + 11 = 0. Done."
    assert [text[s:e] for s, e in result_sentences(text, "x + 11 = 0")] == ["So x = -11."]
    text = "Then 5-3 = 2. And 2 again."
    assert [text[s:e] for s, e in result_sentences(text)] == ["Then 5-3 = 2."]


@given(st.text(alphabet="ab .!?。\n\r\t`|$<>/", max_size=60))
def test_sentences_are_ordered_disjoint_and_trimmed(text: str) -> None:
    previous = 0
    for start, end in sentences(text):
        assert previous <= start < end <= len(text)
        assert not text[start].isspace() and not text[end - 1].isspace()
        previous = end
