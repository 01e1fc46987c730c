"""Running many records through the service for evaluation: a local engine or a remote server."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from types import MappingProxyType
from typing import Any

from tqdm import tqdm

from pruner_service.config import Settings
from pruner_service.domain import PruneOptions, PruneRequest, PruneResult
from pruner_service.training.report import Pruned, PruneMany, parses

Results = dict[str, Pruned]


@contextmanager
def local_runner(
    settings: Settings, options: Mapping[str, Any] = MappingProxyType({})
) -> Iterator[PruneMany]:
    """A runner over an in-process service (the profile's engine, loaded once); ``options`` are
    ``PruneOptions`` fields sent with every request."""
    from pruner_service.assembly import build_service

    service = build_service(settings)
    service.start(background=False)
    if not service.ready:
        raise RuntimeError(f"the model failed to load: {service.failure}")

    def run(records: Sequence[dict[str, Any]], collapse: bool) -> Results:
        chosen = PruneOptions(
            max_commands=service.limits.max_commands, collapse_loops=collapse, **options
        )
        requests = [
            PruneRequest(r["id"], r["trace"], r.get("question", ""), chosen) for r in records
        ]
        results: Results = {}
        label = "service" if collapse else "model only"
        stream = service.prune_stream(iter(requests), time.time() + 3600)
        for answer in tqdm(stream, total=len(requests), desc=label, unit="trace"):
            request_id, item = answer.request_id, answer.outcome
            if not isinstance(item, PruneResult):
                raise RuntimeError(f"record {request_id}: {item}")
            results[request_id] = Pruned(
                [(d.start, d.end) for d in item.outcome.deletions],
                item.timing.total_ms / 1000,
                [c.status.name for c in item.outcome.commands],
                parses(item.raw_output),
                item.usage.trace_tokens,
                item.usage.kept_tokens,
                [(c.prefix, c.suffix) for c in item.outcome.commands],
            )
        return results

    try:
        yield run
    finally:
        service.shutdown(grace=0)


def remote_runner(address: str, options: Mapping[str, Any] = MappingProxyType({})) -> PruneMany:
    """A runner over a running server, through the streaming RPC; ``options`` are
    ``PruneOptions`` fields sent with every request."""
    from freelm.pruner.v1 import pruner_pb2 as pb
    from freelm_pruner_client.client import PrunerClient, build_request

    def run(records: Sequence[dict[str, Any]], collapse: bool) -> Results:
        requests = [
            build_request(
                r["trace"], r.get("question", ""), r["id"], collapse_loops=collapse, **options
            )
            for r in records
        ]
        results: Results = {}
        with PrunerClient(address, timeout=3600) as client:
            replies = _chunked_stream(client, requests)
            for reply in tqdm(replies, total=len(requests), unit="trace"):
                if reply.WhichOneof("result") == "error":
                    raise RuntimeError(f"record {reply.request_id}: {reply.error.message}")
                response = reply.response
                results[reply.request_id] = Pruned(
                    [(d.start, d.end) for d in response.deletions],
                    response.timing.total_ms / 1000,
                    [pb.CommandStatus.Name(c.status) for c in response.commands],
                    parses(response.raw_output),
                    response.usage.trace_tokens,
                    response.usage.kept_tokens,
                    [(c.prefix, c.suffix) for c in response.commands],
                )
        return results

    return run


STREAM_CHUNK = 32
"""Records per stream: a large file goes as several streams, so a broken connection loses at
most one chunk's work (each item has the server's deadline, scaled to its trace)."""


def _chunked_stream(client: Any, requests: Sequence[Any]) -> Iterator[Any]:
    for start in range(0, len(requests), STREAM_CHUNK):
        yield from client.prune_stream(requests[start : start + STREAM_CHUNK])
