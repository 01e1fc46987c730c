"""The ``freelm-pruner`` command: serve, prune, info, fetch and proxy; the training and data
commands (data, synth, train, eval) are ``training.cli``'s, registered on the same command.

Every server setting is a flag (``--max-batch``) and a variable (``FREELM_MAX_BATCH``); the flag
wins. ``prune`` and ``info`` run a local engine unless ``--server HOST:PORT`` names a running one;
``--server`` and ``--timeout`` go before or after the command.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from freelm_pruner_client.cli import add_security_flags, security_options
from freelm_pruner_client.client import DEFAULT_TIMEOUT_S, SECONDS_PER_KCHAR
from google.protobuf.json_format import MessageToDict

from pruner_service.cli_flags import EXIT_FAILED, EXIT_USAGE, add_settings_flags, settings_of
from pruner_service.config import Settings
from pruner_service.logging import configure_logging
from pruner_service.proxy.cli import add_command as add_proxy_command
from pruner_service.proxy.cli import run as run_proxy
from pruner_service.training.cli import HANDLERS as TRAINING_HANDLERS
from pruner_service.training.cli import add_commands as add_training_commands


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
    add_settings_flags(serve)
    connection = _connection_options(in_command=True)
    prune = commands.add_parser(
        "prune", parents=[connection], help="prune one trace (local engine or --server)"
    )
    prune.add_argument("file", nargs="?", default="-", help="UTF-8 trace file, or - for stdin")
    prune.add_argument("--json", action="store_true", help="print the full reply as JSON")
    _add_option_flags(prune)
    add_settings_flags(prune)
    info = commands.add_parser("info", parents=[connection], help="describe the model and limits")
    info.add_argument("--json", action="store_true")
    add_settings_flags(info)
    fetch = commands.add_parser("fetch", help="fetch and cache the profile's embedded model")
    add_settings_flags(fetch)
    add_training_commands(commands)
    add_proxy_command(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = settings_of(args)
    except (ValueError, TypeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    configure_logging(settings.log_level, settings.log_format)
    handlers = {"serve": _serve, "prune": _prune, "info": _info, "fetch": _fetch, "proxy": _proxy}
    handlers.update(TRAINING_HANDLERS)
    handler = handlers[args.command]
    return handler(args, settings)


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    from pruner_service.assembly import build_service
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
    from pruner_service.assembly import build_service
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
    return convert.result_to_proto(result, request.options.return_pruned_trace)


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
    from pruner_service.assembly import build_service

    service = build_service(settings)
    service.start(background=False)
    try:
        if not service.ready:
            print(f"error: the model failed to load: {service.failure}", file=sys.stderr)
            return None
        return convert.info_to_proto(service.info(), settings, service.limits)
    finally:
        service.shutdown(grace=0)
