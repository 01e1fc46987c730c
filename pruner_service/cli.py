"""The ``freelm-pruner`` command: serve, prune, info, fetch, proxy, and data, synth, train, eval.

Every server setting is a flag (``--max-batch``) and a variable (``FREELM_MAX_BATCH``); the flag
wins. ``prune`` and ``info`` run a local engine unless ``--server HOST:PORT`` names a running one;
``--server`` and ``--timeout`` go before or after the command.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import fields
from pathlib import Path
from typing import Any

from freelm_pruner_client.cli import add_security_flags, security_options
from freelm_pruner_client.client import DEFAULT_TIMEOUT_S, SECONDS_PER_KCHAR
from freelm_pruner_client.options import as_flag_message
from google.protobuf.json_format import MessageToDict

from pruner_service.config import Settings, settings_from
from pruner_service.domain import DEFAULT_MAX_DELETE_FRACTION, PruneOptions
from pruner_service.logging import configure_logging
from pruner_service.proxy.cli import add_command as add_proxy_command
from pruner_service.proxy.cli import run as run_proxy

EXIT_USAGE = 2
EXIT_FAILED = 1


def _add_settings_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("server settings (also FREELM_<NAME> variables)")
    for f in fields(Settings):
        kind = {"int": int, "float": float, "Path": Path}.get(str(f.type), str)
        group.add_argument(
            "--" + f.name.replace("_", "-"),
            dest=f.name,
            type=kind,
            default=None,
            help=f.metadata.get("help", ""),
        )


def _add_option_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("request options")
    group.add_argument("--question", default="", help="the question the trace answers")
    group.add_argument("--request-id", default="", help="idempotency key (default: generated)")
    group.add_argument("--frozen-prefix-chars", type=int, default=0)
    group.add_argument("--protect-tail-chars", type=int, default=0)
    group.add_argument("--max-delete-fraction", type=float, default=None)
    group.add_argument("--max-commands", type=int, default=None)
    group.add_argument("--no-loops", action="store_true", help="turn off the loop collapser")
    group.add_argument(
        "--deletable-last-sentence",
        action="store_true",
        help="let deletions reach the trace's last sentence (protected by default)",
    )
    group.add_argument(
        "--deletable-results",
        action="store_true",
        help="let deletions reach result sentences: where a number the trace uses again is first "
        "stated (protected by default)",
    )


def _connection_options(in_command: bool) -> argparse.ArgumentParser:
    """``--server`` and ``--timeout`` of ``prune`` and ``info`` (and the top-level ``--server``
    that ``eval`` reads): a parent of the top-level parser and of those commands' parsers, so
    they go before or after the command. A command's copy has
    no defaults (``SUPPRESS``): a value given before the command is kept, and the top-level copy
    supplies the defaults."""

    def default(value: object) -> object:
        return argparse.SUPPRESS if in_command else value

    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group(
        "connection, for prune, info and eval's --server (before or after the command)"
    )
    group.add_argument(
        "--server",
        default=default(None),
        help="HOST:PORT of a running service, or several frontends separated by commas "
        "(default: a local engine)",
    )
    group.add_argument(
        "--timeout",
        type=float,
        default=default(DEFAULT_TIMEOUT_S),
        help=f"seconds per call (default {DEFAULT_TIMEOUT_S:g}); a prune call gets "
        f"{SECONDS_PER_KCHAR:g} s more per 1,000 code points of its trace",
    )
    add_security_flags(group, default)
    return parent


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="freelm-pruner",
        description="Context pruning for reasoning models: which parts of a trace to forget.",
        parents=[_connection_options(in_command=False)],
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the gRPC service")
    _add_settings_flags(serve)
    connection = _connection_options(in_command=True)
    prune = commands.add_parser(
        "prune", parents=[connection], help="prune one trace (local engine or --server)"
    )
    prune.add_argument("file", nargs="?", default="-", help="UTF-8 trace file, or - for stdin")
    prune.add_argument("--json", action="store_true", help="print the full reply as JSON")
    _add_option_flags(prune)
    _add_settings_flags(prune)
    info = commands.add_parser("info", parents=[connection], help="describe the model and limits")
    info.add_argument("--json", action="store_true")
    _add_settings_flags(info)
    fetch = commands.add_parser("fetch", help="fetch and cache the profile's embedded model")
    _add_settings_flags(fetch)
    _add_training_commands(commands)
    add_proxy_command(commands)
    return parser


def _add_training_commands(commands: Any) -> None:
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
    _add_settings_flags(train)
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
    synth.add_argument(
        "--endpoint",
        default=os.environ.get("OPENAI_BASE_URL"),
        help="base URL, e.g. http://host:8000/v1 (default $OPENAI_BASE_URL)",
    )
    synth.add_argument("--model", required=True, help="the endpoint's model name")
    synth.add_argument(
        "--api-key-env",
        default="OPENAI_API_KEY",
        help="variable holding the API key (default OPENAI_API_KEY)",
    )
    synth.add_argument("--max-tokens", type=int, default=512, help="per teacher reply")
    synth.add_argument("--temperature", type=float, default=0.0)
    synth.add_argument("--timeout", type=float, default=120.0, help="seconds per request")
    synth.add_argument("--concurrency", type=int, default=4, help="requests in flight")
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
    _add_settings_flags(evaluate)


def _settings(args: argparse.Namespace) -> Settings:
    return settings_from({f.name: getattr(args, f.name, None) for f in fields(Settings)})


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = _settings(args)
    except (ValueError, TypeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    configure_logging(settings.log_level, settings.log_format)
    handlers = {"serve": _serve, "prune": _prune, "info": _info, "fetch": _fetch}
    handlers.update(data=_data, eval=_eval, train=_train, synth=_synth, proxy=_proxy)
    handler = handlers[args.command]
    return handler(args, settings)


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    from pruner_service.app import build_service
    from pruner_service.metrics import Metrics
    from pruner_service.server import serve

    metrics = Metrics()
    try:
        service = build_service(settings, metrics)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return serve(settings, service, metrics)


def _proxy(args: argparse.Namespace, settings: Settings) -> int:
    return run_proxy(args)


def _fetch(args: argparse.Namespace, settings: Settings) -> int:
    from pruner_service.engine.load import resolve_model_path
    from pruner_service.engine.profile import Profile

    profile = Profile.load(settings.profile).with_paths(settings.model_path, settings.adapter_path)
    path = resolve_model_path(profile, settings.cache_dir)
    print(f"model ready: {path}")
    return 0


def _read_trace(name: str) -> str:
    """The UTF-8 text of file ``name`` (``-``: stdin); raises ``OSError`` when it cannot be read
    and ``UnicodeDecodeError`` when it is not UTF-8."""
    data = sys.stdin.buffer.read() if name == "-" else Path(name).read_bytes()
    return data.decode("utf-8")


def _options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {
        "frozen_prefix_chars": args.frozen_prefix_chars,
        "protect_tail_chars": args.protect_tail_chars,
    }
    if args.max_delete_fraction is not None:
        options["max_delete_fraction"] = args.max_delete_fraction
    if args.max_commands is not None:
        options["max_commands"] = args.max_commands
    if args.no_loops:
        options["collapse_loops"] = False
    if args.deletable_last_sentence:
        options["protect_last_sentence"] = False
    if args.deletable_results:
        options["protect_results"] = False
    return options


def _prune(args: argparse.Namespace, settings: Settings) -> int:
    try:
        trace = _read_trace(args.file)
    except OSError as exc:
        print(f"error: cannot read {args.file}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except UnicodeDecodeError as exc:
        source = "stdin" if args.file == "-" else args.file
        print(f"error: {source} is not valid UTF-8 at byte {exc.start}", file=sys.stderr)
        return EXIT_USAGE
    response = _prune_remote(args, trace) if args.server else _prune_local(args, settings, trace)
    if response is None:
        return EXIT_FAILED
    _print_reply(response, args.json)
    return 0


def _client(args: argparse.Namespace) -> Any:
    """A ``PrunerClient`` for ``--server`` with the TLS and token flags, or None (said why on
    stderr) when those cannot be used."""
    from freelm_pruner_client.client import PrunerClient

    try:
        return PrunerClient(args.server, timeout=args.timeout, **security_options(args))
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None


def _prune_remote(args: argparse.Namespace, trace: str) -> Any:
    from freelm_pruner_client.errors import PrunerClientError

    client = _client(args)
    if client is None:
        return None
    with client:
        try:
            return client.prune(trace, args.question, args.request_id, **_options(args))
        except PrunerClientError as exc:
            print(f"error: {exc.code.name}: {exc}", file=sys.stderr)
            return None


def _prune_local(args: argparse.Namespace, settings: Settings, trace: str) -> Any:
    from freelm_pruner_client.client import build_request, scaled_timeout
    from freelm_pruner_client.errors import PrunerClientError

    from pruner_service import convert
    from pruner_service.app import build_service
    from pruner_service.errors import PrunerError, status_of

    try:  # the client's checks: a text with a lone surrogate is refused before the model loads
        message = build_request(trace, args.question, args.request_id, **_options(args))
    except PrunerClientError as exc:
        print(f"error: {exc.code.name}: {exc}", file=sys.stderr)
        return None
    service = build_service(settings)
    bar = None
    try:
        request = convert.request_from_proto(message, service.limits)
        service.start(background=False)
        bar = _window_progress(service.engine)
        result = service.prune(request, time.time() + scaled_timeout(trace, args.timeout))
    except PrunerError as exc:
        code, text = status_of(exc)
        print(f"error: {code.name}: {text}", file=sys.stderr)
        return None
    finally:
        if bar is not None:
            bar.close()
        service.shutdown(grace=0)
    return convert.result_to_proto(result)


def _window_progress(engine: Any) -> Any:
    """A progress bar over the windows of a long trace on a terminal (stderr), else None."""
    from tqdm import tqdm

    from pruner_service.engine.hf import HFEngine

    if not isinstance(engine, HFEngine) or not sys.stderr.isatty():
        return None
    bar = tqdm(total=0, unit="window", desc="cleaning", file=sys.stderr)

    def update(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    engine.progress = update
    return bar


def _print_reply(response: Any, as_json: bool) -> None:
    if as_json:
        print(json.dumps(_to_dict(response), ensure_ascii=False, indent=2))
        return
    for command in response.commands:
        status = type(command).DESCRIPTOR.fields_by_name["status"].enum_type
        name = status.values_by_number[command.status].name
        print(f"{name:17} prefix={command.prefix!r} suffix={command.suffix!r}", file=sys.stderr)
    usage = response.usage
    print(
        f"removed {usage.removed_chars} of {usage.trace_chars} characters "
        f"({usage.trace_tokens - usage.kept_tokens} of {usage.trace_tokens} tokens) "
        f"in {len(response.deletions)} deletions; model {response.model_id}"
        + (f" + {response.adapter_id}" if response.adapter_id else " (no adapter)"),
        file=sys.stderr,
    )
    sys.stdout.write(response.pruned_trace)


def _to_dict(message: Any) -> dict[str, Any]:
    result: dict[str, Any] = MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    return result


def _info(args: argparse.Namespace, settings: Settings) -> int:
    if args.server:
        from freelm_pruner_client.errors import PrunerClientError

        client = _client(args)
        if client is None:
            return EXIT_USAGE
        with client:
            try:
                info = client.model_info()
            except PrunerClientError as exc:
                print(f"error: {exc.code.name}: {exc}", file=sys.stderr)
                return EXIT_FAILED
    else:
        info = _local_info(settings)
        if info is None:
            return EXIT_FAILED
    if args.json:
        print(json.dumps(_to_dict(info), indent=2))
    else:
        for key, value in _to_dict(info).items():
            print(f"{key:20} {value}")
    return 0


def _local_info(settings: Settings) -> Any:
    from pruner_service import convert
    from pruner_service.app import build_service

    service = build_service(settings)
    service.start(background=False)
    try:
        if not service.ready:
            print(f"error: the model failed to load: {service.failure}", file=sys.stderr)
            return None
        return convert.info_to_proto(service.info(), settings, service.limits)
    finally:
        service.shutdown(grace=0)


def _data(args: argparse.Namespace, settings: Settings) -> int:
    from pruner_service.training.data import generate

    with args.output.open("w", encoding="utf-8") as out:
        for record in generate(args.count, args.seed, args.family, args.long_chars):
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
    print(f"wrote {args.count} records to {args.output}", file=sys.stderr)
    return 0


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
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from pruner_service.engine.load import resolve_model_path
    from pruner_service.engine.profile import Profile
    from pruner_service.training import train as training
    from pruner_service.training.report import read_records

    profile = Profile.load(settings.profile).with_paths(settings.model_path)
    path = resolve_model_path(profile, settings.cache_dir)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
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
