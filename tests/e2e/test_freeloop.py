"""FreeLoop end to end: a real model behind an OpenAI-compatible HTTP server reasons for several
rounds, and the real pruning service prunes its trace between rounds."""

from __future__ import annotations

import pytest
from freelm_pruner_client.client import PrunerClient
from freelm_pruner_client.loop import Endpoint, FreeLoop, LoopSettings, ModelEndpointError

from tests.support.openai_server import stats

QUESTION = "Tom has 3 boxes with 4 apples each. He eats 2 apples. How many apples are left?"
PREFIX = (
    "<|im_start|>system\nYou are a careful assistant. Think step by step.<|im_end|>\n"
    f"<|im_start|>user\n{QUESTION}<|im_end|>\n<|im_start|>assistant\n"
)


def test_the_loop_reasons_prunes_and_accounts_correctly(openai_server: str, server) -> None:
    before = stats(openai_server)
    settings = LoopSettings(prune_every_tokens=40, max_tokens=240, protect_tail_chars=20)
    with PrunerClient(server[0]) as pruner:
        result = FreeLoop(Endpoint(openai_server, "smollm2"), pruner, settings).run(
            PREFIX, question=QUESTION
        )
    after = stats(openai_server)
    assert result.rounds >= 2
    assert result.rounds == after["calls"] - before["calls"]
    assert result.tokens_generated == after["completion_tokens"] - before["completion_tokens"]
    assert result.finished or result.tokens_generated == settings.max_tokens
    assert result.prunes >= 1, "the trace must be pruned at least once"
    assert result.chars_pruned > 0 and result.tokens_pruned > 0
    assert result.peak_context_tokens < result.unpruned_peak_tokens
    assert result.peak_tokens_saved == result.unpruned_peak_tokens - result.peak_context_tokens
    assert result.trace.strip()


def test_chat_mode_continues_the_partial_trace(openai_server: str, server) -> None:
    settings = LoopSettings(prune_every_tokens=16, max_tokens=32)
    with PrunerClient(server[0]) as pruner:
        endpoint = Endpoint(openai_server, "smollm2", mode="chat")
        result = FreeLoop(endpoint, pruner, settings).run(QUESTION, question=QUESTION)
    assert result.rounds == 2 or result.finished
    assert 0 < result.tokens_generated <= 32


def test_an_endpoint_error_names_the_route(openai_server: str, server) -> None:
    endpoint = Endpoint(openai_server.removesuffix("/v1") + "/nope", "smollm2")
    with PrunerClient(server[0]) as pruner, pytest.raises(ModelEndpointError, match="HTTP 404"):
        FreeLoop(endpoint, pruner, LoopSettings()).run(PREFIX)
