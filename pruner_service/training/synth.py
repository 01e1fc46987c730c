"""Teacher synthesis: a user's chat model proposes deletions, the resolver and a reward check
decide which examples are kept for training.

Every record ``{id, trace, question?, answer?}`` is sent to an OpenAI-compatible chat endpoint with
the cleaning instruction. The reply must be a JSON command list; an example is kept only if

1. every command is writable by the output grammar (no ``"``, ``\\`` or newline, at most
   ``max_anchor_chars`` characters per anchor) and resolves under the normative semantics
   (unique prefix, a suffix after it, within ``max_delete_fraction``);
2. the final answer survives: the last occurrence of ``answer`` in the trace (when given), and
   the trace's last sentence, the result the next step builds on, are not touched;
3. optionally (``verify_continuation``), the teacher, continuing from the pruned trace, still
   reaches ``answer``.

Kept examples go to the output as training records (``commands`` plus the resolved
``redundant_spans``), everything else to a rejects file with a code and reason. Both are appended
line by line, so a rerun skips finished records and retries only transient endpoint failures.
"""

from __future__ import annotations

import json
import re
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import openai
from freelm_pruner_client.anchors import AnchorCommand, Protection, PruneOutcome, Status, prune
from freelm_pruner_client.batch import TRANSIENT, count_lines, finished_keys, json_objects
from freelm_pruner_client.options import DEFAULT_MAX_DELETE_FRACTION
from freelm_pruner_client.segments import last_sentence
from tqdm import tqdm

from pruner_service.engine.grammar import anchor_fits

TEACHER_INSTRUCTION = (
    "You clean reasoning traces. You read a question and the reasoning written so far, and list "
    "the parts of the reasoning that can be forgotten without losing anything the answer needs: "
    "repeated checks of results already settled, abandoned approaches, restatements of the "
    "problem, filler and loops. Never list the steps the answer depends on, the answer itself, "
    "or the last sentence.\n\n"
    'Answer with only a JSON list of commands [{"prefix": "...", "suffix": "..."}]. Each command '
    "deletes the text from the start of its prefix through the end of its suffix. Copy both "
    "anchors exactly from the reasoning, a few words each, on one line, without quotes or "
    "backslashes. The prefix must occur in the reasoning only once. Answer [] when nothing "
    "should be deleted.\n\n"
    'Example. Reasoning: "So 3 * 4 = 12. Let me double-check: 3 * 4 = 12. Yes. Then 12 + 5 = '
    '17."\n'
    'Answer: [{"prefix": "Let me double-check:", "suffix": "12. Yes."}]'
)

CONTINUE_INSTRUCTION = (
    "Continue the reasoning below from where it stops, briefly, and end with 'Final answer: ...'."
)


class Rejected(Exception):
    """The teacher's reply failed the reward check; the message says why."""


class Aborted(Exception):
    """The endpoint refuses every request (wrong URL, model or key): the run stops."""


class Teacher(Protocol):
    def complete(self, system: str, user: str) -> str: ...


@dataclass(frozen=True)
class SynthConfig:
    max_anchor_chars: int = 48
    max_commands: int = 8
    max_delete_fraction: float = DEFAULT_MAX_DELETE_FRACTION
    verify_continuation: bool = False
    concurrency: int = 4
    max_consecutive_failures: int = 20


class OpenAITeacher:
    """A chat model behind any OpenAI-compatible endpoint (retries and backoff by the SDK).

    ``reply_prefix`` starts every reply (for example ``[{"prefix": "``), which keeps small open
    models on the format; the endpoint must continue a final assistant message (vLLM's
    ``continue_final_message``).
    """

    def __init__(  # noqa: PLR0913
        self,
        base_url: str,
        model: str,
        api_key: str = "unused",
        max_tokens: int = 512,
        temperature: float = 0.0,
        timeout_s: float = 120.0,
        max_retries: int = 3,
        reply_prefix: str = "",
    ) -> None:
        self.client = openai.OpenAI(
            base_url=base_url, api_key=api_key, timeout=timeout_s, max_retries=max_retries
        )
        self.model, self.max_tokens, self.temperature = model, max_tokens, temperature
        self.reply_prefix = reply_prefix

    def complete(self, system: str, user: str) -> str:
        messages: list[Any] = [
            {"role": "system", "content": system},
            {"role": "user", "content": user},
        ]
        extra: dict[str, Any] = {}
        if self.reply_prefix and system == TEACHER_INSTRUCTION:
            messages.append({"role": "assistant", "content": self.reply_prefix})
            extra = {"continue_final_message": True, "add_generation_prompt": False}
        reply = self.client.chat.completions.create(
            model=self.model,
            messages=messages,
            max_tokens=self.max_tokens,
            temperature=self.temperature,
            extra_body=extra or None,
        )
        content = reply.choices[0].message.content or ""
        return self.reply_prefix + content if extra else content


def user_message(trace: str, question: str) -> str:
    head = f"Question:\n{question}\n\n" if question else ""
    return f"{head}Reasoning:\n{trace}"


_LIST = re.compile(r"\[.*\]", re.DOTALL)


def parse_reply(reply: str) -> list[AnchorCommand]:
    """The command list in a reply (prose or a code fence around it is tolerated)."""
    match = _LIST.search(reply)
    if match is None:
        raise Rejected("the reply holds no JSON list")
    try:
        items = json.loads(match.group(0))
    except json.JSONDecodeError as exc:
        raise Rejected(f"the reply's list is not JSON: {exc.msg}") from None
    commands = []
    for number, item in enumerate(items, 1):
        if not (
            isinstance(item, dict)
            and isinstance(item.get("prefix"), str)
            and isinstance(item.get("suffix"), str)
        ):
            raise Rejected(f"command {number} is not a {{prefix, suffix}} object of strings")
        commands.append(AnchorCommand(item["prefix"], item["suffix"]))
    return commands


def _mentions(text: str, answer: str) -> bool:
    """Whether ``text`` states ``answer`` (case and spacing aside; a leading number is enough)."""
    squash = " ".join(text.lower().split())
    wanted = " ".join(answer.lower().split())
    number = re.match(r"-?\d+(?:\.\d+)?", wanted)
    pattern = re.escape(number.group(0) if number else wanted)
    return re.search(rf"(?<![\w.]){pattern}(?![\w]|\.\d)", squash) is not None


def check(
    record: dict[str, Any], commands: list[AnchorCommand], config: SynthConfig
) -> PruneOutcome:
    """What ``commands`` do to the trace, if they pass rules 1 and 2 of the reward check."""
    trace: str = record["trace"]
    if len(commands) > config.max_commands:
        raise Rejected(f"{len(commands)} commands, more than the {config.max_commands} allowed")
    for number, command in enumerate(commands, 1):
        for name, anchor in (("prefix", command.prefix), ("suffix", command.suffix)):
            if not anchor_fits(anchor, config.max_anchor_chars):
                raise Rejected(
                    f"command {number}: the {name} is not writable by the output grammar (empty, "
                    f'over {config.max_anchor_chars} characters, or holds ", \\ or a newline)'
                )
    outcome = prune(
        trace, commands, protection=Protection(max_delete_fraction=config.max_delete_fraction)
    )
    for number, result in enumerate(outcome.commands, 1):
        if result.status is not Status.APPLIED:
            raise Rejected(f"command {number}: {result.status.name}")
    spans = [(d.start, d.end) for d in outcome.deletions]
    answer = record.get("answer")
    if isinstance(answer, str) and answer and answer in trace:
        at = trace.rindex(answer)
        if any(s < at + len(answer) and at < e for s, e in spans):
            raise Rejected("the final answer is deleted")
    tail = last_sentence(trace)
    if tail is not None and any(s < tail[1] and tail[0] < e for s, e in spans):
        raise Rejected("the last sentence is deleted")
    return outcome


def synthesize(record: dict[str, Any], teacher: Teacher, config: SynthConfig) -> dict[str, Any]:
    """One kept training record, or :class:`Rejected`."""
    question = record.get("question") or ""
    reply = teacher.complete(TEACHER_INSTRUCTION, user_message(record["trace"], question))
    try:
        commands = parse_reply(reply)
        outcome = check(record, commands, config)
        answer = record.get("answer")
        if config.verify_continuation and isinstance(answer, str) and answer:
            pruned = outcome.pruned_trace
            continuation = teacher.complete(CONTINUE_INSTRUCTION, user_message(pruned, question))
            if not _mentions(continuation, answer):
                raise Rejected("continuing from the pruned trace does not reach the answer")
    except Rejected as exc:
        exc.add_note(reply)
        raise
    kept: dict[str, Any] = {
        k: record[k] for k in ("id", "question", "answer", "trace") if k in record
    }
    kept["commands"] = [{"prefix": c.prefix, "suffix": c.suffix} for c in commands]
    kept["redundant_spans"] = [[d.start, d.end] for d in outcome.deletions]
    return kept


@dataclass
class SynthSummary:
    records: int = 0
    skipped: int = 0
    kept: int = 0
    kept_empty: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)

    def line(self) -> str:
        rejected = ", ".join(f"{code} {n}" for code, n in sorted(self.outcomes.items()))
        return (
            f"{self.records} records: {self.kept} kept ({self.kept_empty} with no deletion), "
            f"{self.skipped} already done" + (f"; not kept: {rejected}" if rejected else "")
        )


def read_unlabelled(path: Path) -> Iterator[tuple[str, dict[str, Any] | None, str]]:
    """``(id, record, problem)`` for each line: a record to send, or a reason it cannot be."""
    for number, item, problem in json_objects(path):
        if item is None:
            yield str(number), None, problem
            continue
        key = str(item.get("id", number))
        if not isinstance(item.get("trace"), str) or not item["trace"].strip():
            yield key, None, "the record has no non-empty string field 'trace'"
            continue
        item["id"] = key
        yield key, item, ""


def _failure(exc: Exception) -> tuple[str, str]:
    """(code, message) of an endpoint failure; transient codes are retried by a rerun."""
    if isinstance(exc, openai.RateLimitError):
        return "RESOURCE_EXHAUSTED", f"the endpoint is rate limiting: {exc.message}"
    if isinstance(exc, openai.APITimeoutError):
        return "DEADLINE_EXCEEDED", "the endpoint did not answer in time"
    if isinstance(exc, openai.APIConnectionError):
        return "UNAVAILABLE", f"cannot reach the endpoint: {exc.message}"
    if isinstance(exc, openai.APIStatusError):
        if exc.status_code in (401, 403, 404):
            raise Aborted(f"the endpoint answers {exc.status_code}: {exc.message}") from exc
        if exc.status_code >= 500:
            return "UNAVAILABLE", f"the endpoint failed ({exc.status_code}): {exc.message}"
        return "INVALID_ARGUMENT", f"the endpoint refused the record: {exc.message}"
    raise exc


class SynthJob:
    """Runs :func:`synthesize` over a file with bounded concurrency, appending as it goes."""

    def __init__(
        self, source: Path, output: Path, rejects: Path, teacher: Teacher, config: SynthConfig
    ) -> None:
        self.source, self.output, self.rejects = source, output, rejects
        self.teacher, self.config = teacher, config
        self.summary = SynthSummary()
        self._failures = 0
        self._lock = threading.Lock()

    def run(self, progress: bool = True) -> SynthSummary:
        done = finished_keys(self.output) | finished_keys(self.rejects)
        total = count_lines(self.source)
        bar = tqdm(total=total, unit="trace", disable=not progress, desc="synth")
        with (
            self.output.open("a", encoding="utf-8") as out,
            self.rejects.open("a", encoding="utf-8") as rej,
            ThreadPoolExecutor(self.config.concurrency) as pool,
        ):
            pending: set[Future[None]] = set()
            try:
                for key, record, problem in read_unlabelled(self.source):
                    self.summary.records += 1
                    if key in done:
                        self.summary.skipped += 1
                        bar.update()
                        continue
                    if record is None:
                        self._write(rej, {"id": key, "error": _error("INVALID_ARGUMENT", problem)})
                        self.summary.outcomes["INVALID_ARGUMENT"] += 1
                        bar.update()
                        continue
                    if len(pending) >= self.config.concurrency:
                        finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                        for future in finished:
                            future.result()  # re-raises Aborted
                    pending.add(pool.submit(self._one, record, out, rej, bar))
                for future in pending:
                    future.result()
            except BaseException:
                for future in pending:
                    future.cancel()
                raise
            finally:
                bar.close()
        return self.summary

    def _one(self, record: dict[str, Any], out: Any, rej: Any, bar: Any) -> None:
        try:
            kept = synthesize(record, self.teacher, self.config)
        except Rejected as exc:
            reply = "\n".join(getattr(exc, "__notes__", []))
            line = {"id": record["id"], "error": _error("REJECTED", str(exc)), "reply": reply}
            self._finish(rej, line, "REJECTED", bar)
            return
        except openai.OpenAIError as exc:
            code, message = _failure(exc)
            self._finish(rej, {"id": record["id"], "error": _error(code, message)}, code, bar)
            return
        self._finish(out, kept, "", bar)

    def _finish(self, handle: Any, line: dict[str, Any], code: str, bar: Any) -> None:
        with self._lock:
            self._write(handle, line)
            bar.update()
            if not code:
                self.summary.kept += 1
                self.summary.kept_empty += not line["commands"]
                self._failures = 0
                return
            self.summary.outcomes[code] += 1
            self._failures = self._failures + 1 if code in TRANSIENT else 0
            if self._failures >= self.config.max_consecutive_failures:
                raise Aborted(
                    f"{self._failures} endpoint failures in a row; the last: "
                    f"{line['error']['message']}"
                )

    @staticmethod
    def _write(handle: Any, line: dict[str, Any]) -> None:
        handle.write(json.dumps(line, ensure_ascii=False) + "\n")
        handle.flush()


def _error(code: str, message: str) -> dict[str, str]:
    return {"code": code, "message": message}
