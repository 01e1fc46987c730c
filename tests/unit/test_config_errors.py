"""Settings from flags and FREELM_* variables; the one table of error status codes."""

from __future__ import annotations

import re
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


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"dtype": "fp8"}, "--dtype must be one of auto, float32, bfloat16, float16, got 'fp8'"),
        ({"prefix_cache_mb": -1}, "--prefix-cache-mb and --reused-rows must be at least 0"),
        ({"reused_rows": -5}, "--prefix-cache-mb and --reused-rows must be at least 0"),
        ({"window_tokens": -1}, "--window-tokens must be 0 (the profile's) or at least 64, got -1"),
        ({"window_tokens": 8}, "--window-tokens must be 0 (the profile's) or at least 64, got 8"),
    ],
)
def test_engine_settings_out_of_range_are_refused_before_loading(
    flags: dict[str, object], message: str
) -> None:
    from pruner_service.assembly import build_service

    with pytest.raises(ValueError, match=re.escape(message)):
        build_service(settings_from(flags, {}))


@pytest.mark.parametrize(
    ("name", "device", "native", "expected"),
    [
        ("auto", "cpu", True, "bfloat16"),
        ("auto", "cpu", False, "float32"),  # AVX2 only: bfloat16 would be emulated, slower
        ("float32", "cpu", True, "float32"),  # a forced dtype is kept
        ("bfloat16", "cpu", False, "bfloat16"),
    ],
)
def test_auto_dtype_follows_the_cpu(
    monkeypatch: pytest.MonkeyPatch, name: str, device: str, native: bool, expected: str
) -> None:
    import torch

    from pruner_service.engine import load

    monkeypatch.setattr(load, "fast_bf16_cpu", lambda: native)
    assert load.resolve_dtype(name, torch.device(device)) == expected
