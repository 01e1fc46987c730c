"""The in-process queue of the embedded mode: a bounded deque with batch assembly."""

from __future__ import annotations

import threading
import time
from collections import deque

from pruner_service.errors import QueueFull, Unavailable
from pruner_service.queue.base import Job


class MemoryQueue:
    """A ``JobQueue`` inside one process."""

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

    def close(self) -> None:
        with self._ready:
            self._closed = True
            self._ready.notify_all()
