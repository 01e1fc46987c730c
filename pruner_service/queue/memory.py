"""The embedded mode's queue: a bounded deque with batch assembly, and the consumer that takes
its batches to a batch runner in a thread."""

from __future__ import annotations

import threading
import time
from collections import deque

import structlog

from pruner_service.compute import BatchRunner, as_pruner_error
from pruner_service.errors import QueueFull, Unavailable
from pruner_service.job import Job
from pruner_service.queue.base import BatchSource

log = structlog.get_logger(__name__)


class MemoryQueue:
    """An ``Admission`` and ``BatchSource`` inside one process; always ready."""

    readiness_changes = False

    def __init__(self, max_queue: int, max_batch: int, max_wait_ms: float) -> None:
        self.max_queue = max_queue
        self.max_batch = max_batch
        self.max_wait_s = max_wait_ms / 1000.0
        self._jobs: deque[Job] = deque()
        self._ready = threading.Condition()
        self._closed = False

    def submit(self, job: Job) -> None:
        with self._ready:
            if self._closed:
                raise Unavailable("the server is shutting down; not accepting new requests")
            if len(self._jobs) >= self.max_queue:
                raise QueueFull(f"queue is full ({self.max_queue} requests waiting); retry later")
            self._jobs.append(job)
            self._ready.notify()

    def take_batch(self, timeout: float) -> list[Job]:
        with self._ready:
            if not self._ready.wait_for(lambda: self._jobs or self._closed, timeout):
                return []
            fill_until = time.monotonic() + self.max_wait_s
            while len(self._jobs) < self.max_batch and not self._closed:
                left = fill_until - time.monotonic()
                if left <= 0 or not self._ready.wait(left):
                    break
            count = min(self.max_batch, len(self._jobs))
            return [self._jobs.popleft() for _ in range(count)]

    def depth(self) -> int:
        with self._ready:
            return len(self._jobs)

    def readiness(self) -> str | None:
        return None

    def close(self) -> None:
        with self._ready:
            self._closed = True
            self._ready.notify_all()

    def stop(self) -> None:
        pass


class InProcessConsumer:
    """A ``Consumer``: a thread that takes batches from ``source`` and runs them until stopped."""

    def __init__(self, source: BatchSource, runner: BatchRunner) -> None:
        self.source = source
        self.runner = runner
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="batch-loop", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            jobs = self.source.take_batch(timeout=0.2)
            if not jobs:
                continue
            try:
                self.runner.run_batch(jobs)
            except Exception as exc:
                log.exception("batch_loop_error")
                for job in jobs:
                    if not job.future.done():
                        job.fail(as_pruner_error(exc))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
