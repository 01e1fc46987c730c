"""The Qwen3 profile: a base folder and a Free-Module folder given by path, served end to end.

The checkpoint is Qwen3-shaped with random weights (the same code builds Qwen3-8B at real size on a
GPU machine), with a random LoRA on the official Free()LM target modules.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import torch
from freelm.pruner.v1 import pruner_pb2 as pb
from freelm.pruner.v1 import pruner_pb2_grpc as pb_grpc
from freelm_pruner_client.anchors import apply_deletions

from pruner_service.assembly import build_service
from pruner_service.config import Settings
from pruner_service.engine.synthetic import make_adapter, make_base
from tests.conftest import REALISTIC_TRACE, running_server
from tests.model.test_engine import TRACES


@pytest.fixture(scope="module")
def qwen3_dirs(tmp_path_factory: pytest.TempPathFactory, base_model_dir: Path) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("qwen3")
    base = make_base("qwen3-tiny", base_model_dir, root / "base", torch.float32)
    return base, make_adapter(base, root / "adapter")


@pytest.fixture(scope="module")
def qwen3_server(qwen3_dirs, cache_dir: Path) -> Iterator[str]:
    base, adapter = qwen3_dirs
    settings = Settings(
        port=0,
        profile="qwen3-8b-freelm",
        model_path=str(base),
        adapter_path=str(adapter),
        cache_dir=cache_dir,
        device="cpu",
        max_new_tokens=48,
    )
    yield from running_server(settings, grace=2)


def test_the_qwen3_profile_serves_prune_end_to_end(qwen3_server: str) -> None:
    with grpc.insecure_channel(qwen3_server) as channel:
        stub = pb_grpc.PrunerStub(channel)
        reply = stub.Prune(pb.PruneRequest(trace=REALISTIC_TRACE), timeout=120)
        info = stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=10)
    for command in reply.commands:
        assert command.prefix in REALISTIC_TRACE and command.suffix in REALISTIC_TRACE
    assert reply.pruned_trace == apply_deletions(REALISTIC_TRACE, reply.deletions)
    assert reply.usage.generated_tokens > 0
    assert info.profile == "qwen3-8b-freelm" and info.adapter_merged
    assert info.adapter_id == "random-base" and info.dtype == "bfloat16"


def test_the_qwen3_profile_without_a_model_path_fails_with_a_clear_message(cache_dir) -> None:
    settings = Settings(profile="qwen3-8b-freelm", cache_dir=cache_dir, device="cpu")
    service = build_service(settings)
    service.start(background=False)
    assert not service.ready
    assert service.failure is not None and "--model-path" in service.failure


def test_jump_forward_matches_the_plain_path_on_the_tiny_model(qwen3_dirs, cache_dir) -> None:
    from pruner_service.domain import PruneOptions, PruneRequest
    from pruner_service.engine.hf import HFEngine
    from pruner_service.engine.load import load_model
    from pruner_service.engine.profile import Profile

    base, adapter = qwen3_dirs
    profile = Profile.load("qwen3-8b-freelm").with_paths(str(base), str(adapter))
    profile = dataclasses.replace(profile, dtype="float32")
    engine = HFEngine(load_model(profile, cache_dir, "cpu"), profile, max_new_tokens=160)
    batch = [PruneRequest(f"t{i}", t, "", PruneOptions()) for i, t in enumerate(TRACES)]
    engine.jump_forward = False
    plain = engine.propose(batch)
    engine.jump_forward = True
    fast = engine.propose(batch)
    assert [p.commands for p in fast] == [p.commands for p in plain]
    assert sum(len(p.commands) for p in plain if not isinstance(p, Exception)) > 0
