"""The result cache's key: equal for the same work, different when what is computed differs."""

from __future__ import annotations

import dataclasses

from pruner_service.domain import PruneOptions, PruneRequest
from pruner_service.queue.codec import content_hash
from tests.fakes import FAKE_INFO

INFO = dataclasses.replace(FAKE_INFO, window_tokens=7000, question_tokens=512)
REQUEST = PruneRequest("r1", "So 4. So 4. So 4.", "What is 2+2?", PruneOptions())


def test_the_same_work_has_the_same_key_whatever_the_request_id() -> None:
    again = dataclasses.replace(REQUEST, request_id="r2")
    assert content_hash(INFO, REQUEST) == content_hash(INFO, again)
    assert len(content_hash(INFO, REQUEST)) == 64


def test_a_server_reading_smaller_windows_does_not_share_results() -> None:
    bounded = dataclasses.replace(INFO, window_tokens=1024)
    assert content_hash(INFO, REQUEST) != content_hash(bounded, REQUEST)
    overlap = dataclasses.replace(INFO, window_overlap_tokens=32)
    assert content_hash(INFO, REQUEST) != content_hash(overlap, REQUEST)
    question = dataclasses.replace(INFO, question_tokens=128)
    assert content_hash(INFO, REQUEST) != content_hash(question, REQUEST)


def test_trace_question_and_options_change_the_key() -> None:
    keys = {
        content_hash(INFO, REQUEST),
        content_hash(INFO, dataclasses.replace(REQUEST, trace="So 4.")),
        content_hash(INFO, dataclasses.replace(REQUEST, question="")),
        content_hash(
            INFO, dataclasses.replace(REQUEST, options=PruneOptions(protect_tail_chars=3))
        ),
    }
    assert len(keys) == 4
