"""``freelm-pruner-client batch`` against a real server: errors recorded, kill and resume."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

CLI = [sys.executable, "-m", "freelm_pruner_client"]


def write_input(path: Path, count: int, bad: dict[int, str]) -> None:
    with path.open("w", encoding="utf-8") as out:
        for i in range(count):
            if i in bad:
                out.write(bad[i] + "\n")
                continue
            trace = f"Record {i}: I add {i} and 1. Wait, no. Wait, no. Wait, no. So {i + 1}."
            out.write(json.dumps({"id": f"r{i}", "trace": trace}) + "\n")


def outputs(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_batch_records_errors_and_resumes_after_a_kill(server: str, tmp_path: Path) -> None:
    source, target = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    bad = {100: json.dumps({"id": "empty", "trace": ""}), 700: "{not json"}
    write_input(source, 1000, bad)
    args = [
        *CLI,
        "--server",
        server,
        "batch",
        str(source),
        "-o",
        str(target),
        "--max-commands",
        "0",
    ]
    first = subprocess.Popen([*args, "--concurrency", "4"], stderr=subprocess.PIPE, text=True)
    while not target.exists() or len(target.read_bytes().splitlines()) < 300:
        time.sleep(0.01)
        assert first.poll() is None, "the first run ended before it could be killed"
    first.send_signal(signal.SIGKILL)
    first.wait()
    done_before = {item["id"] for item in outputs(target)}
    assert 300 <= len(done_before) < 1000

    second = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr
    summary = second.stderr.strip().splitlines()[-1]
    items = outputs(target)
    by_id = {item["id"]: item for item in items}
    assert len(items) == len(by_id) == 1000
    assert sum("result" in item for item in items) == 998
    errors = {item["id"]: item["error"] for item in items if "error" in item}
    assert errors["empty"]["code"] == "INVALID_ARGUMENT"
    assert "trace is empty" in errors["empty"]["message"]
    assert errors["701"]["code"] == "INVALID_ARGUMENT" and "not JSON" in errors["701"]["message"]
    skipped = len(done_before)
    assert f"{skipped} already done" in summary
    assert f"{1000 - skipped - len(set(errors) - done_before)} pruned" in summary
    assert by_id["r5"]["result"]["pruned_trace"].count("Wait, no.") == 1


def test_batch_reports_a_missing_input(tmp_path: Path) -> None:
    out = subprocess.run(
        [*CLI, "batch", str(tmp_path / "nope.jsonl"), "-o", str(tmp_path / "o.jsonl")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and "no input file" in out.stderr
