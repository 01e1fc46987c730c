"""The Free() loop's I/O-free core: delimiters across deltas, budgets, prune calls, applying
deletions and the accounting that FreeLoop and the proxy both report."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from freelm_pruner_client.anchors import Deletion, Source
from freelm_pruner_client.loopcore import (
    Delimiters,
    LoopCore,
    LoopSettings,
    PruneCall,
    continuation_body,
    parse_chunk,
    parse_completion,
)


def reply(text: str, spans: list[tuple[int, int]], tokens: tuple[int, int] = (10, 6)) -> object:
    """A pruner reply deleting ``spans`` (code points) of ``text``."""
    size = lambda i: len(text[:i].encode())  # noqa: E731
    deletions = [Deletion(s, e, size(s), size(e), Source.LOOP) for s, e in spans]
    removed = sum(e - s for s, e in spans)
    usage = SimpleNamespace(trace_tokens=tokens[0], kept_tokens=tokens[1], removed_chars=removed)
    return SimpleNamespace(deletions=deletions, usage=usage)


def feed_all(core: LoopCore, *deltas: str) -> str:
    kinds = ""
    for delta in deltas:
        kinds += "".join(p.kind[0] for p in core.feed(delta))
    return kinds


def test_delimiters_split_across_deltas_are_found() -> None:
    core = LoopCore(LoopSettings(), Delimiters())
    feed_all(core, "\n<th", "ink>Step one.", " ok </thi", "nk>Answer", " 4")
    assert (core.lead, core.result.trace, core.end, core.answer) == (
        "\n<think>",
        "Step one. ok ",
        "</think>",
        "Answer 4",
    )
    assert core.phase == "answer"


def test_text_that_only_looks_like_a_delimiter_stays_text() -> None:
    core = LoopCore(LoopSettings(), Delimiters(starts_inside=True))
    feed_all(core, "a </t", "able> b")
    assert core.result.trace == "a </table> b" and core.phase == "reasoning"


def test_output_without_a_start_delimiter_is_all_answer() -> None:
    core = LoopCore(LoopSettings(prune_every_tokens=4, max_tokens=20), Delimiters())
    assert feed_all(core, "The answer is 4.") == "a"
    assert core.end_round("length", 5, 4) is None, "no reasoning: nothing to prune"
    assert core.next_max_tokens() == 16, "after the reasoning, the rest of the budget at once"


def test_without_delimiters_everything_is_reasoning() -> None:
    core = LoopCore(LoopSettings(), None, trace="So far. ")
    feed_all(core, "<think> x </think> y")
    assert core.result.trace == "So far. <think> x </think> y" and core.phase == "reasoning"


def test_a_reasoning_field_then_content_ends_the_reasoning() -> None:
    core = LoopCore(LoopSettings(), Delimiters())
    core.feed("", "Let me think.")
    core.feed("Four.")
    assert (core.result.trace, core.answer, core.phase) == ("Let me think.", "Four.", "answer")
    assert core.partial("chat") == "<think>\nLet me think.</think>Four."
    assert core.partial("completions") == "Let me think.Four."


def test_budget_per_round_while_reasoning() -> None:
    core = LoopCore(LoopSettings(prune_every_tokens=10, max_tokens=25), None)
    budgets = []
    while (budget := core.next_max_tokens()) is not None:
        budgets.append(budget)
        core.feed("x. " * budget)
        core.end_round("length", 7, budget)
    assert budgets == [10, 10, 5]


def test_a_round_that_stops_ends_the_run_without_pruning() -> None:
    core = LoopCore(LoopSettings(), None)
    core.feed("All done.")
    assert core.end_round("stop", 7, 3) is None
    assert core.result.finished and core.next_max_tokens() is None


def test_prune_call_options_fit_the_trace() -> None:
    settings = LoopSettings(frozen_prefix_chars=50, protect_tail_chars=200)
    core = LoopCore(settings, None)
    core.feed("Short trace.")
    call = core.end_round("length", 4, 3)
    assert call == PruneCall(
        "Short trace.",
        0,
        {
            "frozen_prefix_chars": 12,
            "protect_tail_chars": 12,
            "max_delete_fraction": settings.max_delete_fraction,
            "return_pruned_trace": False,
        },
    )


def test_deletions_apply_and_are_accounted() -> None:
    core = LoopCore(LoopSettings(protect_tail_chars=0), None)
    text = "Wait, no. Wait, no. Wait, no. So 4."
    core.feed(text)
    call = core.end_round("length", 20, 12)
    assert call is not None
    assert core.apply(call, reply(text, [(10, 30)], tokens=(12, 6)))
    assert core.result.trace == "Wait, no. So 4."
    assert (core.result.prunes, core.result.prune_calls) == (1, 1)
    assert (core.result.tokens_pruned, core.result.chars_pruned) == (6, 20)
    core.feed(" Done.")
    core.end_round("stop", 26, 2)
    assert core.result.peak_context_tokens == 32
    assert core.result.unpruned_peak_tokens == 20 + 14
    assert core.result.peak_tokens_saved == 2


def test_a_long_reasoning_sends_only_its_last_window() -> None:
    core = LoopCore(LoopSettings(max_trace_chars=10, protect_tail_chars=0), None)
    core.feed("0123456789abcdefghij")
    call = core.end_round("length", 1, 1)
    assert call is not None and (call.trace, call.offset) == ("abcdefghij", 10)
    core.apply(call, reply(call.trace, [(2, 5)]))
    assert core.result.trace == "0123456789abfghij"


def test_deletions_for_another_trace_are_refused() -> None:
    core = LoopCore(LoopSettings(), None)
    core.feed("abcdef")
    with pytest.raises(ValueError, match="changed"):
        core.apply(PruneCall("zzz", 0), reply("zzz", [(0, 1)]))
    with pytest.raises(ValueError, match="does not fit"):
        core.apply(PruneCall("abcdef", 0), reply("abcdef", [(4, 9)]))


def test_an_empty_reply_counts_a_call_and_a_failure_counts_apart() -> None:
    core = LoopCore(LoopSettings(), None)
    core.feed("abc")
    assert not core.apply(PruneCall("abc", 0), reply("abc", []))
    core.failed()
    assert (core.result.prune_calls, core.result.prunes, core.result.prune_failures) == (1, 0, 1)


def test_continuation_bodies() -> None:
    base = {"model": "m", "temperature": 0}
    assert continuation_body(base, "completions", "Q:", " A", 8) == {
        "model": "m",
        "temperature": 0,
        "max_tokens": 8,
        "prompt": "Q: A",
    }
    chat = continuation_body(base, "chat", [{"role": "user", "content": "Q"}], "A", 8)
    assert chat["messages"][-1] == {"role": "assistant", "content": "A"}
    assert chat["continue_final_message"] and not chat["add_generation_prompt"]
    assert "continue_final_message" not in continuation_body(
        base, "chat", [{"role": "user", "content": "Q"}], "", 8
    )


def test_replies_and_chunks_are_read() -> None:
    answer = {
        "choices": [{"message": {"content": "4", "reasoning": "hm"}, "finish_reason": "stop"}]
    }
    delta = parse_completion({**answer, "usage": {"prompt_tokens": 3}}, "chat")
    assert (delta.content, delta.reasoning, delta.reasoning_key, delta.finish) == (
        "4",
        "hm",
        "reasoning",
        "stop",
    )
    chunk = parse_chunk({"choices": [{"delta": {"reasoning_content": "x"}}]}, "chat")
    assert (chunk.reasoning, chunk.reasoning_key, chunk.finish) == ("x", "reasoning_content", "")
    usage = parse_chunk({"choices": [], "usage": {"completion_tokens": 9}}, "completions")
    assert usage.usage == {"completion_tokens": 9} and usage.content == ""
    with pytest.raises(KeyError):
        parse_completion({"choices": [{}]}, "completions")


def test_no_prune_after_the_last_round() -> None:
    core = LoopCore(LoopSettings(prune_every_tokens=5, max_tokens=10), None)
    core.feed("Some text.")
    assert core.end_round("length", 3, 5) is not None
    core.feed(" More text.")
    assert core.end_round("length", 8, 5) is None, "the budget is spent: nothing continues"
