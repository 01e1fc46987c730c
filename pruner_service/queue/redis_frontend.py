"""The frontend side of the Redis queue: admit jobs onto the stream and settle them from results.

``submit`` answers at once from a stored result (a retried request) or the result cache (same
content), refuses work past ``max_queue``, and otherwise adds the job to the stream unless the same
job is already in flight. A job is its request id bound to its content (``keys.job_ticket``): a
request that reuses another's id with different content is computed as a job of its own, never
answered with the other's result. One listener thread per frontend receives finished jobs' tickets
on the frontend's pub/sub channel and settles the waiting jobs; it also polls the results of
waiting jobs, so a notification lost while Redis restarted costs a poll interval, not the request.
While Redis is unreachable, ``submit`` raises ``Unavailable`` at once and nothing waits past its
deadline.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import time
import uuid
from collections import defaultdict
from typing import Any

import redis
import structlog

from pruner_service.engine.base import EngineInfo
from pruner_service.errors import QueueFull, Unavailable
from pruner_service.job import Job
from pruner_service.metrics import Metrics
from pruner_service.queue.codec import cached_response, content_hash, decode_result, encode_job
from pruner_service.queue.keys import RedisKeys, job_ticket

log = structlog.get_logger(__name__)


def unavailable(error: redis.RedisError) -> str:
    """What a caller is told when Redis fails: the kind of failure, never Redis's address or
    its own message (those go to the server's log)."""
    return f"the queue (Redis) is unavailable ({type(error).__name__}); retry later"


POLL_S = 0.5
"""How often waiting jobs' results are polled, besides the notifications."""

ENQUEUE_ONCE = """
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
  return redis.call('XADD', KEYS[2], '*', 'job', ARGV[2])
end
return false
"""
"""Marks a job in flight and adds it to the stream, atomically, unless it is already in flight."""


class RedisFrontend:
    """An ``Admission`` onto a Redis stream shared by many frontends and workers; ready while
    Redis answers and a worker is alive."""

    readiness_changes = True

    def __init__(
        self,
        client: Any,  # redis.Redis with bytes replies (decode_responses off)
        keys: RedisKeys,
        info: EngineInfo,
        max_queue: int,
        metrics: Metrics | None = None,
    ) -> None:
        self.client = client
        self.keys = keys
        self.info = info
        self.max_queue = max_queue
        self.metrics = metrics
        self.frontend_id = uuid.uuid4().hex[:12]
        self.channel = keys.notify(self.frontend_id)
        self._enqueue = client.register_script(ENQUEUE_ONCE)
        self._waiting: dict[str, list[Job]] = defaultdict(list)
        self._lock = threading.Lock()
        self._closed = False
        self._stop = threading.Event()
        self._listener = threading.Thread(target=self._listen, name="redis-results", daemon=True)
        self._listener.start()

    # admission -------------------------------------------------------------------------------
    def submit(self, job: Job) -> None:
        if self._closed:
            raise Unavailable("the server is shutting down; not accepting new requests")
        request = job.request
        key = content_hash(self.info, request)
        ticket = job_ticket(request.request_id, key, request.caller)
        try:
            lookup = self.client.pipeline(transaction=False)
            lookup.get(self.keys.result(ticket))
            lookup.get(self.keys.cache(key))
            lookup.xlen(self.keys.jobs)
            stored, cached, depth = lookup.execute()
            if self._answer_from_store(job, _bytes(stored), _bytes(cached)):
                return
            if depth >= self.max_queue:
                raise QueueFull(f"queue is full ({self.max_queue} requests waiting); retry later")
            with self._lock:
                self._waiting[ticket].append(job)
            job.future.add_done_callback(functools.partial(self._on_done, ticket, job))
            ttl = max(1, int(job.deadline - time.time()) + 1)
            self._enqueue(
                keys=[self.keys.inflight(ticket), self.keys.jobs],
                args=[ttl, encode_job(job, self.channel, key)],
            )
        except redis.RedisError as exc:
            self._forget(ticket, job)
            log.warning("redis_unavailable", request_id=request.request_id, error=str(exc))
            raise Unavailable(unavailable(exc)) from None

    def _answer_from_store(self, job: Job, stored: bytes | None, cached: bytes | None) -> bool:
        """Settles ``job`` from a stored result of its id, or the cache of its content."""
        request = job.request
        if stored is not None:
            self._settle_one(job, stored)
            return True
        if cached is None:
            return False
        if self.metrics:
            self.metrics.cache_hits.inc()
        if job.future.set_running_or_notify_cancel():
            queue_ms = (time.time() - job.enqueued_at) * 1e3
            job.finish(cached_response(cached, request.request_id, queue_ms))
        return True

    def _on_done(self, ticket: str, job: Job, _: object = None) -> None:
        """Marks a cancelled job (caller gone or past its deadline) so workers skip it."""
        if not job.future.cancelled():
            return
        ttl = max(1, int(job.deadline - time.time()) + 60)
        with contextlib.suppress(redis.RedisError):
            self.client.set(self.keys.cancelled(ticket), b"1", ex=ttl)

    def depth(self) -> int:
        try:
            return int(self.client.xlen(self.keys.jobs))
        except redis.RedisError:
            return 0

    def close(self) -> None:
        """Stops admitting; the listener keeps settling jobs until ``stop``."""
        self._closed = True

    def stop(self) -> None:
        self._stop.set()
        self._listener.join(timeout=5)

    def readiness(self) -> str | None:
        """None when Redis answers and a worker is alive; otherwise why not."""
        try:
            self.client.ping()
            workers = next(
                iter(self.client.scan_iter(self.keys.heartbeat_pattern, count=100)), None
            )
        except redis.RedisError as exc:
            return unavailable(exc)
        return None if workers is not None else "no live worker"

    # results ---------------------------------------------------------------------------------
    def _forget(self, ticket: str, job: Job) -> None:
        with self._lock:
            jobs = self._waiting.get(ticket, [])
            if job in jobs:
                jobs.remove(job)
            if not jobs:
                self._waiting.pop(ticket, None)

    def _settle_one(self, job: Job, data: bytes) -> None:
        if not job.future.set_running_or_notify_cancel():
            return
        outcome = decode_result(data)
        if isinstance(outcome, Exception):
            job.fail(outcome)
        else:
            job.finish(outcome)

    def _settle(self, ticket: str, data: bytes) -> None:
        with self._lock:
            jobs = self._waiting.pop(ticket, [])
        for job in jobs:
            self._settle_one(job, data)

    def _listen(self) -> None:
        backoff = 0.1
        while not self._stop.is_set():
            try:
                pubsub = self.client.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(self.channel)
                backoff = 0.1
                self._pump(pubsub)
            except redis.RedisError as exc:
                log.warning("redis_listener_retry", error=str(exc), backoff_s=backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)

    def _pump(self, pubsub: Any) -> None:
        next_poll = time.monotonic() + POLL_S
        while not self._stop.is_set():
            message = pubsub.get_message(timeout=POLL_S)
            if message and message.get("type") == "message":
                ticket = message["data"].decode()
                data = _bytes(self.client.get(self.keys.result(ticket)))
                if data is not None:
                    self._settle(ticket, data)
            if time.monotonic() >= next_poll:
                self._poll()
                next_poll = time.monotonic() + POLL_S

    def _poll(self) -> None:
        """Settles waiting jobs whose results exist; drops jobs that were already settled."""
        with self._lock:
            for ticket in [
                t for t, jobs in self._waiting.items() if all(j.future.done() for j in jobs)
            ]:
                del self._waiting[ticket]
            tickets = list(self._waiting)
        if not tickets:
            return
        for ticket, data in zip(
            tickets, self.client.mget([self.keys.result(t) for t in tickets]), strict=True
        ):
            if data is not None:
                self._settle(ticket, data)


def _bytes(value: object) -> bytes | None:
    """A Redis reply as bytes (the client is not decoding), or None."""
    return None if value is None else bytes(value)  # type: ignore[call-overload]
