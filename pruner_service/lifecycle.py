"""The life of one process's engine and queue: load, warm, readiness, drain, stop.

``Lifecycle`` loads and warms the engine in the background (not ready until a forward pass has
run), starts the consumer that takes admitted jobs to it, follows the queue's readiness where it
can change (Redis reachable, a worker alive), and stops in a fixed order: not ready → stop
admitting → drain (``InFlight``) → stop the consumer and the queue → release the engine. Every
wait is on an event or a condition.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import structlog

from pruner_service.compute import BatchRunner
from pruner_service.engine.base import Engine, EngineInfo
from pruner_service.errors import Unavailable
from pruner_service.job import Job
from pruner_service.queue.base import Admission, Consumer

log = structlog.get_logger(__name__)

READINESS_POLL_S = 1.0
"""Seconds between readiness checks of a queue whose readiness can change (``Admission``)."""


class InFlight:
    """The jobs admitted in this process and not yet settled: their trace sizes for deadlines,
    and a drain that waits (on a condition) until none is left."""

    def __init__(self) -> None:
        self._jobs: set[Job] = set()
        self._changed = threading.Condition()

    def add(self, job: Job) -> None:
        """Tracks ``job`` until its future settles (or ``forget``)."""
        with self._changed:
            self._jobs.add(job)
        job.future.add_done_callback(lambda _: self._settled(job))

    def forget(self, job: Job) -> None:
        """Stops tracking a job that was never admitted, without waking anyone: a stream item
        whose admission failed for a full queue must not wake the others waiting for space."""
        with self._changed:
            self._jobs.discard(job)

    def _settled(self, job: Job) -> None:
        with self._changed:
            self._jobs.discard(job)
            self._changed.notify_all()

    def chars(self) -> int:
        """Code points of the traces in flight."""
        with self._changed:
            return sum(len(job.request.trace) for job in self._jobs)

    def wait_settled(self, timeout: float) -> bool:
        """Waits up to ``timeout`` seconds until no job is in flight; whether none is."""
        with self._changed:
            return self._changed.wait_for(lambda: not self._jobs, timeout)

    def wait_change(self, timeout: float) -> None:
        """Waits up to ``timeout`` seconds for a job to settle (queue space may have freed)."""
        with self._changed:
            self._changed.wait(timeout)


class Lifecycle:
    """Loads, warms, follows readiness and stops one process's engine and queue (module doc)."""

    def __init__(
        self,
        admission: Admission,
        engine_factory: Callable[[], Engine] | None,
        consumer_factory: Callable[[BatchRunner], Consumer],
        info: EngineInfo | None = None,
    ) -> None:
        """``engine_factory`` None: a frontend that computes nothing (``info`` describes what
        its workers serve)."""
        self.admission = admission
        self.in_flight = InFlight()
        self._engine_factory = engine_factory
        self._consumer_factory = consumer_factory
        self._info = info
        self._engine: Engine | None = None
        self._consumer: Consumer | None = None
        self._ready = threading.Event()
        self._settled = threading.Event()
        self._closing = threading.Event()
        self._not_ready_reason: str | None = None
        self._failure: str | None = None
        self._ready_callbacks: list[Callable[[bool], None]] = []
        self._failure_callbacks: list[Callable[[], None]] = []

    def on_ready_change(self, callback: Callable[[bool], None]) -> None:
        """Registers ``callback(ready)``, called when readiness changes (health reporting)."""
        self._ready_callbacks.append(callback)

    def on_failure(self, callback: Callable[[], None]) -> None:
        """Registers ``callback()``, called once if the engine fails to load."""
        self._failure_callbacks.append(callback)

    def start(self, background: bool = True) -> None:
        """Loads and warms the engine, then starts the consumer."""
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
                self._consumer = self._consumer_factory(BatchRunner(engine))
                self._consumer.start()
        except Exception as exc:
            self._failure = f"{type(exc).__name__}: {exc}"
            log.exception("engine_load_failed")
            self._settled.set()
            for callback in self._failure_callbacks:
                callback()
            return
        info = self._info
        log.info(
            "started",
            seconds=round(time.perf_counter() - started, 2),
            computes=self._engine is not None,
            adapter=(info.adapter_id or None) if info else None,
            note=(info.note or None) if info else None,
        )
        if self.admission.readiness_changes:
            threading.Thread(target=self._follow_readiness, name="readiness", daemon=True).start()
        else:
            self._set_ready(True)
        self._settled.set()

    def _follow_readiness(self) -> None:
        """Follows the queue's readiness until shutdown."""
        while not self._closing.is_set():
            reason = self.admission.readiness()
            if reason != self._not_ready_reason or self._ready.is_set() != (reason is None):
                self._not_ready_reason = reason
                self._set_ready(reason is None)
                log.info("readiness", ready=reason is None, reason=reason)
            self._closing.wait(READINESS_POLL_S)

    def _set_ready(self, ready: bool) -> None:
        if ready:
            self._ready.set()
        else:
            self._ready.clear()
        for callback in self._ready_callbacks:
            callback(ready)

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

    @property
    def engine(self) -> Engine | None:
        """The loaded engine (``None`` before it is loaded, and on a frontend)."""
        return self._engine

    def info(self) -> EngineInfo:
        """What this process serves; ``Unavailable`` before it is known."""
        if self._info is None:
            self.check_ready()
            raise Unavailable("the model is still loading; retry shortly")
        return self._info

    def check_ready(self) -> None:
        """Returns when requests may be admitted; else raises ``Unavailable`` saying why."""
        if self._ready.is_set():
            return
        if self._failure:
            raise Unavailable(f"the model failed to load: {self._failure}")
        if self._closing.is_set():
            raise Unavailable("the server is shutting down")
        if self._not_ready_reason:
            raise Unavailable(f"not ready: {self._not_ready_reason}")
        raise Unavailable("the model is still loading; retry shortly")

    def shutdown(self, grace: float) -> bool:
        """Not ready → stop admitting → drain in-flight work → stop the consumer and the queue →
        release the engine. Returns whether every admitted job settled within ``grace`` seconds.
        """
        self._closing.set()
        self._set_ready(False)
        self.admission.close()
        drained = self.in_flight.wait_settled(grace)
        if self._consumer is not None:
            self._consumer.stop()
        self.admission.stop()
        self._engine = None
        log.info("shutdown", drained=drained)
        return drained
