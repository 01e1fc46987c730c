"""Time of the whole-trace text passes (segmenter, loop collapser, protections, resolver) by size.

Builds traces of 25,000, 250,000 and 2,000,000 code points from real reasoning traces (the shared
``real_traces.jsonl`` when it is present, else a generated stand-in), with a verbatim loop, a
two-line loop and a code block spliced in every 20,000 code points, and times, best of
``--repeats``: the segmenter alone, ``loop_spans``, and ``prune`` with the service's default
protection over those loop spans (what a request without model commands costs the server beyond
the model). Reports seconds and microseconds per 1,000 code points per size, and each size's
per-character time as a ratio to the 25,000 one (1.0 is linear).

    .venv/bin/python bench/text_rules.py --json bench/results/text_rules.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from freelm_pruner_client.anchors import prune
from freelm_pruner_client.loop_collapser import loop_spans
from freelm_pruner_client.options import PruneOptions
from freelm_pruner_client.segments import Segmentation

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real_traces.jsonl"
SIZES = (25_000, 250_000, 2_000_000)
INSERT = (
    "Wait, let me check that again. " * 6
    + "\nLet me stop process 4242 first.\nI will stop the stale process now.\n" * 4
    + "\n```python\nhook.fire()\nhook.fire()\nhook.fire()\n```\n\n"
)


def material() -> tuple[str, str]:
    """Real traces joined by blank lines, and where they came from."""
    if REAL.is_file():
        lines = REAL.read_text(encoding="utf-8").splitlines()
        traces = [json.loads(line)["trace"] for line in lines if line.strip()]
        return "\n\n".join(traces), f"{len(traces)} real traces ({REAL.name})"
    step = "So x = {i}. Then we add {j} to get {k}. Hmm, is that right? Let me verify once. "
    text = "".join(step.format(i=i, j=i + 1, k=2 * i + 1) for i in range(4000))
    return text, "generated arithmetic steps (real traces not present)"


def trace_of(size: int, source: str) -> str:
    pieces: list[str] = []
    total = 0
    offset = 0
    while total < size:
        chunk = source[offset : offset + 20_000]
        offset = (offset + 20_000) % max(1, len(source) - 20_000)
        pieces += [chunk, INSERT]
        total += len(chunk) + len(INSERT)
    return "".join(pieces)[:size]


def best(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def measure(trace: str, repeats: int) -> dict[str, float]:
    protection = PruneOptions().protection()
    spans = loop_spans(trace)
    return {
        "segmenter_s": best(lambda: Segmentation(trace).sentences, repeats),
        "loop_spans_s": best(lambda: loop_spans(trace), repeats),
        "prune_s": best(lambda: prune(trace, [], loop_spans=spans, protection=protection), repeats),
        "loop_spans": len(spans),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    source, origin = material()
    rows: dict[int, dict[str, float]] = {}
    for size in SIZES:
        rows[size] = measure(trace_of(size, source), args.repeats)
    base = rows[SIZES[0]]
    report: dict[str, Any] = {"machine": platform.processor() or platform.machine(),
                              "material": origin, "sizes": {}}  # fmt: skip
    print(f"material: {origin}")
    print("size | segmenter | loop_spans | prune | us/1k chars (loops+prune) | ratio to 25k")
    for size, row in rows.items():
        total = row["loop_spans_s"] + row["prune_s"]
        per_k = total / size * 1e9
        ratio = per_k / ((base["loop_spans_s"] + base["prune_s"]) / SIZES[0] * 1e9)
        report["sizes"][size] = {**row, "us_per_1k_chars": per_k, "ratio_to_25k": ratio}
        print(
            f"{size:>9,} | {row['segmenter_s']:.3f} s | {row['loop_spans_s']:.3f} s | "
            f"{row['prune_s']:.3f} s | {per_k:.1f} | {ratio:.2f}"
        )
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
