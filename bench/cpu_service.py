"""CPU latency and throughput of the service on the embedded default profile, through real gRPC.

Measures, in one run:
- the baseline: one bare forward pass of the model over the same cleaning prompt (no grammar,
  no queue, no gRPC): the floor that the prefill sets;
- ``Prune`` latency on a 2,000-token trace at batch 1 (p50 of 5), and its ratio to that floor;
- throughput (requests/s) with 1 sequential client and with 8 concurrent clients, and their ratio.

Traces come from ../shared/data/real_traces.jsonl when present (cut to 2,000 tokens), otherwise
from a built-in paragraph set. Writes a JSON result file and prints a Markdown table.

    .venv/bin/python bench/cpu_service.py [--profile NAME|PATH] [--requests-per-client 3]
        [--out bench/results/cpu_service.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import torch
from freelm.pruner.v1 import pruner_pb2 as pb
from freelm.pruner.v1 import pruner_pb2_grpc as pb_grpc

from pruner_service.assembly import build_service
from pruner_service.config import settings_from
from pruner_service.engine.prompt import render_prompt
from pruner_service.logging import configure_logging
from pruner_service.server import build_server

REAL_TRACES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real_traces.jsonl"
FALLBACK = (
    "Let me work out step {i}. The running total was {a}, and adding {b} gives {c}. "
    "Hmm, wait, let me double-check that: {a} + {b} = {c}. Yes, that is right. "
    "Maybe I should try another approach for step {i}, like grouping the numbers differently. "
    "No, the direct sum is simpler, so I keep {c} and move on.\n\n"
)


def traces(tokenizer, count: int, tokens: int) -> list[str]:
    """``count`` different traces of ``tokens`` tokens each."""
    texts: list[str] = []
    if REAL_TRACES.is_file():
        records = [json.loads(line) for line in REAL_TRACES.open()]
        texts = [r["trace"] for r in records if r["chars"] > tokens * 5]
    while len(texts) < count:
        n = len(texts)
        texts.append(
            "".join(FALLBACK.format(i=i, a=i * n, b=i + 7, c=i * n + i + 7) for i in range(200))
        )
    cut = []
    for text in texts[:count]:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"][:tokens]
        cut.append(tokenizer.decode(ids))
    return cut


def prune_once(stub: pb_grpc.PrunerStub, trace: str) -> tuple[float, pb.PruneResponse]:
    started = time.perf_counter()
    reply = stub.Prune(pb.PruneRequest(trace=trace), timeout=600)
    return time.perf_counter() - started, reply


def bare_forward_s(engine, trace: str) -> float:
    prompt = render_prompt(engine.profile.template, trace)
    ids = engine.tokenizer(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"]
    with torch.inference_mode():
        engine.model(input_ids=ids, logits_to_keep=1)
        times = []
        for _ in range(3):
            started = time.perf_counter()
            engine.model(input_ids=ids, logits_to_keep=1)
            times.append(time.perf_counter() - started)
    return statistics.median(times)


def throughput(stub: pb_grpc.PrunerStub, work: list[str], clients: int) -> float:
    lock = threading.Lock()
    queue = list(work)

    def client() -> None:
        while True:
            with lock:
                if not queue:
                    return
                trace = queue.pop()
            prune_once(stub, trace)

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        for _ in range(clients):
            pool.submit(client)
    return len(work) / (time.perf_counter() - started)


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests-per-client", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=2000)
    parser.add_argument("--profile", default="smollm2-135m", help="profile name or path")
    parser.add_argument("--adapter-path", default="", help="override the profile's (none: base)")
    parser.add_argument("--out", type=Path, default=Path("bench/results/cpu_service.json"))
    return parser.parse_args()


def main() -> None:
    args = _arguments()
    configure_logging("warning", "console")
    settings = settings_from(
        {
            "port": 0,
            "max_batch": 8,
            "max_wait_ms": 50.0,
            "device": "cpu",
            "profile": args.profile,
            "adapter_path": args.adapter_path,
        }
    )
    running = build_server(settings, build_service(settings))
    running.server.start()
    running.service.start(background=False)
    engine = running.service.engine  # the benchmark measures the engine's floor directly
    assert engine is not None
    work = traces(engine.tokenizer, 8 * args.requests_per_client, args.tokens)
    stub = pb_grpc.PrunerStub(grpc.insecure_channel(f"127.0.0.1:{running.port}"))
    floor = bare_forward_s(engine, work[0])
    latencies = []
    for _ in range(5):
        seconds, reply = prune_once(stub, work[0])
        latencies.append(seconds)
    sequential = throughput(stub, work[:8], clients=1)
    concurrent = throughput(stub, work, clients=8)
    running.stop(grace=5)
    result = {
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads",
        "profile": settings.profile,
        "trace_tokens": reply.usage.trace_tokens,
        "prompt_tokens": reply.usage.prompt_tokens,
        "generated_tokens_last": reply.usage.generated_tokens,
        "bare_forward_s": round(floor, 3),
        "prune_p50_s": round(statistics.median(latencies), 3),
        "prune_latencies_s": [round(x, 3) for x in latencies],
        "p50_over_bare_forward": round(statistics.median(latencies) / floor, 2),
        "sequential_rps": round(sequential, 3),
        "concurrent8_rps": round(concurrent, 3),
        "concurrent8_over_sequential": round(concurrent / sequential, 2),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
