"""Assembling a service from settings: profile → engine factory → queue → service, by role.

- no ``--redis``: one process, in-process queue, frontend and worker together (embedded mode);
- ``--redis URL --role all``: frontend and worker in one process, sharing the Redis stream;
- ``--role frontend``: validates, admits and waits; computes nothing;
- ``--role worker``: computes batches from the stream; serves no gRPC.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import structlog

from pruner_service.compute import BatchRunner
from pruner_service.config import Settings
from pruner_service.domain import Limits
from pruner_service.engine.base import Engine
from pruner_service.engine.profile import DTYPES, Profile, describe
from pruner_service.metrics import Metrics
from pruner_service.queue.base import ClosedQueue, Consumer
from pruner_service.service import PrunerService

log = structlog.get_logger(__name__)

ROLES = ("all", "frontend", "worker")

MIN_WINDOW_TOKENS = 64
"""The smallest ``--window-tokens``: a window must hold a few sentences for the model to find
anything redundant in it (a command's two anchors alone take up to 2 x 48 characters)."""


def engine_factory(settings: Settings, profile: Profile) -> Callable[[], Engine]:
    """Loads the profile's model (with its Free-Module merged) when called."""

    def make_engine() -> Engine:
        import torch

        from pruner_service.engine.hf import HFEngine
        from pruner_service.engine.load import load_model

        if settings.threads > 0:
            torch.set_num_threads(settings.threads)
        loaded = load_model(profile, settings.cache_dir, settings.device, settings.dtype)
        return HFEngine(
            loaded,
            profile,
            settings.max_new_tokens,
            prefix_cache_bytes=settings.prefix_cache_mb * 2**20,
            reused_rows=settings.reused_rows,
        )

    return make_engine


def build_service(
    settings: Settings,
    metrics: Metrics | None = None,
    make_engine: Callable[[], Engine] | None = None,
) -> PrunerService:
    """A service for ``settings``; the engine (if the role computes) loads when it starts.

    ``make_engine`` replaces the profile's engine (benchmarks isolating the transport).
    """
    if settings.role not in ROLES:
        raise ValueError(f"--role must be one of {', '.join(ROLES)}, got {settings.role!r}")
    if settings.dtype and settings.dtype not in DTYPES:
        raise ValueError(f"--dtype must be one of {', '.join(DTYPES)}, got {settings.dtype!r}")
    if settings.prefix_cache_mb < 0 or settings.reused_rows < 0:
        raise ValueError("--prefix-cache-mb and --reused-rows must be at least 0")
    if settings.window_tokens < 0 or 0 < settings.window_tokens < MIN_WINDOW_TOKENS:
        raise ValueError(f"--window-tokens must be 0 (the profile's) or at least "
                         f"{MIN_WINDOW_TOKENS}, got {settings.window_tokens}")  # fmt: skip
    profile = Profile.load(settings.profile).with_paths(settings.model_path, settings.adapter_path)
    if settings.window_tokens:
        profile = dataclasses.replace(profile, window_tokens=settings.window_tokens)
    limits = Limits(settings.max_trace_chars, settings.max_question_chars, profile.max_commands)
    make_engine = make_engine or engine_factory(settings, profile)
    if not settings.redis:
        if settings.role != "all":
            raise ValueError(f"--role {settings.role} needs --redis URL (a shared queue)")
        return PrunerService(settings, make_engine, limits)
    return _redis_service(settings, profile, limits, make_engine, metrics)


def _redis_service(
    settings: Settings,
    profile: Profile,
    limits: Limits,
    make_engine: Callable[[], Engine],
    metrics: Metrics | None,
) -> PrunerService:
    if settings.result_ttl_s < 1 or settings.cache_ttl_s < 0:
        raise ValueError("--result-ttl-s must be at least 1 and --cache-ttl-s at least 0")
    import redis
    from redis.backoff import ExponentialBackoff
    from redis.retry import Retry

    from pruner_service.queue.keys import RedisKeys
    from pruner_service.queue.redis_consumer import RedisConsumer
    from pruner_service.queue.redis_frontend import RedisFrontend

    client = redis.Redis.from_url(
        settings.redis,
        socket_timeout=5,
        socket_connect_timeout=2,
        retry=Retry(ExponentialBackoff(cap=2.0, base=0.05), retries=2),
        health_check_interval=10,
    )
    keys = RedisKeys(settings.namespace)
    info = describe(profile)
    computes = settings.role in ("all", "worker")

    def consumer(runner: BatchRunner) -> Consumer:
        return RedisConsumer(client, keys, settings, limits, runner, metrics)

    queue = (
        RedisFrontend(client, keys, info, settings.max_queue, metrics)
        if settings.role != "worker"
        else ClosedQueue("this process is a worker; send requests to a frontend")
    )
    if metrics is not None and isinstance(queue, RedisFrontend):
        metrics.track_depth(queue.depth)
    return PrunerService(
        settings,
        make_engine if computes else None,
        limits,
        admission=queue,
        consumer_factory=consumer,
        info=info,
    )
