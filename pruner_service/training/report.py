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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pruner_service.training.evaluate import BASELINES, score

UNRESOLVED = {"INVALID_COMMAND", "PREFIX_NOT_FOUND", "PREFIX_AMBIGUOUS", "SUFFIX_NOT_FOUND"}


@dataclass(frozen=True)
class Pruned:
    """What the service answered for one record, as the report needs it."""

    deletions: list[tuple[int, int]]
    seconds: float
    statuses: list[str]  # of the model's commands
    parsed: bool  # the raw output is valid JSON
    trace_tokens: int
    kept_tokens: int
    commands: list[tuple[str, str]] = field(default_factory=list)  # (prefix, suffix)


PruneMany = Callable[[Sequence[dict[str, Any]], bool], dict[str, Pruned]]
"""(records, collapse_loops) → record id → what the service answered."""


def parses(raw_output: str) -> bool:
    try:
        return isinstance(json.loads(raw_output), list)
    except json.JSONDecodeError:
        return False


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


def write_predictions(path: Path, results: dict[str, Pruned]) -> None:
    """What the service answered, one ``{id, deletions, commands}`` per line: a predictions file
    ``eval --predictions`` scores again, with each command's anchors and status for inspection."""
    with path.open("w", encoding="utf-8") as out:
        for key, item in results.items():
            commands = [
                {"prefix": prefix, "suffix": suffix, "status": status}
                for (prefix, suffix), status in zip(item.commands, item.statuses, strict=False)
            ]
            line = {"id": key, "deletions": item.deletions, "commands": commands}
            out.write(json.dumps(line, ensure_ascii=False) + "\n")


def build_report(
    records: Sequence[dict[str, Any]], prune_many: PruneMany, save: Path | None = None
) -> dict[str, Any]:
    """Scores the service, the model alone and the baselines on ``records``; with ``save``, the
    service's answers are also written there (see :func:`write_predictions`)."""
    service = prune_many(records, True)
    if save is not None:
        write_predictions(save, service)
    model_only = prune_many(records, False)
    latencies = [item.seconds for item in service.values()]
    rows = {
        "service (model + loop collapser)": _served(records, service),
        "model alone (collapser off)": _served(records, model_only),
    }
    for name, baseline in BASELINES.items():
        rows[name] = score(records, {r["id"]: baseline(r) for r in records})
    return {
        "records": len(records),
        "rows": rows,
        "latency_p50_s": statistics.median(latencies) if latencies else 0.0,
        "latency_max_s": max(latencies) if latencies else 0.0,
    }


def _served(records: Sequence[dict[str, Any]], results: dict[str, Pruned]) -> dict[str, Any]:
    """The scores of the service's deletions, with the service-only measures: outputs that parse,
    commands that resolve, and tokens removed."""
    metrics = score(records, {key: item.deletions for key, item in results.items()})
    items = list(results.values())
    statuses = [s for item in items for s in item.statuses]
    metrics["outputs_parsed"] = sum(i.parsed for i in items) / len(items) if items else 1.0
    metrics["commands"] = len(statuses)
    metrics["commands_resolved"] = (
        sum(s not in UNRESOLVED for s in statuses) / len(statuses) if statuses else 1.0
    )
    fractions = [1 - i.kept_tokens / i.trace_tokens for i in items if i.trace_tokens]
    metrics["removed_token_fraction"] = statistics.fmean(fractions) if fractions else 0.0
    return metrics


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
    service = report["rows"]["service (model + loop collapser)"]
    kinds = service["recall_by_kind"]
    lines.append("")
    lines.append("Service recall by kind: " + ", ".join(f"{k} {v:.2f}" for k, v in kinds.items()))
    lines.append(
        f"Outputs parsed {service['outputs_parsed']:.3f}; {service['commands']} commands, "
        f"{service['commands_resolved']:.3f} resolved; tokens removed "
        f"{service['removed_token_fraction']:.3f}"
    )
    lines.append(
        f"{report['records']} records; latency p50 {report['latency_p50_s']:.2f} s, "
        f"max {report['latency_max_s']:.2f} s"
    )
    return "\n".join(lines)
