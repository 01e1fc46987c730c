"""The loop collapser: runs of >= 3 identical units keep their first copy and lose the rest."""

from __future__ import annotations

from freelm_pruner_client.anchors import Protection, Span, prune
from freelm_pruner_client.loops import loop_runs, loop_spans
from hypothesis import given
from hypothesis import strategies as st


def collapse(text: str, protection: Protection | None = None) -> str:
    return prune(text, [], loop_spans=loop_spans(text), protection=protection).pruned_trace


def test_sentence_loop_keeps_one_copy() -> None:
    text = "So x = 3. Wait, no. Wait, no. Wait, no. Wait, no. Then x = 4."
    assert collapse(text) == "So x = 3. Wait, no. Then x = 4."


def test_line_loop_keeps_one_copy() -> None:
    text = "Start\nCheck the sum again\nCheck the sum again\nCheck the sum again\nEnd\n"
    assert collapse(text) == "Start\nCheck the sum again\nEnd\n"


def test_paragraph_loop_keeps_one_copy() -> None:
    para = "Let me recompute.\nThe total is 12 + 30 = 42."
    text = f"Intro.\n\n{para}\n\n{para}\n\n{para}\n\nSo 42."
    assert collapse(text) == f"Intro.\n\n{para}\n\nSo 42."


def test_whitespace_variants_count_as_identical() -> None:
    text = "Hmm so  the answer is 5.\nHmm so the answer is 5.\n  Hmm so the\tanswer is 5.\nDone."
    assert collapse(text) == "Hmm so  the answer is 5.\nDone."


def test_a_real_step_repeated_keeps_exactly_one_copy() -> None:
    step = "Therefore 17 * 23 = 391, since 17 * 20 = 340 and 17 * 3 = 51."
    text = "We need 17 * 23. " + " ".join([step] * 6) + " Final answer: 391."
    out = collapse(text)
    assert out.count(step) == 1
    assert out == f"We need 17 * 23. {step} Final answer: 391."


def test_two_copies_are_not_a_loop() -> None:
    text = "Wait, no. Wait, no. Let me think."
    assert loop_spans(text) == []


def test_text_without_loops_is_untouched() -> None:
    text = (
        "First, compute 3 + 4 = 7.\nThen multiply by 2 to get 14.\n\n"
        "Check: 14 / 2 = 7, and 7 - 4 = 3. Good.\nSo the answer is 14."
    )
    assert loop_spans(text) == []
    assert collapse(text) == text


def test_code_punctuation_lines_are_not_loops() -> None:
    text = "def f():\n    if x:\n        if y:\n            pass\n        }\n    }\n}\n"
    assert loop_spans(text) == []


def test_protected_tail_keeps_the_copies_it_covers() -> None:
    text = "Wait, no. Wait, no. Wait, no. Wait, no."
    protected = Protection(protect_tail_chars=len(" Wait, no."))
    assert collapse(text, protected) == "Wait, no. Wait, no."


@given(st.lists(st.sampled_from(["Alpha beta.", "Gamma delta.", "Wait, no."]), max_size=12))
def test_collapsed_text_has_no_remaining_run_of_three(sentences: list[str]) -> None:
    text = " ".join(sentences)
    out = collapse(text).split(" ")
    words = " ".join(out)
    units = [u + "." for u in words.split(".") if u.strip()]
    units = [u.strip() for u in units]
    assert all(not (a == b == c) for a, b, c in zip(units, units[1:], units[2:], strict=False))


def test_a_loop_run_spans_every_copy_and_its_spans_lie_inside() -> None:
    text = "Start here. Wait, no. Wait, no. Wait, no. Then go on."
    first = text.index("Wait")
    assert loop_runs(text) == [Span(first, text.index(" Then"))]
    assert all(first < span.start and span.end <= text.index(" Then") for span in loop_spans(text))
    assert loop_runs("Wait, no. Wait, no. Then go on.") == []
