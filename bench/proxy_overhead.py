"""What the sidecar proxy costs.

1. Pruning off (``--prune-every-tokens 0``): the same requests to the upstream directly and
   through the proxy, interleaved, with the official ``openai`` client: p50/p90 latency of each
   and the p50 added by the proxy, non-streamed and streamed.
2. Pruning on: requests whose whole output counts as reasoning (``--starts-in-reasoning``),
   pruned every ``--prune-every`` tokens by the real pruning service (the default profile, in
   its own process): the pruner's time per round (the proxy's ``freelm_proxy_pruner_seconds``),
   rounds, tokens pruned and peak context saved, and the request time next to the same requests
   through the proxy with pruning off.

The upstream is the tests' OpenAI-compatible server over the embedded SmolLM2-135M (greedy), or
with ``--upstream canned`` a server that answers a fixed reply at once (``canned_upstream.py``),
so the difference is the proxy's own cost without the model's time and its noise.
Writes bench/results/proxy_overhead.json.

    .venv/bin/python bench/proxy_overhead.py [--requests 200] [--pruned-requests 6]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import openai

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from redis_queue import wait_serving  # noqa: E402  (bench/, the script's own folder)

from pruner_service.config import settings_from  # noqa: E402
from pruner_service.engine.fetch import ensure_embedded  # noqa: E402

LONG_PROMPT = (
    "<|im_start|>user\nExplain why the sky is blue, step by step, and double-check every "
    "step.<|im_end|>\n<|im_start|>assistant\n"
)
"""What the pruning-on requests ask: the greedy model answers it at length (past 200 tokens)."""
PROMPT = (
    "<|im_start|>system\nYou are a careful assistant. Think step by step.<|im_end|>\n"
    "<|im_start|>user\nTom has 3 boxes with 4 apples each. He eats 2 apples. How many apples "
    "are left?<|im_end|>\n<|im_start|>assistant\n"
)


def spawn(command: list[str], processes: list[subprocess.Popen[str]]) -> str:
    """Starts ``command``; returns the address it prints (``listening on ADDRESS``)."""
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    processes.append(process)
    assert process.stdout is not None
    match = re.search(r"listening on (\S+)", process.stdout.readline())
    if not match:
        raise RuntimeError(f"{command[:4]} did not start")
    return match.group(1)


def proxy(upstream: str, pruner: str, flags: list[str], processes: list[Any]) -> str:
    command = [sys.executable, "-m", "pruner_service", "proxy", "--upstream", upstream,
               "--pruner", pruner, "--port", "0", *flags]  # fmt: skip
    return f"http://{spawn(command, processes)}/v1"


def timed(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def request(
    client: openai.OpenAI, stream: bool, max_tokens: int, prompt: str = PROMPT
) -> Callable[[], object]:
    def call() -> object:
        reply = client.completions.create(
            model="smollm2", prompt=prompt, max_tokens=max_tokens, temperature=0, stream=stream
        )
        return list(reply) if stream else reply

    return call


def percentiles(seconds: list[float]) -> dict[str, float]:
    ordered = sorted(seconds)
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 2),
        "p90_ms": round(ordered[int(0.9 * (len(ordered) - 1))] * 1000, 2),
    }


def overhead(direct_url: str, proxy_url: str, requests: int, stream: bool) -> dict[str, Any]:
    """Interleaved direct and proxied requests of one token each (the upstream's time is the
    same for both, so the difference is the proxy's)."""
    direct = openai.OpenAI(base_url=direct_url, api_key="unused", max_retries=0)
    proxied = openai.OpenAI(base_url=proxy_url, api_key="unused", max_retries=0)
    for _ in range(5):  # warm both connections
        request(direct, stream, 1)()
        request(proxied, stream, 1)()
    times: dict[str, list[float]] = {"direct": [], "proxy": []}
    for _ in range(requests):
        times["direct"].append(timed(request(direct, stream, 1)))
        times["proxy"].append(timed(request(proxied, stream, 1)))
    row = {name: percentiles(values) for name, values in times.items()}
    added = [p - d for p, d in zip(times["proxy"], times["direct"], strict=True)]
    return {
        "stream": stream,
        "requests": requests,
        **row,
        "p50_added_ms": round(row["proxy"]["p50_ms"] - row["direct"]["p50_ms"], 2),
        "median_paired_added_ms": round(statistics.median(added) * 1000, 2),
        "ratio_p50": round(row["proxy"]["p50_ms"] / row["direct"]["p50_ms"], 3),
    }


def metric(base_url: str, name: str) -> float:
    text = urllib.request.urlopen(base_url.removesuffix("/v1") + "/metrics").read().decode()
    match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def pruning(on_url: str, off_url: str, requests: int, max_tokens: int) -> dict[str, Any]:
    """The same requests through a pruning proxy and a pass-through one."""
    on = openai.OpenAI(base_url=on_url, api_key="unused", max_retries=0, timeout=600)
    off = openai.OpenAI(base_url=off_url, api_key="unused", max_retries=0, timeout=600)
    usages, on_times, off_times = [], [], []
    for _ in range(requests):
        started = time.perf_counter()
        reply = request(on, False, max_tokens, LONG_PROMPT)()
        on_times.append(time.perf_counter() - started)
        usages.append(getattr(reply, "usage").model_extra)  # noqa: B009
        off_times.append(timed(request(off, False, max_tokens, LONG_PROMPT)))
    calls = metric(on_url, "freelm_proxy_pruner_seconds_count")
    total = metric(on_url, "freelm_proxy_pruner_seconds_sum")
    return {
        "requests": requests,
        "max_tokens": max_tokens,
        "pruner_calls": int(calls),
        "pruner_seconds_per_round_mean": round(total / calls, 3) if calls else None,
        "pruning_rounds_per_request": statistics.mean(u["pruning_rounds"] for u in usages),
        "pruned_tokens_per_request": statistics.mean(u["pruned_tokens"] for u in usages),
        "peak_context_saved_tokens_per_request": statistics.mean(
            u["peak_context_saved_tokens"] for u in usages
        ),
        "request_p50_ms_pruning_on": percentiles(on_times)["p50_ms"],
        "request_p50_ms_pruning_off": percentiles(off_times)["p50_ms"],
    }


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor()
    match = re.search(r"Model name:\s*(.+)", out)
    return match.group(1).strip() if match else platform.processor()


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=200, help="per overhead run")
    parser.add_argument("--pruned-requests", type=int, default=6, help="0: skip part 2")
    parser.add_argument("--max-tokens", type=int, default=200, help="per pruned request")
    parser.add_argument("--prune-every", type=int, default=40, help="tokens per round")
    parser.add_argument(
        "--upstream",
        choices=("model", "canned"),
        default="model",
        help="model: the tests' server over SmolLM2; canned: bench/canned_upstream.py, a fixed "
        "reply at once (the proxy's own cost; no pruning-on part)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/proxy_overhead.json")
    args = parser.parse_args()
    if args.upstream == "canned":
        args.pruned_requests = 0
    return args


def main() -> None:
    args = _arguments()
    processes: list[subprocess.Popen[str]] = []
    try:
        if args.upstream == "canned":
            server = [sys.executable, str(ROOT / "bench/canned_upstream.py")]
        else:
            model_dir = ensure_embedded("smollm2-135m-instruct", settings_from().cache_dir)
            server = [sys.executable, str(ROOT / "tests/support/openai_server.py"),
                      "--model-dir", str(model_dir)]  # fmt: skip
        upstream = "http://" + spawn(server, processes) + "/v1"
        pruner = spawn([sys.executable, "-m", "pruner_service", "serve", "--port", "0",
                        "--device", "cpu", "--threads", "1"], processes)  # fmt: skip
        wait_serving(pruner)
        off = proxy(upstream, pruner, ["--prune-every-tokens", "0"], processes)
        on = proxy(upstream, pruner, ["--prune-every-tokens", str(args.prune_every),
                                      "--starts-in-reasoning", "--protect-tail-chars", "20"],
                   processes)  # fmt: skip
        result = {
            "command": " ".join(["bench/proxy_overhead.py", *sys.argv[1:]]),
            "upstream": args.upstream,
            "machine": f"{cpu_model()}, {len(os.sched_getaffinity(0))} cores",
            "pruning_off": [overhead(upstream, off, args.requests, s) for s in (False, True)],
            "pruning_on": pruning(on, off, args.pruned_requests, args.max_tokens)
            if args.pruned_requests
            else None,
        }
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(60)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
