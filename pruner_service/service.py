"""The service facade that the gRPC servicer and the CLI call: admission and waiting.

It admits requests under their deadlines (once ``lifecycle.Lifecycle`` says the process is
ready), waits for their results and answers streams with a bounded window. Loading, readiness
and the drain on shutdown are the lifecycle's. It speaks domain types only.
"""

from __future__ import annotations

import contextvars
import queue as stdlib_queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import structlog

from pruner_service.compute import BatchRunner, as_pruner_error
from pruner_service.config import Settings
from pruner_service.domain import Limits, PruneRequest, PruneResult
from pruner_service.engine.base import Engine, EngineInfo
from pruner_service.errors import DeadlineExceeded, PrunerError, QueueFull
from pruner_service.job import Job
from pruner_service.lifecycle import Lifecycle
from pruner_service.queue.base import Admission, Consumer
from pruner_service.queue.memory import InProcessConsumer, MemoryQueue

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Rejected:
    """A stream item that failed validation before admission."""

    request_id: str
    error: PrunerError


@dataclass(frozen=True)
class StreamAnswer:
    """One stream item's answer: its result or error, and whether its reply holds the pruned
    trace (the request's option, applied where the reply is built)."""

    request_id: str
    outcome: PruneResult | PrunerError
    return_pruned_trace: bool = True


_END = object()
QUEUE_RETRY_S = 0.25
"""Longest wait of a stream item for queue space before it asks again (a shared queue's space
can free without a job of this process settling)."""


class PrunerService:
    """Admits, batches and answers pruning requests in one process."""

    def __init__(
        self,
        settings: Settings,
        engine_factory: Callable[[], Engine] | None,
        limits: Limits,
        admission: Admission | None = None,
        consumer_factory: Callable[[BatchRunner], Consumer] | None = None,
        info: EngineInfo | None = None,
    ) -> None:
        """``engine_factory`` None: a frontend that computes nothing (``info`` describes what
        its workers serve). ``admission`` None: an in-process queue, and (``consumer_factory``
        None) an in-process consumer of it."""
        self.settings = settings
        self.limits = limits
        if admission is None:
            memory = MemoryQueue(settings.max_queue, settings.max_batch, settings.max_wait_ms)
            admission = memory
            consumer_factory = consumer_factory or (lambda r: InProcessConsumer(memory, r))
        if consumer_factory is None:
            raise ValueError("a service with its own admission needs its consumer_factory")
        self.queue = admission
        self.lifecycle = Lifecycle(admission, engine_factory, consumer_factory, info)

    # lifecycle (``Lifecycle``'s, here for the servicer, the server and the CLI) -------------
    def on_ready_change(self, callback: Callable[[bool], None]) -> None:
        self.lifecycle.on_ready_change(callback)

    def start(self, background: bool = True) -> None:
        self.lifecycle.start(background)

    def wait_until_settled(self, timeout: float | None = None) -> bool:
        return self.lifecycle.wait_until_settled(timeout)

    @property
    def failure(self) -> str | None:
        return self.lifecycle.failure

    @property
    def ready(self) -> bool:
        return self.lifecycle.ready

    @property
    def engine(self) -> Engine | None:
        return self.lifecycle.engine

    def info(self) -> EngineInfo:
        return self.lifecycle.info()

    def shutdown(self, grace: float | None = None) -> bool:
        """``Lifecycle.shutdown`` with ``grace`` seconds (default: the settings' ``grace_s``)."""
        return self.lifecycle.shutdown(self.settings.grace_s if grace is None else grace)

    # requests ------------------------------------------------------------------------------
    def deadline_for(self, time_remaining: float | None, trace_chars: int = 0) -> float:
        """The absolute deadline (epoch seconds) of a request with ``time_remaining`` seconds
        (``None``: the caller set none) and a trace of ``trace_chars`` code points: at most
        ``default_deadline_s`` plus ``deadline_s_per_kchar`` per 1,000 code points of its trace
        and of every trace admitted before it and not yet answered (the work ahead of it)."""
        settings = self.settings
        work = trace_chars + self.pending_chars()
        longest = settings.default_deadline_s + settings.deadline_s_per_kchar * work / 1e3
        return time.time() + min(longest if time_remaining is None else time_remaining, longest)

    def pending_chars(self) -> int:
        """Code points of the traces admitted here and not yet answered."""
        return self.lifecycle.in_flight.chars()

    def submit(self, request: PruneRequest, deadline: float) -> Job:
        """Admits ``request``; raises ``Unavailable`` or ``QueueFull``."""
        self.lifecycle.check_ready()
        job = Job(request, deadline)
        self.lifecycle.in_flight.add(job)
        try:
            self.queue.submit(job)
        except PrunerError:
            self.lifecycle.in_flight.forget(job)
            raise
        return job

    def wait(self, job: Job) -> PruneResult:
        """The job's result; ``DeadlineExceeded`` (and the job cancelled) past its deadline."""
        try:
            return job.future.result(timeout=max(0.0, job.deadline - time.time()))
        except TimeoutError:
            job.future.cancel()
            raise DeadlineExceeded("deadline exceeded before the result was ready") from None

    def prune(self, request: PruneRequest, deadline: float) -> PruneResult:
        """Admits ``request`` and waits for its result."""
        return self.wait(self.submit(request, deadline))

    def prune_stream(
        self, items: Iterable[PruneRequest | Rejected], call_deadline: float | None
    ) -> Iterator[StreamAnswer]:
        """Answers every item of ``items`` once, in completion order; errors are per item.

        Each item has its own deadline from when it is admitted (``deadline_for`` its trace), never
        past the call's (``call_deadline``, epoch seconds; ``None``: the call has none). At most
        ``2 * max_batch`` items are in flight; a full queue makes the stream wait (until the
        item's deadline) instead of failing items.
        """
        out: stdlib_queue.Queue[object] = stdlib_queue.Queue()
        window = threading.Semaphore(2 * self.settings.max_batch)
        feeder = threading.Thread(  # in the call's logging context (its request id)
            target=contextvars.copy_context().run,
            args=(self._feed, items, call_deadline, out, window),
            name="stream-feed",
            daemon=True,
        )
        feeder.start()
        answered, total = 0, -1
        while total < 0 or answered < total:
            message = out.get()
            if isinstance(message, tuple) and message and message[0] is _END:
                total = message[1]
                continue
            answered += 1
            yield message  # type: ignore[misc]

    def _feed(
        self,
        items: Iterable[PruneRequest | Rejected],
        call_deadline: float | None,
        out: stdlib_queue.Queue[object],
        window: threading.Semaphore,
    ) -> None:
        count = 0
        try:
            for item in items:
                count += 1
                if isinstance(item, Rejected):
                    out.put(StreamAnswer(item.request_id, item.error))
                    continue
                window.acquire()
                remaining = None if call_deadline is None else call_deadline - time.time()
                self._feed_one(item, self.deadline_for(remaining, len(item.trace)), out, window)
        except Exception as exc:  # the caller's stream broke: answer what was admitted
            log.info("stream_input_ended", reason=f"{type(exc).__name__}: {exc}")
        out.put((_END, count))

    def _feed_one(
        self,
        request: PruneRequest,
        deadline: float,
        out: stdlib_queue.Queue[object],
        window: threading.Semaphore,
    ) -> None:
        try:
            job = self._submit_waiting(request, deadline)
        except PrunerError as exc:
            window.release()
            out.put(StreamAnswer(request.request_id, exc))
            return

        def settle(_: object) -> None:
            window.release()
            error = job.future.exception() if not job.future.cancelled() else None
            if job.future.cancelled():
                error = DeadlineExceeded("deadline exceeded before the result was ready")
            outcome = as_pruner_error(error) if error else job.future.result()
            out.put(StreamAnswer(request.request_id, outcome, request.options.return_pruned_trace))

        job.future.add_done_callback(settle)

    def _submit_waiting(self, request: PruneRequest, deadline: float) -> Job:
        """Admits ``request``, waiting while the queue is full until a job settles here (or,
        for space freed by other frontends of a shared queue, ``QUEUE_RETRY_S``), up to its
        deadline."""
        while True:
            try:
                return self.submit(request, deadline)
            except QueueFull:
                left = deadline - time.time()
                if left <= 0:
                    raise DeadlineExceeded(
                        "deadline exceeded while waiting for queue space"
                    ) from None
                self.lifecycle.in_flight.wait_change(min(left, QUEUE_RETRY_S))
