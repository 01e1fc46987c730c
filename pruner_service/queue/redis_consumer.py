"""The consumer side of the Redis queue: take batches from the stream, compute, publish, then ack.

Each loop: reclaim the jobs of workers that stopped (``XAUTOCLAIM`` past ``claim_idle_ms``), then
read up to ``max_batch`` new jobs (waiting ``max_wait_ms`` for a batch to fill) and run them as
one engine batch through ``compute.BatchRunner``. A job already answered (a redelivery: the same
request id and content) or in the result cache is answered without compute; an expired one is
answered ``DEADLINE_EXCEEDED`` without compute. Results are stored, announced and the entry
acknowledged and deleted in one MULTI/EXEC transaction: a worker that dies first leaves the entry
pending, to be reclaimed and answered, never a lost request. An engine failure leaves the job
pending for another try; past ``max_deliveries`` it goes to the dead-letter stream and its caller
gets an error. Reclaimed jobs on their third delivery or later run alone, so a job that kills its
worker cannot keep taking its batch neighbours down with it.

Leases, not guesses: a thread beats the worker's heartbeat and renews the jobs it holds
(computing, or reclaimed and waiting their turn; ``RENEW_LEASES``) every ``lease_interval_s``, so
a job is idle ``claim_idle_ms`` only when its worker died or is stuck past the job's deadline,
whatever the batch time; ``claim_idle_ms`` is the time to detect a dead worker, not a guess at
the p99 batch time.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import redis
import structlog

from pruner_service.compute import BatchRunner
from pruner_service.config import Settings
from pruner_service.domain import Limits
from pruner_service.errors import Internal, PrunerError
from pruner_service.job import Job
from pruner_service.metrics import Metrics
from pruner_service.queue.codec import cached_result, decode_job, encode_result
from pruner_service.queue.keys import RedisKeys, job_ticket

log = structlog.get_logger(__name__)

HEARTBEAT_S = 2.0
HEARTBEAT_TTL_S = 10

RENEW_LEASES = """
local renewed = 0
for i = 3, #ARGV do
  local pending = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if pending[1] and pending[1][2] == ARGV[2] then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
    renewed = renewed + 1
  end
end
return renewed
"""
"""Resets the idle time of the entries (ARGV[3:]) that consumer ARGV[2] of group ARGV[1] still
owns, atomically, without taking any it no longer owns and without counting a delivery
(``XCLAIM ... JUSTID``): the lease renewal of a worker computing them."""


@dataclass
class _Entry:
    """One stream entry taken by this worker."""

    entry_id: bytes
    job: Job
    reply_to: str
    content_hash: str
    deliveries: int

    @property
    def ticket(self) -> str:
        """The job's request id bound to its content: the key of its result and marks."""
        return job_ticket(self.job.request.request_id, self.content_hash, self.job.request.caller)


class RedisConsumer:
    """A ``Consumer``: a thread that serves the stream's jobs with one ``BatchRunner`` (the
    process is a worker in the Redis sense: one consumer of the stream's group)."""

    def __init__(
        self,
        client: Any,  # redis.Redis with bytes replies (decode_responses off)
        keys: RedisKeys,
        settings: Settings,
        limits: Limits,
        runner: BatchRunner,
        metrics: Metrics | None = None,
    ) -> None:
        self.client = client
        self.keys = keys
        self.settings = settings
        self.limits = limits
        self.runner = runner
        self.metrics = metrics
        self.consumer = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._stop = threading.Event()
        self._next_claim = 0.0
        self._renew = client.register_script(RENEW_LEASES)
        self._held: dict[bytes, float] = {}  # entries taken and not yet answered: deadline
        self._held_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="redis-worker", daemon=True)
        self._heart = threading.Thread(target=self._beat, name="redis-heartbeat", daemon=True)

    def start(self) -> None:
        self._heart.start()
        self._thread.start()

    def stop(self) -> None:
        """Finishes the batch in hand, takes no more, and removes the heartbeat."""
        self._stop.set()
        self._thread.join(timeout=60)
        self._heart.join(timeout=5)
        with contextlib.suppress(redis.RedisError):
            self.client.delete(self.keys.heartbeat(self.consumer))

    def _run(self) -> None:
        backoff = 0.1
        while not self._stop.is_set():
            try:
                self._ensure_group()
                while not self._stop.is_set():
                    self._reclaim()
                    self._take_new()
                    backoff = 0.1
            except redis.RedisError as exc:
                log.warning("redis_worker_retry", error=str(exc), backoff_s=backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)

    def _ensure_group(self) -> None:
        try:
            self.client.xgroup_create(self.keys.jobs, self.keys.group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def lease_interval_s(self) -> float:
        """Seconds between lease renewals: ``HEARTBEAT_S``, or a third of ``claim_idle_ms``
        when that is shorter, so a live worker's jobs never sit idle long enough to be taken."""
        return max(0.05, min(HEARTBEAT_S, self.settings.claim_idle_ms / 3000.0))

    def _beat(self) -> None:
        """Marks this worker alive and renews the leases of the jobs it computes, every
        ``lease_interval_s``, also while a long batch computes."""
        interval, next_mark = self.lease_interval_s(), 0.0
        while not self._stop.is_set():
            with contextlib.suppress(redis.RedisError):
                if time.monotonic() >= next_mark:
                    self.client.set(self.keys.heartbeat(self.consumer), b"1", ex=HEARTBEAT_TTL_S)
                    next_mark = time.monotonic() + HEARTBEAT_S
                self._renew_leases()
            self._stop.wait(interval)

    def _renew_leases(self) -> None:
        """Resets the idle time of the jobs this worker holds (computing, or reclaimed and
        waiting for their turn), each until its deadline: past it nobody waits for it, so a
        worker stuck on it lets it be reclaimed (and answered ``DEADLINE_EXCEEDED``) by another."""
        now = time.time()
        with self._held_lock:
            entries = [entry_id for entry_id, deadline in self._held.items() if now < deadline]
        if entries:
            self._renew(keys=[self.keys.jobs], args=[self.keys.group, self.consumer, *entries])

    @contextlib.contextmanager
    def _holding(self, entries: list[_Entry]) -> Iterator[None]:
        """Keeps the leases of ``entries`` renewed while the block runs."""
        with self._held_lock:
            self._held.update((e.entry_id, e.job.deadline) for e in entries)
        try:
            yield
        finally:
            with self._held_lock:
                for entry in entries:
                    self._held.pop(entry.entry_id, None)

    # taking work -----------------------------------------------------------------------------
    def _read(self, count: int, block_ms: int | None) -> list[tuple[bytes, dict[bytes, bytes]]]:
        reply = self.client.xreadgroup(
            self.keys.group, self.consumer, {self.keys.jobs: ">"}, count=count, block=block_ms
        )
        return list(reply[0][1]) if reply else []

    def _take_new(self) -> None:
        batch = self.settings.max_batch
        raw = self._read(batch, block_ms=200)
        if raw and len(raw) < batch and self.settings.max_wait_ms > 0:
            self._stop.wait(self.settings.max_wait_ms / 1000.0)
            raw += self._read(batch - len(raw), block_ms=None)
        self._serve(self._entries(raw))

    def _reclaim(self) -> None:
        now = time.monotonic()
        if now < self._next_claim:
            return
        self._next_claim = now + max(self.settings.claim_idle_ms / 4000.0, 0.1)
        reply = self.client.xautoclaim(
            self.keys.jobs,
            self.keys.group,
            self.consumer,
            min_idle_time=self.settings.claim_idle_ms,
            start_id="0-0",
            count=self.settings.max_batch,
        )
        claimed = self._entries([(i, f) for i, f in reply[1] if f])
        if not claimed:
            return
        if self.metrics:
            self.metrics.redeliveries.inc(len(claimed))
        log.info("reclaimed", jobs=len(claimed), consumer=self.consumer,
                 request_ids=[e.job.request.request_id for e in claimed])  # fmt: skip
        limit = self.settings.max_deliveries
        pipe = self._settling()
        for entry in claimed:
            if entry.deliveries > limit:
                self._dead_letter(pipe, entry, f"no worker finished it in {limit} deliveries")
        pipe.execute()
        with self._holding([e for e in claimed if e.deliveries <= limit]):
            self._serve([e for e in claimed if e.deliveries == 2])
            for entry in claimed:
                if 2 < entry.deliveries <= limit:
                    self._serve([entry])

    def _entries(self, raw: list[tuple[bytes, dict[bytes, bytes]]]) -> list[_Entry]:
        """Decoded entries with their delivery counts (one round trip for the batch)."""
        if not raw:
            return []
        pipe = self.client.pipeline(transaction=False)
        for entry_id, _ in raw:
            pipe.hincrby(self.keys.deliveries, entry_id.decode(), 1)
        counts = pipe.execute()
        entries = []
        for (entry_id, fields), deliveries in zip(raw, counts, strict=True):
            try:
                job, message = decode_job(fields[b"job"])
            except (KeyError, ValueError) as exc:
                log.error("undecodable_job", entry=entry_id.decode(), error=str(exc))
                reason = str(exc).encode()
                pipe = self._settling()
                pipe.xadd(self.keys.dead_letters, {b"entry": entry_id, b"reason": reason})
                self._ack(pipe, entry_id, None)
                pipe.execute()
                continue
            entries.append(
                _Entry(entry_id, job, message.reply_to, message.content_hash, int(deliveries))
            )
        return entries

    # serving ---------------------------------------------------------------------------------
    def _serve(self, entries: list[_Entry]) -> None:
        """Answers known jobs from the store, computes the rest as one batch, then stores,
        announces and acknowledges every result in one round trip."""
        todo = self._answer_known(entries)
        if not todo:
            return
        started = time.perf_counter()
        log.info("computing", request_ids=[e.job.request.request_id for e in todo],
                 deliveries=[e.deliveries for e in todo])  # fmt: skip
        with self._holding(todo):
            self.runner.run_batch([e.job for e in todo])
        if self.metrics:
            self.metrics.compute.observe(time.perf_counter() - started)
            self.metrics.batch_size.observe(len(todo))
            for entry in todo:
                self.metrics.queue_wait.observe(max(0.0, time.time() - entry.job.enqueued_at))
        pipe = self._settling()
        for entry in todo:
            self._finish(pipe, entry)
        pipe.execute()
        log.info("answered", request_ids=[e.job.request.request_id for e in todo])

    def _answer_known(self, entries: list[_Entry]) -> list[_Entry]:
        """Answers entries whose job has a result or whose content is cached; returns the ones
        left to compute."""
        if not entries:
            return []
        lookup = self.client.pipeline(transaction=False)
        for entry in entries:
            lookup.exists(self.keys.result(entry.ticket), self.keys.cancelled(entry.ticket))
            lookup.get(self.keys.cache(entry.content_hash))
        found = lookup.execute()
        pipe = self._settling()
        todo = []
        for entry, done, cached in zip(entries, found[0::2], found[1::2], strict=True):
            if done:  # answered already, or its caller went away
                self._ack(pipe, entry.entry_id, entry.ticket)
            elif cached is not None:
                if self.metrics:
                    self.metrics.cache_hits.inc()
                queue_ms = (time.time() - entry.job.enqueued_at) * 1000.0
                data = cached_result(bytes(cached), entry.job.request.request_id, queue_ms)
                self._publish(pipe, entry, data, cache=False)
            else:
                todo.append(entry)
        pipe.execute()
        return todo

    def _finish(self, pipe: Any, entry: _Entry) -> None:
        future = entry.job.future
        error = future.exception() if future.done() else Internal("the job was not settled")
        request_id = entry.job.request.request_id
        if error is None:
            pipe.hincrby(self.keys.computations, request_id, 1)
            self._publish(pipe, entry, encode_result(future.result()), cache=True)
            return
        if not isinstance(error, Internal):
            failure = error if isinstance(error, PrunerError) else Internal(str(error))
            self._publish(pipe, entry, encode_result(failure), cache=False)
            return
        pipe.hincrby(self.keys.computations, request_id, 1)
        if entry.deliveries >= self.settings.max_deliveries:
            self._dead_letter(pipe, entry, str(error))
        else:
            log.warning("job_failed_will_retry", request_id=request_id, deliveries=entry.deliveries)

    def _publish(self, pipe: Any, entry: _Entry, data: bytes, cache: bool) -> None:
        """Queues on ``pipe``: store the result (and cache a success), announce it, then ack."""
        pipe.set(self.keys.result(entry.ticket), data, ex=self.settings.result_ttl_s)
        if cache and self.settings.cache_ttl_s > 0:
            pipe.set(self.keys.cache(entry.content_hash), data, ex=self.settings.cache_ttl_s)
        pipe.publish(entry.reply_to, entry.ticket.encode())
        self._ack(pipe, entry.entry_id, entry.ticket)

    def _settling(self) -> Any:
        """A pipeline for commands that settle entries (store, announce, acknowledge, delete),
        sent as one MULTI/EXEC transaction: Redis applies all of it or none (none: the client
        resends it, or the entries stay pending and are reclaimed), never an acknowledgement
        without the deletion that takes the entry off the stream (an acknowledged entry left
        there would count toward ``--max-queue`` for good)."""
        return self.client.pipeline(transaction=True)

    def _ack(self, pipe: Any, entry_id: bytes, ticket: str | None) -> None:
        pipe.xack(self.keys.jobs, self.keys.group, entry_id)
        pipe.xdel(self.keys.jobs, entry_id)
        pipe.hdel(self.keys.deliveries, entry_id.decode())
        if ticket is not None:
            pipe.delete(self.keys.inflight(ticket))

    def _dead_letter(self, pipe: Any, entry: _Entry, reason: str) -> None:
        request_id = entry.job.request.request_id
        message = (
            f"the request failed on {entry.deliveries} deliveries and was moved to the dead-letter "
            f"stream: {reason}"
        )
        fields = {b"entry": entry.entry_id, b"request_id": request_id.encode()}
        pipe.xadd(self.keys.dead_letters, {**fields, b"reason": reason.encode()})
        if self.metrics:
            self.metrics.dead_letters.inc()
        log.error("dead_letter", request_id=request_id, reason=reason)
        self._publish(pipe, entry, encode_result(Internal(message)), cache=False)
