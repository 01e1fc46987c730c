"""Teacher synthesis: reply parsing, the reward check and the resumable job, with a scripted
teacher (the real endpoint is exercised in tests/e2e/test_synth.py)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from freelm_pruner_client.anchors import AnchorCommand

from pruner_service.training.synth import (
    CONTINUE_INSTRUCTION,
    Aborted,
    Rejected,
    SynthConfig,
    SynthJob,
    check,
    parse_reply,
    synthesize,
)

TRACE = "So 3 * 4 = 12. Let me double-check: 3 * 4 = 12. Yes. Then 12 + 5 = 17. The answer is 17."
RECORD = {"id": "r1", "question": "What is 3 * 4 + 5?", "answer": "17", "trace": TRACE}
GOOD = '[{"prefix": "Let me double-check:", "suffix": "12. Yes."}]'


class ScriptedTeacher:
    """Answers the cleaning instruction with ``reply(trace)`` and continuations with
    ``continuation``; counts its calls."""

    def __init__(self, reply: Callable[[str], str], continuation: str = "Final answer: 17") -> None:
        self.reply, self.continuation = reply, continuation
        self.calls: list[str] = []

    def complete(self, system: str, user: str) -> str:
        self.calls.append(user)
        if system == CONTINUE_INSTRUCTION:
            return self.continuation
        return self.reply(user)


def test_replies_are_parsed_with_prose_or_fences_around_the_list() -> None:
    assert parse_reply(GOOD) == [AnchorCommand("Let me double-check:", "12. Yes.")]
    assert parse_reply("Sure:\n```json\n" + GOOD + "\n```") == parse_reply(GOOD)
    assert parse_reply("[]") == []
    for bad, reason in [
        ("no list here", "no JSON list"),
        ("[{'prefix': 'a'}]", "not JSON"),
        ('[{"prefix": "a"}]', "command 1 is not"),
        ('[{"prefix": "a", "suffix": 3}]', "command 1 is not"),
    ]:
        with pytest.raises(Rejected, match=reason):
            parse_reply(bad)


def test_the_reward_check_keeps_resolving_commands_that_spare_the_answer() -> None:
    spans = [(d.start, d.end) for d in check(RECORD, parse_reply(GOOD), SynthConfig()).deletions]
    assert [TRACE[s:e] for s, e in spans] == ["Let me double-check: 3 * 4 = 12. Yes."]


@pytest.mark.parametrize(
    ("commands", "reason"),
    [
        ([AnchorCommand("3 * 4", "Yes.")], "PREFIX_AMBIGUOUS"),
        ([AnchorCommand("Let me triple", "Yes.")], "PREFIX_NOT_FOUND"),
        ([AnchorCommand("Let me double-check:", "No.")], "SUFFIX_NOT_FOUND"),
        ([AnchorCommand('12 "x"', "Yes.")], "not writable"),
        ([AnchorCommand("Let me double-check: 3 * 4 = 12. Yes. Then 12 + 5", "Yes.")],
         "not writable"),
        ([AnchorCommand("So 3", "12 + 5 = 17.")], "OVER_LIMIT"),
        ([AnchorCommand("Then 12", "answer is")], "last sentence"),
        ([AnchorCommand("The answer", "17.")], "final answer"),
        ([AnchorCommand("Let me double-check:", "12. Yes.")] * 9, "more than the 8"),
    ],
)  # fmt: skip
def test_the_reward_check_rejects(commands: list[AnchorCommand], reason: str) -> None:
    with pytest.raises(Rejected, match=reason):
        check(RECORD, commands, SynthConfig())


def test_the_continuation_must_reach_the_answer() -> None:
    config = SynthConfig(verify_continuation=True)
    teacher = ScriptedTeacher(lambda _: GOOD)
    kept = synthesize(RECORD, teacher, config)
    assert kept["redundant_spans"] == [[15, 52]] and len(teacher.calls) == 2
    assert "double-check" not in teacher.calls[1]  # the continuation sees the pruned trace
    with pytest.raises(Rejected, match="does not reach the answer"):
        synthesize(RECORD, ScriptedTeacher(lambda _: GOOD, "Final answer: 170"), config)


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def read(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_the_job_sorts_records_and_a_rerun_only_retries_transient_failures(tmp_path: Path) -> None:
    records = [
        json.dumps(RECORD),
        json.dumps({**RECORD, "id": "r2", "trace": TRACE.replace("Yes.", "Right.")}),
        json.dumps({"id": "r3", "trace": ""}),
        "{not json",
        json.dumps({**RECORD, "id": "r5", "trace": "Nothing to see. The answer is 17."}),
    ]
    source = write_lines(tmp_path / "in.jsonl", records)
    out, rejects = tmp_path / "out.jsonl", tmp_path / "rej.jsonl"
    flaky = {"r5": 1}

    def reply(user: str) -> str:
        if "Nothing to see" in user and flaky["r5"]:
            flaky["r5"] -= 1
            import httpx2
            import openai

            raise openai.APIConnectionError(request=httpx2.Request("POST", "http://teacher"))
        return GOOD if "Nothing" not in user else "[]"

    teacher = ScriptedTeacher(reply)
    summary = SynthJob(source, out, rejects, teacher, SynthConfig(concurrency=2)).run(False)
    assert [r["id"] for r in read(out)] == ["r1"]
    codes = {r["id"]: r["error"]["code"] for r in read(rejects)}
    assert codes == {"r2": "REJECTED", "r3": "INVALID_ARGUMENT", "4": "INVALID_ARGUMENT",
                     "r5": "UNAVAILABLE"}  # fmt: skip
    assert summary.kept == 1 and summary.outcomes["REJECTED"] == 1
    assert len(teacher.calls) == 3  # bad records never reach the teacher

    summary = SynthJob(source, out, rejects, teacher, SynthConfig()).run(False)
    assert len(teacher.calls) == 4 and summary.skipped == 4 and summary.kept_empty == 1
    assert sorted(r["id"] for r in read(out)) == ["r1", "r5"]
    assert "r5" not in {r["id"] for r in read(rejects)}


def test_the_job_stops_when_the_endpoint_keeps_failing(tmp_path: Path) -> None:
    import httpx2
    import openai

    def down(_: str) -> str:
        raise openai.APIConnectionError(request=httpx2.Request("POST", "http://teacher"))

    lines = [json.dumps({**RECORD, "id": f"r{i}"}) for i in range(10)]
    source = write_lines(tmp_path / "in.jsonl", lines)
    job = SynthJob(
        source,
        tmp_path / "out.jsonl",
        tmp_path / "rej.jsonl",
        ScriptedTeacher(down),
        SynthConfig(concurrency=1, max_consecutive_failures=3),
    )
    with pytest.raises(Aborted, match="3 endpoint failures in a row"):
        job.run(False)
    assert len(read(tmp_path / "rej.jsonl")) == 3
