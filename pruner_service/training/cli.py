"""The training and data commands of ``freelm-pruner``: data, synth, train and eval.

Registered on the same command by ``cli`` (``add_commands``, ``HANDLERS``); each handler takes the
parsed arguments and the server settings (the profile, its model and the cache) and returns the
process exit code.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from freelm_pruner_client.options import as_flag_message

from pruner_service.cli_flags import EXIT_FAILED, EXIT_USAGE, add_settings_flags
from pruner_service.config import Settings
from pruner_service.domain import DEFAULT_MAX_DELETE_FRACTION, PruneOptions


def add_commands(commands: Any) -> None:
    """Adds data, silver, train, synth and eval to ``commands`` (an argparse subparsers object)."""
    _add_data(commands)
    _add_silver(commands)
    _add_train(commands)
    _add_synth(commands)
    _add_eval(commands)


def _add_data(commands: Any) -> None:
    data = commands.add_parser("data", help="write labelled reasoning traces (JSONL)")
    data.add_argument("-o", "--output", type=Path, required=True)
    data.add_argument("--count", type=int, default=1000)
    data.add_argument("--seed", type=int, default=0)
    data.add_argument("--family", choices=["train", "eval"], default="train",
                      help="phrasing templates (eval shares none with train)")  # fmt: skip
    data.add_argument("--long-chars", type=int, default=0,
                      help="write long traces of at least this many code points, each several "
                      "problems' reasoning with long loops and far re-checks (default 0: short "
                      "traces)")  # fmt: skip


def _add_silver(commands: Any) -> None:
    silver = commands.add_parser(
        "silver",
        help="label unlabelled real traces with the labelling functions (training records)",
        description="Label each trace's redundant sentences with the labelling functions "
        "(pruner_service.training.labelling; precision and coverage in docs/BENCHMARKS.md) and "
        "write a training record with a command per labelled span. Never give it an evaluation "
        "split (realbench): its labels are for measuring.",
    )
    silver.add_argument("file", type=Path, help="records: {id, trace, question?} (JSONL)")
    silver.add_argument("-o", "--output", type=Path, required=True, help="training records")
    silver.add_argument("--profile", help="whose anchor limit applies (default: the default)")
    silver.add_argument("--window-tokens", type=int, default=0,
                        help="write one record per window of at most N tokens of the trace "
                        "(the profile's tokenizer, cut as the service cuts windows), so that "
                        "long traces fit a training example; 0 (default): one record per "
                        "trace")  # fmt: skip
    silver.add_argument("--keep-empty", type=float, default=1.0, metavar="FRACTION",
                        help="the share of records without a command to write, chosen by "
                        "--seed (default 1: all)")  # fmt: skip
    silver.add_argument("--seed", type=int, default=0, help="for --keep-empty (default 0)")
    silver.add_argument("--cache-dir", type=Path, default=None,
                        help="the model cache, for --window-tokens' tokenizer (default "
                        "FREELM_CACHE_DIR, else $XDG_CACHE_HOME/freelm-pruner)")  # fmt: skip


def _add_train(commands: Any) -> None:
    train = commands.add_parser(
        "train", help="train a Free-Module (LoRA) on labelled records for the profile's base"
    )
    train.add_argument("--data", type=Path, required=True, help="records with gold commands")
    train.add_argument("-o", "--output", type=Path, required=True, help="adapter folder")
    train.add_argument("--steps", type=int, default=850, help="optimizer steps")
    train.add_argument("--learning-rate", type=float, default=6e-4, help="peak, linear decay")
    train.add_argument("--rank", type=int, default=8, help="LoRA rank (alpha = 2 x rank)")
    train.add_argument("--grad-accum", type=int, default=2, help="examples per step")
    train.add_argument("--max-tokens", type=int, default=1024, help="longer examples are skipped")
    train.add_argument("--save-every", type=int, default=50, help="checkpoint interval (steps)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument(
        "--save-dtype",
        choices=["float32", "float16", "bfloat16"],
        default="float32",
        help="dtype of the saved adapter weights",
    )
    train.add_argument(
        "--adapter-id",
        default="",
        help="id GetModelInfo reports (default: the output folder's name)",
    )
    train.add_argument(
        "--init-adapter",
        type=Path,
        help="start from this adapter's weights "
        "(further fine-tuning; the optimizer and schedule start fresh)",
    )
    train.add_argument("--adapter-version", default="0", help="version GetModelInfo reports")
    add_settings_flags(train)


def _add_synth(commands: Any) -> None:
    synth = commands.add_parser(
        "synth",
        help="label traces with a teacher model behind an OpenAI-compatible endpoint",
        description="Send each trace to a chat endpoint with the cleaning instruction; keep an "
        "example only if its commands resolve and the answer survives (reward check). Output is "
        "appended as it goes: rerun the same command to resume.",
    )
    synth.add_argument("file", type=Path, help="records: {id, trace, question?, answer?}")
    synth.add_argument(
        "-o",
        "--output",
        type=Path,
        required=True,
        help="kept examples (training records with commands)",
    )
    synth.add_argument(
        "--rejects",
        type=Path,
        help="not-kept records with code and reason (default OUTPUT.rejects.jsonl)",
    )
    _add_teacher_flags(synth)
    synth.add_argument("--max-delete-fraction", type=float, default=DEFAULT_MAX_DELETE_FRACTION)
    synth.add_argument(
        "--reply-prefix",
        default="",
        help='start every reply with this text, e.g. \'[{"prefix": "\' (the endpoint must '
        "continue a final assistant message, as vLLM does)",
    )
    synth.add_argument(
        "--verify-continuation",
        action="store_true",
        help="also require the teacher to reach the answer from the pruned trace",
    )
    synth.add_argument("--profile", help="whose anchor limits apply (default: the default)")


def _add_teacher_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--endpoint",
        default=os.environ.get("OPENAI_BASE_URL"),
        help="base URL, e.g. http://host:8000/v1 (default $OPENAI_BASE_URL)",
    )
    parser.add_argument("--model", required=True, help="the endpoint's model name")
    parser.add_argument(
        "--api-key-env",
        default="OPENAI_API_KEY",
        help="variable holding the API key (default OPENAI_API_KEY)",
    )
    parser.add_argument("--max-tokens", type=int, default=512, help="per teacher reply")
    parser.add_argument("--temperature", type=float, default=0.0)
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per request")
    parser.add_argument("--concurrency", type=int, default=4, help="requests in flight")


def _add_eval(commands: Any) -> None:
    evaluate = commands.add_parser(
        "eval", help="score the service's deletions against gold spans, with baselines"
    )
    evaluate.add_argument("file", type=Path, help="records: {id, trace, redundant_spans, ...}")
    evaluate.add_argument(
        "--server",
        default=argparse.SUPPRESS,  # the top-level copy's value (or None) when not given here
        help="HOST:PORT of a running service (default: local; also before the command)",
    )
    evaluate.add_argument("--predictions", type=Path, help="score this file instead of running")
    evaluate.add_argument("--limit", type=int, default=0, help="first N records only")
    evaluate.add_argument(
        "--deletable-results",
        action="store_true",
        help="send protect_results: false (score the commands without result protection)",
    )
    evaluate.add_argument(
        "--save-predictions",
        type=Path,
        metavar="FILE",
        help="also write the service's answer per record (deletions, commands and their "
        "statuses) as JSONL; --predictions FILE scores it again",
    )
    evaluate.add_argument("--json", action="store_true")
    add_settings_flags(evaluate)


def _data(args: argparse.Namespace, settings: Settings) -> int:
    from pruner_service.training.data import generate

    with args.output.open("w", encoding="utf-8") as out:
        for record in generate(args.count, args.seed, args.family, args.long_chars):
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
    print(f"wrote {args.count} records to {args.output}", file=sys.stderr)
    return 0


def _silver(args: argparse.Namespace, settings: Settings) -> int:
    from pruner_service.engine.profile import Profile
    from pruner_service.training.report import read_records

    if not args.file.is_file():
        print(f"error: no file {args.file}", file=sys.stderr)
        return EXIT_USAGE
    if args.window_tokens < 0 or not 0 <= args.keep_empty <= 1:
        print("error: --window-tokens must be 0 or more and --keep-empty between 0 and 1",
              file=sys.stderr)  # fmt: skip
        return EXIT_USAGE
    profile = Profile.load(args.profile or settings.profile)
    try:
        records = read_records(args.file)
    except ValueError as exc:
        print(f"error: {args.file} is not JSON lines: {exc}", file=sys.stderr)
        return EXIT_USAGE
    untraced = [r["id"] for r in records if not isinstance(r.get("trace"), str)]
    if untraced:
        print(f"error: records without a trace (string): {', '.join(untraced[:5])}",
              file=sys.stderr)  # fmt: skip
        return EXIT_USAGE
    written, spans, commands = _write_silver(args, settings, profile, records)
    print(f"wrote {written} records from {len(records)} traces ({spans} labelled spans, "
          f"{commands} commands) to {args.output}", file=sys.stderr)  # fmt: skip
    return 0


def _write_silver(
    args: argparse.Namespace, settings: Settings, profile: Any, records: list[dict[str, Any]]
) -> tuple[int, int, int]:
    """Writes the silver records of ``records`` to ``args.output``; returns (records written,
    labelled spans, commands) over the records written."""
    import random

    from tqdm import tqdm

    tokenizer = None
    if args.window_tokens:
        from pruner_service.engine.load import load_tokenizer

        tokenizer = load_tokenizer(profile, settings.cache_dir)
    rng = random.Random(args.seed)
    written = spans = commands = 0
    with args.output.open("w", encoding="utf-8") as out:
        for record in tqdm(records, desc="silver", unit="trace", disable=not sys.stderr.isatty()):
            labelled = _silver_of(record, profile, tokenizer, args.window_tokens)
            for one in labelled:
                if not one["commands"] and rng.random() >= args.keep_empty:
                    continue
                written += 1
                spans += len(one["redundant_spans"])
                commands += len(one["commands"])
                out.write(json.dumps(one, ensure_ascii=False) + "\n")
    return written, spans, commands


def _silver_of(
    record: dict[str, Any], profile: Any, tokenizer: Any, window_tokens: int
) -> list[dict[str, Any]]:
    """``record``'s silver records: one, or one per window when ``tokenizer`` is given."""
    from pruner_service.engine.windows import split, token_starts
    from pruner_service.training.labelling import silver_record, silver_windows

    if tokenizer is None:
        return [silver_record(record, profile.max_anchor_chars, profile.max_commands)]
    trace = record["trace"]
    windows = split(trace, token_starts(tokenizer, trace), window_tokens)
    spans = [(w.start, w.end) for w in windows]
    return silver_windows(record, spans, profile.max_anchor_chars, profile.max_commands)


def _eval(args: argparse.Namespace, settings: Settings) -> int:
    from pruner_service.training import report
    from pruner_service.training.evaluate import score

    if not args.file.is_file():
        print(f"error: no file {args.file}", file=sys.stderr)
        return EXIT_USAGE
    records = report.read_records(args.file, args.limit)
    if args.predictions:
        result: dict[str, Any] = score(records, report.read_predictions(args.predictions))
        print(json.dumps(result, indent=2))
        return 0
    options = {"protect_results": False} if args.deletable_results else {}
    if args.server:
        from pruner_service.training.runners import remote_runner

        runner = remote_runner(args.server, options)
        result = report.build_report(records, runner, args.save_predictions)
    else:
        from pruner_service.training.runners import local_runner

        with local_runner(settings, options) as run:
            result = report.build_report(records, run, args.save_predictions)
    print(json.dumps(result, indent=2) if args.json else report.format_table(result))
    return 0


def _synth(args: argparse.Namespace, settings: Settings) -> int:
    from pruner_service.engine.profile import Profile
    from pruner_service.training import synth

    problem = _synth_problem(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    profile = Profile.load(settings.profile)
    config = synth.SynthConfig(
        max_anchor_chars=profile.max_anchor_chars,
        max_commands=profile.max_commands,
        max_delete_fraction=args.max_delete_fraction,
        verify_continuation=args.verify_continuation,
        concurrency=args.concurrency,
    )
    teacher = synth.OpenAITeacher(
        args.endpoint,
        args.model,
        api_key=os.environ.get(args.api_key_env) or "unused",
        max_tokens=args.max_tokens,
        temperature=args.temperature,
        timeout_s=args.timeout,
        reply_prefix=args.reply_prefix,
    )
    rejects = args.rejects or args.output.with_name(args.output.stem + ".rejects.jsonl")
    job = synth.SynthJob(args.file, args.output, rejects, teacher, config)
    try:
        summary = job.run()
    except synth.Aborted as exc:
        print(f"error: {exc}\n{job.summary.line()} (rerun to resume)", file=sys.stderr)
        return EXIT_FAILED
    print(f"{summary.line()}; kept in {args.output}, the rest in {rejects}", file=sys.stderr)
    return 0


def _synth_problem(args: argparse.Namespace) -> str:
    if not args.file.is_file():
        return f"no file {args.file}"
    if not args.endpoint:
        return "no endpoint: pass --endpoint URL or set OPENAI_BASE_URL"
    if args.concurrency < 1 or args.max_tokens < 1 or args.timeout <= 0:
        return "--concurrency, --max-tokens and --timeout must be positive"
    try:
        PruneOptions(max_delete_fraction=args.max_delete_fraction).check()
    except ValueError as exc:
        return as_flag_message(exc)
    return ""


def _train(args: argparse.Namespace, settings: Settings) -> int:
    import torch

    from pruner_service.engine.load import load_base
    from pruner_service.engine.profile import Profile
    from pruner_service.training import train as training
    from pruner_service.training.report import read_records

    profile = Profile.load(settings.profile).with_paths(settings.model_path)
    model, tokenizer = load_base(profile, settings.cache_dir, dtype="float32")
    if settings.threads > 0:
        torch.set_num_threads(settings.threads)
    config = training.TrainConfig(
        steps=args.steps,
        learning_rate=args.learning_rate,
        rank=args.rank,
        alpha=2 * args.rank,
        grad_accum=args.grad_accum,
        max_tokens=args.max_tokens,
        save_every=args.save_every,
        seed=args.seed,
        save_dtype=args.save_dtype,
        init_adapter=str(args.init_adapter or ""),
    )
    records = read_records(args.data)
    examples = training.build_examples(records, profile, tokenizer, config.max_tokens)
    print(
        f"{len(examples)} of {len(records)} records fit {config.max_tokens} tokens", file=sys.stderr
    )
    losses = training.train(model, tokenizer, examples, args.output, config)
    meta = {
        "id": args.adapter_id or args.output.name,
        "version": args.adapter_version,
        "base": profile.model_id,
        "data": str(args.data),
    }
    (args.output / "freelm_adapter.json").write_text(json.dumps(meta, indent=2))
    if losses:
        print(f"final loss {losses[-1]:.4f}; adapter in {args.output}", file=sys.stderr)
    return 0


HANDLERS: dict[str, Callable[[argparse.Namespace, Settings], int]] = {
    "data": _data,
    "silver": _silver,
    "eval": _eval,
    "synth": _synth,
    "train": _train,
}
"""Each command's handler: (parsed arguments, server settings) → exit code."""
