"""The sidecar proxy end to end: the official ``openai`` client → the proxy (a real process on a
free port) → a real OpenAI-compatible server over the embedded model, with a real pruning
service pruning the reasoning between rounds.

SmolLM2-135M does not write ``<think>``: the proxies here run with ``--starts-in-reasoning``, so
the model's whole output counts as reasoning (as it does behind a chat template that opens
``<think>`` in the prompt), and pruning deletes what the greedy model repeats.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import openai
import pytest

from tests.conftest import wait_for_health
from tests.support.openai_server import stats

QUESTION = "Tom has 3 boxes with 4 apples each. He eats 2 apples. How many apples are left?"
PREFIX = (
    "<|im_start|>system\nYou are a careful assistant. Think step by step.<|im_end|>\n"
    f"<|im_start|>user\n{QUESTION}<|im_end|>\n<|im_start|>assistant\n"
)
LONG_QUESTION = "Explain why the sky is blue, step by step, and double-check every step."
"""A question the greedy model answers at length (past 240 tokens)."""
MESSAGES = [
    {"role": "system", "content": "You are a careful assistant. Think step by step."},
    {"role": "user", "content": QUESTION},
]
PRUNING = ["--prune-every-tokens", "40", "--starts-in-reasoning", "--protect-tail-chars", "20",
           "--prune-timeout-s", "600"]  # fmt: skip
LOOPS_ONLY = [*PRUNING, "--max-commands", "0"]
"""The pruner's loop collapser alone (no model decoding): for the tests about the proxy's own
behaviour, which do not need the pruner's model and would only wait for it on 2 cores."""

Spawn = Callable[..., str]


def spawn_process(command: list[str], processes: list[subprocess.Popen[str]]) -> str:
    """Starts ``command`` and returns the address it prints (``listening on ADDRESS``)."""
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=os.environ
    )
    processes.append(process)
    assert process.stdout is not None
    match = re.search(r"listening on (\S+)", process.stdout.readline())
    assert match, "the process did not start"
    return match.group(1)


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.terminate()
    for process in started:
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture
def proxy(processes: list[subprocess.Popen[str]], openai_server: str, server) -> Spawn:
    """Starts ``freelm-pruner proxy`` with extra flags; returns its ``/v1`` base URL."""

    def start(*flags: str, upstream: str = openai_server, pruner: str = server[0]) -> str:
        command = [sys.executable, "-m", "pruner_service", "proxy", "--upstream", upstream,
                   "--pruner", pruner, "--port", "0", *flags]  # fmt: skip
        return f"http://{spawn_process(command, processes)}/v1"

    return start


def client(base_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=300)


def extra(usage: object, name: str) -> int:
    value = (getattr(usage, "model_extra", None) or {}).get(name)
    assert isinstance(value, int), f"usage has no integer {name}: {usage}"
    return value


def test_completions_prune_while_the_model_reasons(proxy: Spawn, openai_server: str) -> None:
    before = stats(openai_server)
    reply = client(proxy(*PRUNING)).completions.create(
        model="smollm2", prompt=PREFIX, max_tokens=240, temperature=0
    )
    served = stats(openai_server)["completion_tokens"] - before["completion_tokens"]
    usage = reply.usage
    assert reply.choices[0].text.strip()
    assert usage is not None and usage.completion_tokens == served
    assert extra(usage, "pruning_rounds") > 1
    assert extra(usage, "pruned_tokens") > 0
    assert extra(usage, "peak_context_saved_tokens") > 0
    assert extra(usage, "pruning_skipped") == 0


def test_chat_rounds_continue_the_partial_message_and_stream(
    proxy: Spawn, openai_server: str
) -> None:
    before = stats(openai_server)
    stream = client(proxy(*LOOPS_ONLY)).chat.completions.create(
        model="smollm2",
        messages=MESSAGES,  # type: ignore[arg-type]
        max_tokens=160,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    served = stats(openai_server)["completion_tokens"] - before["completion_tokens"]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    usage = chunks[-1].usage
    assert text.strip() and finishes[-1] in ("stop", "length")
    assert usage is not None and not chunks[-1].choices
    assert usage.completion_tokens == served
    assert extra(usage, "pruning_rounds") > 1, "several rounds, each sent to the pruner"


def test_a_stream_prunes_and_sends_the_pruned_reasoning_once(proxy: Spawn) -> None:
    base = proxy(*PRUNING, "--show-reasoning", "pruned")
    whole = client(base).completions.create(model="smollm2", prompt=PREFIX, max_tokens=240)
    stream = client(base).completions.create(
        model="smollm2",
        prompt=PREFIX,
        max_tokens=240,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    texts = [c.choices[0].text for c in chunks if c.choices and c.choices[0].text]
    usage = chunks[-1].usage
    assert usage is not None
    assert extra(usage, "pruning_rounds") > 1
    assert extra(usage, "pruned_tokens") > 0
    assert texts == [whole.choices[0].text], "the pruned reasoning, once, as the whole reply has it"
    assert usage == whole.usage


def test_the_pruner_killed_mid_run_does_not_fail_the_request(
    proxy: Spawn, processes: list[subprocess.Popen[str]], cache_dir: Path
) -> None:
    command = [sys.executable, "-m", "pruner_service", "serve", "--port", "0", "--device", "cpu",
               "--threads", "1", "--cache-dir", str(cache_dir)]  # fmt: skip
    address = spawn_process(command, processes)
    with grpc.insecure_channel(address) as channel:
        wait_for_health(channel)
    pruner = processes[-1]
    base = proxy(*LOOPS_ONLY, "--prune-timeout-s", "30", pruner=address)
    stream = client(base).chat.completions.create(
        model="smollm2",
        messages=[{"role": "user", "content": LONG_QUESTION}],
        max_tokens=240,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = []
    for chunk in stream:
        chunks.append(chunk)
        if len(chunks) == 50 and pruner.poll() is None:  # the second round: one prune done
            pruner.send_signal(signal.SIGKILL)
            pruner.wait(10)
    usage = chunks[-1].usage
    assert pruner.poll() is not None, "the pruner was killed during the run"
    assert usage is not None and usage.completion_tokens > 50
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).strip()
    assert extra(usage, "pruning_rounds") >= 1
    assert extra(usage, "pruning_skipped") >= 1


def test_a_pruner_past_its_deadline_is_skipped_and_counted(proxy: Spawn) -> None:
    base = proxy(*LOOPS_ONLY, "--prune-timeout-s", "0.001")
    reply = client(base).completions.create(model="smollm2", prompt=PREFIX, max_tokens=80)
    assert reply.choices[0].text.strip()
    assert extra(reply.usage, "pruning_rounds") == 0
    assert extra(reply.usage, "pruning_skipped") >= 1
    metrics = urllib.request.urlopen(base.removesuffix("/v1") + "/metrics").read().decode()
    assert re.search(r'freelm_proxy_pruner_failures_total\{code="[A-Z_a-z]+"\} [1-9]', metrics)


def test_upstream_errors_keep_their_status(proxy: Spawn, openai_server: str) -> None:
    wrong_path = client(proxy(*LOOPS_ONLY, upstream=openai_server.removesuffix("/v1") + "/nope"))
    with pytest.raises(openai.NotFoundError, match="no route"):
        wrong_path.completions.create(model="smollm2", prompt=PREFIX, max_tokens=8)
    with pytest.raises(openai.NotFoundError):
        wrong_path.chat.completions.create(
            model="smollm2",
            messages=MESSAGES,
            max_tokens=8,
            stream=True,  # type: ignore[arg-type]
        )
    down = client(proxy(*LOOPS_ONLY, upstream="http://127.0.0.1:9/v1"))
    with pytest.raises(openai.APIStatusError) as error:
        down.completions.create(model="smollm2", prompt=PREFIX, max_tokens=8)
    assert error.value.status_code == 502


def test_models_and_unpruned_requests_pass_through(proxy: Spawn, openai_server: str) -> None:
    off = client(proxy("--prune-every-tokens", "0"))
    assert [m.id for m in off.models.list()] == ["smollm2"]
    direct = client(openai_server).completions.create(model="smollm2", prompt=PREFIX, max_tokens=12)
    proxied = off.completions.create(model="smollm2", prompt=PREFIX, max_tokens=12)
    assert proxied.choices[0].text == direct.choices[0].text
    assert proxied.usage == direct.usage, "passed through: no pruning fields added"


def read_five_then_leave(base_url: str) -> None:
    stream = client(base_url).completions.create(
        model="smollm2", prompt=PREFIX, max_tokens=400, stream=True
    )
    for count, _ in enumerate(stream):
        if count == 5:
            break
    stream.close()


def time_out_waiting(base_url: str) -> None:
    impatient = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=2)
    with pytest.raises(openai.APITimeoutError):
        impatient.completions.create(model="smollm2", prompt=PREFIX, max_tokens=400)


@pytest.mark.parametrize(
    ("flags", "leave"),
    [
        (["--prune-every-tokens", "400", "--starts-in-reasoning"], read_five_then_leave),
        (["--prune-every-tokens", "400", "--starts-in-reasoning"], time_out_waiting),
        (["--prune-every-tokens", "0"], read_five_then_leave),
    ],
    ids=["pruning-stream", "pruning-whole", "passthrough-stream"],
)
def test_a_client_disconnect_cancels_the_upstream_request(
    proxy: Spawn, openai_server: str, flags: list[str], leave: Callable[[str], None]
) -> None:
    before = stats(openai_server)
    leave(proxy(*flags))
    limit = time.monotonic() + 60
    while stats(openai_server)["cancelled"] == before["cancelled"]:
        assert time.monotonic() < limit, "the upstream request was never cancelled"
        time.sleep(0.2)
    served = stats(openai_server)["completion_tokens"] - before["completion_tokens"]
    assert served < 400
