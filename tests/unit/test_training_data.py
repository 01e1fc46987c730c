"""The labelled trace generator and the scorer."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from typing import Any

import pytest
from freelm_pruner_client.anchors import AnchorCommand, Protection, prune
from freelm_pruner_client.loop_collapser import loop_spans

from pruner_service.training.data import generate, gold_command
from pruner_service.training.evaluate import (
    duplicate_sentences,
    loop_collapser,
    no_deletions,
    score,
)
from pruner_service.training.phrasing import FAMILIES, Phrasing
from pruner_service.training.report import Pruned, build_report, format_table, parses

RECORDS = list(generate(300, seed=7, family="train"))


def overlaps(a: list[int], b: list[int]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def test_gold_spans_are_in_bounds_sorted_and_never_touch_essential_text() -> None:
    for record in RECORDS:
        n = len(record["trace"])
        spans = record["redundant_spans"] + record["essential_spans"]
        assert all(0 <= s[0] < s[1] <= n for s in spans)
        for red in record["redundant_spans"]:
            assert not any(overlaps(red, ess) for ess in record["essential_spans"])
        starts = [s[0] for s in record["redundant_spans"]]
        assert starts == sorted(starts)
        if record["answer"] in record["trace"]:
            assert any(record["trace"][s:e].find(record["answer"]) >= 0
                       for s, e in record["essential_spans"])  # fmt: skip


def test_the_set_has_clean_partial_and_every_kind_of_redundancy() -> None:
    kinds = {span[2] for r in RECORDS for span in r["redundant_spans"]}
    assert kinds == {"reverify", "abandoned", "loop", "restate", "filler"}
    assert any(not r["redundant_spans"] for r in RECORDS)
    assert any(not r["trace"].rstrip().endswith(".") or r["answer"] not in r["trace"]
               for r in RECORDS)  # fmt: skip
    assert len({r["kind"] for r in RECORDS}) == 7


def test_oracle_commands_and_the_loop_collapser_score_f1_one() -> None:
    predictions = {}
    for record in RECORDS:
        trace = record["trace"]
        commands = [AnchorCommand(**c) for c in record["commands"]]
        out = prune(trace, commands, loop_spans=loop_spans(trace), protection=Protection())
        predictions[record["id"]] = [(d.start, d.end) for d in out.deletions]
    result = score(RECORDS, predictions)
    assert result["f1"] == pytest.approx(1.0)
    assert result["essential_violation_rate"] == 0.0 and result["answer_preservation"] == 1.0
    non_loop = sum(1 for r in RECORDS for s in r["redundant_spans"] if s[2] != "loop")
    assert sum(len(r["commands"]) for r in RECORDS) == non_loop


def test_gold_command_is_the_shortest_exact_pair() -> None:
    trace = "Start. Hmm, let me restate it. Then 2 + 2 = 4. Hmm, fine."
    start = trace.index("Hmm, let")
    end = trace.index("it.") + 3
    assert gold_command(trace, start, end) == AnchorCommand("Hmm, let me restate", "me restate it.")
    command = gold_command(trace, start, end, min_chars=1)
    assert command == AnchorCommand("Hmm, let", "it.")  # "Hmm," alone occurs twice
    status_span = prune(trace, [command]).deletions[0]
    assert (status_span.start, status_span.end) == (start, end)
    assert gold_command("x ab ab y", 2, 4, min_chars=1) is None  # no unique prefix in the span


def test_train_and_eval_phrasings_share_no_template() -> None:
    train, held_out = FAMILIES["train"], FAMILIES["eval"]
    for slot in fields(Phrasing):
        train_pool, eval_pool = getattr(train, slot.name), getattr(held_out, slot.name)
        assert train_pool and not set(train_pool) & set(eval_pool)
        assert eval_pool or slot.name == "hedge"  # hedges open steps in training data only
    sentences = {r["trace"] for r in generate(200, 3, "eval")}
    assert not any(o in t for o in train.opening for t in sentences)


def test_generation_is_seeded() -> None:
    assert list(generate(5, 1, "eval")) == list(generate(5, 1, "eval"))
    assert list(generate(5, 1, "eval")) != list(generate(5, 2, "eval"))


def test_scores_of_a_known_prediction() -> None:
    record = {
        "id": "a",
        "trace": "0123456789",
        "answer": "9",
        "redundant_spans": [[2, 6, "filler"]],
        "essential_spans": [[8, 10]],
    }
    result = score([record], {"a": [(4, 9)]})  # 2 true chars, 3 false (one essential)
    assert result["precision"] == pytest.approx(2 / 5)
    assert result["recall"] == pytest.approx(2 / 4)
    assert result["f1"] == pytest.approx(2 * 0.4 * 0.5 / 0.9)
    assert result["essential_violation_rate"] == 1.0
    assert result["answer_preservation"] == 1.0  # "9" survives (only [4, 9) is deleted)
    assert result["removed_fraction"] == pytest.approx(0.5)
    assert result["recall_by_kind"] == {"filler": pytest.approx(0.5)}


def test_baselines() -> None:
    record = {"id": "b", "trace": "A b c. Wait, no. Wait, no. Wait, no. A b c. End."}
    assert no_deletions(record) == []
    assert loop_collapser(record) == [(16, 36)]
    assert duplicate_sentences(record) == [(17, 26), (27, 36), (37, 43)]


def test_the_report_counts_parsed_outputs_resolved_commands_and_tokens() -> None:
    records = [
        {"id": "a", "trace": "0123456789", "redundant_spans": [[0, 5, "filler"]]},
        {"id": "b", "trace": "abcdefghij", "redundant_spans": []},
    ]

    def prune_many(batch: Sequence[dict[str, Any]], collapse: bool) -> dict[str, Pruned]:
        return {
            "a": Pruned([(0, 5)], 0.5, ["APPLIED", "PREFIX_AMBIGUOUS"], True, 10, 5),
            "b": Pruned([], 1.5, ["SUFFIX_NOT_FOUND", "OVER_LIMIT"], parses("[{"), 10, 10),
        }

    report = build_report(records, prune_many)
    service = report["rows"]["service (model + loop collapser)"]
    assert service["f1"] == 1.0 and service["outputs_parsed"] == 0.5
    assert service["commands"] == 4 and service["commands_resolved"] == 0.5
    assert service["removed_token_fraction"] == pytest.approx(0.25)
    assert report["latency_p50_s"] == 1.0 and report["latency_max_s"] == 1.5
    assert "4 commands, 0.500 resolved" in format_table(report)
