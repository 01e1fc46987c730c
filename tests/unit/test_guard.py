"""The anchor guard: which partial commands can still resolve."""

from __future__ import annotations

from freelm_pruner_client.anchors import AnchorCommand, Status, resolve_anchor
from freelm_pruner_client.loop_collapser import loop_runs
from hypothesis import given
from hypothesis import strategies as st

from pruner_service.engine.grammar import Writing, last_command, writable_head
from pruner_service.engine.guard import AnchorGuard, restatements

LOOPY = "Add 3 and 4 to get 7. Wait, no. Wait, no. Wait, no. Then x is 7. Check: 3+4=7. Yes."


def passes(trace: str, output: str, max_anchor_chars: int = 48) -> bool:
    writing = last_command(output)
    assert writing is not None
    return AnchorGuard(trace, max_anchor_chars).passes(writing)


def test_last_command_reads_the_anchor_being_written() -> None:
    assert last_command("[") is None
    assert last_command('[{"prefix": "Wa') == Writing("Wa", False, None, False)
    assert last_command('[{"prefix": "Wa", "suffix": "') == Writing("Wa", True, "", False)
    assert last_command('[{"prefix": "Wa", "suffix": "no.') == Writing("Wa", True, "no.", False)
    closed = '[{"prefix": "Wa", "suffix": "no."}, {"prefix": "Th", "suffix": "7."}'
    assert last_command(closed) == Writing("Th", True, "7.", True)
    assert last_command('[{"prefix": "x\ufffd') == Writing("x", False, None, False)
    assert last_command('[{"prefix": "Wa"') == Writing("Wa", True, None, False)
    assert not Writing("Wa", True, "no.", True).open
    assert Writing("Wa", True, "no", False).open and Writing("Wa", False, None, False).open


def test_writable_head_stops_at_the_limit_or_an_unwritable_character() -> None:
    assert writable_head("Check: 3+4=7. Yes.", 0, 6) == "Check:"
    assert writable_head("Check: 3+4=7. Yes.", 7, 5) == "3+4=7"
    assert writable_head('Say "hi" now', 0, 48) == "Say "
    assert writable_head("one line\nnext", 4, 48) == "line"
    assert writable_head("abc", 3, 48) == ""


def test_a_prefix_cannot_start_inside_a_loop() -> None:
    assert not passes(LOOPY, '[{"prefix": "Wait')  # "Wait" occurs only in the loop
    assert not passes(LOOPY, '[{"prefix": "Wait, no. Wait, no. Then')  # even the last copy
    assert passes(LOOPY, '[{"prefix": "Check: 3')
    assert passes(LOOPY, '[{"prefix": "')  # nothing written yet


def test_a_prefix_must_close_unique() -> None:
    trace = "So 7. Check: 3+4=7. So 7 again, fine. Check: done."
    assert passes(trace, '[{"prefix": "Check')  # open: it can still grow unique
    assert not passes(trace, '[{"prefix": "Check"')  # closed while it occurs twice
    assert passes(trace, '[{"prefix": "Check: 3"')


def test_a_prefix_needs_a_start_with_a_unique_anchor_in_reach() -> None:
    trace = "Hmm, the same long sentence here. " * 2 + "Done."
    assert not passes(trace, '[{"prefix": "Hmm, the', max_anchor_chars=12)
    assert passes(trace, '[{"prefix": "the same long sentence here. Done', max_anchor_chars=48)


def test_a_suffix_must_resolve_after_its_prefix() -> None:
    trace = "First step. Redundant check here. Next step. Final answer."
    prefix = '[{"prefix": "Redundant", "suffix": "'
    assert passes(trace, prefix + "here.")
    assert passes(trace, prefix + 'here."}')
    assert not passes(trace, prefix + "First")  # only before the prefix
    assert passes(trace, prefix + "Redund")  # it may overlap the prefix ...
    # ... but not end inside it
    assert not passes(trace, '[{"prefix": "Redundant check", "suffix": "Redund"}')


def test_a_command_deletes_up_to_a_sentence_end() -> None:
    trace = "First step. OK, total ends at 33. Redundant check here.\nNext step"
    assert not passes(trace, '[{"prefix": "OK, total ends", "suffix": "OK, total ends"}')
    assert passes(trace, '[{"prefix": "OK, total ends", "suffix": "at 33."}')
    assert passes(trace, '[{"prefix": "OK, total ends", "suffix": "at 33. "}')  # the space after
    assert not passes(trace, '[{"prefix": "OK, total ends", "suffix": "33. Redundant"}')
    assert passes(trace, '[{"prefix": "Redundant", "suffix": "check here."}')  # line end
    assert passes(trace, '[{"prefix": "Next step", "suffix": "step"}')  # the trace's end


def test_a_command_stays_within_one_paragraph() -> None:
    trace = "Setup. Maybe try graphing? No, forget it.\n\nSo x is 7.\nThen y is 2."
    assert passes(trace, '[{"prefix": "Maybe try", "suffix": "forget it."}')
    assert not passes(trace, '[{"prefix": "Maybe try", "suffix": "So x is 7."}')
    assert passes(trace, '[{"prefix": "So x", "suffix": "y is 2."}')  # a line break is no paragraph


_SENTENCES = ["Wait, no.", "So x is 7.", "Check: 3+4=7.", "Hmm.", "Add 3 and 4."]


@given(
    st.lists(st.sampled_from(_SENTENCES), min_size=1, max_size=10),
    st.data(),
)
def test_every_closed_command_that_passes_resolves(
    sentences: list[str], data: st.DataObject
) -> None:
    gaps = data.draw(st.lists(st.sampled_from([" ", "\n", "\n\n"]), min_size=len(sentences)))
    trace = "".join(gap + sentence for gap, sentence in zip(gaps, sentences, strict=False))[1:]
    guard = AnchorGuard(trace, 24)
    i = data.draw(st.integers(0, len(trace) - 1))
    j = data.draw(st.integers(i + 1, min(len(trace), i + 24)))
    k = data.draw(st.integers(0, len(trace) - 1))
    m = data.draw(st.integers(k + 1, min(len(trace), k + 24)))
    prefix, suffix = trace[i:j], trace[k:m]
    if guard.passes(Writing(prefix, True, suffix, True)):
        status, span = resolve_anchor(trace, prefix, suffix)
        assert status is Status.APPLIED and span is not None
        assert guard.ends_sentence(span.end)
        assert "\n\n" not in trace[span.start : span.end].strip()
        assert not any(run.start <= span.start < run.end for run in loop_runs(trace))


@given(st.lists(st.sampled_from(_SENTENCES), min_size=1, max_size=10), st.data())
def test_a_closed_prefix_passes_only_if_every_partial_one_did(
    sentences: list[str], data: st.DataObject
) -> None:
    trace = " ".join(sentences)
    guard = AnchorGuard(trace, 24)
    i = data.draw(st.integers(0, len(trace) - 1))
    j = data.draw(st.integers(i + 1, min(len(trace), i + 24)))
    if guard.passes(Writing(trace[i:j], True, None, False)):
        assert all(guard.passes(Writing(trace[i:n], False, None, False)) for n in range(i, j + 1))


def test_leading_passes_ends_the_list_at_the_first_failing_command() -> None:
    guard = AnchorGuard(LOOPY, 48)
    good = AnchorCommand("Check: 3", "Yes.")
    loop = AnchorCommand("Wait, no.", "Wait, no.")
    assert guard.leading_passes([good, loop, good]) == (good,)
    assert guard.leading_passes([loop, good]) == ()
    assert guard.leading_passes([good]) == (good,)


def test_passing_leaves_out_each_failing_command_and_keeps_the_rest() -> None:
    guard = AnchorGuard(LOOPY, 48)
    good = AnchorCommand("Check: 3", "Yes.")
    first = AnchorCommand("Add 3", "get 7.")
    loop = AnchorCommand("Wait, no.", "Wait, no.")
    assert guard.passing([first, loop, good]) == (first, good)
    assert guard.passing([loop, loop]) == ()
    assert guard.passing([]) == ()


def test_a_span_may_not_reach_into_a_loop_from_before_it() -> None:
    guard = AnchorGuard(LOOPY, 48)
    (run,) = loop_runs(LOOPY)
    step_start = LOOPY.index("Add 3")
    assert guard.enters_loop(step_start, run.start + len("Wait, no."))
    assert guard.enters_loop(step_start, run.end)
    assert not guard.enters_loop(step_start, run.start)  # the step alone
    assert not guard.enters_loop(run.end, len(LOOPY))  # after the loop
    # the step deleted with the loop's first copy: a step lost, the collapser's copy taken
    assert not passes(LOOPY, '[{"prefix": "Add 3", "suffix": "get 7. Wait, no."}')
    assert passes(LOOPY, '[{"prefix": "Add 3", "suffix": "get 7."}')


QUESTION = "Tom has 3 bags of 4 shells. How many shells does Tom have?"
RESTATED = (
    "First, 3 * 4 = 12 shells. Going back to the question: Tom has 3 bags of 4 shells. How many "
    "shells does Tom have? So the answer is 12."
)


def restated_passes(output: str) -> bool:
    writing = last_command(output)
    assert writing is not None
    return AnchorGuard(RESTATED, 48, QUESTION).passes(writing)


def test_restatements_find_verbatim_copies_of_the_question_joined() -> None:
    (copy,) = restatements(RESTATED, QUESTION)
    assert RESTATED[copy.start : copy.end] == QUESTION
    assert restatements(RESTATED, "") == []
    assert restatements("Who wins? Ann wins.", "Who wins?") == []  # too short to count


def test_a_span_may_not_reach_into_a_restatement_from_a_sentence_before_it() -> None:
    # the restatement with its lead-in, one sentence: a span of its own
    assert restated_passes('[{"prefix": "Going back", "suffix": "does Tom have?"}')
    # the step before it deleted with it: the commonest essential loss, refused
    assert not restated_passes('[{"prefix": "First, 3", "suffix": "does Tom have?"}')
    # without the question the guard cannot tell a restatement
    writing = last_command('[{"prefix": "First, 3", "suffix": "does Tom have?"}')
    assert writing is not None and AnchorGuard(RESTATED, 48).passes(writing)


def test_a_restatement_takes_in_the_question_s_short_sentences_around_it() -> None:
    question = "Let x = 5. What is x squared plus three times x?"
    trace = "So 25 + 15 = 40. Going back to the question: " + question + " Fine. So 40."
    (copy,) = restatements(trace, question)
    assert trace[copy.start : copy.end] == question  # `Let x = 5.` is under 15 characters
    writing = last_command('[{"prefix": "Going back", "suffix": "plus three times x?"}')
    assert writing is not None and AnchorGuard(trace, 48, question).passes(writing)
    three = "Tom has 3 bags of 4 shells. He eats 2. How many shells are left now?"
    trace = "First, 12 - 2 = 10. Going back to the question: " + three + " So 10."
    (copy,) = restatements(trace, three)
    assert trace[copy.start : copy.end] == three


def test_a_phrase_loop_inside_the_span_s_first_sentence_is_no_reason_to_refuse() -> None:
    trace = "First we add. So it is 5, no wait, no wait, no wait, no wait, it is 7. Done here."
    assert loop_runs(trace)  # the phrase loop
    writing = last_command('[{"prefix": "So it is 5", "suffix": "it is 7."}')
    assert writing is not None and AnchorGuard(trace, 48).passes(writing)
