"""The proxy's request checks and reply shapes (no I/O): which requests pass through, and how
the reasoning is shown in whole responses and streams."""

from __future__ import annotations

import pytest
from freelm_pruner_client.loopcore import Delimiters, LoopCore, LoopSettings

from pruner_service.proxy import wire
from pruner_service.proxy.cli import settings_of
from pruner_service.proxy.settings import ProxySettings

SETTINGS = ProxySettings(upstream="http://u/v1", pruner="p:1", passthrough_models=("claude-*",))
CHAT = {"model": "m", "messages": [{"role": "user", "content": "Q?"}]}


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (CHAT, ""),
        ({**CHAT, "model": "claude-x"}, "model"),
        ({**CHAT, "n": 2}, "several choices"),
        ({**CHAT, "tools": [{"type": "function"}]}, "tools"),
        ({**CHAT, "logprobs": True}, "logprobs or echo"),
        ({"model": "m", "messages": [{"role": "assistant", "content": "x", "signature": "s"}]},
         "messages"),
        ({"model": "m", "messages": [{"role": "assistant",
                                      "content": [{"type": "thinking", "thinking": "t"}]}]},
         "messages"),
    ],
)  # fmt: skip
def test_which_chat_requests_pass_through(body: dict, reason: str) -> None:
    assert wire.passthrough_reason("chat", body, SETTINGS) == reason


def test_completions_need_one_string_prompt_and_pruning_on() -> None:
    assert wire.passthrough_reason("completions", {"prompt": ["a", "b"]}, SETTINGS)
    assert not wire.passthrough_reason("completions", {"prompt": "a"}, SETTINGS)
    off = ProxySettings(upstream="u", pruner="p", prune_every_tokens=0)
    assert wire.passthrough_reason("completions", {"prompt": "a"}, off) == "pruning off"


def test_rounds_send_the_request_fields_but_set_their_own_budget() -> None:
    body = {**CHAT, "temperature": 0.6, "stop": ["x"], "max_tokens": 99, "stream": True}
    assert wire.base_body(body) == {"model": "m", "temperature": 0.6, "stop": ["x"]}
    assert wire.max_tokens_of(body, 5) == 99 and wire.max_tokens_of(CHAT, 5) == 5
    assert wire.question_of("chat", {**CHAT, "messages": [*CHAT["messages"],
                            {"role": "assistant", "content": "A"}]}, 1) == "?"  # fmt: skip


def run(core: LoopCore, renderer: wire.Renderer, deltas: list[tuple[str, str]]) -> list[dict]:
    chunks = []
    for content, reasoning in deltas:
        chunks += renderer.pieces(core.feed(content, reasoning), core)
    return chunks + renderer.closing(core, "stop", with_usage=True)


def pruned_core() -> LoopCore:
    core = LoopCore(LoopSettings(), Delimiters())
    core.feed("<think>a. a. b.")
    core.result.trace = "a. b."  # as a prune would leave it
    return core


@pytest.mark.parametrize(
    ("show", "content"),
    [("full", "<think>a. a. b.</think>4"), ("pruned", "<think>a. b.</think>4"), ("none", "4")],
)
def test_whole_responses_show_the_reasoning_as_asked(show: str, content: str) -> None:
    core = pruned_core()
    core.feed("</think>4")
    reply = wire.Renderer("chat", "m", show).response(core, "stop")  # type: ignore[arg-type]
    assert reply["choices"][0]["message"]["content"] == content
    assert reply["usage"]["pruned_tokens"] == 0 and "peak_context_saved_tokens" in reply["usage"]


def test_a_stream_sends_the_pruned_reasoning_once_when_it_ends() -> None:
    core = LoopCore(LoopSettings(), Delimiters())
    renderer = wire.Renderer("completions", "m", "pruned")
    chunks = renderer.pieces(core.feed("<think>a. a."), core)
    core.result.trace = "a."
    chunks += run(core, renderer, [(" b.</think>", ""), ("4", "")])
    texts = [c["choices"][0]["text"] for c in chunks if c["choices"]]
    assert "".join(texts) == "<think>a. b.</think>4"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 0


def test_a_reasoning_field_stays_a_field() -> None:
    core = LoopCore(LoopSettings(), Delimiters())
    renderer = wire.Renderer("chat", "m", "full")
    renderer.reasoning_key = "reasoning"
    chunks = run(core, renderer, [("", "hm."), ("4", "")])
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert deltas[0] == {"role": "assistant", "reasoning": "hm."}
    assert deltas[1] == {"content": "4"} and chunks[-2]["choices"][0]["finish_reason"] == "stop"
    message = renderer.response(core, "stop")["choices"][0]["message"]
    assert (message["content"], message["reasoning"]) == ("4", "hm.")


def test_flags_out_of_range_are_refused() -> None:
    class Args:
        upstream, pruner, host, port = "u", "p", "h", 0
        prune_every_tokens, default_max_tokens, prune_timeout_s, upstream_timeout_s = -1, 1, 1, 1
        show_reasoning, think_start, think_end, starts_in_reasoning = "full", "<t>", "</t>", False
        frozen_prefix_chars, protect_tail_chars, max_delete_fraction = 0, 0, 0.5
        max_trace_chars, max_question_chars, passthrough_model, max_commands = 10, 10, [], None
        pruner_token_file = pruner_tls_ca = pruner_tls_client_cert = pruner_tls_client_key = None

    with pytest.raises(ValueError, match="--prune-every-tokens"):
        settings_of(Args())  # type: ignore[arg-type]


def test_the_pruner_tls_flags_build_tls_and_need_cert_and_key_together() -> None:
    from freelm_pruner_client.cli import tls_of

    assert tls_of(None, None, None) is None
    tls = tls_of("ca.pem", "client.pem", "client.key", prefix="--pruner-")
    assert tls is not None and str(tls.certificate_chain) == "client.pem"
    assert str(tls.private_key) == "client.key" and str(tls.root_certificates) == "ca.pem"
    with pytest.raises(ValueError, match="--pruner-tls-client-cert and --pruner-tls-client-key"):
        tls_of(None, "client.pem", None, prefix="--pruner-")
