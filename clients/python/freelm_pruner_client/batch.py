"""Batch pruning of stored traces: JSONL in, JSONL out, resumable, bounded memory.

Records stream from the input one line at a time; at most ``concurrency`` calls are in flight.
The input is UTF-8, with or without a byte order mark; a line that is not UTF-8 or not a JSON
object is recorded as an error and the run goes on. Each output line names its record (the
input's ``id``, written back as the same JSON value, else its line number as a string) and
carries either ``result`` (the reply, with the proto's field names) or ``error`` (status and
message). A rerun keeps the finished lines and computes only the rest; records that failed with
a transient status (``UNAVAILABLE``, ``DEADLINE_EXCEEDED``, ``RESOURCE_EXHAUSTED``) count as
unfinished.
"""

from __future__ import annotations

import codecs
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from google.protobuf.json_format import MessageToDict

from freelm_pruner_client.client import PrunerClient, lone_surrogate
from freelm_pruner_client.errors import PrunerClientError

TRANSIENT = {"UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED"}


@dataclass
class Summary:
    """What a run did."""

    records: int = 0
    skipped: int = 0
    succeeded: int = 0
    failed: int = 0
    chars_removed: int = 0
    tokens_removed: int = 0
    errors_by_code: dict[str, int] = field(default_factory=dict)

    def line(self) -> str:
        codes = ", ".join(f"{k}: {v}" for k, v in sorted(self.errors_by_code.items()))
        return (
            f"{self.records} records: {self.succeeded} pruned, {self.failed} failed"
            + (f" ({codes})" if codes else "")
            + f", {self.skipped} already done; removed {self.chars_removed} characters"
            f" and {self.tokens_removed} tokens"
        )


@dataclass(frozen=True)
class Record:
    """One input record: its id (any JSON value) and resume key, its line number, and the fields
    to send (or why it is unusable)."""

    id: Any
    line: int
    trace: str = ""
    question: str = ""
    problem: str = ""

    @property
    def key(self) -> str:
        return record_key(self.id)


def record_key(record_id: Any) -> str:
    """The resume key of a record id of any JSON type: its canonical JSON text, so that ``7``
    and ``"7"`` stay two records and an object id matches whatever its keys' order."""
    return json.dumps(record_id, sort_keys=True, separators=(",", ":"))


def finished_keys(out_path: Path, key: Callable[[Any], str] = str) -> set[str]:
    """Keys (``key`` of each line's id) already answered in ``out_path``; rewrites it without
    unfinished or partial lines."""
    if not out_path.exists():
        return set()
    kept: list[str] = []
    keys: set[str] = set()
    with out_path.open(encoding="utf-8") as handle:
        for raw in handle:
            if not raw.endswith("\n"):
                break  # cut off by a kill mid-write
            try:
                item = json.loads(raw)
            except json.JSONDecodeError:
                continue
            if item.get("error", {}).get("code") in TRANSIENT:
                continue
            keys.add(key(item["id"]))
            kept.append(raw)
    tmp = out_path.with_suffix(out_path.suffix + ".tmp")
    tmp.write_text("".join(kept), encoding="utf-8")
    os.replace(tmp, out_path)
    return keys


def json_objects(path: Path) -> Iterator[tuple[int, dict[str, Any] | None, str]]:
    """``(line number, object, problem)`` for each non-blank line of a UTF-8 JSONL file (a byte
    order mark at its start is skipped), one at a time: the parsed object, or None and why the
    line is not one (a line that is not UTF-8: the offset of its first bad byte in the line)."""
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, 1):
            if number == 1:
                raw = raw.removeprefix(codecs.BOM_UTF8)
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield number, None, f"line {number} is not valid UTF-8 at byte {exc.start}"
                continue
            if not text.strip():
                continue
            try:
                item = json.loads(text)
            except json.JSONDecodeError as exc:
                yield number, None, f"line {number} is not JSON: {exc}"
                continue
            if not isinstance(item, dict):
                yield number, None, f"line {number} is not a JSON object"
                continue
            yield number, item, ""


def read_records(path: Path, field_name: str, question_field: str) -> Iterator[Record]:
    """The input's records, one at a time."""
    for number, item, problem in json_objects(path):
        if item is None:
            yield Record(str(number), number, problem=problem)
            continue
        record_id = item["id"] if "id" in item else str(number)
        trace = item.get(field_name)
        if not isinstance(trace, str):
            yield Record(record_id, number, problem=f"record has no string field {field_name!r}")
            continue
        question = item.get(question_field, "")
        yield Record(record_id, number, trace, question if isinstance(question, str) else "")


def count_lines(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(1 for line in handle if line.strip())


class Progress:
    """A progress line with rate and ETA on stderr (tqdm when installed)."""

    def __init__(self, total: int, initial: int) -> None:
        self.total, self.done, self.started = total, initial, time.monotonic()
        self.initial = initial
        try:
            from tqdm import tqdm

            self._bar: Any = tqdm(total=total, initial=initial, unit="rec", file=sys.stderr)
        except ImportError:
            self._bar = None

    def advance(self) -> None:
        self.done += 1
        if self._bar is not None:
            self._bar.update(1)
            return
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = (self.done - self.initial) / elapsed
        eta = (self.total - self.done) / rate if rate > 0 else float("inf")
        sys.stderr.write(f"\r{self.done}/{self.total} records, {rate:.2f} rec/s, ETA {eta:.0f}s ")
        sys.stderr.flush()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        else:
            sys.stderr.write("\n")


@dataclass
class BatchJob:
    """One run of ``batch``: input, output, fields, concurrency and the client to call."""

    input_path: Path
    output_path: Path
    client: PrunerClient
    field_name: str = "trace"
    question_field: str = "question"
    concurrency: int = 8
    options: dict[str, Any] = field(default_factory=dict)
    show_progress: bool = True

    def run(self) -> Summary:
        """Prunes every unfinished record; returns the summary."""
        done = finished_keys(self.output_path, record_key)
        summary = Summary(skipped=len(done))
        progress = Progress(count_lines(self.input_path), len(done)) if self.show_progress else None
        lock = threading.Lock()
        window = threading.Semaphore(2 * self.concurrency)
        with (
            self.output_path.open("a", encoding="utf-8") as out,
            ThreadPoolExecutor(self.concurrency) as pool,
        ):
            for record in read_records(self.input_path, self.field_name, self.question_field):
                summary.records += 1
                if record.key in done:
                    continue
                window.acquire()
                future = pool.submit(self._one, record)
                future.add_done_callback(self._writer(record, out, lock, summary, progress, window))
        if progress:
            progress.close()
        return summary

    def _one(self, record: Record) -> dict[str, Any]:
        if record.problem:
            return {
                "id": record.id,
                "line": record.line,
                "error": _error("INVALID_ARGUMENT", record.problem),
            }
        try:
            reply = self.client.prune(record.trace, record.question, **self.options)
        except PrunerClientError as exc:
            return {"id": record.id, "line": record.line, "error": _error(exc.code.name, str(exc))}
        result = MessageToDict(
            reply, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
        )
        return {"id": record.id, "line": record.line, "result": result}

    @staticmethod
    def _writer(
        record: Record,
        out: TextIO,
        lock: threading.Lock,
        summary: Summary,
        progress: Progress | None,
        window: threading.Semaphore,
    ) -> Callable[[Future[dict[str, Any]]], None]:
        def write(future: Future[dict[str, Any]]) -> None:
            try:
                item = future.result()
            except Exception as exc:  # a bug in one record must not stop the run
                item = {
                    "id": record.id,
                    "line": record.line,
                    "error": _error("INTERNAL", repr(exc)),
                }
            with lock:
                out.write(_json_line(item))
                out.flush()
                _count(summary, item)
                if progress:
                    progress.advance()
            window.release()

        return write


def _json_line(item: dict[str, Any]) -> str:
    """``item`` as one JSON line, non-ASCII text as is; with ASCII escapes instead when it holds
    a lone surrogate (an id can), which a UTF-8 file cannot."""
    line = json.dumps(item, ensure_ascii=False)
    if lone_surrogate(line) is not None:
        line = json.dumps(item)
    return line + "\n"


def _error(code: str, message: str) -> dict[str, str]:
    return {"code": code, "message": message}


def _count(summary: Summary, item: dict[str, Any]) -> None:
    if "error" in item:
        summary.failed += 1
        code = item["error"]["code"]
        summary.errors_by_code[code] = summary.errors_by_code.get(code, 0) + 1
        return
    summary.succeeded += 1
    usage = item["result"].get("usage", {})
    summary.chars_removed += int(usage.get("removed_chars", 0))
    summary.tokens_removed += int(usage.get("trace_tokens", 0)) - int(usage.get("kept_tokens", 0))
