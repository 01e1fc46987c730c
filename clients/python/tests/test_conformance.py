"""The client's resolver agrees with every conformance vector."""

from __future__ import annotations

import json

from conftest import REPO
from freelm_pruner_client.conformance import check

VECTORS = REPO / "proto" / "conformance" / "anchor_vectors_v5.json"
V2 = REPO / "proto" / "conformance" / "anchor_vectors_v2.json"


def test_the_client_agrees_with_every_vector() -> None:
    vectors = json.loads(VECTORS.read_text(encoding="utf-8"))
    assert len(vectors["cases"]) >= 400
    assert any("scope" in c for case in vectors["cases"] for c in case["commands"])
    assert check(vectors) == []


def test_the_client_still_passes_the_version_2_vectors() -> None:
    assert check(json.loads(V2.read_text(encoding="utf-8"))) == []


def test_a_wrong_expectation_is_reported() -> None:
    vectors = json.loads(VECTORS.read_text(encoding="utf-8"))
    case = next(c for c in vectors["cases"] if c["expect"]["deletions"])
    case["expect"]["pruned_trace"] += "!"
    assert check({"cases": [case]}) == [case["name"]]
