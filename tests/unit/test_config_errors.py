"""Settings from flags and FREELM_* variables; the one table of error status codes."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from pruner_service import errors
from pruner_service.config import Settings, settings_from


def test_environment_then_flags_build_the_settings() -> None:
    env = {"FREELM_MAX_BATCH": "16", "FREELM_CACHE_DIR": "/tmp/c", "FREELM_MAX_WAIT_MS": "2.5"}
    settings = settings_from({"max_batch": 4, "port": None}, env)
    assert settings.max_batch == 4  # the flag wins
    assert settings.cache_dir == Path("/tmp/c")
    assert settings.max_wait_ms == 2.5
    assert settings.port == Settings().port  # unset flag keeps the default


def test_a_malformed_variable_names_itself() -> None:
    with pytest.raises(ValueError, match="FREELM_PORT='eighty'"):
        settings_from({}, {"FREELM_PORT": "eighty"})


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (errors.InvalidArgument("x"), grpc.StatusCode.INVALID_ARGUMENT),
        (errors.QueueFull("x"), grpc.StatusCode.RESOURCE_EXHAUSTED),
        (errors.DeadlineExceeded("x"), grpc.StatusCode.DEADLINE_EXCEEDED),
        (errors.Unavailable("x"), grpc.StatusCode.UNAVAILABLE),
        (errors.Internal("x"), grpc.StatusCode.INTERNAL),
        (KeyError("secret detail"), grpc.StatusCode.INTERNAL),
    ],
)
def test_every_error_maps_to_its_status(error: Exception, code: grpc.StatusCode) -> None:
    mapped, message = errors.status_of(error)
    assert mapped == code
    assert "secret detail" not in message
