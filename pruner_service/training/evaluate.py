"""Scoring deletions against gold spans, and the baselines every report compares with.

Records: ``{id, question?, trace, answer?, redundant_spans?, essential_spans?, kind?}``; spans are
``[start, end]`` or ``[start, end, kind]`` in code points. Predictions: for each record id, the
list of deleted ``(start, end)`` spans (a reply's final ``deletions``).

Metrics: character-level precision, recall and F1 against the gold redundant spans (micro over all
characters, and macro over traces), the essential-violation rate (traces where any essential
character was deleted), answer preservation (traces whose answer text survives, among those that
contain it), the mean fraction of characters removed, removal on traces with >= 35% gold
redundancy and on traces with none, and recall per redundancy kind.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from freelm_pruner_client.anchors import prune
from freelm_pruner_client.loop_collapser import loop_spans
from freelm_pruner_client.segments import sentences

from pruner_service.domain import PruneOptions

Spans = Sequence[tuple[int, int]]


def _mask(n: int, spans: Iterable[Sequence[int]]) -> list[bool]:
    mask = [False] * n
    for span in spans:
        for i in range(max(0, span[0]), min(n, span[1])):
            mask[i] = True
    return mask


def _f1(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def _ratio(part: float, whole: float) -> float:
    return part / whole if whole else 0.0


def score(records: Sequence[Mapping[str, Any]], predictions: Mapping[str, Spans]) -> dict[str, Any]:
    """The metrics of ``predictions`` (deleted spans by record id) over ``records``."""
    totals: dict[str, float] = defaultdict(float)
    kind_gold: dict[str, int] = defaultdict(int)
    kind_hit: dict[str, int] = defaultdict(int)
    macro: list[float] = []
    for record in records:
        trace = record["trace"]
        n = len(trace)
        deleted = _mask(n, predictions.get(str(record["id"]), ()))
        gold = _mask(n, record.get("redundant_spans", ()))
        essential = _mask(n, record.get("essential_spans", ()))
        tp = sum(d and g for d, g in zip(deleted, gold, strict=True))
        fp = sum(d and not g for d, g in zip(deleted, gold, strict=True))
        fn = sum(g and not d for d, g in zip(deleted, gold, strict=True))
        totals["tp"] += tp
        totals["fp"] += fp
        totals["fn"] += fn
        macro.append(_f1(tp, fp, fn)[2])
        totals["traces"] += 1
        totals["violations"] += any(d and e for d, e in zip(deleted, essential, strict=True))
        removed = _ratio(sum(deleted), n)
        totals["removed"] += removed
        _answer(record, trace, deleted, totals)
        _bucket(sum(gold) / n if n else 0.0, removed, totals)
        for span in record.get("redundant_spans", ()):
            if len(span) > 2:
                kind_gold[span[2]] += span[1] - span[0]
                kind_hit[span[2]] += sum(deleted[span[0] : span[1]])
    precision, recall, f1 = _f1(int(totals["tp"]), int(totals["fp"]), int(totals["fn"]))
    traces = totals["traces"]
    return {
        "traces": int(traces),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "macro_f1": sum(macro) / len(macro) if macro else 0.0,
        "essential_violation_rate": _ratio(totals["violations"], traces),
        "answer_preservation": _ratio(totals["answer_kept"], totals["answer_present"]) or 1.0,
        "removed_fraction": _ratio(totals["removed"], traces),
        "removed_on_high_redundancy": _ratio(totals["high_removed"], totals["high"]),
        "removed_on_clean": _ratio(totals["clean_removed"], totals["clean"]),
        "recall_by_kind": {k: _ratio(kind_hit[k], v) for k, v in sorted(kind_gold.items())},
    }


def _answer(
    record: Mapping[str, Any], trace: str, deleted: list[bool], totals: dict[str, float]
) -> None:
    answer = str(record.get("answer") or "")
    if not answer or answer not in trace:
        return
    totals["answer_present"] += 1
    kept = "".join(ch for ch, gone in zip(trace, deleted, strict=True) if not gone)
    totals["answer_kept"] += answer in kept


def _bucket(gold_fraction: float, removed: float, totals: dict[str, float]) -> None:
    if gold_fraction >= 0.35:
        totals["high"] += 1
        totals["high_removed"] += removed
    elif gold_fraction == 0:
        totals["clean"] += 1
        totals["clean_removed"] += removed


# baselines -------------------------------------------------------------------------------------
def no_deletions(record: Mapping[str, Any]) -> list[tuple[int, int]]:
    return []


def loop_collapser(record: Mapping[str, Any]) -> list[tuple[int, int]]:
    """The service's loop collapser alone, under the service's default protection and limit."""
    trace, question = record["trace"], str(record.get("question") or "")
    protection = PruneOptions().protection()
    out = prune(trace, [], loop_spans=loop_spans(trace), protection=protection, question=question)
    return [(d.start, d.end) for d in out.deletions]


def duplicate_sentences(record: Mapping[str, Any]) -> list[tuple[int, int]]:
    """Deletes every sentence that already appeared verbatim earlier in the trace."""
    seen: set[str] = set()
    spans = []
    trace = record["trace"]
    for start, end in sentences(trace):
        text = " ".join(trace[start:end].split())
        if text in seen:
            spans.append((start, end))
        seen.add(text)
    return spans


BASELINES = {
    "no deletions": no_deletions,
    "loop collapser alone": loop_collapser,
    "duplicate-sentence remover": duplicate_sentences,
}
