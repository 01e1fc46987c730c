"""The ``freelm-pruner`` command as a user runs it: serve, prune (local and remote), info."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from freelm.pruner.v1 import pruner_pb2 as pb
from freelm.pruner.v1 import pruner_pb2_grpc as pb_grpc
from freelm_pruner_client.anchors import resolve_anchor
from freelm_pruner_client.segments import last_sentence, result_sentences

from tests.conftest import FEWSHOT_PROFILE, REALISTIC_TRACE, wait_for_health

CLI = [sys.executable, "-m", "pruner_service"]
STABLE_REPLY_KEYS = {"request_id", "commands", "deletions", "pruned_trace", "usage", "timing"}


def run_cli(*args: str, stdin: str | None = None, cache_dir: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "FREELM_CACHE_DIR": str(cache_dir), "FREELM_LOG_LEVEL": "warning"}
    return subprocess.run(
        [*CLI, *args], input=stdin, capture_output=True, text=True, env=env, timeout=300
    )


@pytest.fixture
def trace_file(tmp_path: Path) -> Path:
    path = tmp_path / "trace.txt"
    path.write_text(REALISTIC_TRACE, encoding="utf-8")
    return path


@pytest.fixture
def served(cache_dir: Path) -> Iterator[tuple[subprocess.Popen, str]]:
    """``freelm-pruner serve`` in its own process on a free port."""
    env = {**os.environ, "FREELM_CACHE_DIR": str(cache_dir), "FREELM_PROFILE": str(FEWSHOT_PROFILE)}
    process = subprocess.Popen(
        [*CLI, "serve", "--port", "0", "--device", "cpu", "--log-format", "json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert process.stdout is not None
    first = process.stdout.readline()
    match = re.search(r"listening on (\S+)", first)
    assert match, f"no address in {first!r}"
    yield process, match.group(1)
    if process.poll() is None:
        process.kill()
        process.wait()


def test_prune_json_locally_uses_the_stable_names(trace_file: Path, cache_dir: Path) -> None:
    out = run_cli(
        "prune", str(trace_file), "--json", "--profile", str(FEWSHOT_PROFILE), cache_dir=cache_dir
    )
    assert out.returncode == 0, out.stderr
    reply = json.loads(out.stdout)
    assert reply.keys() >= STABLE_REPLY_KEYS
    for command in reply["commands"]:
        assert command.keys() >= {"prefix", "suffix", "status"}
    for deletion in reply["deletions"]:
        assert deletion.keys() == {"start", "end", "byte_start", "byte_end", "source"}
    kept = "".join(
        REALISTIC_TRACE[a:b]
        for a, b in zip(
            [0] + [d["end"] for d in reply["deletions"]],
            [d["start"] for d in reply["deletions"]] + [len(REALISTIC_TRACE)],
            strict=True,
        )
    )
    assert reply["pruned_trace"] == kept
    assert reply["usage"]["trace_chars"] == len(REALISTIC_TRACE)


def test_prune_reports_bad_input_and_unreadable_files(cache_dir: Path, tmp_path: Path) -> None:
    out = run_cli("prune", "-", "--profile", str(FEWSHOT_PROFILE), stdin="  ", cache_dir=cache_dir)
    assert out.returncode == 1 and "INVALID_ARGUMENT: trace is empty" in out.stderr
    out = run_cli("prune", str(tmp_path / "missing.txt"), cache_dir=cache_dir)
    assert out.returncode == 2 and "cannot read" in out.stderr


def test_serve_answers_prune_and_info_then_drains_on_sigterm(
    served: tuple[subprocess.Popen, str], trace_file: Path, cache_dir: Path
) -> None:
    process, address = served
    with grpc.insecure_channel(address) as channel:
        wait_for_health(channel)
        out = run_cli("prune", str(trace_file), "--server", address, "--json", cache_dir=cache_dir)
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout).keys() >= STABLE_REPLY_KEYS
        info = run_cli("info", "--server", address, "--json", cache_dir=cache_dir)
        assert json.loads(info.stdout)["profile"] == "test-fewshot"

        replies: list[object] = []
        stub = pb_grpc.PrunerStub(channel)
        calls = [
            threading.Thread(
                target=lambda: replies.append(
                    stub.Prune(pb.PruneRequest(trace=REALISTIC_TRACE), timeout=120)
                )
            )
            for _ in range(3)
        ]
        for call in calls:
            call.start()
        time.sleep(0.5)  # admitted within milliseconds; one batch takes seconds on a CPU
        process.send_signal(signal.SIGTERM)
        for call in calls:
            call.join(120)
    assert process.wait(60) == 0
    assert len(replies) == 3 and all(isinstance(r, pb.PruneResponse) for r in replies)
    logs = process.stderr.read() if process.stderr else ""
    assert '"drained": true' in logs


def test_help_lists_the_commands_and_settings(cache_dir: Path) -> None:
    out = run_cli("--help", cache_dir=cache_dir)
    assert all(word in out.stdout for word in ("serve", "prune", "info", "fetch"))
    out = run_cli("serve", "--help", cache_dir=cache_dir)
    assert "--max-batch" in out.stdout and "FREELM_" in out.stdout


def test_a_bad_setting_is_a_clear_error(cache_dir: Path) -> None:
    env_out = subprocess.run(
        [*CLI, "info"],
        capture_output=True,
        text=True,
        env={**os.environ, "FREELM_MAX_BATCH": "lots"},
        timeout=60,
    )
    assert env_out.returncode == 2 and "FREELM_MAX_BATCH='lots'" in env_out.stderr


def test_data_then_eval_scores_a_known_prediction_file(tmp_path: Path, cache_dir: Path) -> None:
    data = tmp_path / "records.jsonl"
    out = run_cli("data", "-o", str(data), "--count", "20", "--seed", "3", cache_dir=cache_dir)
    assert out.returncode == 0, out.stderr
    records = [json.loads(line) for line in data.read_text().splitlines()]
    predictions = tmp_path / "predictions.jsonl"
    with predictions.open("w") as handle:  # the gold spans themselves, except for the first record
        for i, record in enumerate(records):
            spans = [] if i == 0 else [s[:2] for s in record["redundant_spans"]]
            handle.write(json.dumps({"id": record["id"], "deletions": spans}) + "\n")
    out = run_cli("eval", str(data), "--predictions", str(predictions), cache_dir=cache_dir)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    gold = sum(s[1] - s[0] for r in records for s in r["redundant_spans"])
    missed = sum(s[1] - s[0] for s in records[0]["redundant_spans"])
    assert result["precision"] == 1.0
    assert result["recall"] == pytest.approx((gold - missed) / gold)
    assert result["essential_violation_rate"] == 0.0


@pytest.fixture
def evaluated(
    server: tuple[str, list[int]], tmp_path: Path, cache_dir: Path
) -> tuple[Path, Path, dict[str, Any]]:
    """Four generated records, evaluated through the running server with their predictions
    saved: (the records file, the predictions file, the JSON report)."""
    data = tmp_path / "records.jsonl"
    assert run_cli("data", "-o", str(data), "--count", "4", "--seed", "9",
                   cache_dir=cache_dir).returncode == 0  # fmt: skip
    saved = tmp_path / "predictions.jsonl"
    out = run_cli("eval", str(data), "--server", server[0], "--json",
                  "--save-predictions", str(saved), cache_dir=cache_dir)  # fmt: skip
    assert out.returncode == 0, out.stderr
    return data, saved, json.loads(out.stdout)


def test_eval_through_a_running_server_reports_every_row(
    server: tuple[str, list[int]], evaluated: tuple[Path, Path, dict[str, Any]], cache_dir: Path
) -> None:
    data, saved, report = evaluated
    assert report["records"] == 4 and report["latency_p50_s"] > 0
    service, alone = (
        report["rows"]["service (model + loop collapser)"],
        report["rows"]["model alone (collapser off)"],
    )
    assert service["outputs_parsed"] == 1.0 and alone["outputs_parsed"] == 1.0
    assert 0.0 <= service["commands_resolved"] <= 1.0
    assert 0.0 <= service["removed_token_fraction"] < 1.0
    assert service["recall"] >= alone["recall"]  # the collapser only adds deletions
    assert {"no deletions", "loop collapser alone", "duplicate-sentence remover"} <= set(
        report["rows"]
    )
    answers = [json.loads(line) for line in saved.read_text().splitlines()]
    assert sorted(a["id"] for a in answers) == sorted(json.loads(r)["id"] for r in
                                                       data.read_text().splitlines())  # fmt: skip
    statuses = [c["status"] for a in answers for c in a["commands"]]
    assert len(statuses) == service["commands"] and all(
        c["prefix"] and c["suffix"] for a in answers for c in a["commands"]
    )
    rescored = run_cli("eval", str(data), "--predictions", str(saved), cache_dir=cache_dir)
    assert rescored.returncode == 0, rescored.stderr
    assert json.loads(rescored.stdout)["f1"] == pytest.approx(service["f1"])
    table = run_cli("eval", str(data), "--server", server[0], cache_dir=cache_dir)
    assert "| service (model + loop collapser) |" in table.stdout and "resolved" in table.stdout


def test_eval_protects_result_sentences_unless_told_otherwise(
    server: tuple[str, list[int]], evaluated: tuple[Path, Path, dict[str, Any]],
    tmp_path: Path, cache_dir: Path,
) -> None:  # fmt: skip
    data, saved, _ = evaluated
    answers = [json.loads(line) for line in saved.read_text().splitlines()]
    records = {r["id"]: r for r in map(json.loads, data.read_text().splitlines())}
    for answer in answers:  # result sentences are protected by default
        record = records[answer["id"]]
        results = result_sentences(record["trace"], record["question"])
        assert not any(s < b and a < e for s, e in answer["deletions"] for a, b in results)
    unguarded = tmp_path / "unguarded.jsonl"
    out = run_cli("eval", str(data), "--server", server[0], "--deletable-results",
                  "--save-predictions", str(unguarded), cache_dir=cache_dir)  # fmt: skip
    assert out.returncode == 0, out.stderr
    again = [json.loads(line) for line in unguarded.read_text().splitlines()]
    assert [[(c["prefix"], c["suffix"]) for c in a["commands"]] for a in again] == [
        [(c["prefix"], c["suffix"]) for c in a["commands"]] for a in answers
    ]  # the same commands, resolved under the other rule
    for guarded, free in zip(answers, again, strict=True):
        record = records[guarded["id"]]
        trace, last = record["trace"], last_sentence(record["trace"])
        results = result_sentences(trace, record["question"])
        for kept, loose in zip(guarded["commands"], free["commands"], strict=True):
            _, span = resolve_anchor(trace, kept["prefix"], kept["suffix"])
            if span is None:
                continue
            if any(span.start < b and a < span.end for a, b in results):
                assert kept["status"] == "PROTECTED"
            if loose["status"] == "PROTECTED":
                assert last is not None and span.end > last[0]
