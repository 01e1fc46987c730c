"""Conformance vectors: language-neutral cases of the anchor semantics and the loop collapser.

The vectors file (``proto/conformance/anchor_vectors_v5.json``) is generated from the normative
resolver by this module and checked by the server's and the client's tests, so an implementation
in another language proves it agrees by passing every case.

Each case: ``trace``, ``question`` (only result protection reads it), ``commands``
(``prefix``/``suffix``, and ``scope``, ``[start, end)`` in code points, on a scoped command),
``options`` (``frozen_prefix_chars``, ``protect_tail_chars``,
``max_delete_fraction``, ``collapse_loops``, ``protect_last_sentence``, ``protect_results``) and
``expect``: per-command ``status`` (with ``start``/``end``/``byte_start``/``byte_end`` when
resolved, and ``scope`` with code-point and byte offsets when the command has one), the
``deletions`` (with ``source``), the ``cancellations`` (with ``source`` and
``reason``) and the ``pruned_trace``.

Version 2 differs from version 1 in three ways: the safety limit no longer applies to loop copies
(rule 8), the loop collapser and the sentence protections follow the segmenter (CJK sentence
ends, loops of unit sequences, near-verbatim copies, atomic code blocks, the last sentence with
word content, signed numbers), and each expectation lists its ``cancellations``. Version 3 adds
scoped commands (a long trace's window): every version 2 case is in version 3 unchanged, and the
version 2 file still passes (a command without a scope resolves against the whole trace).
Version 4 adds enumerations: identical items of a list (data lines with a list marker or after a
lead-in ending with a colon) are not loops, while remarks and data outside a list still are;
every version 3 case is in version 4 unchanged. Version 5 adds two more kinds of enumeration:
identical items of a marked list whose items differ (steps of a walk, without data), and a
phrase whose words are all inline-list elements (``positive, negative,`` repeated); a marked list
of one item repeated, or mostly covered by a loop, still loops. Every version 4 case is in
version 5 unchanged.

    python -m freelm_pruner_client.conformance --write proto/conformance/anchor_vectors_v5.json
    python -m freelm_pruner_client.conformance --check proto/conformance/anchor_vectors_v5.json
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from freelm_pruner_client.anchors import AnchorCommand, Protection, PruneOutcome, Span, prune
from freelm_pruner_client.loop_collapser import loop_spans

VERSION = 5
_SEED = 20260215


def run_case(case: dict[str, Any]) -> PruneOutcome:
    """The outcome of one case under this package's resolver and collapser."""
    options = case["options"]
    trace = case["trace"]
    return prune(
        trace,
        [_command(c) for c in case["commands"]],
        loop_spans=loop_spans(trace) if options["collapse_loops"] else (),
        protection=Protection(
            options["frozen_prefix_chars"],
            options["protect_tail_chars"],
            options["max_delete_fraction"],
            options["protect_last_sentence"],
            options["protect_results"],
        ),
        question=case["question"],
    )


def _command(item: dict[str, Any]) -> AnchorCommand:
    scope = item.get("scope")
    return AnchorCommand(item["prefix"], item["suffix"], Span(*scope) if scope else None)


def expectation(outcome: PruneOutcome) -> dict[str, Any]:
    """An outcome in the vectors' JSON form."""
    commands = []
    for c in outcome.commands:
        item: dict[str, Any] = {"status": c.status.value}
        if c.span is not None:
            item.update(
                start=c.span.start,
                end=c.span.end,
                byte_start=c.span.byte_start,
                byte_end=c.span.byte_end,
            )
        if c.scope is not None:
            item["scope"] = {
                "start": c.scope.start,
                "end": c.scope.end,
                "byte_start": c.scope.byte_start,
                "byte_end": c.scope.byte_end,
            }
        commands.append(item)
    deletions = [
        {
            "start": d.start,
            "end": d.end,
            "byte_start": d.byte_start,
            "byte_end": d.byte_end,
            "source": d.source.value,
        }
        for d in outcome.deletions
    ]
    cancellations = [
        {
            "start": c.start,
            "end": c.end,
            "byte_start": c.byte_start,
            "byte_end": c.byte_end,
            "source": c.source.value,
            "reason": c.reason.value,
        }
        for c in outcome.cancellations
    ]
    return {
        "commands": commands,
        "deletions": deletions,
        "cancellations": cancellations,
        "pruned_trace": outcome.pruned_trace,
    }


def _case(
    name: str,
    trace: str,
    commands: list[tuple[str, str]] | list[tuple[str, str, Any]],
    **options: Any,
) -> dict[str, Any]:
    """A case with its expectation; a command is ``(prefix, suffix)`` or ``(prefix, suffix,
    (start, end))`` with a scope; ``options``: frozen, tail, fraction, loops, last, results and
    question."""
    items = []
    for command in commands:
        item: dict[str, Any] = {"prefix": command[0], "suffix": command[1]}
        if len(command) > 2:
            item["scope"] = list(command[2])
        items.append(item)
    case: dict[str, Any] = {
        "name": name,
        "trace": trace,
        "question": options.get("question", ""),
        "commands": items,
        "options": {
            "frozen_prefix_chars": options.get("frozen", 0),
            "protect_tail_chars": options.get("tail", 0),
            "max_delete_fraction": options.get("fraction", 1.0),
            "collapse_loops": options.get("loops", False),
            "protect_last_sentence": options.get("last", False),
            "protect_results": options.get("results", False),
        },
    }
    case["expect"] = expectation(run_case(case))
    return case


def _handwritten() -> Iterator[dict[str, Any]]:
    t = "Let me see. Wait, no. I think 7. Wait, so 7. Answer: 7."
    yield _case("applied", t, [("Let me", "see.")])
    yield _case("prefix_not_found", t, [("Maybe", "7.")])
    yield _case("prefix_ambiguous", t, [("Wait", "7.")])
    yield _case("suffix_not_found", t, [("Answer", "zzz")])
    yield _case("suffix_before_prefix_only", t, [("Answer", "Let me")])
    yield _case("empty_prefix", t, [("", "7.")])
    yield _case("empty_suffix", t, [("Let me", "")])
    yield _case("suffix_overlaps_prefix", "xx abcd yy", [("abcd", "cd")])
    yield _case("suffix_equals_prefix", "xx abcd yy", [("abcd", "abcd")])
    yield _case("suffix_inside_prefix_start", "xx abcd yy", [("abcd", "ab")])
    yield _case("non_greedy_suffix", "A start. x END y END z", [("start", "END")])
    yield _case("overlapping_prefix_occurrences", "aaa b", [("aa", "b")])
    yield _case(
        "overlapping_commands_merge", "one two three four five", [("one", "three"), ("two", "four")]
    )
    yield _case(
        "adjacent_commands_merge", "one two three four", [("one", "two"), (" three", "four")]
    )
    yield _case("disjoint_commands", "one two three four five", [("one", "two"), ("four", "five")])
    yield _case("duplicate_commands", "one two three", [("one", "two"), ("one", "two")])
    yield _case("whole_trace", "delete all of this", [("delete", "this")])
    yield from _protection_cases()
    yield from _text_cases()


def _protection_cases() -> Iterator[dict[str, Any]]:
    yield _case("frozen_prefix_protects", "0123456789 abc", [("012", "345")], frozen=2)
    yield _case("frozen_prefix_boundary", "0123456789 abc", [("234", "567")], frozen=2)
    yield _case("protected_tail", "0123456789 abc", [("9 a", "bc")], tail=2)
    yield _case("protected_tail_boundary", "0123456789 abc", [("345", "789")], tail=5)
    yield _case("over_limit", "0123456789 abcdefghij", [("abc", "hij")], fraction=0.2)
    yield _case("at_limit", "0123456789", [("0", "4")], fraction=0.5)
    yield _case(
        "over_limit_keeps_other_statuses",
        "0123456789 abc",
        [("012", "789"), ("x", "y")],
        fraction=0.1,
    )


def _text_cases() -> Iterator[dict[str, Any]]:
    yield _case("cjk", "我们先算一下。等等，不对。答案是七。", [("等等", "不对。")])
    yield _case("emoji", "ok 😀 then 🎉 done 😀", [("then", "🎉")])
    yield _case(
        "combining_marks", "cafe\u0301 is ok. re\u0301sume\u0301 here.", [("is ok", "re\u0301")]
    )
    yield _case("crlf", "line one\r\nline two\r\nline three\r\n", [("two", "\r\n")])
    yield _case("byte_offsets_after_multibyte", "ééé abc ééé xyz", [("abc", "xyz")])
    yield _case("no_commands", "nothing to delete here", [])
    yield from _last_sentence_cases()
    yield from _result_cases()
    yield from _loop_cases()
    yield from _segmenter_cases()


def _loop_cases() -> Iterator[dict[str, Any]]:
    loop = "So x = 3. Wait, no. Wait, no. Wait, no. Wait, no. Then x = 4."
    yield _case("sentence_loop", loop, [], loops=True)
    yield _case("sentence_loop_off", loop, [], loops=False)
    yield _case("loop_and_model_merge", loop, [("So x", "3.")], loops=True)
    yield _case(
        "loop_touching_model_span",
        "Wait, no. Wait, no. Wait, no. Then x = 4.",
        [(" Then", "4.")],
        loops=True,
    )
    yield _case(
        "loop_protected_tail", "Wait, no. Wait, no. Wait, no. Wait, no.", [], loops=True, tail=10
    )
    yield _case(
        "loop_frozen_prefix", "Wait, no. Wait, no. Wait, no. Wait, no.", [], loops=True, frozen=15
    )
    yield _case(
        "loop_over_limit", "Wait, no. Wait, no. Wait, no. Wait, no.", [], loops=True, fraction=0.3
    )
    lines = "Start\nCheck the sum again\nCheck the sum again\nCheck the sum again\nEnd\n"
    yield _case("line_loop", lines, [], loops=True)
    para = "Let me recompute.\nThe total is 12 + 30 = 42."
    yield _case("paragraph_loop", f"Intro.\n\n{para}\n\n{para}\n\n{para}\n\nSo 42.", [], loops=True)
    yield _case(
        "whitespace_variant_loop",
        "Hmm so  the answer is 5.\nHmm so the answer is 5.\n  Hmm so the\tanswer is 5.\nDone.",
        [],
        loops=True,
    )
    yield _case("code_punctuation_not_a_loop", "if x:\n    }\n    }\n    }\n", [], loops=True)
    yield _case("two_copies_not_a_loop", "Wait, no. Wait, no. Fine.", [], loops=True)


def _segmenter_cases() -> Iterator[dict[str, Any]]:
    pair = "Let me stop process 4242 first.\nI will stop the stale process now.\n"
    yield _case("two_line_period_loop", f"Setup.\n{pair * 4}Done.", [], loops=True)
    three = "...Let\n me just open the log file.\n</think>\n"
    yield _case("three_line_period_loop_with_tag", f"Start.\n{three * 6}End.", [], loops=True)
    para = "Hmm, let me recheck.\r\nThe cycle is 2, 4, 3, 1.\r\n"
    yield _case(
        "crlf_paragraph_loop", f"Intro.\r\n\r\n{para}\r\n{para}\r\n{para}\r\nSo 1.", [], loops=True
    )
    fire = 'hook.fire("retry")\n'
    code = f"Call it three times:\n\n```python\n{fire * 3}```\n\nDone."
    yield _case("code_block_is_not_a_loop", code, [], loops=True)
    yield _case(
        "cjk_sentence_loop", "先算。" + "等等，我再检查一下。" * 5 + "\n答案是180。", [], loops=True
    )
    yield _case(
        "near_verbatim_loop", "Wait, no. wait, no! WAIT,  no. Wait, no. So 4.", [], loops=True
    )
    yield _case("phrase_loop", "So the the the the answer is 4. Done.", [], loops=True)
    yield _case(
        "think_tag_is_not_the_last_sentence",
        "Hmm, let me reconsider. So the capital is Canberra.\n</think>\n",
        [("Hmm, let me", "Canberra.")],
        last=True,
    )
    yield _case(
        "signed_result_number",
        "So x = -11. Then -11 + 11 = 0. Answer: 0.",
        [("So x", "-11.")],
        results=True,
        question="What is x if x + 11 = 0?",
    )
    yield _case(
        "loop_copies_ignore_the_limit",
        "Set up. " + "Again the same line. " * 20 + "So 3.",
        [("Set", "up.")],
        loops=True,
        fraction=0.05,
        last=True,
    )


_ALPHABETS = ["ab .", "ab .\né中😀\u0301\r", "xyz ,.!?\n", "中文。，😀🎉 a"]


def _last_sentence_cases() -> Iterator[dict[str, Any]]:
    t = "Let me see. Wait, no. So 7. Answer: 7.\n"
    yield _case("last_sentence_protected", t, [("Wait", "no."), ("So 7", "7.\n")], last=True)
    yield _case("last_sentence_off", t, [("So 7", "7.\n")], last=False)
    yield _case("last_sentence_and_tail", t, [("Let", "see.")], tail=30, last=True)
    yield _case("last_sentence_unterminated", "First. Then so", [("First", "Then")], last=True)
    yield _case("last_sentence_loop", "Ok. Hmm. Hmm. Hmm.", [], loops=True, last=True)


def _result_cases() -> Iterator[dict[str, Any]]:
    t = "So 3 * 4 = 12. Hmm, okay. Check: 12 again. Then 12 + 5 = 17. Answer: 17."
    both = [("So 3", "= 12."), ("Hmm", "okay."), ("Check", "again."), ("Then 12", "17.")]
    yield _case("results_protected", t, both, results=True)
    yield _case("results_off", t, both)
    yield _case("results_question_numbers", t, both, results=True, question="What is 3*4 + 5?")
    yield _case("results_question_gives_result", t, both, results=True, question="Is it 12 or 17?")
    yield _case("results_partial_overlap", t, [("okay. Check", "12 +")], results=True)
    yield _case(
        "results_number_forms",
        "Take x2, 3rd and v1.2 here. Then x2, 3rd and v1.2 again. "
        "1,000 vs 1000 now. Then 1000 once.",
        [("Take", "here."), ("Then x2", "again."), ("1,000 vs", "now."), ("Then 1000", "once.")],
        results=True,
    )
    yield _case(
        "results_and_loops",
        "So x = 4. Wait, no. Wait, no. Wait, no. So x = 4 again.",
        [],
        loops=True,
        results=True,
    )
    yield _case("results_over_limit", t, [("Hmm", "again.")], results=True, fraction=0.1)


def _random_cases(count: int) -> Iterator[dict[str, Any]]:
    rng = random.Random(_SEED)
    for index in range(count):
        alphabet = _ALPHABETS[index % len(_ALPHABETS)]
        trace = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 40)))
        commands = []
        for _ in range(rng.randint(0, 5)):
            commands.append((_fragment(rng, trace, alphabet), _fragment(rng, trace, alphabet)))
        n = len(trace)
        yield _case(
            f"random_{index:03d}",
            trace,
            commands,
            frozen=rng.choice([0, 0, rng.randint(0, n)]),
            tail=rng.choice([0, 0, rng.randint(0, n)]),
            fraction=rng.choice([1.0, 0.6, 0.3]),
            loops=rng.random() < 0.3,
        )


def _fragment(rng: random.Random, trace: str, alphabet: str) -> str:
    if rng.random() < 0.05:
        return ""
    if rng.random() < 0.85:
        i = rng.randrange(len(trace))
        return trace[i : i + rng.randint(1, 6)]
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 4)))


_SENTENCES = ["Wait, no.", "Let me check 3 + 4 = 7.", "Hmm.", "So x = 7.", "再算一次。", "Okay 😀."]


def _random_loop_cases(count: int) -> Iterator[dict[str, Any]]:
    rng = random.Random(_SEED + 1)
    for index in range(count):
        parts: list[str] = []
        for _ in range(rng.randint(2, 6)):
            sentence = rng.choice(_SENTENCES)
            parts.extend([sentence] * rng.choice([1, 1, 2, 3, 5]))
        trace = rng.choice([" ", "\n"]).join(parts)
        commands = [(_fragment(rng, trace, trace), _fragment(rng, trace, trace)) for _ in range(2)]
        yield _case(
            f"random_loop_{index:03d}",
            trace,
            commands,
            frozen=rng.choice([0, rng.randint(0, len(trace))]),
            tail=rng.choice([0, rng.randint(0, len(trace))]),
            fraction=rng.choice([1.0, 0.6]),
            loops=True,
        )


_RESULTS = [
    "x = 7.",
    "So 7 + 5 = 12.",
    "Hmm.",
    "12 then 3.",
    "Got 1,5 and 0.5!",
    "得 8。",
    "Ok 😀.",
]


def _random_result_cases(count: int) -> Iterator[dict[str, Any]]:
    rng = random.Random(_SEED + 2)
    for index in range(count):
        trace = rng.choice([" ", "\n"]).join(rng.choice(_RESULTS) for _ in range(rng.randint(1, 7)))
        commands = [(_fragment(rng, trace, trace), _fragment(rng, trace, trace)) for _ in range(3)]
        yield _case(
            f"random_result_{index:03d}",
            trace,
            commands,
            question=rng.choice(["", "7", "What is 12 - 5?", "1,5 or 8"]),
            tail=rng.choice([0, 0, rng.randint(0, len(trace))]),
            loops=rng.random() < 0.3,
            last=rng.random() < 0.3,
            results=True,
        )


def _scoped_cases() -> Iterator[dict[str, Any]]:
    """Commands with a scope: the window of a long trace they were written for."""
    t = "Wait, so 7. Check: 3 + 4 = 7. Wait, so 7. Check: 3 + 4 = 7. Answer: 7."
    second = t.index("Wait", 1)
    yield _case("scoped_prefix_unique_in_scope", t, [("Wait", "7.", (second, len(t)))])
    yield _case("scoped_prefix_ambiguous_in_scope", t, [("Wait", "7.", (0, len(t)))])
    yield _case("unscoped_prefix_ambiguous", t, [("Wait", "7.")])
    yield _case("scoped_prefix_outside_scope", t, [("Answer", "7.", (0, second))])
    yield _case("scoped_suffix_outside_scope", t, [("Check", "Answer:", (0, second))])
    yield _case("scoped_suffix_at_scope_end", t, [("Check", "7.", (11, second))])
    yield _case("scope_empty", t, [("Wait", "7.", (5, 5))])
    yield _case("scope_past_the_trace", t, [("Wait", "7.", (0, len(t) + 1))])
    yield _case("scope_reversed", t, [("Wait", "7.", (9, 3))])
    c = "再算一次。答案是七。😀 再算一次。答案是七。结束。"
    half = c.index("😀")
    yield _case(
        "scoped_non_ascii", c, [("再算", "七。", (0, half)), ("再算", "七。", (half, len(c)))]
    )
    yield _case(
        "scoped_with_loops_and_protection",
        "Hmm. Hmm. Hmm. Hmm. So 7. Let me redo. So 7. Answer: 7.",
        [("Let me", "7.", (20, 46)), ("So", "7.", (0, 20))],
        loops=True,
        last=True,
        results=True,
    )


def _random_scoped_cases(count: int) -> Iterator[dict[str, Any]]:
    rng = random.Random(_SEED + 3)
    for i in range(count):
        alphabet = _ALPHABETS[i % len(_ALPHABETS)]
        trace = "".join(rng.choice(alphabet) for _ in range(rng.randint(8, 60)))
        commands = []
        for _ in range(rng.randint(1, 3)):
            middle = len(trace) // 2
            scope = (rng.randint(0, middle), rng.randint(middle, len(trace)))
            commands.append(
                (_fragment(rng, trace, alphabet), _fragment(rng, trace, alphabet), scope)
            )
        yield _case(
            f"random_scoped_{i}",
            trace,
            commands,
            frozen=rng.choice([0, 0, 3]),
            tail=rng.choice([0, 0, 4]),
            fraction=rng.choice([1.0, 1.0, 0.5]),
        )


def _enumeration_cases() -> Iterator[dict[str, Any]]:
    """Identical lines that are items of an enumeration (data in a list, or after a lead-in
    ending with a colon) are not loops; identical remarks there, and data lines outside a list,
    still are."""
    digits = "A is 1010 in binary.\n" * 4
    yield _case(
        "enumeration_after_colon_not_a_loop",
        f"Each hex digit of AAAA:\n{digits}So AAAA is 1010101010101010.",
        [],
        loops=True,
    )
    roots = "- x = 2 satisfies the equation.\n" * 3
    yield _case(
        "enumeration_list_items_not_a_loop", f"Roots\n{roots}A triple root.", [], loops=True
    )
    yield _case(
        "remarks_after_colon_still_a_loop",
        "Let me recheck:\nWait, no.\nWait, no.\nWait, no.\nSo 5.",
        [],
        loops=True,
    )
    yield _case(
        "data_lines_outside_a_list_still_a_loop", "So x = 5.\n" * 4 + "Done.", [], loops=True
    )


def _varied_enumeration_cases() -> Iterator[dict[str, Any]]:
    """Version 5: a varied marked list's identical items and inline-list elements are counted,
    not looped; a marked list of one item repeated is still a loop."""
    walk = (
        "Walking RRUUUR:\n\n- From R to R: no change\n\n- From R to U: change\n\n"
        + "- From U to U: no change\n\n" * 2
        + "- From U to R: change\n\nSo there are two changes."
    )
    yield _case("varied_list_items_not_a_loop", walk, [], loops=True)
    signs = "The signs are positive, negative, positive, negative, positive, negative. So 3."
    yield _case("inline_list_elements_not_a_loop", signs, [], loops=True)
    same = "Plan\n" + "- I am not sure about this part\n" * 4 + "So 5."
    yield _case("list_of_one_item_repeated_still_a_loop", same, [], loops=True)
    pair = "- Check the first constraint.\n- Check the second constraint.\n" * 4 + "So 5."
    yield _case("list_mostly_a_loop_still_a_loop", pair, [], loops=True)


def generate() -> dict[str, Any]:
    """All vectors: the handwritten cases, then seeded random ones (version 2's cases first,
    unchanged, then version 3's scoped ones, then version 4's enumerations, then version 5's)."""
    cases = list(_handwritten()) + list(_random_cases(200)) + list(_random_loop_cases(60))
    cases += list(_random_result_cases(40))
    cases += list(_scoped_cases()) + list(_random_scoped_cases(60))
    cases += list(_enumeration_cases()) + list(_varied_enumeration_cases())
    return {"version": VERSION, "cases": cases}


def check(vectors: dict[str, Any]) -> list[str]:
    """Names of the cases this package's resolver disagrees with (empty: all pass)."""
    return [c["name"] for c in vectors["cases"] if expectation(run_case(c)) != c["expect"]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Generate or check the conformance vectors.")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--write", type=Path, help="write freshly generated vectors here")
    group.add_argument("--check", type=Path, help="check a vectors file against this resolver")
    args = parser.parse_args(argv)
    if args.write:
        args.write.parent.mkdir(parents=True, exist_ok=True)
        args.write.write_text(json.dumps(generate(), ensure_ascii=False, indent=1) + "\n")
        return 0
    failed = check(json.loads(args.check.read_text(encoding="utf-8")))
    for name in failed:
        print(f"FAIL {name}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
