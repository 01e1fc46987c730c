"""The queue's two roles, as narrow interfaces, and the process that admits nothing.

- ``Admission`` is what a frontend (``service.PrunerService``) admits jobs into: the in-process
  ``memory.MemoryQueue`` or the Redis stream (``redis_frontend.RedisFrontend``).
- ``Consumer`` takes admitted jobs to a ``compute.BatchRunner``: ``memory.InProcessConsumer``
  (from a ``BatchSource``, the in-process queue) or ``redis_consumer.RedisConsumer`` (from the
  Redis stream).

A queue does not know the model or the anchor semantics.
"""

from __future__ import annotations

from typing import Protocol

from pruner_service.errors import Unavailable
from pruner_service.job import Job


class Admission(Protocol):
    """Where a frontend admits jobs."""

    readiness_changes: bool
    """Whether ``readiness`` can change while the process runs (then it is followed)."""

    def submit(self, job: Job) -> None:
        """Admits ``job``; raises ``QueueFull`` past capacity or ``Unavailable`` when closed."""
        ...

    def depth(self) -> int:
        """Jobs counted against ``max_queue``: waiting to be taken (in-process queue); on the
        shared stream, from every frontend, taken or not until acknowledged (Redis)."""
        ...

    def readiness(self) -> str | None:
        """None when jobs admitted now can be computed; otherwise why not."""
        ...

    def close(self) -> None:
        """Stops admitting; jobs already admitted are still computed and settled."""
        ...

    def stop(self) -> None:
        """Releases what ``close`` left running (after the drain)."""
        ...


class BatchSource(Protocol):
    """Where an in-process consumer takes batches from."""

    def take_batch(self, timeout: float) -> list[Job]:
        """Up to ``max_batch`` jobs, waiting up to ``max_wait_ms`` for a batch to fill once one
        job is there; an empty list if none arrived within ``timeout`` seconds or on close."""
        ...


class Consumer(Protocol):
    """Takes admitted jobs to a batch runner until stopped."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


class ClosedQueue:
    """Admits nothing: the ``Admission`` of a process that only computes (a Redis worker)."""

    readiness_changes = False

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def submit(self, job: Job) -> None:
        raise Unavailable(self.reason)

    def depth(self) -> int:
        return 0

    def readiness(self) -> str | None:
        return None

    def close(self) -> None:
        pass

    def stop(self) -> None:
        pass
