"""The field cases through the real server and the real model, with default options.

The model may add deletions of its own, so each test checks what the kind of fault is about:
loop copies gone, code and answers kept, CRLF endings intact, and a reply that adds up.
"""

from __future__ import annotations

import grpc
import pytest
from freelm.pruner.v1 import pruner_pb2 as pb
from freelm.pruner.v1 import pruner_pb2_grpc as pb_grpc
from freelm_pruner_client.anchors import apply_deletions

from tests import field_cases as fc


def prune(channel: grpc.Channel, trace: str, question: str = "") -> pb.PruneResponse:
    reply = pb_grpc.PrunerStub(channel).Prune(
        pb.PruneRequest(trace=trace, question=question), timeout=300
    )
    assert reply.pruned_trace == apply_deletions(trace, reply.deletions)
    return reply


def test_01_a_loop_only_trace_is_collapsed_and_the_cancelled_copy_is_reported(channel) -> None:
    reply = prune(channel, fc.LOOP_ONLY)
    assert reply.pruned_trace.count(fc.LOOP_SENTENCE) <= 2
    assert reply.pruned_trace.endswith(fc.LOOP_SENTENCE)
    assert reply.usage.removed_chars >= 1708
    reasons = {(c.source, c.reason) for c in reply.cancellations}
    assert (pb.LOOP, pb.LAST_SENTENCE) in reasons


def test_02_a_two_line_loop_is_collapsed(channel) -> None:
    reply = prune(channel, fc.TWO_LINE_LOOP)
    assert reply.pruned_trace.count(fc.PROCESS_BLOCK) <= 1
    assert reply.pruned_trace.endswith("Done: the port is free and the server starts.")


@pytest.mark.parametrize("trace", [fc.PARAGRAPH_LOOP_LF, fc.PARAGRAPH_LOOP_CRLF])
def test_04_a_paragraph_loop_is_collapsed_with_either_line_ending(channel, trace: str) -> None:
    reply = prune(channel, trace)
    ending = "\r\n" if "\r\n" in trace else "\n"
    assert reply.pruned_trace.count(fc.CYCLE.replace("\n", ending)) <= 1
    assert reply.pruned_trace.count("\n") == reply.pruned_trace.count(ending)
    assert reply.pruned_trace.endswith("So 7^100 mod 5 = 1.")


def test_05_a_code_block_is_kept_whole(channel) -> None:
    reply = prune(channel, fc.CODE_BLOCK)
    block = fc.CODE_BLOCK[fc.CODE_BLOCK.index("```") : fc.CODE_BLOCK.rindex("```") + 3]
    assert block in reply.pruned_trace


def test_07_a_chinese_loop_is_collapsed(channel) -> None:
    reply = prune(channel, fc.CJK_LOOP, fc.CJK_QUESTION)
    assert reply.pruned_trace.count(fc.CJK_CHECK) <= 1
    assert reply.pruned_trace.endswith("所以答案是180。")


def test_08_the_answer_before_a_closing_think_line_is_kept(channel) -> None:
    reply = prune(channel, fc.THINK_TAG, fc.THINK_TAG_QUESTION)
    assert reply.pruned_trace.endswith("So the capital is Canberra.\n</think>\n")


def test_identical_lines_of_an_enumeration_are_kept(channel) -> None:
    """Per-digit lines of a conversion, identical because the digit repeats, stay: their number
    carries information."""
    digits = "B is 1011 in binary.\n" * 4
    lead = "Convert 0xBBBB to binary, one hex digit at a time:\n"
    trace = f"{lead}{digits}So 0xBBBB is 1011101110111011."
    reply = pb_grpc.PrunerStub(channel).Prune(
        pb.PruneRequest(trace=trace, options=pb.PruneOptions(max_commands=0)), timeout=300
    )
    assert reply.pruned_trace == trace
    assert not any(c.source == pb.LOOP for c in reply.cancellations)
