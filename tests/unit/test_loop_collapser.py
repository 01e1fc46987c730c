"""The loop collapser: runs of >= 3 identical units keep their first copy and lose the rest."""

from __future__ import annotations

import re

from freelm_pruner_client.anchors import Protection, Span, prune
from freelm_pruner_client.loop_collapser import (
    MAX_ENUMERATION_COPIES,
    enumeration_lines,
    loop_runs,
    loop_spans,
)
from freelm_pruner_client.segments import Segmentation
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


def test_a_two_line_block_repeated_keeps_one_copy() -> None:
    block = "Let me stop process 4242 first.\nI will stop the stale process now.\n"
    text = f"The port is taken.\n{block * 4}Done: the port is free."
    assert collapse(text) == f"The port is taken.\n{block}Done: the port is free."


def test_a_loop_of_eight_sentences_is_found() -> None:
    unit = " ".join(f"Step {w} checks the value again." for w in "abcdefgh")
    text = f"Start here. {unit} {unit} {unit} Finish there."
    assert collapse(text) == f"Start here. {unit} Finish there."


def test_a_loop_made_of_smaller_loops_collapses_whole() -> None:
    text = "Go. A b c. A b c. A b c. Wait now. " * 3 + "End."
    assert collapse(text) == "Go. A b c. Wait now. End."


def test_near_verbatim_copies_differ_in_case_space_and_final_punctuation() -> None:
    text = "Start. Wait, no. wait,  no! WAIT, no\nThen stop."
    assert collapse(text) == "Start. Wait, no.\nThen stop."


def test_a_phrase_repeated_inside_a_sentence_keeps_one_copy_and_its_end() -> None:
    text = "I think I think I think it works. Fine."
    assert collapse(text) == "I think it works. Fine."
    assert collapse("Okay. Wait, wait, wait, wait, wait. Go on.") == "Okay. Wait. Go on."
    text = "So x is 4, so x is 4, so x is 4, so x is 4 and we stop."
    assert collapse(text) == "So x is 4 and we stop."


def test_a_word_repeated_three_or_four_times_may_carry_meaning() -> None:
    for text in ("We go right, right, right, right to the door.", "Wait, wait, wait. Go on."):
        assert loop_spans(text) == []


def test_repetition_inside_code_tables_and_math_is_never_a_loop() -> None:
    code = "Call it:\n\n```python\nhook.fire()\nhook.fire()\nhook.fire()\n```\n\nDone."
    indented = "Call it:\n\n    hook.fire()\n    hook.fire()\n    hook.fire()\n\nDone."
    table = "Rows:\n| a | b |\n|---|---|\n| 1 | 1 |\n| 1 | 1 |\n| 1 | 1 |\nDone."
    math = "Sum:\n$$\nx + x\nx + x\nx + x\n$$\nDone."
    for text in (code, indented, table, math):
        assert loop_spans(text) == [], text


def test_a_cjk_sentence_loop_without_spaces_keeps_one_copy() -> None:
    text = "先算10乘以15等于150。" + "等等，我再检查一下这个结果。" * 5 + "\n所以答案是180。"
    assert collapse(text) == "先算10乘以15等于150。等等，我再检查一下这个结果。\n所以答案是180。"


def test_a_delimiter_line_takes_part_in_a_loop_block() -> None:
    block = "...Let\n me just open the log file.\n</think>\n"
    assert collapse(f"Start.\n{block * 6}End.") == f"Start.\n{block}End."


def test_two_million_characters_are_collapsed() -> None:
    text = "Intro line here.\n" + "Wait, let me check that again.\n" * 66_000 + "So 4."
    assert len(text) > 2_000_000
    out = collapse(text)
    assert out == "Intro line here.\nWait, let me check that again.\nSo 4."


# Distinct sentences: a trace built from them has no loop, and no unit sequence repeats.
distinct_sentences = st.lists(
    st.text(alphabet="abcdefghij", min_size=3, max_size=8), min_size=2, max_size=12, unique=True
).map(lambda words: [f"{w.capitalize()} is step {i}." for i, w in enumerate(words)])


@given(
    distinct_sentences,
    st.data(),
    st.sampled_from([" ", "\n", "\n\n"]),
    st.integers(2, 5),
)
def test_inserting_extra_copies_of_any_unit_sequence_collapses_back(
    sentences: list[str], data: st.DataObject, separator: str, extra: int
) -> None:
    start = data.draw(st.integers(0, len(sentences) - 1))
    period = data.draw(st.integers(1, min(8, len(sentences) - start)))
    unit = sentences[start : start + period]
    looped = sentences[: start + period] + unit * extra + sentences[start + period :]
    original = separator.join(sentences)
    assert collapse(separator.join(looped)) == original


def crlf(text: str) -> str:
    return text.replace("\n", "\r\n")


@given(distinct_sentences, st.integers(2, 4), st.sampled_from(["\n", "\n\n"]))
def test_crlf_line_endings_give_the_same_deletions_mapped(
    sentences: list[str], extra: int, separator: str
) -> None:
    text = separator.join([*sentences[:1], *[sentences[-1]] * (extra + 1), *sentences[1:]])
    lf, windows = loop_spans(text), loop_spans(crlf(text))

    def to_crlf(position: int) -> int:
        return position + text.count("\n", 0, position)

    assert windows == [Span(to_crlf(s.start), to_crlf(s.end)) for s in lf]
    assert collapse(crlf(text)) == crlf(collapse(text))


code_lines = st.lists(
    st.sampled_from(["x = 1", "hook.fire()", "return x", "print(x)", "  pass"]),
    min_size=1,
    max_size=10,
)


@given(distinct_sentences, code_lines, st.integers(0, 4), st.sampled_from(["```", "~~~~"]))
def test_nothing_inside_a_code_block_is_ever_deleted_by_the_collapser(
    sentences: list[str], body: list[str], repeats: int, fence: str
) -> None:
    block = "\n".join([fence + "python", *body * (repeats + 1), fence])
    text = "\n".join([sentences[0], block, *sentences[1:], sentences[-1], sentences[-1]])
    start = text.index(block)
    for span in loop_spans(text):
        assert span.end <= start or span.start >= start + len(block)


def test_repeated_lines_without_a_letter_are_data_not_a_loop() -> None:
    text = (
        "Hex to binary, digit by digit:\n6 -> 0110\n6 -> 0110\n6 -> 0110\nSo 0x666 is 011001100110."
    )
    assert loop_spans(text) == []
    assert loop_spans("Bits: 0110 0110 0110 0110 in a row.") == []


def test_per_digit_lines_and_code_list_items_are_not_loops() -> None:
    text = "0x666 digit by digit:\n\n6 is 0110\n\n6 is 0110\n\n6 is 0110\n\nSo 011001100110."
    assert loop_spans(text) == []
    program = 'program = [\n    "LOAD 4",\n    "SWP",\n    "SWP",\n    "SWP",\n    "POP",\n]\nDone.'
    assert loop_spans(program) == []


def test_identical_items_of_an_enumeration_are_not_a_loop() -> None:
    """One item per digit, case or element: the copies' number carries information."""
    octal = (
        "Octal 777 digit by digit:\n7 is 111 in binary.\n7 is 111 in binary.\n7 is 111 in binary.\n"
    )
    assert loop_spans(octal + "So 777 is 111111111.") == []
    cases = (
        "The four cases:\nCase n mod 4: remainder is 1.\n" + "Case n mod 4: remainder is 1.\n" * 3
    )
    assert loop_spans(cases + "All give 1.") == []
    bullets = "Checks\n* f(1) = 0 holds.\n* f(1) = 0 holds.\n* f(1) = 0 holds.\nDone."
    assert loop_spans(bullets) == []
    fullwidth = "每一位：\n七等于111。\n七等于111。\n七等于111。\n所以是111111111。"
    assert loop_spans(fullwidth) == []


def test_remarks_and_data_outside_a_list_still_loop() -> None:
    """A list marker or a colon lead-in only shields lines that hold data; the list ends at a
    line without data or a blank line."""
    remarks = "Check:\nHmm, let me think.\nHmm, let me think.\nHmm, let me think.\nOK."
    assert len(loop_spans(remarks)) == 2
    hedges = "- Wait, let me check.\n- Wait, let me check.\n- Wait, let me check.\nSo 5."
    assert len(loop_spans(hedges)) == 2
    after = "Values:\n1 -> 2\nThat is all.\nSo y = 9.\nSo y = 9.\nSo y = 9.\nDone."
    assert len(loop_spans(after)) == 2, "the list ended at a line without data"
    blank = "Values:\n1 -> 2\n\nSo y = 9.\nSo y = 9.\nSo y = 9.\nDone."
    assert len(loop_spans(blank)) == 2, "the list ended at the blank line"


def test_loops_inside_or_around_list_lines_still_collapse() -> None:
    """Only a run whose every copy is a whole item is shielded, and only up to
    ``MAX_ENUMERATION_COPIES`` copies; remark openings (``So``, ``Let me``) are never items."""
    assert len(loop_spans("Let me solve:\n" + "So x = 5.\n" * 4)) == 3
    assert len(loop_spans("Verify:\n" + "The total is 5 apples and 3 pears.\n" * 40)) == 39
    assert len(loop_spans("1. Let me check x = 5 again.\n" * 4)) == 3
    inline = "Solution:\nSo 2 + 2 = 4. Wait, no. Wait, no. Wait, no. Wait, no. So 4.\n"
    assert len(loop_spans(inline)) == 3, "sentences inside a data line are not items"
    mixed = "Let me recompute:\nThe total is 2 + 2 = 4 apples.\n" * 4
    assert len(loop_spans(mixed)) == 3, "a sequence of a lead-in and an item repeats"
    paragraphs = "- 2 + 2 = 4.\nSo 4, wait.\n\n" * 3
    assert len(loop_spans(paragraphs)) == 2
    assert len(loop_spans("Digits:\n" + "7 is 111.\n" * (MAX_ENUMERATION_COPIES + 1))) > 0


WALK = (
    "Starting with RRRUUUUR:\n\n"
    "- From R to R: no change\n\n- From R to R: no change\n\n- From R to U: change\n\n"
    "- From U to U: no change\n\n- From U to U: no change\n\n- From U to U: no change\n\n"
    "- From U to R: change\n\nSo, in this sequence, there are two changes in direction."
)


def test_identical_items_of_a_varied_list_are_steps_not_a_loop() -> None:
    """A marked list whose items differ walks through steps or cases: its identical items in a
    row are counted (the answer above depends on them), even without digits."""
    assert enumeration_lines(Segmentation(WALK))[3:6] == [
        Span(m.start(), m.end() - 1) for m in re.finditer(r"- From U to U: no change\n", WALK)
    ]
    assert loop_spans(WALK) == []
    numbered = "Steps:\n1. Move left\n2. Move left\n3. Move left\n4. Stop\nDone."
    assert loop_spans(numbered) == []


def test_a_list_of_one_item_repeated_or_of_remarks_still_loops() -> None:
    same = "Plan\n" + "- I am not sure about this part\n" * 4 + "So 5."
    assert len(loop_spans(same)) == 3, "one item repeated is not a varied list"
    remarks = "- Wait, let me check.\n- Hmm, not sure.\n" * 3 + "So 5."
    assert len(loop_spans(remarks)) == 2, "remarks never make a list varied"
    long_run = "- From U to R: change\n" + "- From U to U: no change\n" * 30 + "Done."
    assert len(loop_spans(long_run)) == 29, "beyond MAX_ENUMERATION_COPIES it is a loop"


def test_elements_of_an_inline_list_are_counted_not_looped() -> None:
    signs = (
        "From the right the signs are positive, negative, positive, negative, positive, negative."
    )
    assert loop_spans(signs + " So intervals 1, 3 and 5 are positive.") == []
    stutter = "Hmm wait, wait, wait, wait, wait, wait, I see."
    assert len(loop_spans(stutter)) == 5, "remark words are never list elements"
    loop = 'Also "Aaron is Walter\'s ancestor." ' * 4 + "Done."
    assert len(loop_spans(loop)) == 3


def test_bullet_loops_and_stutters_are_not_enumerations() -> None:
    """A marked list that is mostly one item or one group repeated is a loop, and one word
    repeated with commas is a stutter, whatever the list around it."""
    single = "- First, consider the base case.\n" + "- I need to verify the base case again.\n" * 10
    assert len(loop_spans(single)) == 9
    pair = "- Check the first constraint.\n- Check the second constraint.\n" * 8
    assert len(loop_spans(pair)) == 7
    paragraphs = "- Recompute the total carefully.\n- Compare it with the expected value.\n\n" * 8
    assert len(loop_spans(paragraphs)) == 7
    assert len(loop_spans("Maybe, maybe, maybe, maybe, maybe, maybe, maybe, I am lost.")) == 6
    assert loop_spans("The answer is um, um, um, um, um, um, clearly 5.") != []
