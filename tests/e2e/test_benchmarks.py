"""The speed benchmarks smoke-run at small sizes: each runs to its end and writes its figures.

Each script runs as a user runs it (a subprocess of the project's interpreter), on built-in
traces only (never ``../shared``), on the embedded model or a tiny Qwen3-shaped checkpoint.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def run_bench(script: str, *args: str, env: dict[str, str] | None = None) -> None:
    done = subprocess.run(
        [sys.executable, f"bench/{script}", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, **(env or {})},
    )
    assert done.returncode == 0, done.stderr[-3000:]


def read(path: Path) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(path.read_text())
    return result


def test_drafted_anchors_benchmark_finds_equal_outputs_in_fewer_forwards(tmp_path: Path) -> None:
    out = tmp_path / "draft.json"
    run_bench("draft_anchors.py", "--count", "4", "--real", "0", "--batch", "2", "--out", str(out))
    result = read(out)
    assert result["held_out"]["calls"] == 4 and "real" not in result
    assert result["held_out"]["outputs_differ"] == [] and result["batched_outputs_differ"] == []
    assert result["held_out"]["forwards_ratio"] > 1.0
    assert "torch threads" in result["machine"]


def test_loop_benchmark_times_each_round_with_and_without_reuse(tmp_path: Path) -> None:
    out = tmp_path / "loop.json"
    run_bench("loop_reuse.py", "--rounds", "3", "--step", "128", "--small", "16",
              "--builtin-trace", "--out", str(out))  # fmt: skip
    result = read(out)
    assert result["trace"] == "built-in" and result["round_tokens"] == [128, 256, 384]
    assert len(result["reuse_s"]) == len(result["cold_s"]) == 3
    assert all(s > 0 for s in result["reuse_s"] + result["cold_s"])
    assert len(result["round_over_cold"]) == 2 and result["small_growth_over_cold"] > 0
    floor = result["prefill_floor"]  # the last round's new tokens on the round before's cache
    assert 128 <= floor["last_new_tokens"] < 160 and floor["last_cached_tokens"] > 256
    assert floor["first_s"] > 0 and floor["last_s"] > 0 and floor["last_over_first"] > 0


def test_decode_attention_benchmark_compares_both_implementations(tmp_path: Path) -> None:
    out = tmp_path / "attention.json"
    run_bench("decode_attention.py", "--dtype", "bfloat16", "--contexts", "64", "160",
              "--steps", "2", "--count", "3", "--real", "0", "--out", str(out))  # fmt: skip
    result = read(out)
    assert result["dtype"] == "bfloat16" and result["note"] == ""
    assert set(result["decode_forward_ms"]) == {"sdpa", "freelm_cpu_decode"}
    assert set(result["decode_forward_ratio"]) == {"64", "160"}
    assert result["engine"]["calls"] == 3 and result["engine"]["outputs_differ"] == []


def test_cpu_service_benchmark_measures_the_floor_and_the_service(tmp_path: Path) -> None:
    out = tmp_path / "cpu.json"
    run_bench("cpu_service.py", "--tokens", "96", "--requests-per-client", "1",
              "--builtin-traces", "--out", str(out))  # fmt: skip
    result = read(out)
    assert result["trace_tokens"] == 96
    assert len(result["bare_forward_per_trace_s"]) == 5
    assert result["p50_over_bare_forward"] > 0 and result["concurrent8_over_sequential"] > 0
    assert result["floor_dtype"] in ("float32", "bfloat16")


def test_gpu_benchmark_runs_on_a_tiny_model_on_the_cpu(
    tmp_path: Path, base_model_dir: Path
) -> None:
    run_bench("gpu_clean.py", "--tokenizer", str(base_model_dir), "--arch", "qwen3-tiny",
              "--device", "cpu", "--contexts", "128", "--work", str(tmp_path / "work"),
              env={"OUT": str(tmp_path)})  # fmt: skip
    result = read(tmp_path / "gpu_clean.json")
    assert [row["context"] for row in result["batch1"]] == [128]
    assert result["grown_by_1k"]["prefix_reuse"] and result["grown_by_1k"]["second_s"] > 0


def test_real_traces_benchmark_reports_removal_per_trace_and_the_deleted_text(
    tmp_path: Path,
) -> None:
    loop = "Hmm, so the total is 42 apples after all. " * 6
    traces = [
        {"id": "loop", "question": "How many apples?",
         "trace": "We add 40 and 2 to get 42.\n\n" + loop + "\n\nSo the answer is 42."},
        {"id": "plain", "question": "What is 3 times 4?",
         "trace": "Three times four is 12.\n\nSo the answer is 12."},
    ]  # fmt: skip
    data, out = tmp_path / "t.jsonl", tmp_path / "r.json"
    deleted = tmp_path / "replies" / "d.jsonl"  # a folder the benchmark makes
    data.write_text("".join(json.dumps(t) + "\n" for t in traces))
    run_bench("real_traces.py", "--data", str(data), "--out", str(out),
              "--deleted-text", str(deleted))  # fmt: skip
    result = read(out)
    assert result["answered"] == result["pruned_equals_trace_minus_deletions"] == 2
    fractions = sorted(r["removed_chars"] / r["chars"] for r in result["rows"])
    assert fractions[0] < fractions[1]  # the loop's copies go, the plain trace keeps its text
    assert result["removed_per_trace_median"] == round(sum(fractions) / 2, 4)
    assert fractions[0] <= result["removed_per_trace_p90"] <= fractions[1]
    replies = {r["id"]: r["deleted"] for r in map(json.loads, deleted.read_text().splitlines())}
    by_id = {t["id"]: t["trace"] for t in traces}
    assert replies["loop"] and all(
        by_id["loop"][d["start"] : d["end"]] == d["text"] for d in replies["loop"]
    )


def test_steering_benchmark_scores_each_strategy_on_one_decode(tmp_path: Path) -> None:
    out = tmp_path / "steering.json"
    run_bench("steering.py", "--seeds", "2", "--count", "6", "--out", str(out))
    result = read(out)
    (scores,) = result["sets"].values()
    assert scores["decode_s"] > 0
    assert set(result["essential_violation_rate_pooled"]) == {"none", "stop", "skip"}
    for mode in ("none", "stop", "skip"):
        assert 0.0 <= scores[mode]["f1"] <= 1.0 and 0.0 <= scores[mode]["recall"] <= 1.0
        assert scores[mode]["answer_preservation"] == 1.0  # the last sentence is protected
