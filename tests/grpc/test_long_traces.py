"""Long traces and long questions through a real server and the real model.

One server runs the few-shot test profile (whose one-shot template makes the base model write
commands) with a 1,024-token context and 384-token windows, so that a trace of a few thousand
characters does not fit one call and takes several windows cheaply, and its windows get
commands; another runs the shipped default profile and settings, for the field case of a trace
under the character limit but over the context; a third runs the few-shot profile with
``--window-tokens 96``, so that traces that fit its context are windowed too.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from freelm.pruner.v1 import pruner_pb2 as pb
from freelm.pruner.v1 import pruner_pb2_grpc as pb_grpc
from freelm_pruner_client.anchors import apply_deletions, byte_offsets

from pruner_service.config import Settings
from tests.conftest import FEWSHOT_PROFILE, running_server

pytestmark = pytest.mark.model

WINDOW_TOKENS = 384

PARAGRAPH = (
    "Step {i}: the tank holds {a} litres and loses {b} litres an hour, so after {i} hours it "
    "holds {a} - {i} * {b} = {c} litres. Wait, let me check that again. {i} times {b} is {d}, "
    "and {a} minus {d} is {c}. Yes, {c} litres."
)
LOOP_LINE = "Hmm, let me recount the hours."


def long_trace() -> str:
    paragraphs = [PARAGRAPH.format(i=i, a=500, b=7, c=500 - 7 * i, d=7 * i) for i in range(1, 31)]
    paragraphs.insert(12, "\n".join([LOOP_LINE] * 12))
    return "\n\n".join(paragraphs) + "\n\nSo after 30 hours the tank holds 290 litres."


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Iterator[str]:
    """A real server with the few-shot test profile, windows of ``WINDOW_TOKENS``, and the
    default limits."""
    raw = json.loads(FEWSHOT_PROFILE.read_text())
    raw.update(
        name="fewshot-small-windows",
        template=str(FEWSHOT_PROFILE.parent / raw["template"]),
        context_tokens=1024,
        question_tokens=128,
        window_tokens=WINDOW_TOKENS,
        window_overlap_tokens=32,
    )
    folder = tmp_path_factory.mktemp("windows-profile")
    (folder / "profile.json").write_text(json.dumps(raw))
    settings = Settings(port=0, profile=str(folder / "profile.json"), cache_dir=cache_dir,
                        device="cpu", max_batch=4, max_wait_ms=20)  # fmt: skip
    yield from running_server(settings)


@pytest.fixture(scope="module")
def default_served(cache_dir: Path) -> Iterator[str]:
    """A real server with the shipped default profile and settings."""
    yield from running_server(Settings(port=0, cache_dir=cache_dir, device="cpu"))


@pytest.fixture(scope="module")
def loop_served(cache_dir: Path) -> Iterator[str]:
    """A real server with the few-shot test profile as shipped (no windows of its own, its own
    context) and ``--window-tokens 96``, as a deployment serving growing traces runs it."""
    settings = Settings(port=0, profile=str(FEWSHOT_PROFILE), cache_dir=cache_dir, device="cpu",
                        max_batch=4, max_wait_ms=20, window_tokens=96)  # fmt: skip
    yield from running_server(settings)


def stub(address: str) -> pb_grpc.PrunerStub:
    options = [("grpc.max_send_message_length", 64 * 1024 * 1024)]
    return pb_grpc.PrunerStub(grpc.insecure_channel(address, options=options))


def test_a_trace_several_windows_long_is_cleaned_with_scoped_commands(served: str) -> None:
    trace = long_trace()
    question = (
        "How much water is left after 30 hours? " + "Context: the tank is cylindrical. " * 7000
    )
    assert len(question) > 200_000
    reply = stub(served).Prune(pb.PruneRequest(trace=trace, question=question), timeout=900)
    assert reply.usage.windows >= 3, "the trace took several windows"
    assert 100 <= reply.usage.question_tokens <= 128, "a bounded part of the question was used"
    assert reply.pruned_trace == apply_deletions(trace, reply.deletions)
    assert reply.pruned_trace.count(LOOP_LINE) == 1, "the loop across lines is collapsed"
    assert reply.pruned_trace.endswith("the tank holds 290 litres.")
    assert reply.commands, "the model wrote commands in some window"
    for command in reply.commands:
        assert command.HasField("scope"), "every command of a windowed trace has its window"
        scope = command.scope
        assert 0 <= scope.start < scope.end <= len(trace)
        to_bytes = byte_offsets(trace, [scope.start, scope.end])
        assert (scope.byte_start, scope.byte_end) == (to_bytes[scope.start], to_bytes[scope.end])
        window = trace[scope.start : scope.end]
        assert command.prefix in window or command.status == pb.PREFIX_NOT_FOUND
        if command.status == pb.APPLIED:
            assert window.count(command.prefix) == 1
            assert scope.start <= command.start < command.end <= scope.end
    scopes = {(c.scope.start, c.scope.end) for c in reply.commands}
    assert len(scopes) >= 2, "commands came from more than one window"


def test_a_stream_item_with_a_long_trace_is_answered(served: str) -> None:
    trace = long_trace()
    requests = [pb.PruneRequest(request_id="short", trace="So 4. So 4. So 4. Answer: 4."),
                pb.PruneRequest(request_id="long", trace=trace)]  # fmt: skip
    replies = {r.request_id: r for r in stub(served).PruneStream(iter(requests), timeout=900)}
    assert set(replies) == {"short", "long"}
    assert replies["long"].response.usage.windows >= 3
    assert replies["short"].response.usage.windows == 1


def test_model_info_reports_the_window_and_the_limits(served: str) -> None:
    info = stub(served).GetModelInfo(pb.GetModelInfoRequest(), timeout=30)
    assert info.window_tokens == WINDOW_TOKENS
    assert info.window_overlap_tokens == 32
    assert info.max_context_tokens == 1024
    assert info.question_tokens == 128
    assert info.max_trace_chars >= 2_000_000
    assert info.max_question_chars >= 200_000


CJK_SETUP = "题目要求计算12乘以15。先算10乘以15等于150，再算2乘以15等于30。"
CJK_CHECK = "等等，我再检查一下这个结果。"
CJK_ANSWER = "所以答案是180。"


def test_09a_a_trace_over_the_context_but_under_the_char_limit_is_pruned(
    default_served: str,
) -> None:
    """Field case 09a: 6,049 code points of Chinese, 9,269 tokens, were refused with
    ``prompt has 9419 tokens``; now the loop collapses to one copy and the answer stays."""
    trace = CJK_SETUP + "\n" + "\n".join([CJK_CHECK] * 400) + "\n" + CJK_ANSWER
    assert len(trace) == 6049
    reply = stub(default_served).Prune(pb.PruneRequest(trace=trace), timeout=900)
    assert reply.usage.windows == 2
    assert reply.pruned_trace == CJK_SETUP + "\n" + CJK_CHECK + "\n" + CJK_ANSWER
    assert reply.pruned_trace == apply_deletions(trace, reply.deletions)


def test_window_tokens_bounds_each_call_of_a_trace_that_fits_the_context(
    loop_served: str,
) -> None:
    """``--window-tokens`` caps what one model call reads even when the whole trace fits the
    context: a trace of a few hundred tokens takes several windows, a short one stays whole,
    and the grown trace keeps the same cleaned head (its unchanged windows are reused)."""
    info = stub(loop_served).GetModelInfo(pb.GetModelInfoRequest(), timeout=30)
    assert info.window_tokens == 96
    trace = "\n\n".join(long_trace().split("\n\n")[:6])
    reply = stub(loop_served).Prune(pb.PruneRequest(trace=trace), timeout=900)
    assert reply.usage.prompt_tokens < info.max_context_tokens, "the whole trace would fit"
    assert reply.usage.windows >= 3
    assert reply.pruned_trace == apply_deletions(trace, reply.deletions)
    short = stub(loop_served).Prune(pb.PruneRequest(trace="So 4. Answer: 4."), timeout=60)
    assert short.usage.windows == 1
    grown = trace + "\n\nSo the tank holds 458 litres after 6 hours."
    again = stub(loop_served).Prune(pb.PruneRequest(trace=grown), timeout=900)
    assert again.usage.windows >= reply.usage.windows
    last = max(c.scope.start for c in reply.commands) if reply.commands else len(trace)
    head = [(c.prefix, c.suffix, c.scope.start) for c in reply.commands if c.scope.end <= last]
    assert head, "the model wrote commands in the windows before the last"
    assert head == [(c.prefix, c.suffix, c.scope.start) for c in again.commands
                    if c.scope.end <= last]  # fmt: skip
