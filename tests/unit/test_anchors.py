"""The normative anchor resolver: rules 1-8, checked by examples and by properties."""

from __future__ import annotations

import collections
import dataclasses
import itertools

import pytest
from freelm_pruner_client.anchors import (
    AnchorCommand,
    Deletion,
    Protection,
    Reason,
    Source,
    Span,
    Status,
    apply_deletions,
    prune,
    resolve_anchor,
)
from freelm_pruner_client.segments import NUMBER, last_sentence, result_sentences, sentences
from hypothesis import given, settings
from hypothesis import strategies as st

# A small alphabet makes anchors collide often; it mixes ASCII, accents, CJK, emoji, a combining
# mark and CRLF so code-point and byte offsets diverge.
ALPHABET = "ab .\né中😀\u0301\r"
texts = st.text(alphabet=ALPHABET, min_size=0, max_size=40)


def oracle(trace: str, prefix: str, suffix: str) -> tuple[Status, Span | None]:
    """A brute-force reading of rules 1-4, independent of the implementation."""
    if not prefix or not suffix:
        return Status.INVALID_COMMAND, None
    hits = [i for i in range(len(trace)) if trace.startswith(prefix, i)]
    if not hits:
        return Status.PREFIX_NOT_FOUND, None
    if len(hits) > 1:
        return Status.PREFIX_AMBIGUOUS, None
    p = hits[0]
    for s in range(p, len(trace)):
        if trace.startswith(suffix, s) and s + len(suffix) >= p + len(prefix):
            return Status.APPLIED, Span(p, s + len(suffix))
    return Status.SUFFIX_NOT_FOUND, None


@st.composite
def trace_and_commands(draw: st.DrawFn) -> tuple[str, list[AnchorCommand]]:
    trace = draw(texts)
    commands = []
    for _ in range(draw(st.integers(0, 6))):
        if trace and draw(st.booleans()):
            i = draw(st.integers(0, len(trace) - 1))
            j = draw(st.integers(i, len(trace)))
            k = draw(st.integers(0, len(trace) - 1))
            m = draw(st.integers(k, len(trace)))
            commands.append(AnchorCommand(trace[i:j], trace[k:m]))
        else:
            commands.append(AnchorCommand(draw(texts), draw(texts)))
    return trace, commands


protections = st.builds(
    Protection,
    frozen_prefix_chars=st.integers(0, 10),
    protect_tail_chars=st.integers(0, 10),
    max_delete_fraction=st.sampled_from([0.2, 0.5, 1.0]),
)


def deleted_mask(n: int, deletions: tuple[Deletion, ...]) -> list[bool]:
    mask = [False] * n
    for d in deletions:
        for i in range(d.start, d.end):
            mask[i] = True
    return mask


@given(trace_and_commands())
def test_resolve_matches_the_brute_force_reading_of_rules_1_to_4(case: tuple) -> None:
    trace, commands = case
    for c in commands:
        assert resolve_anchor(trace, c.prefix, c.suffix) == oracle(trace, c.prefix, c.suffix)


@given(trace_and_commands(), protections, st.randoms(use_true_random=False))
def test_result_does_not_depend_on_command_order(case: tuple, prot: Protection, rnd) -> None:
    trace, commands = case
    shuffled = list(range(len(commands)))
    rnd.shuffle(shuffled)
    a = prune(trace, commands, protection=prot)
    b = prune(trace, [commands[i] for i in shuffled], protection=prot)
    assert a.deletions == b.deletions
    assert a.pruned_trace == b.pruned_trace
    assert [b.commands[shuffled.index(i)] for i in range(len(commands))] == list(a.commands)


@given(trace_and_commands(), protections)
def test_every_span_lies_in_the_trace_and_matches_its_anchors(
    case: tuple, prot: Protection
) -> None:
    trace, commands = case
    for c in prune(trace, commands, protection=prot).commands:
        if c.span is None:
            assert c.status in {
                Status.INVALID_COMMAND,
                Status.PREFIX_NOT_FOUND,
                Status.PREFIX_AMBIGUOUS,
                Status.SUFFIX_NOT_FOUND,
            }
            continue
        assert 0 <= c.span.start < c.span.end <= len(trace)
        assert trace.startswith(c.prefix, c.span.start)
        assert trace[c.span.start : c.span.end].endswith(c.suffix)


@given(trace_and_commands(), protections)
def test_pruned_trace_is_the_trace_minus_the_union(case: tuple, prot: Protection) -> None:
    trace, commands = case
    out = prune(trace, commands, protection=prot)
    mask = deleted_mask(len(trace), out.deletions)
    assert out.pruned_trace == "".join(ch for ch, gone in zip(trace, mask, strict=True) if not gone)
    assert out.removed_chars == sum(mask)
    applied = [c.span for c in out.commands if c.status is Status.APPLIED]
    for span in applied:
        assert span is not None
        assert all(mask[span.start : span.end])
    assert (sum(mask) > 0) == bool(applied)
    ends = [(d.start, d.end) for d in out.deletions]
    assert all(a_end < b_start for (_, a_end), (b_start, _) in itertools.pairwise(ends))


@given(trace_and_commands(), protections)
def test_protected_ranges_are_never_touched(case: tuple, prot: Protection) -> None:
    trace, commands = case
    out = prune(trace, commands, protection=prot)
    n = len(trace)
    for d in out.deletions:
        assert d.start >= prot.frozen_prefix_chars
        assert prot.protect_tail_chars == 0 or d.end <= n - prot.protect_tail_chars
    assert out.removed_chars <= prot.max_delete_fraction * n


@given(trace_and_commands(), protections)
def test_the_last_sentence_is_protected_as_a_tail_of_its_length(
    case: tuple, prot: Protection
) -> None:
    trace, commands = case
    guarded = dataclasses.replace(prot, protect_last_sentence=True)
    out = prune(trace, commands, protection=guarded)
    last = last_sentence(trace)
    tail = len(trace) - last[0] if last else 0
    for d in out.deletions:
        assert last is None or d.end <= last[0]
    as_tail = dataclasses.replace(prot, protect_tail_chars=max(prot.protect_tail_chars, tail))
    want = prune(trace, commands, protection=as_tail)
    assert (out.commands, out.deletions, out.pruned_trace) == (
        want.commands,
        want.deletions,
        want.pruned_trace,
    )
    spans = [(c.start, c.end, c.source) for c in out.cancellations]
    assert spans == [(c.start, c.end, c.source) for c in want.cancellations]


# Digits, separators and sentence ends, so numbers recur, split and straddle sentences.
numeric_texts = st.text(alphabet="12 .,\nx中", min_size=0, max_size=40)


def results_oracle(trace: str, question: str) -> list[tuple[int, int]]:
    """Result sentences sentence by sentence: one that holds a number no earlier sentence holds,
    which the question does not give and which the trace writes at least twice."""
    given_numbers = set(NUMBER.findall(question))
    counts = collections.Counter(NUMBER.findall(trace))
    seen: set[str] = set()
    found = []
    for start, end in sentences(trace):
        numbers = set(NUMBER.findall(trace[start:end]))
        if any(counts[n] >= 2 for n in numbers - seen - given_numbers):
            found.append((start, end))
        seen |= numbers
    return found


STEPS = "So 3 * 4 = 12. Check 12. Then 12 + 5 = 17. Answer: 17."
FORMS = "Got 2.5 and 1,000. Then 2.5 twice: 1000 and 1000."


@pytest.mark.parametrize(
    ("trace", "question", "expected"),
    [
        (STEPS, "", ["So 3 * 4 = 12.", "Then 12 + 5 = 17."]),
        (STEPS, "Is it 12?", ["Then 12 + 5 = 17."]),
        ("Try x2 and 3rd and v1.2. Again x2, 3rd, v1.2.", "", []),
        (FORMS, "", ["Got 2.5 and 1,000.", "Then 2.5 twice: 1000 and 1000."]),
        ("x = -9.\nSo 3 * -9 = -27.", "", ["x = -9."]),
        ("No numbers here. None at all.", "", []),
        ("", "", []),
    ],
)
def test_result_sentences_by_example(trace: str, question: str, expected: list[str]) -> None:
    assert [trace[s:e] for s, e in result_sentences(trace, question)] == expected


@given(numeric_texts, numeric_texts)
def test_result_sentences_agree_with_a_sentence_by_sentence_reading(
    trace: str, question: str
) -> None:
    assert result_sentences(trace, question) == results_oracle(trace, question)


@given(numeric_texts, numeric_texts, st.lists(st.tuples(st.integers(0, 40), st.integers(0, 8))))
def test_result_sentences_are_protected_ranges(
    trace: str, question: str, cuts: list[tuple[int, int]]
) -> None:
    commands = [AnchorCommand(trace[i : i + 1 + n], trace[i + n : i + n + 2]) for i, n in cuts]
    out = prune(trace, commands, protection=Protection(protect_results=True), question=question)
    results = result_sentences(trace, question)
    for d in out.deletions:
        assert not any(d.start < end and start < d.end for start, end in results)
    as_ranges = Protection(ranges=tuple((Span(*r), Reason.RESULT_SENTENCE) for r in results))
    assert out == prune(trace, commands, protection=as_ranges)
    assert prune(trace, commands) == prune(trace, commands, question=question)


@given(trace_and_commands(), protections)
def test_byte_offsets_agree_with_code_points(case: tuple, prot: Protection) -> None:
    trace, commands = case
    out = prune(trace, commands, protection=prot)
    spans = [c.span for c in out.commands if c.span] + list(out.deletions)
    for s in spans:
        assert s.byte_start == len(trace[: s.start].encode("utf-8"))
        assert s.byte_end == len(trace[: s.end].encode("utf-8"))
    data = trace.encode("utf-8")
    by_bytes = b"".join(
        data[a:b]
        for a, b in zip(
            [0] + [d.byte_end for d in out.deletions],
            [d.byte_start for d in out.deletions] + [len(data)],
            strict=True,
        )
    )
    assert by_bytes.decode("utf-8") == out.pruned_trace


@given(texts, protections)
def test_no_commands_leave_the_trace_unchanged(trace: str, prot: Protection) -> None:
    out = prune(trace, [], protection=prot)
    assert out.pruned_trace == trace
    assert out.deletions == ()


@given(trace_and_commands())
@settings(max_examples=50)
def test_apply_deletions_reproduces_the_pruned_trace(case: tuple) -> None:
    trace, commands = case
    out = prune(trace, commands)
    assert apply_deletions(trace, out.deletions) == out.pruned_trace


def test_statuses_on_a_worked_example() -> None:
    trace = "Let me see. Wait, no. I think 7. Wait, so 7. Answer: 7."
    out = prune(
        trace,
        [
            AnchorCommand("Let me", "see."),  # unique prefix → APPLIED
            AnchorCommand("Wait", "no."),  # "Wait" occurs twice → PREFIX_AMBIGUOUS
            AnchorCommand("Maybe", "x"),  # not in trace
            AnchorCommand("Answer", "zzz"),  # no suffix after the prefix
            AnchorCommand("", "x"),  # empty prefix
        ],
    )
    assert [c.status for c in out.commands] == [
        Status.APPLIED,
        Status.PREFIX_AMBIGUOUS,
        Status.PREFIX_NOT_FOUND,
        Status.SUFFIX_NOT_FOUND,
        Status.INVALID_COMMAND,
    ]
    assert out.pruned_trace == " Wait, no. I think 7. Wait, so 7. Answer: 7."


def test_suffix_may_overlap_or_equal_the_prefix() -> None:
    # Rule 3: the suffix match may start inside the prefix, as long as it ends at or after it.
    status, span = resolve_anchor("xx abcd yy", "abcd", "cd")
    assert (status, span) == (Status.APPLIED, Span(3, 7))
    assert resolve_anchor("xx abcd yy", "abcd", "abcd") == (Status.APPLIED, Span(3, 7))
    assert resolve_anchor("xx abcd yy", "abcd", "ab") == (Status.SUFFIX_NOT_FOUND, None)


def test_suffix_is_the_first_one_after_the_prefix_non_greedy() -> None:
    trace = "A start. x END y END z"
    out = prune(trace, [AnchorCommand("start", "END")])
    assert out.pruned_trace == "A  y END z"


def test_protected_and_over_limit_keep_their_spans() -> None:
    trace = "0123456789 abcdefghij"
    out = prune(trace, [AnchorCommand("012", "345")], protection=Protection(frozen_prefix_chars=2))
    assert out.commands[0].status is Status.PROTECTED
    assert out.commands[0].span is not None and out.commands[0].span.start == 0
    out = prune(
        trace, [AnchorCommand("abc", "hij")], protection=Protection(max_delete_fraction=0.2)
    )
    assert out.commands[0].status is Status.OVER_LIMIT
    assert out.deletions == () and out.pruned_trace == trace


def test_loop_spans_obey_the_same_rules_and_merge_with_model_spans() -> None:
    trace = "aaa bbb ccc ddd"
    out = prune(trace, [AnchorCommand("aaa", "bbb")], loop_spans=[Span(7, 11)])
    assert [(d.start, d.end, d.source) for d in out.deletions] == [(0, 11, Source.MODEL_AND_LOOP)]
    out = prune(trace, [], loop_spans=[Span(11, 15)], protection=Protection(protect_tail_chars=2))
    assert out.deletions == ()


def test_apply_deletions_rejects_offsets_that_do_not_fit() -> None:
    with pytest.raises(ValueError, match="does not fit"):
        apply_deletions("short", [Deletion(2, 9, 2, 9, Source.MODEL)])
    with pytest.raises(ValueError, match="byte offsets"):
        apply_deletions("é and more", [Deletion(0, 2, 0, 2, Source.MODEL)])
