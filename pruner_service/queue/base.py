"""A job (one admitted request waiting for its result) and the queue interface.

A queue admits jobs, hands them to a worker in batches and refuses work past its capacity. It does
not know the model or the anchor semantics.
"""

from __future__ import annotations

import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Protocol

from pruner_service.domain import PruneRequest, PruneResult
from pruner_service.errors import DeadlineExceeded, PrunerError


@dataclass(eq=False)
class Job:
    """An admitted request, its absolute deadline (epoch seconds) and the future of its result."""

    request: PruneRequest
    deadline: float
    enqueued_at: float = field(default_factory=time.time)
    future: Future[PruneResult] = field(default_factory=Future)

    def claim(self, now: float | None = None) -> bool:
        """Marks the job running; False (and the job is settled) if cancelled or expired."""
        if not self.future.set_running_or_notify_cancel():
            return False
        if (now or time.time()) >= self.deadline:
            self.future.set_exception(
                DeadlineExceeded("deadline passed while queued; the request was not computed")
            )
            return False
        return True

    def finish(self, result: PruneResult) -> None:
        self.future.set_result(result)

    def fail(self, error: PrunerError) -> None:
        self.future.set_exception(error)


class JobQueue(Protocol):
    """Admits jobs and hands them out in batches."""

    def submit(self, job: Job) -> None:
        """Admits ``job``; raises ``QueueFull`` past capacity or ``Unavailable`` when closed."""
        ...

    def take_batch(self, timeout: float) -> list[Job]:
        """Up to ``max_batch`` jobs, waiting up to ``max_wait_ms`` for a batch to fill once one
        job is there; an empty list if none arrived within ``timeout`` seconds or on close."""
        ...

    def depth(self) -> int:
        """Jobs waiting."""
        ...

    def close(self) -> None:
        """Stops admitting; jobs already queued are still handed out."""
        ...


class ClosedQueue:
    """Admits nothing: the queue of a process that only computes (a Redis worker)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def submit(self, job: Job) -> None:
        from pruner_service.errors import Unavailable

        raise Unavailable(self.reason)

    def take_batch(self, timeout: float) -> list[Job]:
        return []

    def depth(self) -> int:
        return 0

    def close(self) -> None:
        pass
