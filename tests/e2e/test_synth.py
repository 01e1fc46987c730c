"""``freelm-pruner synth`` against a real OpenAI-compatible HTTP server serving the real SmolLM2.

The small model is a weak teacher: on a trace phrased like the instruction's example it proposes
resolving anchors, on generated traces it mostly does not. Either way every record ends up in
exactly one of the two files, every kept example passes the resolver, and a rerun makes no call.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from freelm_pruner_client.anchors import AnchorCommand, prune

from pruner_service.training.data import generate
from tests.support.openai_server import stats

CHECKED = "So 3 * 4 = 12. Let me double-check: 3 * 4 = 12. Yes. Then 12 + 5 = 17. The answer is 17."


def run_synth(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pruner_service", "synth", *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def read(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_synth_keeps_only_checked_examples_and_resumes(openai_server: str, tmp_path: Path) -> None:
    generated = next(generate(1, seed=5, family="eval"))
    records = [
        {"id": "checked", "question": "What is 3 * 4 + 5?", "answer": "17", "trace": CHECKED},
        {k: generated[k] for k in ("id", "question", "answer", "trace")},
        {"id": "empty", "trace": "  "},
    ]
    source = tmp_path / "traces.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    out, rejects = tmp_path / "kept.jsonl", tmp_path / "kept.rejects.jsonl"
    args = [str(source), "-o", str(out), "--endpoint", openai_server, "--model", "smollm2",
            "--max-tokens", "64", "--reply-prefix", '[{"prefix": "']  # fmt: skip

    before = stats(openai_server)["calls"]
    result = run_synth(*args)
    assert result.returncode == 0, result.stderr
    assert "3 records: 1 kept" in result.stderr
    assert stats(openai_server)["calls"] - before == 2  # the blank record is never sent

    kept = read(out)
    assert [k["id"] for k in kept] == ["checked"]
    commands = [AnchorCommand(**c) for c in kept[0]["commands"]]
    outcome = prune(CHECKED, commands)
    assert (
        "double-check" not in outcome.pruned_trace and "The answer is 17." in outcome.pruned_trace
    )
    assert kept[0]["redundant_spans"] == [[d.start, d.end] for d in outcome.deletions]
    not_kept = {r["id"]: r for r in read(rejects)}
    assert set(not_kept) == {generated["id"], "empty"}
    assert not_kept["empty"]["error"]["code"] == "INVALID_ARGUMENT"
    assert not_kept[generated["id"]]["error"]["code"] == "REJECTED"
    assert str(not_kept[generated["id"]]["reply"]).startswith('[{"prefix": "')

    before = stats(openai_server)["calls"]
    again = run_synth(*args)
    assert again.returncode == 0 and "3 already done" in again.stderr
    assert stats(openai_server)["calls"] == before and len(read(out)) == 1


def test_synth_with_the_continuation_check_asks_the_teacher_again(
    openai_server: str, tmp_path: Path
) -> None:
    source = tmp_path / "traces.jsonl"
    record = {"id": "c", "question": "What is 3 * 4 + 5?", "answer": "17", "trace": CHECKED}
    source.write_text(json.dumps(record) + "\n", encoding="utf-8")
    before = stats(openai_server)["calls"]
    result = run_synth(str(source), "-o", str(tmp_path / "o.jsonl"), "--endpoint", openai_server,
                       "--model", "smollm2", "--max-tokens", "64", "--verify-continuation",
                       "--reply-prefix", '[{"prefix": "')  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert stats(openai_server)["calls"] - before == 2
    rejected = read(tmp_path / "o.rejects.jsonl") if (tmp_path / "o.rejects.jsonl").exists() else []
    kept = read(tmp_path / "o.jsonl")
    assert len(kept) + len(rejected) == 1
    if rejected:
        assert "does not reach the answer" in str(rejected[0]["error"])


def test_synth_reports_an_unreachable_endpoint_and_a_missing_one(tmp_path: Path) -> None:
    source = tmp_path / "traces.jsonl"
    source.write_text(json.dumps({"id": "a", "trace": CHECKED}) + "\n", encoding="utf-8")
    result = run_synth(str(source), "-o", str(tmp_path / "o.jsonl"), "--model", "m")
    assert result.returncode == 2 and "no endpoint" in result.stderr
    result = run_synth(str(tmp_path / "missing.jsonl"), "-o", "o", "--model", "m",
                       "--endpoint", "http://x/v1")  # fmt: skip
    assert result.returncode == 2 and "no file" in result.stderr

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    out = tmp_path / "o.jsonl"
    result = run_synth(str(source), "-o", str(out), "--model", "m",
                       "--endpoint", f"http://127.0.0.1:{closed}/v1")  # fmt: skip
    assert result.returncode == 0, result.stderr
    [line] = read(tmp_path / "o.rejects.jsonl")
    assert line["error"]["code"] == "UNAVAILABLE"
    assert "cannot reach the endpoint" in line["error"]["message"]
