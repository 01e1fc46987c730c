"""Prometheus metrics of one process, in their own registry (passed down, never global)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server


class Metrics:
    """Requests by status, queue depth and wait, compute time, batch size, cache hits,
    redeliveries and dead letters."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "freelm_requests",
            "Calls of the Pruner service answered, by method and status code (a PruneStream "
            "call counts once)",
            ["method", "status"],
            registry=r,
        )
        self.queue_depth = Gauge("freelm_queue_depth", "Jobs waiting in the queue", registry=r)
        self.queue_wait = Histogram(
            "freelm_queue_wait_seconds", "Time from admission to compute", registry=r
        )
        self.compute = Histogram("freelm_compute_seconds", "Time of one batch", registry=r)
        self.batch_size = Histogram(
            "freelm_batch_size", "Requests per batch", buckets=(1, 2, 4, 8, 16, 32, 64), registry=r
        )
        self.cache_hits = Counter(
            "freelm_cache_hits", "Requests answered from the cache", registry=r
        )
        self.redeliveries = Counter(
            "freelm_redeliveries", "Jobs reclaimed from a worker that stopped", registry=r
        )
        self.dead_letters = Counter(
            "freelm_dead_letters", "Jobs moved to the dead-letter stream", registry=r
        )

    def track_depth(self, depth: Callable[[], int]) -> None:
        """Reports ``depth()`` as the queue depth at every scrape."""
        self.queue_depth.set_function(depth)

    def serve(self, port: int, host: str) -> None:
        """Serves ``/metrics`` on ``host:port`` in a background thread (``serve`` passes the
        gRPC server's host unless ``--metrics-host`` says otherwise). Raises ``OSError``."""
        start_http_server(port, addr=host, registry=self.registry)
