"""Labelled reasoning traces: procedurally generated problems, thought through in the first
person, with redundancy injected at known character spans.

Each record has the trace, the question and answer, the gold redundant spans (with their kind:
``reverify``, ``abandoned``, ``loop``, ``restate``, ``filler``), the essential spans (the steps the
answer depends on, and the answer) and gold commands: for every redundant span the shortest unique
anchors that resolve to exactly that span under the service's grammar limits. Some traces are cut
mid-reasoning (as the service sees them every N tokens) and some have nothing to delete.

Phrasing comes from one of two disjoint families of templates: ``train`` and ``eval``. A held-out
set built with another seed and the ``eval`` family shares no template with training data.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from freelm_pruner_client.anchors import AnchorCommand, resolve_anchor

KINDS = ("reverify", "abandoned", "loop", "restate", "filler")
_FORBIDDEN = set('"\\') | {chr(c) for c in range(32)}


@dataclass(frozen=True)
class Phrasing:
    """One family of sentence templates."""

    opening: tuple[str, ...]
    step: tuple[str, ...]
    reverify: tuple[str, ...]
    abandoned: tuple[str, ...]
    restate: tuple[str, ...]
    filler: tuple[str, ...]
    answer: tuple[str, ...]


FAMILIES = {
    "train": Phrasing(
        opening=("Okay, let me work through this.", "Alright, so I need to figure this out.",
                 "Let me think about this carefully."),
        step=("{s}", "So {s}", "Next, {s}", "Then {s}"),
        reverify=("Wait, let me double-check that: {s} Yes, that holds.",
                  "Hmm, let me verify once more. {s} Right.",
                  "Let me recheck this step. {s} Confirmed."),
        abandoned=("Maybe I could try {alt} instead. Actually no, that gets complicated, so I will "
                   "drop it.",
                   "Another idea is {alt}. Hmm, that does not really help here, never mind."),
        restate=("Just to restate the problem: {q}", "So the question again is: {q}"),
        filler=("Hmm, okay.", "Let me see.", "Okay, so, right."),
        answer=("So the answer is {a}.", "Therefore the final answer is {a}."),
    ),
    "eval": Phrasing(
        opening=("First, I should set up the problem.", "Let me start by reading what is asked."),
        step=("Now {s}", "Here {s}", "At this point {s}"),
        reverify=("To be safe I will confirm it again: {s} Good, it checks out.",
                  "I am going to re-examine this. {s} It is correct."),
        abandoned=("I wonder whether {alt} would work. On second thought it leads nowhere, so I "
                   "abandon it.",
                   "Perhaps {alt} could be useful. No, scrap that approach."),
        restate=("In other words, we are asked: {q}", "Put differently, the task is: {q}"),
        filler=("Well, um.", "Right, so then.", "Mm, fine."),
        answer=("The result is {a}.", "Final answer: {a}."),
    ),
}  # fmt: skip


@dataclass
class Problem:
    kind: str
    question: str
    steps: list[str]
    answer: str
    alternative: str


def _arithmetic(rng: random.Random) -> Problem:
    a, b, c = rng.randint(3, 40), rng.randint(2, 9), rng.randint(1, 30)
    name = rng.choice(["Maria", "Tom", "Aiko", "Ravi", "Lena"])
    item = rng.choice(["apples", "marbles", "books", "coins"])
    total = a * b - c
    return Problem(
        "arithmetic",
        f"{name} has {b} bags of {a} {item} and gives away {c}. How many {item} are left?",
        [f"{b} bags of {a} make {b} * {a} = {a * b} {item}.",
         f"after giving away {c}, {a * b} - {c} = {total}."],
        str(total),
        "counting the bags one by one",
    )  # fmt: skip


def _equation(rng: random.Random) -> Problem:
    x, m, k = rng.randint(-9, 15), rng.randint(2, 9), rng.randint(1, 40)
    rhs = m * x + k
    return Problem(
        "equation",
        f"Solve {m}x + {k} = {rhs} for x.",
        [f"subtracting {k} from both sides gives {m}x = {rhs - k}.",
         f"dividing by {m} gives x = {x}."],
        str(x),
        "guessing values of x",
    )  # fmt: skip


def _modular(rng: random.Random) -> Problem:
    a, e, n = rng.randint(2, 12), rng.randint(2, 6), rng.randint(5, 13)
    power = a**e
    return Problem(
        "modular",
        f"What is {a}^{e} mod {n}?",
        [f"{a}^{e} = {power}.", f"{power} divided by {n} leaves remainder {power % n}."],
        str(power % n),
        "using Fermat's little theorem",
    )  # fmt: skip


def _units(rng: random.Random) -> Problem:
    km = rng.randint(2, 90)
    minutes = rng.choice([30, 45, 60, 90, 120])
    speed = km * 60 / minutes
    return Problem(
        "units",
        f"A train covers {km} km in {minutes} minutes. What is its speed in km/h?",
        [f"{minutes} minutes is {minutes / 60:g} hours.",
         f"the speed is {km} / {minutes / 60:g} = {speed:g} km/h."],
        f"{speed:g} km/h",
        "converting everything to meters per second",
    )  # fmt: skip


def _counting(rng: random.Random) -> Problem:
    shirts, pants = rng.randint(2, 8), rng.randint(2, 6)
    return Problem(
        "counting",
        f"How many outfits can be made from {shirts} shirts and {pants} pairs of pants?",
        [f"each of the {shirts} shirts pairs with {pants} pants.",
         f"that gives {shirts} * {pants} = {shirts * pants} outfits."],
        str(shirts * pants),
        "listing every outfit by hand",
    )  # fmt: skip


def _code(rng: random.Random) -> Problem:
    n = rng.randint(3, 9)
    total = n * (n - 1) // 2
    return Problem(
        "code",
        f"What does this print? total = 0; for i in range({n}): total += i; print(total)",
        [f"the loop adds 0 through {n - 1}.", f"0 + ... + {n - 1} = {total}."],
        str(total),
        "simulating the interpreter line by line",
    )  # fmt: skip


def _logic(rng: random.Random) -> Problem:
    people = rng.sample(["Ann", "Ben", "Cal", "Dee"], 3)
    return Problem(
        "logic",
        f"{people[0]} is taller than {people[1]}, and {people[1]} is taller than {people[2]}. "
        "Who is shortest?",
        [f"{people[0]} is above {people[1]}, who is above {people[2]}.",
         f"nobody is below {people[2]}, so {people[2]} is shortest."],
        people[2],
        "drawing all six orderings",
    )  # fmt: skip


PROBLEMS: tuple[Callable[[random.Random], Problem], ...] = (
    _arithmetic,
    _equation,
    _modular,
    _units,
    _counting,
    _code,
    _logic,
)


@dataclass
class _Builder:
    """Accumulates the trace and its labelled spans."""

    parts: list[str] = field(default_factory=list)
    length: int = 0
    redundant: list[tuple[int, int, str]] = field(default_factory=list)
    essential: list[tuple[int, int]] = field(default_factory=list)

    def add(self, text: str, label: str | None = None) -> None:
        if self.parts:
            self.parts.append(" ")
            self.length += 1
        start = self.length
        self.parts.append(text)
        self.length += len(text)
        if label == "essential":
            self.essential.append((start, self.length))
        elif label:
            self.redundant.append((start, self.length, label))

    @property
    def text(self) -> str:
        return "".join(self.parts)


def _redundancy(
    rng: random.Random, style: Phrasing, problem: Problem, step: str
) -> tuple[str, str]:
    kind = rng.choice(KINDS)
    if kind == "reverify":
        return rng.choice(style.reverify).format(s=step[0].upper() + step[1:]), kind
    if kind == "abandoned":
        return rng.choice(style.abandoned).format(alt=problem.alternative), kind
    if kind == "restate":
        return rng.choice(style.restate).format(q=problem.question), kind
    if kind == "loop":
        return rng.choice(["Wait, no.", "Hmm, wait.", "Let me think again."]), kind
    return rng.choice(style.filler), kind


def _add_redundancy(b: _Builder, text: str, kind: str, rng: random.Random) -> None:
    """A loop repeats ``text`` 3-6 times and keeps its first copy (as the loop collapser does):
    the gold span runs from the end of the first copy to the end of the last."""
    if kind != "loop":
        b.add(text, kind)
        return
    b.add(text)
    start = b.length
    b.add(" ".join([text] * (rng.randint(3, 6) - 1)))
    b.redundant.append((start, b.length, "loop"))


def make_record(
    rng: random.Random, family: str, index: int, p_clean: float = 0.15
) -> dict[str, Any]:
    """One labelled trace."""
    style = FAMILIES[family]
    problem = rng.choice(PROBLEMS)(rng)
    clean = rng.random() < p_clean
    b = _Builder()
    used: set[str] = set()
    b.add(rng.choice(style.opening))
    for step in problem.steps:
        template = rng.choice(style.step)
        b.add(
            template.format(s=step[0].upper() + step[1:] if template == "{s}" else step),
            "essential",
        )
        for _ in range(0 if clean else rng.choice([0, 1, 1, 2])):
            text, kind = _redundancy(rng, style, problem, step)
            if text not in used:  # a repeated segment would have no unique anchor
                used.add(text)
                _add_redundancy(b, text, kind, rng)
    b.add(rng.choice(style.answer).format(a=problem.answer), "essential")
    trace, redundant, essential = b.text, b.redundant, b.essential
    if rng.random() < 0.2 and len(essential) > 1:  # a partial trace, cut mid-reasoning
        cut = essential[-1][0] - 1
        trace = trace[:cut]
        redundant = [r for r in redundant if r[1] <= cut]
        essential = [e for e in essential if e[1] <= cut]
    return {
        "id": f"{family}-{index}",
        "kind": problem.kind,
        "question": problem.question,
        "answer": problem.answer,
        "trace": trace,
        "redundant_spans": [list(r) for r in redundant],
        "essential_spans": [list(e) for e in essential],
        "commands": [
            {"prefix": c.prefix, "suffix": c.suffix}
            for c in (gold_command(trace, s, e) for s, e, _ in redundant)
            if c is not None
        ],
    }


def gold_command(trace: str, start: int, end: int, max_chars: int = 48) -> AnchorCommand | None:
    """The shortest unique anchors (within the grammar's limits) resolving to exactly
    ``[start, end)``, or None when no such pair exists."""
    limit = min(max_chars, end - start)
    for k in range(1, limit + 1):
        prefix = trace[start : start + k]
        if set(prefix) & _FORBIDDEN:
            return None  # every longer prefix contains it too
        first = trace.find(prefix)
        if trace.find(prefix, first + 1) >= 0:
            continue  # not unique (rule 2 counts overlapping occurrences)
        for m in range(1, limit + 1):
            suffix = trace[end - m : end]
            if set(suffix) & _FORBIDDEN:
                break
            _, span = resolve_anchor(trace, prefix, suffix)
            if span is not None and (span.start, span.end) == (start, end):
                return AnchorCommand(prefix, suffix)
    return None


def generate(count: int, seed: int, family: str) -> Iterator[dict[str, Any]]:
    """``count`` records from ``seed`` in the phrasing ``family`` (``train`` or ``eval``)."""
    rng = random.Random(seed)
    for index in range(count):
        yield make_record(rng, family, index)
