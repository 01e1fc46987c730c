"""The service facade that the gRPC servicer and the CLI call: admission, readiness, waiting.

It owns the lifecycle of one process's engine, queue and batch loop: load and warm the engine in
the background (not ready until a forward pass has run), admit requests under their deadlines,
answer streams with a bounded window, and drain on shutdown. It speaks domain types only.
"""

from __future__ import annotations

import queue as stdlib_queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

import structlog

from pruner_service.config import Settings
from pruner_service.domain import Limits, PruneRequest, PruneResult
from pruner_service.engine.base import Engine, EngineInfo
from pruner_service.errors import DeadlineExceeded, PrunerError, QueueFull, Unavailable
from pruner_service.queue.base import Job, JobQueue
from pruner_service.queue.memory import MemoryQueue
from pruner_service.worker import BatchLoop, Worker

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Rejected:
    """A stream item that failed validation before admission."""

    request_id: str
    error: PrunerError


StreamItem = tuple[str, PruneResult | PrunerError]
_END = object()
READINESS_POLL_S = 1.0


class Consumer(Protocol):
    """What takes admitted jobs to a worker: the in-process batch loop or a Redis worker loop."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


class PrunerService:
    """Admits, batches and answers pruning requests in one process."""

    def __init__(
        self,
        settings: Settings,
        engine_factory: Callable[[], Engine] | None,
        limits: Limits,
        job_queue: JobQueue | None = None,
        consumer_factory: Callable[[Worker], Consumer] | None = None,
        info: EngineInfo | None = None,
    ) -> None:
        """``engine_factory`` None: a frontend that computes nothing (``info`` describes what
        its workers serve). ``consumer_factory`` None: an in-process batch loop on ``job_queue``.
        """
        self.settings = settings
        self.limits = limits
        self.queue = job_queue or MemoryQueue(
            settings.max_queue, settings.max_batch, settings.max_wait_ms
        )
        self._engine_factory = engine_factory
        self._consumer_factory = consumer_factory or (lambda worker: BatchLoop(self.queue, worker))
        self._info = info
        self._not_ready_reason: str | None = None
        self._ready_callbacks: list[Callable[[bool], None]] = []
        self._ready = threading.Event()
        self._settled = threading.Event()
        self._failure: str | None = None
        self._engine: Engine | None = None
        self._consumer: Consumer | None = None
        self._pending: set[Job] = set()
        self._lock = threading.Lock()
        self._closing = threading.Event()

    # lifecycle -----------------------------------------------------------------------------
    def on_ready_change(self, callback: Callable[[bool], None]) -> None:
        """Registers ``callback(ready)``, called when readiness changes (health reporting)."""
        self._ready_callbacks.append(callback)

    def start(self, background: bool = True) -> None:
        """Loads and warms the engine, then starts taking batches."""
        if background:
            threading.Thread(target=self._load, name="engine-load", daemon=True).start()
        else:
            self._load()

    def _load(self) -> None:
        started = time.perf_counter()
        try:
            if self._engine_factory is not None:
                engine = self._engine_factory()
                engine.warmup()
                self._engine, self._info = engine, engine.info
                self._consumer = self._consumer_factory(Worker(engine))
                self._consumer.start()
        except Exception as exc:
            self._failure = f"{type(exc).__name__}: {exc}"
            log.exception("engine_load_failed")
            self._settled.set()
            return
        readiness = getattr(self.queue, "readiness", None)
        if readiness is None:
            self._set_ready(True)
        else:
            threading.Thread(
                target=self._watch, args=(readiness,), name="readiness", daemon=True
            ).start()
        self._settled.set()
        info = self._info
        log.info(
            "started",
            seconds=round(time.perf_counter() - started, 2),
            computes=self._engine is not None,
            adapter=(info.adapter_id or None) if info else None,
            note=(info.note or None) if info else None,
        )

    def _watch(self, readiness: Callable[[], str | None]) -> None:
        """Follows the queue's readiness (Redis reachable, a worker alive) until shutdown."""
        while not self._closing.is_set():
            reason = readiness()
            if reason != self._not_ready_reason or self._ready.is_set() != (reason is None):
                self._not_ready_reason = reason
                self._set_ready(reason is None)
                log.info("readiness", ready=reason is None, reason=reason)
            self._closing.wait(READINESS_POLL_S)

    def wait_until_settled(self, timeout: float | None = None) -> bool:
        """Waits for loading to end; True if the service is ready, False if loading failed."""
        self._settled.wait(timeout)
        return self._ready.is_set()

    @property
    def failure(self) -> str | None:
        """Why the engine failed to load, if it did."""
        return self._failure

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def _set_ready(self, ready: bool) -> None:
        if ready:
            self._ready.set()
        else:
            self._ready.clear()
        for callback in self._ready_callbacks:
            callback(ready)

    def info(self) -> EngineInfo:
        """What this service serves; ``Unavailable`` before it is known."""
        if self._info is None:
            self._check_ready()
            raise Unavailable("the model is still loading; retry shortly")
        return self._info

    def shutdown(self, grace: float | None = None) -> bool:
        """Not ready → stop admitting → drain in-flight work → stop the loop → release the engine.

        Returns whether every admitted request was answered within ``grace`` seconds.
        """
        grace = self.settings.grace_s if grace is None else grace
        self._closing.set()
        self._set_ready(False)
        self.queue.close()
        drained = self._drain(grace)
        if self._consumer is not None:
            self._consumer.stop()
        stop_queue = getattr(self.queue, "stop", None)
        if stop_queue is not None:
            stop_queue()
        self._engine = None
        log.info("shutdown", drained=drained)
        return drained

    def _drain(self, timeout: float) -> bool:
        limit = time.monotonic() + timeout
        while time.monotonic() < limit:
            with self._lock:
                if not self._pending:
                    return True
            time.sleep(0.02)
        return False

    # requests ------------------------------------------------------------------------------
    def _check_ready(self) -> None:
        if self._ready.is_set():
            return
        if self._failure:
            raise Unavailable(f"the model failed to load: {self._failure}")
        if self._closing.is_set():
            raise Unavailable("the server is shutting down")
        if self._not_ready_reason:
            raise Unavailable(f"not ready: {self._not_ready_reason}")
        raise Unavailable("the model is still loading; retry shortly")

    @property
    def engine(self) -> Engine | None:
        """The loaded engine (``None`` before it is loaded, and on a frontend)."""
        return self._engine

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
        with self._lock:
            return sum(len(job.request.trace) for job in self._pending)

    def submit(self, request: PruneRequest, deadline: float) -> Job:
        """Admits ``request``; raises ``Unavailable`` or ``QueueFull``."""
        self._check_ready()
        job = Job(request, deadline)
        with self._lock:
            self._pending.add(job)
        job.future.add_done_callback(lambda _: self._forget(job))
        try:
            self.queue.submit(job)
        except PrunerError:
            self._forget(job)
            raise
        return job

    def _forget(self, job: Job) -> None:
        with self._lock:
            self._pending.discard(job)

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
    ) -> Iterator[StreamItem]:
        """Answers every item of ``items`` once, in completion order; errors are per item.

        Each item has its own deadline from when it is admitted (``deadline_for`` its trace), never
        past the call's (``call_deadline``, epoch seconds; ``None``: the call has none). At most
        ``2 * max_batch`` items are in flight; a full queue makes the stream wait (until the
        item's deadline) instead of failing items.
        """
        out: stdlib_queue.Queue[object] = stdlib_queue.Queue()
        window = threading.Semaphore(2 * self.settings.max_batch)
        feeder = threading.Thread(
            target=self._feed,
            args=(items, call_deadline, out, window),
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
                    out.put((item.request_id, item.error))
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
            out.put((request.request_id, exc))
            return

        def settle(_: object) -> None:
            window.release()
            error = job.future.exception() if not job.future.cancelled() else None
            if job.future.cancelled():
                error = DeadlineExceeded("deadline exceeded before the result was ready")
            out.put((request.request_id, error or job.future.result()))

        job.future.add_done_callback(settle)

    def _submit_waiting(self, request: PruneRequest, deadline: float) -> Job:
        while True:
            try:
                return self.submit(request, deadline)
            except QueueFull:
                if time.time() >= deadline:
                    raise DeadlineExceeded(
                        "deadline exceeded while waiting for queue space"
                    ) from None
                time.sleep(0.05)
