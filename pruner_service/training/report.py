"""The evaluation report: the service's deletions (and the model's alone) next to the baselines.

Runs every record through the service twice, as callers get it (model commands + loop collapser)
and with the collapser off (the Free-Module's own contribution), scores both and the baselines,
and reports latency. The service is reached through a ``prune_many`` callable, so the same report
runs against a local engine or a remote server.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pruner_service.training.evaluate import BASELINES, score

PruneMany = Callable[
    [Sequence[dict[str, Any]], bool], dict[str, tuple[list[tuple[int, int]], float]]
]
"""(records, collapse_loops) → record id → (deleted spans, seconds)."""


def read_records(path: Path, limit: int = 0) -> list[dict[str, Any]]:
    records = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if line.strip():
                record = json.loads(line)
                record.setdefault("id", str(number))
                record["id"] = str(record["id"])
                records.append(record)
            if limit and len(records) >= limit:
                break
    return records


def read_predictions(path: Path) -> dict[str, list[tuple[int, int]]]:
    """A predictions file: one ``{id, deletions: [[start, end], ...]}`` per line."""
    predictions = {}
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                item = json.loads(line)
                predictions[str(item["id"])] = [(int(s), int(e)) for s, e, *_ in item["deletions"]]
    return predictions


def build_report(records: Sequence[dict[str, Any]], prune_many: PruneMany) -> dict[str, Any]:
    """Scores the service, the model alone and the baselines on ``records``."""
    service = prune_many(records, True)
    model_only = prune_many(records, False)
    latencies = [seconds for _, seconds in service.values()]
    rows = {
        "service (model + loop collapser)": score(records, _spans(service)),
        "model alone (collapser off)": score(records, _spans(model_only)),
    }
    for name, baseline in BASELINES.items():
        rows[name] = score(records, {r["id"]: baseline(r) for r in records})
    return {
        "records": len(records),
        "rows": rows,
        "latency_p50_s": statistics.median(latencies) if latencies else 0.0,
        "latency_max_s": max(latencies) if latencies else 0.0,
    }


def _spans(
    results: dict[str, tuple[list[tuple[int, int]], float]],
) -> dict[str, list[tuple[int, int]]]:
    return {key: spans for key, (spans, _) in results.items()}


def format_table(report: dict[str, Any]) -> str:
    """The report as a Markdown table."""
    header = (
        "| deletions from | P | R | F1 | macro F1 | essential viol. | answer kept | removed | "
        "removed (gold >= 35%) | removed (clean) |"
    )
    lines = [header, "|" + "---|" * 10]
    for name, m in report["rows"].items():
        lines.append(
            f"| {name} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} | "
            f"{m['macro_f1']:.3f} | {m['essential_violation_rate']:.3f} | "
            f"{m['answer_preservation']:.3f} | {m['removed_fraction']:.3f} | "
            f"{m['removed_on_high_redundancy']:.3f} | {m['removed_on_clean']:.3f} |"
        )
    kinds = report["rows"]["service (model + loop collapser)"]["recall_by_kind"]
    lines.append("")
    lines.append("Service recall by kind: " + ", ".join(f"{k} {v:.2f}" for k, v in kinds.items()))
    lines.append(
        f"{report['records']} records; latency p50 {report['latency_p50_s']:.2f} s, "
        f"max {report['latency_max_s']:.2f} s"
    )
    return "\n".join(lines)
