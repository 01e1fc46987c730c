"""The conformance vectors: generated from the normative resolver, and the server path agrees."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from freelm_pruner_client.anchors import AnchorCommand, Span
from freelm_pruner_client.conformance import check, expectation, generate

from pruner_service.compute import resolve
from pruner_service.domain import PruneOptions, PruneRequest
from pruner_service.engine.base import Proposal

FOLDER = Path(__file__).resolve().parents[2] / "proto" / "conformance"
VECTORS = FOLDER / "anchor_vectors_v5.json"
CASES = json.loads(VECTORS.read_text(encoding="utf-8"))["cases"]
V2 = json.loads((FOLDER / "anchor_vectors_v2.json").read_text(encoding="utf-8"))["cases"]
V3 = json.loads((FOLDER / "anchor_vectors_v3.json").read_text(encoding="utf-8"))["cases"]
V4 = json.loads((FOLDER / "anchor_vectors_v4.json").read_text(encoding="utf-8"))["cases"]


def test_the_committed_vectors_are_what_the_resolver_generates() -> None:
    assert json.loads(VECTORS.read_text(encoding="utf-8")) == generate()


def test_the_version_2_vectors_still_pass_unchanged_and_open_version_3() -> None:
    assert check({"cases": V2}) == []
    assert CASES[: len(V2)] == V2


def test_the_version_3_vectors_still_pass_unchanged_and_open_version_4() -> None:
    assert check({"cases": V3}) == []
    assert CASES[: len(V3)] == V3
    added = {case["name"]: case for case in CASES[len(V3) :]}
    assert added["enumeration_after_colon_not_a_loop"]["expect"]["deletions"] == []
    assert added["remarks_after_colon_still_a_loop"]["expect"]["deletions"] != []


def test_the_version_4_vectors_still_pass_unchanged_and_open_version_5() -> None:
    assert check({"cases": V4}) == []
    assert CASES[: len(V4)] == V4
    added = {case["name"]: case for case in CASES[len(V4) :]}
    assert added["varied_list_items_not_a_loop"]["expect"]["deletions"] == []
    assert added["inline_list_elements_not_a_loop"]["expect"]["deletions"] == []
    assert added["list_of_one_item_repeated_still_a_loop"]["expect"]["deletions"] != []


def test_scoped_cases_cover_every_status_and_non_ascii_text() -> None:
    scoped = [case for case in CASES if any("scope" in c for c in case["commands"])]
    statuses = {c["status"] for case in scoped for c in case["expect"]["commands"]}
    assert {"APPLIED", "INVALID_COMMAND", "PREFIX_NOT_FOUND", "PREFIX_AMBIGUOUS"} <= statuses
    assert "SUFFIX_NOT_FOUND" in statuses
    assert sum(any(ord(ch) > 127 for ch in case["trace"]) for case in scoped) >= 10
    with_bytes = [
        c["scope"]
        for case in scoped
        for c in case["expect"]["commands"]
        if "scope" in c and c["scope"]["byte_end"] != c["scope"]["end"]
    ]
    assert with_bytes, "some scope's byte offsets differ from its code points"


def test_the_vectors_cover_every_status_source_and_non_ascii_text() -> None:
    assert len(CASES) >= 200
    statuses = {c["status"] for case in CASES for c in case["expect"]["commands"]}
    assert statuses == {
        "APPLIED",
        "INVALID_COMMAND",
        "PREFIX_NOT_FOUND",
        "PREFIX_AMBIGUOUS",
        "SUFFIX_NOT_FOUND",
        "PROTECTED",
        "OVER_LIMIT",
    }
    sources = {d["source"] for case in CASES for d in case["expect"]["deletions"]}
    assert sources == {"MODEL", "LOOP", "MODEL_AND_LOOP"}
    assert sum(any(ord(ch) > 127 for ch in case["trace"]) for case in CASES) >= 50
    assert any(len(case["expect"]["commands"]) > 1 for case in CASES)


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_the_server_path_agrees_with_every_vector(case: dict) -> None:
    options = case["options"]
    request = PruneRequest(
        case["name"],
        case["trace"],
        case["question"],
        PruneOptions(
            frozen_prefix_chars=options["frozen_prefix_chars"],
            protect_tail_chars=options["protect_tail_chars"],
            max_delete_fraction=options["max_delete_fraction"],
            collapse_loops=options["collapse_loops"],
            protect_last_sentence=options["protect_last_sentence"],
            protect_results=options["protect_results"],
        ),
    )
    commands = tuple(
        AnchorCommand(c["prefix"], c["suffix"], Span(*c["scope"]) if "scope" in c else None)
        for c in case["commands"]
    )
    outcome = resolve(request, Proposal(commands, "", 0, 0))
    assert expectation(outcome) == case["expect"]
