"""Labelling functions: sentence labels of real reasoning traces without a teacher model.

Each function reads a trace (and its question) and votes on sentences: ``REDUNDANT`` for a kind of
redundancy real traces have, or ``KEEP`` for a sentence a deletion must not reach. ``label``
combines the votes of ``FUNCTIONS`` (any ``KEEP`` vetoes; else any ``REDUNDANT`` labels), a plain
weak-supervision rule: the functions are few, and their precision and coverage are measured one
by one on the realbench development split (``bench/labelling.py``, figures in
``docs/BENCHMARKS.md``), which is for measuring only, never for fitting them. ``silver_record``
turns the labels into a training record with commands (``data.gold_command``); ``silver_windows``
into one record per window of a long trace, as the service reads a long trace in windows.

Kinds (sentences as ``segments.sentences`` splits them, offsets in code points):

- ``filler``: a short sentence made only of hedges and interjections (``Hmm.``, ``Okay, so.``,
  ``Let me think.``), no number;
- ``check_cue``: a sentence opening a re-check (``Let me verify``, ``Double-check``, ``Wait, is
  that right?``) whose numbers all occur earlier in the trace: a check that brings nothing new;
- ``recomputation``: a sentence with an equation whose numbers (two or more) all occur earlier
  in the trace, the same result included: a result derived again;
- ``loop``: a copy the loop collapser removes (``loop_collapser.loop_spans``);
- ``result`` (KEEP): a result sentence (``segments.result_sentences``: where a number the trace
  uses again is first written);
- ``answer`` (KEEP): the last sentence with word content, and any sentence with ``\\boxed`` or
  ``answer is``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from freelm_pruner_client.loop_collapser import loop_spans
from freelm_pruner_client.segments import (
    BLANK_LINE,
    NUMBER,
    last_sentence,
    result_sentences,
    sentences,
)

from pruner_service.training.data import gold_command


class Vote(Enum):
    REDUNDANT = "redundant"
    KEEP = "keep"


@dataclass(frozen=True)
class Sentence:
    """One sentence of a trace: its ``[start, end)`` in code points and its text."""

    start: int
    end: int
    text: str


FILLER_WORDS = frozenset(
    {"hmm", "hm", "um", "uh", "ok", "okay", "alright", "all", "right", "so", "well", "wait",
     "oh", "ah", "yeah", "yes", "now", "then", "let", "me", "think", "see", "i", "guess",
     "actually", "anyway"}
)  # fmt: skip
"""Words a filler sentence may consist of (case and punctuation ignored)."""

MAX_FILLER_WORDS = 6

CHECK_CUE = re.compile(
    r"^\W*(?:(?:but |hmm,? |wait,? |okay,? |so,? )*(?:let me|let's|i(?:'ll| will| should)"
    r"(?: just)?) (?:double[- ]?check|check|verify|confirm|make sure|recheck|re-check)"
    r"|double[- ]?check|to (?:double[- ]?check|verify|confirm|be sure)|just to (?:be sure|"
    r"confirm|check)|checking|verif(?:y|ying)\b|is (?:that|this) (?:right|correct)\b)",
    re.IGNORECASE,
)
"""A sentence that opens a re-check, e.g. ``Let me verify``, ``Wait, let me double-check``."""

EQUATION = re.compile(r"=")
ANSWER = re.compile(r"\\boxed|answer is|final answer", re.IGNORECASE)
_WORDS = re.compile(r"[a-z']+")

LabellingFunction = Callable[[str, str, list[Sentence]], dict[int, Vote]]
"""(trace, question, its sentences) → votes by sentence index."""


def split(trace: str) -> list[Sentence]:
    """``trace`` in sentences (``segments.sentences``)."""
    return [Sentence(s, e, trace[s:e]) for s, e in sentences(trace)]


def _numbers(text: str) -> list[str]:
    return [m.group().replace("\u2212", "-") for m in NUMBER.finditer(text)]


def _seen_before(trace: str, sentence: Sentence) -> set[str]:
    return set(_numbers(trace[: sentence.start]))


def filler(trace: str, question: str, units: list[Sentence]) -> dict[int, Vote]:
    """Short sentences of hedges and interjections only (``FILLER_WORDS``), without numbers."""
    votes = {}
    for i, unit in enumerate(units):
        words = _WORDS.findall(unit.text.casefold())
        if (words and len(words) <= MAX_FILLER_WORDS and not _numbers(unit.text)
                and all(w in FILLER_WORDS for w in words)):  # fmt: skip
            votes[i] = Vote.REDUNDANT
    return votes


def check_cue(trace: str, question: str, units: list[Sentence]) -> dict[int, Vote]:
    """Sentences opening a re-check whose numbers (if any) all occur earlier in the trace."""
    votes = {}
    for i, unit in enumerate(units):
        if CHECK_CUE.match(unit.text) and set(_numbers(unit.text)) <= _seen_before(trace, unit):
            votes[i] = Vote.REDUNDANT
    return votes


def check_block(trace: str, question: str, units: list[Sentence]) -> dict[int, Vote]:
    """A re-check (``check_cue``) and the sentences after it in its paragraph, up to the first
    that writes a number not in the trace before the cue: a check that derives nothing new."""
    votes = {}
    for i, unit in enumerate(units):
        if not CHECK_CUE.match(unit.text):
            continue
        known = _seen_before(trace, unit)
        j = i
        while j < len(units) and set(_numbers(units[j].text)) <= known:
            votes[j] = Vote.REDUNDANT
            if j + 1 < len(units) and BLANK_LINE.search(trace, units[j].end, units[j + 1].start):
                break
            j += 1
    return votes


def recomputation(trace: str, question: str, units: list[Sentence]) -> dict[int, Vote]:
    """Sentences with an equation whose two or more numbers all occur earlier in the trace."""
    votes = {}
    for i, unit in enumerate(units):
        numbers = set(_numbers(unit.text))
        if (
            EQUATION.search(unit.text)
            and len(numbers) >= 2
            and numbers <= _seen_before(trace, unit)
        ):
            votes[i] = Vote.REDUNDANT
    return votes


def loop(trace: str, question: str, units: list[Sentence]) -> dict[int, Vote]:
    """Sentences inside a copy the loop collapser removes."""
    spans = loop_spans(trace)
    return {i: Vote.REDUNDANT for i, unit in enumerate(units)
            if any(s.start <= unit.start and unit.end <= s.end for s in spans)}  # fmt: skip


def result(trace: str, question: str, units: list[Sentence]) -> dict[int, Vote]:
    """KEEP result sentences (``segments.result_sentences``)."""
    kept = set(result_sentences(trace, question))
    return {i: Vote.KEEP for i, unit in enumerate(units) if (unit.start, unit.end) in kept}


def answer(trace: str, question: str, units: list[Sentence]) -> dict[int, Vote]:
    """KEEP the last sentence with word content and any sentence stating the answer."""
    last = last_sentence(trace)
    return {i: Vote.KEEP for i, unit in enumerate(units)
            if ANSWER.search(unit.text) or (unit.start, unit.end) == last}  # fmt: skip


FUNCTIONS: dict[str, LabellingFunction] = {
    "check_block": check_block,
    "loop": loop,
    "result": result,
    "answer": answer,
}
"""The functions ``label`` combines by default: those measured precise enough on the realbench
development split (``docs/BENCHMARKS.md``). Left out: ``check_cue`` (a part of ``check_block``),
``recomputation`` (it hit an essential step in 17 of 20 traces: an essential step often combines
known numbers) and ``filler`` (2 traces hit for 0.1% of the text removed)."""

CANDIDATES: dict[str, LabellingFunction] = {
    **FUNCTIONS,
    "filler": filler,
    "check_cue": check_cue,
    "recomputation": recomputation,
}
"""Every function, measured ones that are not combined included (``bench/labelling.py``)."""

KEEP_FUNCTIONS = ("result", "answer")
"""The functions that only vote ``KEEP``."""


def votes(
    trace: str, question: str = "", names: Iterable[str] = FUNCTIONS
) -> dict[str, dict[int, Vote]]:
    units = split(trace)
    return {name: CANDIDATES[name](trace, question, units) for name in names}


def label(
    trace: str, question: str = "", names: Iterable[str] = FUNCTIONS
) -> list[tuple[int, int]]:
    """The ``[start, end)`` of every sentence labelled redundant: some function votes
    ``REDUNDANT`` and none votes ``KEEP``."""
    units = split(trace)
    cast = [CANDIDATES[name](trace, question, units) for name in names]
    return [(unit.start, unit.end) for i, unit in enumerate(units)
            if any(v.get(i) is Vote.REDUNDANT for v in cast)
            and not any(v.get(i) is Vote.KEEP for v in cast)]  # fmt: skip


def spans(trace: str, sentences_labelled: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Labelled sentences merged into spans: neighbours (only whitespace between, no blank line)
    join; each span starts at its first sentence and ends at its last one's end."""
    merged: list[list[int]] = []
    for start, end in sentences_labelled:
        gap = trace[merged[-1][1] : start] if merged else ""
        if merged and not gap.strip() and not BLANK_LINE.search(gap):
            merged[-1][1] = end
        else:
            merged.append([start, end])
    return [(s, e) for s, e in merged]


def silver_record(
    record: dict[str, Any],
    max_anchor_chars: int = 48,
    max_commands: int = 8,
    names: Iterable[str] = FUNCTIONS,
) -> dict[str, Any]:
    """A training record from an unlabelled real one (``id``, ``trace``, ``question``): the
    labelled spans as ``redundant_spans`` and a command for each span that ``data.gold_command``
    can write (unique anchors within ``max_anchor_chars``, resolving to exactly the span), the
    first ``max_commands`` of them (the most a profile's model may write per call)."""
    trace, question, names = record["trace"], record.get("question") or "", tuple(names)
    found = spans(trace, label(trace, question, names))
    return _record(record["id"], trace, question, found, (max_anchor_chars, max_commands), names)


def silver_windows(
    record: dict[str, Any],
    windows: Sequence[tuple[int, int]],
    max_anchor_chars: int = 48,
    max_commands: int = 8,
    names: Iterable[str] = FUNCTIONS,
) -> list[dict[str, Any]]:
    """One training record per window ``[start, end)`` (code points of ``record["trace"]``, in
    order, e.g. ``engine.windows.split``'s): labels come from the whole trace (a re-check is known
    redundant by what came before it, windows before included); a window keeps the spans that lie
    whole inside it, offsets made relative to it, with commands whose anchors are unique in the
    window, as a windowed call reads them. Records are named ``{id}@{start}-{end}`` and carry
    ``window``; a whitespace-only window gives none."""
    trace, question, names = record["trace"], record.get("question") or "", tuple(names)
    found = spans(trace, label(trace, question, names))
    out = []
    for start, end in windows:
        if not trace[start:end].strip():
            continue
        inside = [(s - start, e - start) for s, e in found if start <= s and e <= end]
        name = f"{record['id']}@{start}-{end}"
        limits = (max_anchor_chars, max_commands)
        window = _record(name, trace[start:end], question, inside, limits, names)
        out.append({**window, "window": [start, end]})
    return out


def _record(
    name: str,
    trace: str,
    question: str,
    found: list[tuple[int, int]],
    limits: tuple[int, int],
    names: Iterable[str],
) -> dict[str, Any]:
    """A training record; ``limits``: (max anchor chars, max commands)."""
    max_anchor_chars, max_commands = limits
    commands = [c for s, e in found if (c := gold_command(trace, s, e, max_anchor_chars))]
    commands = commands[:max_commands]
    return {
        "id": name,
        "trace": trace,
        "question": question,
        "redundant_spans": [[s, e, "silver"] for s, e in found],
        "commands": [{"prefix": c.prefix, "suffix": c.suffix} for c in commands],
        "source": "silver: labelling functions " + ", ".join(names),
    }
