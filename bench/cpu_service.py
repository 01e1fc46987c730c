"""CPU latency and throughput of the service on the embedded default profile, through real gRPC.

Measures, in one run:
- the baseline: one bare forward pass of the model over the same cleaning prompt (no grammar,
  no queue, no gRPC) in the fastest dtype this CPU supports (bfloat16 where it has AMX or
  AVX512-BF16, else float32): the floor that the prefill sets;
- ``Prune`` latency on 2,000-token traces at batch 1 (p50 of 5 different traces, each sent once,
  so nothing is reused from an earlier call but the prompt template's KV cache), and its ratio
  to the floor of the same traces;
- throughput (requests/s) with 1 sequential client and with 8 concurrent clients (different
  traces again), and their ratio.

Traces come from ../shared/data/real_traces.jsonl when present (cut to 2,000 tokens), otherwise
from a built-in paragraph set. Writes a JSON result file and prints a Markdown table.

    .venv/bin/python bench/cpu_service.py [--profile NAME|PATH] [--requests-per-client 3]
        [--out bench/results/cpu_service.json]
"""

from __future__ import annotations

import argparse
import copy
import json
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
from pruner_service.engine.load import cpu_name, fast_bf16_cpu
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


def traces(tokenizer, count: int, tokens: int, real: bool = True) -> list[str]:
    """``count`` different traces of ``tokens`` tokens each (real ones first when ``real``)."""
    texts: list[str] = []
    if real and REAL_TRACES.is_file():
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


def floor_model(model):
    """The served model in the fastest dtype this CPU supports: a bfloat16 copy where it runs
    bfloat16 natively and the served model is float32, else the served model itself."""
    if model.dtype == torch.float32 and fast_bf16_cpu():
        return copy.deepcopy(model).to(torch.bfloat16)
    return model


def bare_forward_s(engine, model, trace: str) -> float:
    """Median seconds of 3 forward passes of ``model`` over ``trace``'s cleaning prompt."""
    prompt = render_prompt(engine.profile.template, trace)
    ids = engine.tokenizer(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"]
    with torch.inference_mode():
        model(input_ids=ids, logits_to_keep=1)
        times = []
        for _ in range(3):
            started = time.perf_counter()
            model(input_ids=ids, logits_to_keep=1)
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


def summary(engine, fastest, reply, floors, latencies, rates) -> dict:
    """The result file's figures: the floor, the latencies, their ratios and the throughputs
    (``rates``: sequential and 8-client requests/s)."""
    sequential, concurrent = rates
    floor = statistics.median(floors)
    result = {
        "machine": f"{cpu_name()}, {torch.get_num_threads()} torch threads, "
        f"native bf16: {fast_bf16_cpu()}",
        "served_dtype": str(engine.model.dtype).removeprefix("torch."),
        "floor_dtype": str(fastest.dtype).removeprefix("torch."),
        "trace_tokens": reply.usage.trace_tokens,
        "prompt_tokens": reply.usage.prompt_tokens,
        "generated_tokens_last": reply.usage.generated_tokens,
        "bare_forward_s": round(floor, 3),
        "bare_forward_per_trace_s": [round(x, 3) for x in floors],
        "prune_p50_s": round(statistics.median(latencies), 3),
        "prune_latencies_s": [round(x, 3) for x in latencies],
        "p50_over_bare_forward": round(statistics.median(latencies) / floor, 2),
        "p50_of_per_trace_ratios": round(
            statistics.median(a / b for a, b in zip(latencies, floors, strict=True)), 2
        ),
        "sequential_rps": round(sequential, 3),
        "concurrent8_rps": round(concurrent, 3),
        "concurrent8_over_sequential": round(concurrent / sequential, 2),
    }
    return result


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests-per-client", type=int, default=2)
    parser.add_argument("--dtype", default="", help="override the profile's (auto, float32, ...)")
    parser.add_argument("--tokens", type=int, default=2000)
    parser.add_argument("--profile", default="smollm2-135m", help="profile name or path")
    parser.add_argument("--adapter-path", default="", help="override the profile's (none: base)")
    parser.add_argument("--builtin-traces", action="store_true", help="never read ../shared")
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
            "dtype": args.dtype,
        }
    )
    running = build_server(settings, build_service(settings))
    running.server.start()
    running.service.start(background=False)
    engine = running.service.engine  # the benchmark measures the engine's floor directly
    assert engine is not None
    work = traces(engine.tokenizer, 13 + 8 * args.requests_per_client, args.tokens,
                  real=not args.builtin_traces)  # fmt: skip
    stub = pb_grpc.PrunerStub(grpc.insecure_channel(f"127.0.0.1:{running.port}"))
    fastest = floor_model(engine.model)
    floors = [bare_forward_s(engine, fastest, trace) for trace in work[:5]]
    latencies = []
    for trace in work[:5]:
        seconds, reply = prune_once(stub, trace)
        latencies.append(seconds)
    sequential = throughput(stub, work[5:13], clients=1)
    concurrent = throughput(stub, work[13:], clients=8)
    running.stop(grace=5)
    result = summary(engine, fastest, reply, floors, latencies, (sequential, concurrent))
    result["profile"] = settings.profile
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
