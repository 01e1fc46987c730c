"""Labelled reasoning traces: procedurally generated problems, thought through in the first
person, with redundancy injected at known character spans.

Each record has the trace, the question and answer, the gold redundant spans (with their kind:
``reverify``, ``abandoned``, ``loop``, ``restate``, ``filler``), the essential spans (the steps the
answer depends on, and the answer) and gold commands: for every redundant span the shortest unique
anchors (whole words) that resolve to exactly that span under the service's grammar limits. Some
traces are cut mid-reasoning (as the service sees them every N tokens), some have nothing to delete
and about a third carry heavy redundancy.

Phrasing comes from one of two disjoint families (``phrasing.py``): ``train`` and ``eval``. A
held-out set built with another seed and the ``eval`` family shares no sentence pool entry with
training data.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from freelm_pruner_client.anchors import AnchorCommand, occurs_more_than_once, resolve_anchor

from pruner_service.engine.grammar import anchor_fits
from pruner_service.training.phrasing import FAMILIES, Phrasing

KINDS = ("reverify", "abandoned", "loop", "restate", "filler")


@dataclass
class Problem:
    """A generated problem: the steps its answer depends on, each with a short recomputation
    (what a re-verification says), and approaches a solver might start and abandon."""

    kind: str
    question: str
    steps: list[tuple[str, str]]
    answer: str
    alternatives: tuple[str, ...]


_NAMES = ("Maria", "Tom", "Aiko", "Ravi", "Lena", "Omar", "Sofia", "Jin", "Priya", "Noah")
_ITEMS = ("apples", "marbles", "books", "coins", "stickers", "pencils", "cards", "shells")


def _arithmetic(rng: random.Random) -> Problem:
    a, b, c, d = rng.randint(3, 40), rng.randint(2, 9), rng.randint(1, 30), rng.randint(2, 15)
    name, item = rng.choice(_NAMES), rng.choice(_ITEMS)
    total = a * b - c + d
    return Problem(
        "arithmetic",
        f"{name} has {b} bags of {a} {item}, gives away {c} and then finds {d} more. "
        f"How many {item} does {name} have now?",
        [(f"{b} bags of {a} make {b} * {a} = {a * b} {item}.", f"{b} times {a} is {a * b}."),
         (f"after giving away {c}, {a * b} - {c} = {a * b - c} are left.",
          f"{a * b} minus {c} gives {a * b - c}."),
         (f"finding {d} more gives {a * b - c} + {d} = {total}.",
          f"{a * b - c} plus {d} is {total}.")],
        str(total),
        ("counting the bags one by one", "drawing a picture of the bags",
         "setting up an equation with a variable"),
    )  # fmt: skip


def _equation(rng: random.Random) -> Problem:
    x, m, k = rng.randint(-9, 15), rng.randint(2, 9), rng.randint(1, 40)
    rhs = m * x + k
    return Problem(
        "equation",
        f"Solve {m}x + {k} = {rhs} for x.",
        [(f"subtracting {k} from both sides gives {m}x = {rhs - k}.",
          f"{rhs} - {k} = {rhs - k}."),
         (f"dividing by {m} gives x = {x}.", f"{rhs - k} / {m} = {x}."),
         (f"plugging back in, {m} * {x} + {k} = {rhs}, which matches.",
          f"{m * x} + {k} = {rhs}.")],
        str(x),
        ("guessing values of x", "graphing both sides", "moving everything to the right side"),
    )  # fmt: skip


def _modular(rng: random.Random) -> Problem:
    a, e, n = rng.randint(2, 12), rng.randint(2, 5), rng.randint(5, 13)
    power = a**e
    return Problem(
        "modular",
        f"What is {a}^{e} mod {n}?",
        [(f"{a}^{e} = {power}.", f"{a} to the power {e} is {power}."),
         (f"{power} = {n} * {power // n} + {power % n}.",
          f"{n} * {power // n} = {n * (power // n)}."),
         (f"so {power} divided by {n} leaves remainder {power % n}.",
          f"the remainder of {power} by {n} is {power % n}.")],
        str(power % n),
        ("using Fermat's little theorem", "reducing the base first",
         "looking for a cycle in the powers"),
    )  # fmt: skip


def _units(rng: random.Random) -> Problem:
    km = rng.randint(2, 90)
    minutes = rng.choice([30, 45, 60, 90, 120, 150])
    hours = minutes / 60
    speed = km / hours
    return Problem(
        "units",
        f"A train covers {km} km in {minutes} minutes. What is its speed in km/h?",
        [(f"{minutes} minutes is {minutes} / 60 = {hours:g} hours.",
          f"{minutes} over 60 is {hours:g}."),
         (f"the speed is distance over time, {km} / {hours:g} = {speed:g} km/h.",
          f"{km} divided by {hours:g} is {speed:g}.")],
        f"{speed:g} km/h",
        ("converting everything to meters per second", "working out the distance per minute",
         "using a proportion table"),
    )  # fmt: skip


def _counting(rng: random.Random) -> Problem:
    shirts, pants, hats = rng.randint(2, 8), rng.randint(2, 6), rng.randint(2, 4)
    pairs = shirts * pants
    return Problem(
        "counting",
        f"How many outfits can be made from {shirts} shirts, {pants} pairs of pants "
        f"and {hats} hats?",
        [(f"each of the {shirts} shirts pairs with {pants} pants, so {shirts} * {pants} = "
          f"{pairs} combinations.", f"{shirts} times {pants} is {pairs}."),
         (f"each combination takes one of {hats} hats, giving {pairs} * {hats} = "
          f"{pairs * hats} outfits.", f"{pairs} times {hats} is {pairs * hats}.")],
        str(pairs * hats),
        ("listing every outfit by hand", "drawing a tree diagram",
         "counting outfits without hats first and adjusting"),
    )  # fmt: skip


def _code(rng: random.Random) -> Problem:
    n, start = rng.randint(3, 9), rng.randint(0, 5)
    total = start + n * (n - 1) // 2
    return Problem(
        "code",
        f"Given total = {start}; for i in range({n}): total += i; print(total), what is printed?",
        [(f"the loop adds 0 through {n - 1} to the starting value {start}.",
          f"range({n}) gives 0 to {n - 1}."),
         (f"0 + ... + {n - 1} = {n * (n - 1) // 2}.",
          f"{n - 1} * {n} / 2 = {n * (n - 1) // 2}."),
         (f"total ends at {start} + {n * (n - 1) // 2} = {total}.",
          f"{start} plus {n * (n - 1) // 2} is {total}.")],
        str(total),
        ("simulating the interpreter line by line", "rewriting the loop as a while loop",
         "tracking every intermediate value in a table"),
    )  # fmt: skip


def _logic(rng: random.Random) -> Problem:
    people = rng.sample(["Ann", "Ben", "Cal", "Dee", "Eve", "Finn"], 3)
    return Problem(
        "logic",
        f"{people[0]} is taller than {people[1]}, and {people[1]} is taller than {people[2]}. "
        "Who is shortest?",
        [(f"{people[0]} is above {people[1]}, who is above {people[2]}.",
          f"the order is {people[0]}, {people[1]}, {people[2]}."),
         (f"nobody is below {people[2]}, so {people[2]} is shortest.",
          f"{people[2]} is at the bottom.")],
        people[2],
        ("drawing all six orderings", "assigning made-up heights",
         "checking each person one at a time"),
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

    def add(self, text: str, label: str | None = None, sep: str = " ") -> None:
        if self.parts:
            self.parts.append(sep)
            self.length += len(sep)
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


def _capital(text: str) -> str:
    return text[0].upper() + text[1:]


def _redundancy(
    rng: random.Random, style: Phrasing, problem: Problem, step: tuple[str, str]
) -> tuple[str, str]:
    kind = rng.choice(KINDS)
    if kind == "reverify":
        body = _capital(rng.choice(step))
        return f"{rng.choice(style.reverify_open)} {body} {rng.choice(style.reverify_close)}", kind
    if kind == "abandoned":
        parts = [rng.choice(style.abandoned_open).format(alt=rng.choice(problem.alternatives))]
        if rng.random() < 0.4:
            parts.append(rng.choice(style.abandoned_middle))
        parts.append(rng.choice(style.abandoned_close))
        return " ".join(parts), kind
    if kind == "restate":
        return rng.choice(style.restate).format(q=problem.question), kind
    if kind == "loop":
        return rng.choice(style.loop), kind
    return rng.choice(style.filler), kind


def _add_redundancy(b: _Builder, text: str, kind: str, rng: random.Random, sep: str) -> None:
    """A loop repeats ``text`` 3-6 times and keeps its first copy (as the loop collapser does):
    the gold span runs from the end of the first copy to the end of the last."""
    if kind != "loop":
        b.add(text, kind, sep)
        return
    b.add(text, sep=sep)
    start = b.length
    b.add(" ".join([text] * (rng.randint(3, 6) - 1)))
    b.redundant.append((start, b.length, "loop"))


def _sep(rng: random.Random) -> str:
    return "\n\n" if rng.random() < 0.35 else " "


def make_record(
    rng: random.Random, family: str, index: int, p_clean: float = 0.12
) -> dict[str, Any]:
    """One labelled trace."""
    style = FAMILIES[family]
    problem = rng.choice(PROBLEMS)(rng)
    clean = rng.random() < p_clean
    heavy = rng.random() < 0.3  # a trace with much redundancy
    b = _Builder()
    b.add(rng.choice(style.opening))
    if not clean and rng.random() < 0.25:
        text, kind = rng.choice(style.restate).format(q=problem.question), "restate"
        b.add(text, kind, _sep(rng))
    for step in problem.steps:
        template = rng.choice(style.step)
        text = template.format(s=step[0], S=_capital(step[0]))
        if style.hedge and rng.random() < 0.45:
            text = f"{rng.choice(style.hedge)} {step[0]}"
        b.add(text, "essential", _sep(rng))
        extra = 0 if clean else rng.choice([1, 2, 3] if heavy else [0, 0, 1, 1, 2])
        for _ in range(extra):
            text, kind = _redundancy(rng, style, problem, step)
            if text[:40] not in b.text:  # a repeated opening would have no unique anchor
                _add_redundancy(b, text, kind, rng, _sep(rng))
    b.add(rng.choice(style.answer).format(a=problem.answer), "essential", _sep(rng))
    trace, redundant, essential = b.text, b.redundant, b.essential
    if rng.random() < 0.2 and len(essential) > 1:  # a partial trace, cut mid-reasoning
        cut = essential[-1][0] - 1
        trace = trace[:cut].rstrip()
        redundant = [r for r in redundant if r[1] <= len(trace)]
        essential = [e for e in essential if e[1] <= len(trace)]
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
            for c in (gold_command(trace, s, e) for s, e, kind in redundant if kind != "loop")
            if c is not None
        ],
    }


def _word_ends(text: str) -> list[int]:
    """Lengths of the prefixes of ``text`` that end at a word boundary."""
    return [i for i in range(1, len(text) + 1) if i == len(text) or text[i].isspace()]


def gold_command(
    trace: str, start: int, end: int, max_chars: int = 48, min_chars: int = 12
) -> AnchorCommand | None:
    """The shortest unique anchors resolving to exactly ``[start, end)``, or None when no pair
    within the grammar's limits exists.

    Anchors are whole words (a prefix ends, and a suffix starts, at a word boundary of the span)
    and at least ``min_chars`` long where the span allows: the model learns to copy the opening
    and closing words of what it deletes, not to count which single characters are unique.
    """
    span = trace[start:end]
    floor = min(min_chars, len(span))
    prefixes = [k for k in _word_ends(span) if floor <= k <= max_chars]
    prefixes = prefixes or list(range(floor, min(max_chars, len(span)) + 1))
    starts = [m for m in range(len(span)) if m == 0 or span[m - 1].isspace()]
    suffixes = [m for m in reversed(starts) if floor <= len(span) - m <= max_chars]
    suffixes = suffixes or [len(span) - n for n in range(floor, min(max_chars, len(span)) + 1)]
    for k in prefixes:
        prefix = span[:k]
        if not anchor_fits(prefix, max_chars):
            return None  # every longer prefix is unwritable too
        if occurs_more_than_once(trace, prefix):
            continue  # rule 2 would reject it as ambiguous
        for m in suffixes:
            suffix = span[m:]
            if not anchor_fits(suffix, max_chars):
                continue
            _, resolved = resolve_anchor(trace, prefix, suffix)
            if resolved is not None and (resolved.start, resolved.end) == (start, end):
                return AnchorCommand(prefix, suffix)
    return None


def make_long_record(
    rng: random.Random, family: str, index: int, target_chars: int
) -> dict[str, Any]:
    """One long labelled trace of at least ``target_chars`` code points: several problems'
    reasoning (``make_record``) in paragraphs, one after another, with two kinds of redundancy
    that only long traces have: long loops (one sentence of the trace so far repeated 8-40
    times; every copy after the first is gold) and re-checks of a result stated far earlier
    (across window borders; gold ``reverify``). The question lists every part's question. The
    record has no gold commands (anchors are for short training traces)."""
    style = FAMILIES[family]
    b = _Builder()
    questions: list[str] = []
    stated: list[str] = []  # recomputations of results already stated, to re-check later
    part = 0
    while b.length < target_chars:
        record = make_record(rng, family, part)
        offset = b.length + (2 if b.parts else 0)
        b.add(record["trace"], sep="\n\n")
        b.redundant += [(s + offset, e + offset, k) for s, e, k in _redundant(record)]
        b.essential += [(s + offset, e + offset) for s, e in _essential(record)]
        questions.append(record["question"])
        stated += [record["trace"][s:e] for s, e in record["essential_spans"]][:1]
        part += 1
        if len(stated) > 3 and rng.random() < 0.5:  # a re-check of a result stated long ago
            body = _capital(stated[rng.randrange(len(stated) - 3)])
            text = f"{rng.choice(style.reverify_open)} {body} {rng.choice(style.reverify_close)}"
            b.add(text, "reverify", "\n\n")
        if rng.random() < 0.2:  # a long loop of one sentence
            sentence = rng.choice(style.loop)
            b.add(sentence, sep="\n\n")
            start = b.length
            b.add(" ".join([sentence] * rng.randint(7, 39)))
            b.redundant.append((start, b.length, "loop"))
    return {
        "id": f"{family}-long-{index}",
        "kind": "long",
        "question": " ".join(questions),
        "answer": "",
        "trace": b.text,
        "redundant_spans": [list(r) for r in b.redundant],
        "essential_spans": [list(e) for e in b.essential],
        "commands": [],
    }


def _redundant(record: dict[str, Any]) -> list[tuple[int, int, str]]:
    return [(int(s), int(e), str(k)) for s, e, k in record["redundant_spans"]]


def _essential(record: dict[str, Any]) -> list[tuple[int, int]]:
    return [(int(s), int(e)) for s, e in record["essential_spans"]]


def generate(count: int, seed: int, family: str, long_chars: int = 0) -> Iterator[dict[str, Any]]:
    """``count`` records from ``seed`` in the phrasing ``family`` (``train`` or ``eval``); with
    ``long_chars``, long records of at least that many code points (``make_long_record``)."""
    rng = random.Random(seed)
    for index in range(count):
        if long_chars > 0:
            yield make_long_record(rng, family, index, long_chars)
        else:
            yield make_record(rng, family, index)
