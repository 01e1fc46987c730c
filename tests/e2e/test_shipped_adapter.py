"""The shipped Free-Module: the default profile merges it, reports its id and version, and through
a real server it deletes more of the gold redundancy than the loop collapser alone, on records in
phrasings training never saw."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from freelm.pruner.v1 import pruner_pb2 as pb
from freelm.pruner.v1 import pruner_pb2_grpc as pb_grpc
from freelm_pruner_client.client import PrunerClient, build_request
from freelm_pruner_client.segments import result_sentences

from pruner_service.config import Settings
from pruner_service.engine.load import fast_bf16_cpu
from pruner_service.engine.profile import Profile
from pruner_service.training.data import generate
from pruner_service.training.evaluate import loop_collapser, score
from tests.conftest import wait_for_health

DEFAULT = Profile.load("smollm2-135m")


@pytest.fixture(scope="module")
def default_server(test_settings: Settings) -> Iterator[str]:
    from pruner_service.assembly import build_service
    from pruner_service.server import build_server

    settings = dataclasses.replace(test_settings, profile="smollm2-135m", max_batch=8)
    running = build_server(settings, build_service(settings))
    running.server.start()
    address = f"127.0.0.1:{running.port}"
    running.service.start()
    with grpc.insecure_channel(address) as channel:
        wait_for_health(channel)
    yield address
    running.stop(grace=0)


def test_the_default_profile_ships_a_small_adapter_with_an_id_and_version() -> None:
    assert DEFAULT.adapter is not None
    meta = json.loads((DEFAULT.adapter / "freelm_adapter.json").read_text())
    assert meta["id"] == "freelm-smollm2-135m" and meta["version"]
    assert (DEFAULT.adapter / "README.md").is_file()  # the model card
    weights = DEFAULT.adapter / "adapter_model.safetensors"
    assert weights.stat().st_size < 8 * 2**20


def test_model_info_reports_the_merged_adapter(default_server: str) -> None:
    with grpc.insecure_channel(default_server) as channel:
        info = pb_grpc.PrunerStub(channel).GetModelInfo(pb.GetModelInfoRequest(), timeout=10)
    meta = json.loads((Path(str(DEFAULT.adapter)) / "freelm_adapter.json").read_text())
    assert info.adapter_id == meta["id"] and info.adapter_version == meta["version"]
    assert info.adapter_merged and info.profile == "smollm2-135m"
    assert DEFAULT.dtype == "auto"  # resolved for this CPU at load, and reported as loaded
    assert info.dtype == ("bfloat16" if fast_bf16_cpu() else "float32")


def test_the_shipped_adapter_beats_the_loop_collapser_on_unseen_phrasings(
    default_server: str,
) -> None:
    records = list(generate(12, seed=99, family="eval"))
    requests = [build_request(r["trace"], r["question"], r["id"]) for r in records]
    with PrunerClient(default_server, timeout=600) as client:
        replies = list(client.prune_stream(requests))
    assert all(reply.WhichOneof("result") == "response" for reply in replies)
    for reply in replies:
        json.loads(reply.response.raw_output)
        assert reply.response.adapter_id == "freelm-smollm2-135m"
    served = score(records, {r.request_id: [(d.start, d.end) for d in r.response.deletions]
                             for r in replies})  # fmt: skip
    collapser = score(records, {r["id"]: loop_collapser(r) for r in records})
    assert served["f1"] > collapser["f1"] + 0.1
    assert served["answer_preservation"] == 1.0
    statuses = [c.status for reply in replies for c in reply.response.commands]
    unresolved = {pb.INVALID_COMMAND, pb.PREFIX_NOT_FOUND, pb.PREFIX_AMBIGUOUS, pb.SUFFIX_NOT_FOUND}
    assert statuses and not unresolved.intersection(statuses)  # the profile's anchor guard


def _touches(start: int, end: int, ranges: list[tuple[int, int]]) -> bool:
    return any(start < b and a < end for a, b in ranges)


def test_result_sentences_are_kept_unless_the_request_lets_them_go(default_server: str) -> None:
    held_out = list(generate(94, seed=2, family="eval"))
    records = [held_out[i] for i in (52, 57, 74, 93)]  # where commands reach a result sentence
    replies = {}
    with PrunerClient(default_server, timeout=600) as client:
        for flag in (True, False):
            requests = [
                build_request(r["trace"], r["question"], r["id"], protect_results=flag)
                for r in records
            ]
            replies[flag] = [reply.response for reply in client.prune_stream(requests)]
    guarded = opened = 0
    for record, kept, free in zip(records, replies[True], replies[False], strict=True):
        results = result_sentences(record["trace"], record["question"])
        assert not any(_touches(d.start, d.end, results) for d in kept.deletions)
        for command in kept.commands:
            if command.HasField("start") and _touches(command.start, command.end, results):
                assert command.status == pb.PROTECTED
                guarded += 1
        opened += any(_touches(d.start, d.end, results) for d in free.deletions)
    assert guarded and opened, "the adapter proposes deleting result sentences on these records"
