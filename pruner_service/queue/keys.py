"""Every Redis key and channel the service uses, in one place, under a configurable namespace."""

from __future__ import annotations

from dataclasses import dataclass


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

    def result(self, request_id: str) -> str:
        """A job's ``QueueResult``, by request id."""
        return f"{self.namespace}:result:{request_id}"

    def inflight(self, request_id: str) -> str:
        """Set while a request id is queued or computing, so a retry does not enqueue it twice."""
        return f"{self.namespace}:inflight:{request_id}"

    def cancelled(self, request_id: str) -> str:
        """Set when a caller went away (cancelled, or past its deadline): workers skip the job."""
        return f"{self.namespace}:cancelled:{request_id}"

    def cache(self, content_hash: str) -> str:
        """A cached ``PruneResponse``, by content hash."""
        return f"{self.namespace}:cache:{content_hash}"

    def notify(self, frontend_id: str) -> str:
        """The pub/sub channel a frontend listens on for finished request ids."""
        return f"{self.namespace}:notify:{frontend_id}"

    def heartbeat(self, worker_id: str) -> str:
        """A worker's heartbeat (expires when the worker stops beating)."""
        return f"{self.namespace}:heartbeat:{worker_id}"

    @property
    def heartbeat_pattern(self) -> str:
        return f"{self.namespace}:heartbeat:*"
