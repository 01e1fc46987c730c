"""A job: one admitted request, its deadline and the future of its result."""

from __future__ import annotations

import time
from concurrent.futures import Future
from dataclasses import dataclass, field

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
