"""The labelling functions on hand-written traces: each votes where it should and nowhere else."""

from __future__ import annotations

from pruner_service.training.labelling import (
    CANDIDATES,
    FUNCTIONS,
    Vote,
    label,
    silver_record,
    silver_windows,
    split,
    votes,
)

TRACE = (
    "We need 12 * 4. So 12 * 4 = 48. Hmm. Okay, so.\n"
    "Let me verify that. 12 * 4 = 48, yes. So 48 it is.\n\n"
    "Wait, let me check the next step. 48 + 5 = 53.\n\n"
    "Then 53 - 3 = 50. The answer is 50."
)


def _texts(trace: str, spans: list[tuple[int, int]]) -> list[str]:
    return [trace[s:e].strip() for s, e in spans]


def test_each_function_votes_on_its_own_kind() -> None:
    units = split(TRACE)
    cast = votes(TRACE, names=CANDIDATES)
    redundant = {name: [units[i].text.strip() for i, v in sorted(found.items())
                        if v is Vote.REDUNDANT] for name, found in cast.items()}  # fmt: skip
    assert redundant["filler"] == ["Hmm.", "Okay, so."]
    check = "Wait, let me check the next step."
    assert redundant["check_cue"] == ["Let me verify that.", check]
    assert redundant["check_block"] == [
        "Let me verify that.",
        "12 * 4 = 48, yes.",
        "So 48 it is.",
        check,
    ]  # the block ends at its paragraph, and before 48 + 5 = 53 (53 is new)
    assert redundant["loop"] == []
    kept = [units[i].text.strip() for i, v in sorted(cast["answer"].items()) if v is Vote.KEEP]
    assert kept == ["The answer is 50."]


def test_a_check_that_derives_a_new_number_is_not_redundant() -> None:
    labelled = _texts(TRACE, label(TRACE))
    assert "Wait, let me check the next step." in labelled  # nothing new in the cue itself
    assert "48 + 5 = 53." not in labelled  # 53 is new: the check block ends before it


def test_keep_votes_veto_and_every_function_is_registered() -> None:
    trace = "So x = 7. Let me check: x = 7 gives 7. The answer is 7."
    labelled = _texts(trace, label(trace))
    assert "The answer is 7." not in labelled and "Let me check: x = 7 gives 7." in labelled
    assert set(FUNCTIONS) == {"check_block", "loop", "result", "answer"}
    assert set(CANDIDATES) - set(FUNCTIONS) == {"filler", "check_cue", "recomputation"}
    looped = "Start here. Wait, no. Wait, no. Wait, no. Then 4."
    assert _texts(looped, label(looped, names=["loop"])) == ["Wait, no.", "Wait, no."]


def test_a_silver_record_holds_commands_that_resolve_to_its_spans() -> None:
    from freelm_pruner_client.anchors import resolve_anchor

    record = silver_record({"id": "r", "trace": TRACE, "question": "What is 12 * 4 + 5 - 3?"})
    spans = [(s, e) for s, e, _ in record["redundant_spans"]]
    assert _texts(TRACE, spans) == [
        "Let me verify that. 12 * 4 = 48, yes. So 48 it is.",
        "Wait, let me check the next step.",
    ]  # neighbouring sentences of one paragraph make one span
    resolved = [resolve_anchor(TRACE, c["prefix"], c["suffix"])[1] for c in record["commands"]]
    assert [(r.start, r.end) for r in resolved if r is not None] == spans
    capped = silver_record({"id": "r", "trace": TRACE}, max_commands=1)
    assert len(capped["commands"]) == 1 and len(capped["redundant_spans"]) == 2


def test_silver_windows_label_the_whole_trace_and_keep_the_spans_each_window_holds() -> None:
    from freelm_pruner_client.anchors import resolve_anchor

    record = {"id": "r", "trace": TRACE, "question": "Q?"}
    whole = [(s, e) for s, e, _ in silver_record(record)["redundant_spans"]]
    cut = TRACE.index("Wait, let me check")
    inside = TRACE.index("12 * 4 = 48, yes")  # inside the first span
    for borders in ([(0, cut), (cut, len(TRACE))], [(0, inside), (inside, len(TRACE))]):
        windows = silver_windows(record, borders)
        assert [w["window"] for w in windows] == [list(b) for b in borders]
        assert [w["id"] for w in windows] == [f"r@{s}-{e}" for s, e in borders]
        kept = [(s + w["window"][0], e + w["window"][0])
                for w in windows for s, e, _ in w["redundant_spans"]]  # fmt: skip
        assert kept == [span for span in whole if any(s <= span[0] and span[1] <= e
                                                      for s, e in borders)]  # fmt: skip
        for w in windows:
            spans = [(s, e) for s, e, _ in w["redundant_spans"]]
            resolved = [resolve_anchor(w["trace"], c["prefix"], c["suffix"])[1]
                        for c in w["commands"]]  # fmt: skip
            assert [(r.start, r.end) for r in resolved if r is not None] == spans
    assert len(silver_windows(record, [(0, cut), (cut, len(TRACE))])[0]["redundant_spans"]) == 1
    assert len(silver_windows(record, [(0, inside), (inside, len(TRACE))])[0]["commands"]) == 0
    # a re-check is judged by the whole trace before it, windows before included
    verify = TRACE.index("Let me verify")
    second = silver_windows(record, [(0, verify), (verify, len(TRACE))])[1]
    first_span = second["redundant_spans"][0]
    assert second["trace"][first_span[0] : first_span[1]] == (
        "Let me verify that. 12 * 4 = 48, yes. So 48 it is."
    )
    assert silver_windows({"id": "b", "trace": "a\n\n  \n"}, [(0, 3), (3, 6)])[1:] == []


def test_paragraphs_end_blocks_and_spans_whatever_the_line_endings() -> None:
    crlf = TRACE.replace("\n", "\r\n")
    assert [crlf[s:e] for s, e in label(crlf)] == [TRACE[s:e] for s, e in label(TRACE)]
    record = silver_record({"id": "c", "trace": crlf})
    assert len(record["redundant_spans"]) == 2  # not merged across the blank line


def test_the_silver_command_writes_training_records(tmp_path, capsys, monkeypatch) -> None:
    import json

    from pruner_service import cli

    monkeypatch.setattr(cli, "configure_logging", lambda *_: None)  # not onto captured stderr
    source = tmp_path / "real.jsonl"
    source.write_text(json.dumps({"id": "a", "trace": TRACE, "question": "Q?"}) + "\n")
    out = tmp_path / "silver.jsonl"
    assert cli.main(["silver", str(source), "-o", str(out)]) == 0
    [record] = [json.loads(line) for line in out.read_text().splitlines()]
    assert record["id"] == "a" and len(record["commands"]) == 2
    assert "1 records from 1 traces (2 labelled spans, 2 commands)" in capsys.readouterr().err
    source.write_text(json.dumps({"id": "b", "text": "no trace"}) + "\n")
    assert cli.main(["silver", str(source), "-o", str(out)]) == cli.EXIT_USAGE
    assert "records without a trace (string): b" in capsys.readouterr().err
    source.write_text("{not json\n")
    assert cli.main(["silver", str(source), "-o", str(out)]) == cli.EXIT_USAGE
    assert "is not JSON lines" in capsys.readouterr().err
