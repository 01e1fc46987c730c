"""The proxy's Prometheus metrics, in their own registry, served on the proxy's ``/metrics``."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram


class ProxyMetrics:
    """Requests by route and outcome; pruning rounds, tokens pruned, peak context saved; pruner
    calls that failed or timed out (the request went on unpruned) and the pruner's time."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "freelm_proxy_requests",
            "Requests answered, by route and outcome (completed, passthrough, upstream_error, "
            "cancelled)",
            ["route", "outcome"],
            registry=r,
        )
        self.pruning_rounds = Counter(
            "freelm_proxy_pruning_rounds", "Pruner calls answered", registry=r
        )
        self.pruned_tokens = Counter(
            "freelm_proxy_pruned_tokens", "Reasoning tokens removed by pruning", registry=r
        )
        self.peak_saved = Counter(
            "freelm_proxy_peak_context_saved_tokens",
            "Sum over requests of how much smaller the largest context was, in tokens",
            registry=r,
        )
        self.pruner_failures = Counter(
            "freelm_proxy_pruner_failures",
            "Pruner calls that failed or passed the deadline, by gRPC code; the round went on "
            "unpruned",
            ["code"],
            registry=r,
        )
        self.pruner_seconds = Histogram(
            "freelm_proxy_pruner_seconds", "Time of one pruner call (seconds)", registry=r
        )
