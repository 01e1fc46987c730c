"""Every Redis key and channel the service uses, in one place, under a configurable namespace."""

from __future__ import annotations

from dataclasses import dataclass


def job_ticket(request_id: str, content_hash: str, caller: str = "") -> str:
    """A job's identity on the queue: its request id bound to the hash of its content.

    Results, in-flight marks and cancellations are keyed by it, never by the request id alone:
    a request id is an idempotency key chosen by the caller (it leaks into logs and retries), so
    a second request that reuses it with other content is a different job and can never be
    answered with the first one's result. With authentication ``caller`` (a token's 12-hex-digit
    fingerprint) binds it to the caller too: another caller reusing the id and the content gets a
    job of its own. Without a caller the key is as it was before callers existed
    (``HASH:REQUEST_ID``), so frontends and workers of both versions agree during an upgrade.
    ``content_hash`` is fixed-length hex, so the key cannot be forged by a request id that contains
    the separator; a caller-less id that looks like ``CALLER:ID`` could only meet a caller's key of
    the same content, whose result is the same.
    """
    return f"{content_hash}:{caller}:{request_id}" if caller else f"{content_hash}:{request_id}"


@dataclass(frozen=True)
class RedisKeys:
    """Key names of one deployment; several deployments share a Redis with different namespaces."""

    namespace: str = "freelm"

    @property
    def jobs(self) -> str:
        """The stream of jobs (``XADD`` by frontends, ``XREADGROUP`` by workers)."""
        return f"{self.namespace}:jobs"

    @property
    def group(self) -> str:
        """The workers' consumer group."""
        return f"{self.namespace}:workers"

    @property
    def dead_letters(self) -> str:
        """Jobs that failed ``max_deliveries`` times."""
        return f"{self.namespace}:dead"

    @property
    def deliveries(self) -> str:
        """Hash: stream entry id → how many times a worker took it."""
        return f"{self.namespace}:deliveries"

    @property
    def computations(self) -> str:
        """Hash: request id → how many times an engine computed it (audit and tests)."""
        return f"{self.namespace}:computations"

    def result(self, ticket: str) -> str:
        """A job's ``QueueResult``, by its ``job_ticket`` (request id bound to content)."""
        return f"{self.namespace}:result:{ticket}"

    def inflight(self, ticket: str) -> str:
        """Set while a job is queued or computing, so a retry does not enqueue it twice."""
        return f"{self.namespace}:inflight:{ticket}"

    def cancelled(self, ticket: str) -> str:
        """Set when a caller went away (cancelled, or past its deadline): workers skip the job."""
        return f"{self.namespace}:cancelled:{ticket}"

    def cache(self, content_hash: str) -> str:
        """A cached ``PruneResponse``, by content hash."""
        return f"{self.namespace}:cache:{content_hash}"

    def notify(self, frontend_id: str) -> str:
        """The pub/sub channel a frontend listens on for finished jobs' ``job_ticket``."""
        return f"{self.namespace}:notify:{frontend_id}"

    def heartbeat(self, worker_id: str) -> str:
        """A worker's heartbeat (expires when the worker stops beating)."""
        return f"{self.namespace}:heartbeat:{worker_id}"

    @property
    def heartbeat_pattern(self) -> str:
        return f"{self.namespace}:heartbeat:*"
