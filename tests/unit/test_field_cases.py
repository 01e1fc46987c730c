"""Each field case gives its expected result under the service's default options (the resolver,
the loop collapser and the protections; the model's commands written in where a case needs one)."""

from __future__ import annotations

from freelm_pruner_client.anchors import AnchorCommand, PruneOutcome, Reason, Source, prune
from freelm_pruner_client.loop_collapser import loop_spans

from pruner_service.domain import PruneOptions
from tests import field_cases as fc


def service_prune(
    trace: str, commands: tuple[tuple[str, str], ...] = (), question: str = ""
) -> PruneOutcome:
    return prune(
        trace,
        [AnchorCommand(p, s) for p, s in commands],
        loop_spans=loop_spans(trace),
        protection=PruneOptions().protection(),
        question=question,
    )


def test_01_a_trace_that_is_mostly_loop_is_collapsed_despite_the_limit() -> None:
    out = service_prune(fc.LOOP_ONLY)
    setup = fc.LOOP_ONLY.split("\n")[0]
    assert out.pruned_trace == f"{setup}\n{fc.LOOP_SENTENCE} {fc.LOOP_SENTENCE}"
    assert out.removed_chars == 1708
    assert {d.source for d in out.deletions} == {Source.LOOP}
    assert [(c.source, c.reason) for c in out.cancellations] == [
        (Source.LOOP, Reason.LAST_SENTENCE)
    ]


def test_01_the_limit_still_bounds_the_models_deletions_and_says_so() -> None:
    setup = fc.LOOP_ONLY.split("\n")[0]
    options = PruneOptions(max_delete_fraction=0.01)
    out = prune(
        fc.LOOP_ONLY,
        [AnchorCommand("The schema", "table.")],
        loop_spans=loop_spans(fc.LOOP_ONLY),
        protection=options.protection(),
    )
    assert out.pruned_trace.startswith(setup)
    assert out.commands[0].status.value == "OVER_LIMIT"
    assert (Source.MODEL, Reason.DELETE_LIMIT) in [(c.source, c.reason) for c in out.cancellations]


def test_02_a_two_line_loop_keeps_its_first_copy() -> None:
    out = service_prune(fc.TWO_LINE_LOOP)
    assert out.pruned_trace == fc.TWO_LINE_LOOP.replace(fc.PROCESS_BLOCK * 4, fc.PROCESS_BLOCK)
    assert out.removed_chars == 201


def test_04_crlf_and_lf_paragraph_loops_give_the_same_result() -> None:
    lf = service_prune(fc.PARAGRAPH_LOOP_LF)
    crlf = service_prune(fc.PARAGRAPH_LOOP_CRLF)
    assert lf.pruned_trace == fc.PARAGRAPH_LOOP_LF.replace(f"{fc.CYCLE}\n\n" * 3, f"{fc.CYCLE}\n\n")
    assert crlf.pruned_trace == lf.pruned_trace.replace("\n", "\r\n")
    assert crlf.removed_chars == 218 and lf.removed_chars == 210


def test_05_repetition_inside_a_code_block_is_kept() -> None:
    out = service_prune(fc.CODE_BLOCK)
    assert out.pruned_trace == fc.CODE_BLOCK and out.deletions == ()


def test_07_a_chinese_loop_keeps_one_copy() -> None:
    out = service_prune(fc.CJK_LOOP, question=fc.CJK_QUESTION)
    assert out.pruned_trace == fc.CJK_LOOP.replace(fc.CJK_CHECK * 5, fc.CJK_CHECK)
    assert out.removed_chars == 56


def test_08_the_answer_before_a_closing_think_line_stays() -> None:
    out = service_prune(fc.THINK_TAG, (fc.THINK_TAG_COMMAND,), fc.THINK_TAG_QUESTION)
    assert out.commands[0].status.value == "PROTECTED"
    assert out.pruned_trace == fc.THINK_TAG
    assert [(c.source, c.reason) for c in out.cancellations] == [
        (Source.MODEL, Reason.LAST_SENTENCE)
    ]
