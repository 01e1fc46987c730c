"""Request options across the wire: unset fields take the server's defaults, set ones survive the
queue's round trip exactly."""

from __future__ import annotations

from freelm.pruner.v1 import pruner_pb2 as pb
from freelm_pruner_client.anchors import AnchorCommand, Reason, prune
from freelm_pruner_client.loop_collapser import loop_spans

from pruner_service.convert import (
    options_from_proto,
    request_from_proto,
    request_from_queue,
    request_to_proto,
    result_from_proto,
    result_to_proto,
)
from pruner_service.domain import Limits, PruneOptions, PruneRequest, PruneResult, Timing, Usage

LIMITS = Limits(max_trace_chars=1000, max_question_chars=100, max_commands=6)


def test_unset_options_take_the_server_defaults() -> None:
    options = options_from_proto(pb.PruneOptions(), LIMITS)
    assert options == PruneOptions(max_commands=6)
    assert options.protect_last_sentence and options.protect_results and options.collapse_loops


def test_every_option_survives_the_queue_round_trip() -> None:
    options = PruneOptions(
        frozen_prefix_chars=3,
        protect_tail_chars=4,
        max_delete_fraction=0.25,
        max_commands=2,
        return_pruned_trace=False,
        collapse_loops=False,
        protect_last_sentence=False,
        protect_results=False,
    )
    request = PruneRequest("r1", "Some trace. More.", "Q?", options)
    assert request_from_proto(request_to_proto(request), LIMITS) == request
    assert request_from_queue(request_to_proto(request)) == request  # a worker reads it as is
    assert not options_from_proto(
        pb.PruneOptions(protect_last_sentence=False), LIMITS
    ).protect_last_sentence
    assert not options_from_proto(pb.PruneOptions(protect_results=False), LIMITS).protect_results


def test_a_result_with_cancellations_survives_the_queue_round_trip() -> None:
    trace = "Set up. Wait, no. Wait, no. Wait, no. So 4 then 4."
    outcome = prune(
        trace,
        [AnchorCommand("Set", "up."), AnchorCommand("So 4", "4.")],
        loop_spans=loop_spans(trace),
        protection=PruneOptions(frozen_prefix_chars=3).protection(),
    )
    assert {c.reason for c in outcome.cancellations} == {Reason.FROZEN_PREFIX, Reason.LAST_SENTENCE}
    usage = Usage(10, 8, len(trace), outcome.removed_chars, 0, 20, 5)
    result = PruneResult("r1", outcome, "[]", usage, Timing(1.0, 2.0, 1, 3.0), "m", "a")
    assert result_from_proto(result_to_proto(result)) == result
    assert result_to_proto(result, return_pruned_trace=False).pruned_trace == ""
    assert result_to_proto(result).pruned_trace == outcome.pruned_trace
