"""Shared fixtures: the real embedded model, a real LoRA adapter, a real server on port 0."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import settings as hypothesis_settings

from pruner_service.config import Settings, settings_from
from pruner_service.engine.fetch import ensure_embedded

hypothesis_settings.register_profile("freelm", deadline=None)
hypothesis_settings.load_profile("freelm")
"""Property tests check results, never time: on a busy 2-core machine an example can take longer
than hypothesis's default 200 ms deadline, which would fail a correct test."""

DATA = Path(__file__).parent / "data"
OPENAI_SERVER = Path(__file__).parent / "support" / "openai_server.py"
FEWSHOT_PROFILE = DATA / "fewshot-profile" / "profile.json"

REALISTIC_TRACE = """Okay, so I need to find how many apples Maria has left after she gives
some away.
She starts with 48 apples. She gives 1/4 of them to her brother, so that's 48 / 4 = 12 apples.

Wait, let me double-check that division. 48 divided by 4 is 12, because 4 * 12 = 48. Yes, 12.

So after giving 12 to her brother she has 48 - 12 = 36 apples left. Then she gives 9 to her
friend. Hmm, actually, maybe I should think about it as fractions of the total instead. No,
that approach is more complicated, let me just go with subtraction.

36 - 9 = 27. Let me verify: 27 + 9 = 36, and 36 + 12 = 48. That matches the starting amount.
Wait, no. Wait, no. Wait, no. Wait, no. The numbers are fine.

So Maria has 27 apples left. The answer is 27."""


@pytest.fixture(scope="session")
def cache_dir() -> Path:
    """The model cache (``FREELM_CACHE_DIR`` or the default); the embedded model is fetched into
    it if the set-up has not done so."""
    path = settings_from().cache_dir
    ensure_embedded("smollm2-135m-instruct", path)
    return path


@pytest.fixture(scope="session")
def base_model_dir(cache_dir: Path) -> Path:
    return ensure_embedded("smollm2-135m-instruct", cache_dir)


@pytest.fixture(scope="session")
def random_adapter(tmp_path_factory: pytest.TempPathFactory, base_model_dir: Path) -> Path:
    """A real PEFT LoRA adapter for the embedded base, with non-zero (non-identity) weights."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1234)
    model = AutoModelForCausalLM.from_pretrained(base_model_dir, dtype=torch.float32)
    config = LoraConfig(
        r=8,
        lora_alpha=16,
        target_modules=["q_proj", "v_proj", "down_proj"],
        init_lora_weights=False,
        task_type="CAUSAL_LM",
    )
    out = tmp_path_factory.mktemp("adapter")
    get_peft_model(model, config).save_pretrained(out)
    (out / "freelm_adapter.json").write_text(json.dumps({"id": "test-random", "version": "0.0.1"}))
    return out


@pytest.fixture(scope="session")
def adapter_profile(tmp_path_factory: pytest.TempPathFactory, random_adapter: Path) -> Path:
    """The few-shot test profile with the random adapter merged."""
    raw = json.loads(FEWSHOT_PROFILE.read_text())
    folder = tmp_path_factory.mktemp("adapter-profile")
    raw.update(name="test-adapter", adapter=str(random_adapter))
    (folder / "template.txt").write_text((FEWSHOT_PROFILE.parent / "template.txt").read_text())
    (folder / "profile.json").write_text(json.dumps(raw))
    return folder / "profile.json"


@pytest.fixture(scope="session")
def test_settings(cache_dir: Path) -> Settings:
    return Settings(
        port=0,
        profile=str(FEWSHOT_PROFILE),
        cache_dir=cache_dir,
        device="cpu",
        max_trace_chars=6000,
        max_question_chars=500,
        max_batch=4,
        max_wait_ms=20,
        grace_s=30,
    )


def wait_for_health(channel: grpc.Channel, timeout: float = 120.0) -> list[int]:
    """Polls health until SERVING; returns the distinct statuses seen, in order."""
    stub = health_pb2_grpc.HealthStub(channel)
    seen: list[int] = []
    limit = time.monotonic() + timeout
    while time.monotonic() < limit:
        status = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=5).status
        if not seen or seen[-1] != status:
            seen.append(status)
        if status == health_pb2.HealthCheckResponse.SERVING:
            return seen
        time.sleep(0.05)
    raise TimeoutError(f"server not SERVING after {timeout}s; saw {seen}")


def running_server(settings: Settings, grace: float = 5) -> Iterator[str]:
    """Serves ``settings`` on a real server in this process until the generator is closed;
    yields its address once health says SERVING (for module- or session-scoped fixtures)."""
    from pruner_service.assembly import build_service
    from pruner_service.server import build_server

    running = build_server(settings, build_service(settings))
    running.server.start()
    running.service.start()
    address = f"127.0.0.1:{running.port}"
    with grpc.insecure_channel(address) as channel:
        wait_for_health(channel)
    yield address
    running.stop(grace=grace)


@pytest.fixture(scope="session")
def server(test_settings: Settings) -> Iterator[tuple[str, list[int]]]:
    """A real server on a free port serving the real model; yields its address and the health
    statuses seen while it started."""
    from pruner_service.assembly import build_service
    from pruner_service.server import build_server

    running = build_server(test_settings, build_service(test_settings))
    running.server.start()
    address = f"127.0.0.1:{running.port}"
    running.service.start()
    with grpc.insecure_channel(address) as channel:
        seen = wait_for_health(channel)
    yield address, seen
    running.stop(grace=5)


@pytest.fixture
def channel(server: tuple[str, list[int]]) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(
        server[0], options=[("grpc.max_send_message_length", 200 * 1024 * 1024)]
    ) as ch:
        yield ch


@pytest.fixture(scope="session")
def openai_server(base_model_dir: Path) -> Iterator[str]:
    """A real OpenAI-compatible HTTP server over the embedded model; yields its ``/v1`` URL."""
    process = subprocess.Popen(
        [sys.executable, str(OPENAI_SERVER), "--model-dir", str(base_model_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    match = re.search(r"listening on (\S+)", process.stdout.readline())
    assert match
    yield f"http://{match.group(1)}/v1"
    process.terminate()
    process.wait(30)
