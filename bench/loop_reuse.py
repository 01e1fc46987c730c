"""Pruning a growing trace every round, as ``FreeLoop`` and the sidecar do: time per round.

One trace grows by ``--step`` tokens per round for ``--rounds`` rounds and is pruned through a
real gRPC server after each growth (the whole trace sent each time, as ``FreeLoop`` sends it).
The same rounds run twice in one process: on a server with the default reuse (prompt KV caches
and decoded rows kept, ``--prefix-cache-mb`` and ``--reused-rows``) and on one with both off
(the baseline: every call cold). Then, on the reusing server, the full trace grows by
``--small`` tokens once more: a round after a small growth, against the same text cold.
Then, in the same process, the prefill floor (``prefill_floor``): one bare forward of the first
round's prompt, and of the last round's new tokens on the previous round's KV cache; their ratio
is what reuse cannot bring the last round under, whatever the decode costs.

Traces: the longest of ``../shared/data/real_traces.jsonl`` when present, else a built-in
paragraph set. Writes a JSON result file and prints it.

With ``--window-tokens N`` both servers read at most N trace tokens per call (the rest in
windows, unchanged ones reused): the setting that bounds a round's cost.

    .venv/bin/python bench/loop_reuse.py [--rounds 10] [--step 512] [--small 64]
        [--window-tokens 0] [--out bench/results/loop_reuse.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import grpc
import torch
from freelm.pruner.v1 import pruner_pb2 as pb
from freelm.pruner.v1 import pruner_pb2_grpc as pb_grpc
from tqdm import tqdm

from pruner_service.assembly import build_service
from pruner_service.config import settings_from
from pruner_service.engine.load import cpu_name
from pruner_service.logging import configure_logging
from pruner_service.server import build_server

ROOT = Path(__file__).resolve().parents[1]
REAL_TRACES = ROOT.parent / "shared" / "data" / "real_traces.jsonl"
FALLBACK = (
    "Let me work out step {i}. The running total was {a}, and adding {b} gives {c}. "
    "Hmm, wait, let me double-check that: {a} + {b} = {c}. Yes, that is right.\n\n"
)


def long_trace(real: bool = True) -> tuple[str, str, str]:
    """(source, question, trace): the longest real trace (when ``real`` and present), or the
    built-in one."""
    if real and REAL_TRACES.is_file():
        records = [json.loads(line) for line in REAL_TRACES.open()]
        record = max(records, key=lambda r: len(r["trace"]))
        return "real_traces.jsonl (longest)", record.get("question", ""), record["trace"]
    text = "".join(FALLBACK.format(i=i, a=i * 3, b=i + 7, c=i * 4 + 7) for i in range(2000))
    return "built-in", "", text


def versions(tokenizer: Any, trace: str, lengths: list[int]) -> list[str]:
    """``trace`` cut to each of ``lengths`` tokens (each a text prefix of the next)."""
    encoded = tokenizer(trace, add_special_tokens=False, return_offsets_mapping=True)
    ends = [end for _, end in encoded["offset_mapping"]]
    if lengths[-1] > len(ends):
        raise SystemExit(f"the trace has {len(ends)} tokens; the rounds need {lengths[-1]}")
    return [trace[: ends[n - 1]] for n in lengths]


def timed_rounds(
    settings: dict[str, Any], question: str, texts: list[str], label: str
) -> list[float]:
    """Seconds of one ``Prune`` per text, in order, on a fresh server with ``settings``."""
    running = build_server(settings_from(settings), build_service(settings_from(settings)))
    running.server.start()
    running.service.start(background=False)
    stub = pb_grpc.PrunerStub(grpc.insecure_channel(f"127.0.0.1:{running.port}"))
    seconds = []
    try:
        for text in tqdm(texts, desc=label):
            started = time.perf_counter()
            stub.Prune(pb.PruneRequest(trace=text, question=question), timeout=900)
            seconds.append(round(time.perf_counter() - started, 3))
    finally:
        running.stop(grace=5)
    return seconds


@torch.inference_mode()
def prefill_floor(profile_name: str, question: str, first: str, before: str, last: str) -> dict:
    """The hardware floor of a round's prefill, without decoding: seconds of one bare forward
    of the first round's whole prompt, and of the last round's prompt after the tokens it
    shares with the round ``before`` it, on their KV cache (what reuse at best leaves to
    compute). Median of 3 each, the model as served (the profile's dtype on the CPU)."""
    from pruner_service.engine.hf import _cache_argument
    from pruner_service.engine.load import load_model
    from pruner_service.engine.profile import Profile
    from pruner_service.engine.prompt import render_prompt

    profile = Profile.load(profile_name)
    loaded = load_model(profile, settings_from({}).cache_dir, "cpu")
    model, argument = loaded.model, _cache_argument(loaded.model)

    def ids(text: str) -> list[int]:
        prompt = render_prompt(profile.template, text, question)
        return list(loaded.tokenizer(prompt, add_special_tokens=False)["input_ids"])

    def timed(new: list[int], cache: Any, start: int) -> float:
        positions = torch.arange(start, start + len(new)).unsqueeze(0)
        copy = None if cache is None else _copied(cache)
        started = time.perf_counter()
        model(input_ids=torch.tensor([new]), position_ids=positions, logits_to_keep=1,
              use_cache=True, **{argument: copy})  # fmt: skip
        return time.perf_counter() - started

    start, head, tail = ids(first), ids(before), ids(last)
    shared = next((i for i, (a, b) in enumerate(zip(head, tail, strict=False)) if a != b),
                  min(len(head), len(tail)))  # fmt: skip
    prefix = getattr(model(input_ids=torch.tensor([tail[:shared]]), use_cache=True), argument)
    cold = sorted(timed(start, None, 0) for _ in range(3))[1]
    grown = sorted(timed(tail[shared:], prefix, shared) for _ in range(3))[1]
    return {
        "first_prompt_tokens": len(start),
        "last_new_tokens": len(tail) - shared,
        "last_cached_tokens": shared,
        "first_s": round(cold, 3),
        "last_s": round(grown, 3),
        "last_over_first": round(grown / cold, 2),
    }


def _copied(cache: Any) -> Any:
    """A copy of a KV cache (a forward appends to the cache it is given)."""
    from pruner_service.engine.hf import _cache_of

    return _cache_of([(layer.keys.clone(), layer.values.clone()) for layer in cache.layers])


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--step", type=int, default=512, help="tokens added per round")
    parser.add_argument("--small", type=int, default=64, help="tokens of the small growth")
    parser.add_argument("--profile", default="smollm2-135m", help="profile name or path")
    parser.add_argument(
        "--window-tokens", type=int, default=0,
        help="the servers' --window-tokens (0: the profile's; the default reads the whole trace)",
    )  # fmt: skip
    parser.add_argument(
        "--no-floor", action="store_true", help="skip the bare-forward floor of the rounds"
    )
    parser.add_argument("--builtin-trace", action="store_true", help="never read ../shared")
    parser.add_argument("--out", type=Path, default=Path("bench/results/loop_reuse.json"))
    return parser.parse_args()


def main() -> None:
    args = _arguments()
    configure_logging("warning", "console")
    base = {"port": 0, "device": "cpu", "profile": args.profile, "max_wait_ms": 5.0,
            "window_tokens": args.window_tokens}  # fmt: skip
    source, question, trace = long_trace(real=not args.builtin_trace)
    from transformers import AutoTokenizer

    from pruner_service.engine.load import resolve_model_path
    from pruner_service.engine.profile import Profile

    settings = settings_from(base)
    path = resolve_model_path(Profile.load(args.profile), settings.cache_dir)
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    lengths = [args.step * (k + 1) for k in range(args.rounds)]
    texts = versions(tokenizer, trace, [*lengths, lengths[-1] + args.small])
    reuse = timed_rounds(base, question, texts, "reuse on")
    cold = timed_rounds(base | {"prefix_cache_mb": 0, "reused_rows": 0}, question, texts, "cold")
    result = {
        "machine": f"{cpu_name()}, {torch.get_num_threads()} torch threads",
        "profile": args.profile,
        "window_tokens": args.window_tokens,
        "trace": source,
        "round_tokens": lengths,
        "reuse_s": reuse[:-1],
        "cold_s": cold[:-1],
        "last_over_first_round": round(reuse[-2] / reuse[0], 2),
        "round_over_cold": [round(r / c, 2) for r, c in zip(reuse[1:-1], cold[1:-1], strict=True)],
        "small_growth_tokens": args.small,
        "small_growth_s": reuse[-1],
        "small_growth_cold_s": cold[-1],
        "small_growth_over_cold": round(reuse[-1] / cold[-1], 2),
    }
    if not args.no_floor and not args.window_tokens:
        result["prefill_floor"] = prefill_floor(args.profile, question, texts[0], *texts[-3:-1])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
