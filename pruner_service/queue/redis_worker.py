"""The worker side of the Redis queue: take batches from the stream, compute, publish, then ack.

Each loop: beat the heartbeat, reclaim jobs of dead workers (``XAUTOCLAIM`` past ``claim_idle_ms``),
then read up to ``max_batch`` new jobs (waiting ``max_wait_ms`` for a batch to fill) and run them as
one engine batch through ``Worker``. A job already answered (a redelivery) or in the result cache
is answered without compute; an expired one is answered ``DEADLINE_EXCEEDED`` without compute.
Results are stored and announced before the entry is acknowledged, so a crash in between means a
redelivery answered from the store, never a lost request. An engine failure leaves the job pending
for another try; past ``max_deliveries`` it goes to the dead-letter stream and its caller gets an
error. Reclaimed jobs on their third delivery or later run alone, so a job that kills its worker
cannot keep taking its batch neighbours down with it.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

import redis
import structlog

from pruner_service.config import Settings
from pruner_service.domain import Limits
from pruner_service.errors import Internal, PrunerError
from pruner_service.metrics import Metrics
from pruner_service.queue.base import Job
from pruner_service.queue.codec import cached_response, decode_job, encode_result
from pruner_service.queue.keys import RedisKeys
from pruner_service.worker import Worker

log = structlog.get_logger(__name__)

HEARTBEAT_S = 2.0
HEARTBEAT_TTL_S = 10


@dataclass
class _Entry:
    """One stream entry taken by this worker."""

    entry_id: bytes
    job: Job
    reply_to: str
    content_hash: str
    deliveries: int


class RedisWorkerLoop:
    """A thread that serves the stream's jobs with one ``Worker``."""

    def __init__(
        self,
        client: Any,  # redis.Redis with bytes replies (decode_responses off)
        keys: RedisKeys,
        settings: Settings,
        limits: Limits,
        worker: Worker,
        metrics: Metrics | None = None,
    ) -> None:
        self.client = client
        self.keys = keys
        self.settings = settings
        self.limits = limits
        self.worker = worker
        self.metrics = metrics
        self.consumer = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._stop = threading.Event()
        self._next_claim = 0.0
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

    def _beat(self) -> None:
        """Marks this worker alive every ``HEARTBEAT_S``, also while a long batch computes."""
        while not self._stop.is_set():
            with contextlib.suppress(redis.RedisError):
                self.client.set(self.keys.heartbeat(self.consumer), b"1", ex=HEARTBEAT_TTL_S)
            self._stop.wait(HEARTBEAT_S)

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
        entries = [e for e in (self._entry(i, f, first=True) for i, f in raw) if e]
        self._serve(entries)

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
        claimed = [e for e in (self._entry(i, f, first=False) for i, f in reply[1] if f) if e]
        if not claimed:
            return
        if self.metrics:
            self.metrics.redeliveries.inc(len(claimed))
        log.info("reclaimed", jobs=len(claimed), consumer=self.consumer)
        alive = [e for e in claimed if e.deliveries <= self.settings.max_deliveries]
        for entry in claimed:
            if entry.deliveries > self.settings.max_deliveries:
                self._dead_letter(entry)
        together = [e for e in alive if e.deliveries <= 2]
        self._serve(together)
        for entry in alive:
            if entry.deliveries > 2:
                self._serve([entry])

    def _entry(self, entry_id: bytes, fields: dict[bytes, bytes], first: bool) -> _Entry | None:
        deliveries = int(self.client.hincrby(self.keys.deliveries, entry_id.decode(), 1))
        try:
            job, message = decode_job(fields[b"job"], self.limits)
        except (KeyError, ValueError, PrunerError) as exc:
            log.error("undecodable_job", entry=entry_id.decode(), error=str(exc))
            self.client.xadd(
                self.keys.dead_letters, {b"entry": entry_id, b"reason": str(exc).encode()}
            )
            self._ack(entry_id, "")
            return None
        return _Entry(entry_id, job, message.reply_to, message.content_hash, deliveries)

    # serving ---------------------------------------------------------------------------------
    def _serve(self, entries: list[_Entry]) -> None:
        todo = [e for e in entries if not self._answered(e)]
        if not todo:
            return
        started = time.perf_counter()
        self.worker.run_batch([e.job for e in todo])
        if self.metrics:
            self.metrics.compute.observe(time.perf_counter() - started)
            self.metrics.batch_size.observe(len(todo))
        for entry in todo:
            self._finish(entry)

    def _answered(self, entry: _Entry) -> bool:
        """Answers ``entry`` from the result store or the cache, if either has it."""
        request_id = entry.job.request.request_id
        if self.client.exists(self.keys.result(request_id)):
            self._ack(entry.entry_id, request_id)
            return True
        cached = self.client.get(self.keys.cache(entry.content_hash))
        if cached is None:
            return False
        cached = bytes(cached)
        if self.metrics:
            self.metrics.cache_hits.inc()
        queue_ms = (time.time() - entry.job.enqueued_at) * 1000.0
        result = cached_response(cached, entry.job.request, queue_ms)
        self._publish(entry, encode_result(result), cache=False)
        return True

    def _finish(self, entry: _Entry) -> None:
        future = entry.job.future
        error = future.exception() if future.done() else Internal("the job was not settled")
        request_id = entry.job.request.request_id
        if error is None:
            self.client.hincrby(self.keys.computations, request_id, 1)
            self._publish(entry, encode_result(future.result()), cache=True)
            return
        if not isinstance(error, Internal):
            failure = error if isinstance(error, PrunerError) else Internal(str(error))
            self._publish(entry, encode_result(failure), cache=False)
            return
        self.client.hincrby(self.keys.computations, request_id, 1)
        if entry.deliveries >= self.settings.max_deliveries:
            self._dead_letter(entry, str(error))
        else:
            log.warning("job_failed_will_retry", request_id=request_id, deliveries=entry.deliveries)

    def _publish(self, entry: _Entry, data: bytes, cache: bool) -> None:
        """Stores the result (and caches a success), announces it, then acknowledges."""
        request_id = entry.job.request.request_id
        pipe = self.client.pipeline()
        pipe.set(self.keys.result(request_id), data, ex=self.settings.result_ttl_s)
        if cache:
            pipe.set(self.keys.cache(entry.content_hash), data, ex=self.settings.cache_ttl_s)
        pipe.publish(entry.reply_to, request_id.encode())
        pipe.execute()
        self._ack(entry.entry_id, request_id)

    def _ack(self, entry_id: bytes, request_id: str) -> None:
        pipe = self.client.pipeline()
        pipe.xack(self.keys.jobs, self.keys.group, entry_id)
        pipe.xdel(self.keys.jobs, entry_id)
        pipe.hdel(self.keys.deliveries, entry_id.decode())
        if request_id:
            pipe.delete(self.keys.inflight(request_id))
        pipe.execute()

    def _dead_letter(self, entry: _Entry, reason: str = "") -> None:
        reason = reason or f"no worker finished it in {entry.deliveries - 1} deliveries"
        message = (
            f"the request failed on {entry.deliveries} deliveries and was moved to the dead-letter "
            f"stream: {reason}"
        )
        self.client.xadd(
            self.keys.dead_letters,
            {b"entry": entry.entry_id, b"request_id": entry.job.request.request_id.encode(),
             b"reason": reason.encode()},
        )  # fmt: skip
        if self.metrics:
            self.metrics.dead_letters.inc()
        log.error("dead_letter", request_id=entry.job.request.request_id, reason=reason)
        self._publish(entry, encode_result(Internal(message)), cache=False)
