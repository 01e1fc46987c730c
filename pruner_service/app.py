"""Assembling a service from settings: profile → engine factory → service with its limits."""

from __future__ import annotations

import structlog

from pruner_service.config import Settings
from pruner_service.domain import Limits
from pruner_service.engine.base import Engine
from pruner_service.engine.profile import Profile
from pruner_service.service import PrunerService

log = structlog.get_logger(__name__)


def build_service(settings: Settings) -> PrunerService:
    """A service for ``settings.profile``; the engine loads when the service starts."""
    profile = Profile.load(settings.profile)
    limits = Limits(settings.max_trace_chars, settings.max_question_chars, profile.max_commands)

    def make_engine() -> Engine:
        import torch

        from pruner_service.engine.hf import HFEngine
        from pruner_service.engine.load import load_model

        if settings.threads > 0:
            torch.set_num_threads(settings.threads)
        loaded = load_model(profile, settings.cache_dir, settings.device)
        return HFEngine(loaded, profile, settings.max_new_tokens)

    return PrunerService(settings, make_engine, limits)
