"""``freelm-pruner proxy``: its flags and the settings built from them."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from freelm_pruner_client.cli import tls_of
from freelm_pruner_client.client import read_token
from freelm_pruner_client.loopcore import Delimiters

from pruner_service.proxy.settings import SHOW_CHOICES, ProxySettings

EXIT_USAGE = 2


def add_command(commands: Any) -> None:
    """Adds the ``proxy`` command to the ``freelm-pruner`` subparsers."""
    proxy = commands.add_parser(
        "proxy",
        help="an OpenAI-compatible proxy that prunes reasoning while the model thinks",
        description="Serve /v1/chat/completions, /v1/completions and /v1/models in front of "
        "an OpenAI-compatible server; while the model reasons, prune its reasoning every "
        "--prune-every-tokens tokens with the pruning service and continue from the pruned "
        "text.",
    )
    proxy.add_argument(
        "--upstream", required=True, help="the model server's URL, e.g. http://127.0.0.1:8000/v1"
    )
    proxy.add_argument("--pruner", required=True, help="HOST:PORT of the pruning service (gRPC)")
    _add_pruner_security_flags(proxy)
    proxy.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    proxy.add_argument(
        "--port", type=int, default=8080, help="port to bind (0: any free port; default 8080)"
    )
    proxy.add_argument(
        "--prune-every-tokens",
        type=int,
        default=512,
        help="prune the reasoning every K generated tokens "
        "(0: pass everything through; default 512)",
    )
    proxy.add_argument(
        "--show-reasoning",
        choices=SHOW_CHOICES,
        default="full",
        help="what the caller gets of the reasoning: every token as generated (full, the "
        "default), the pruned text (pruned; in a stream, sent in one chunk when the "
        "reasoning ends) or none",
    )
    _add_reasoning_flags(proxy)
    _add_limit_flags(proxy)


def _add_pruner_security_flags(proxy: argparse.ArgumentParser) -> None:
    """TLS, client certificate and token of the proxy's calls to the pruning service."""
    proxy.add_argument(
        "--pruner-tls-ca", default=None, help="PEM CA bundle: reach the pruning service over TLS"
    )
    proxy.add_argument(
        "--pruner-tls-client-cert",
        default=None,
        help="PEM client certificate for the pruning service (mutual TLS; with "
        "--pruner-tls-client-key)",
    )
    proxy.add_argument(
        "--pruner-tls-client-key", default=None, help="PEM key of --pruner-tls-client-cert"
    )
    proxy.add_argument(
        "--pruner-token-file",
        default=None,
        help="file whose first line is the bearer token for the pruning service (default: the "
        "file named by $FREELM_PRUNER_TOKEN_FILE, if set)",
    )


def _add_reasoning_flags(proxy: argparse.ArgumentParser) -> None:
    group = proxy.add_argument_group(
        "reasoning delimiters (a reasoning_content or reasoning field is always read)"
    )
    group.add_argument(
        "--think-start", default="<think>", help="text that opens the reasoning (default <think>)"
    )
    group.add_argument(
        "--think-end", default="</think>", help="text that closes the reasoning (default </think>)"
    )
    group.add_argument(
        "--starts-in-reasoning",
        action="store_true",
        help="the model's output begins inside its reasoning (its chat template opens "
        "--think-start in the prompt); a completions prompt that ends with "
        "--think-start is taken so without this flag",
    )
    group.add_argument(
        "--passthrough-model",
        action="append",
        default=[],
        metavar="PATTERN",
        help="pass requests for models matching this glob through untouched (providers "
        "that sign or encrypt their reasoning); repeatable",
    )


def _add_limit_flags(proxy: argparse.ArgumentParser) -> None:
    """Time and size limits, and the options of the pruner calls."""
    group = proxy.add_argument_group("limits and pruning options")
    group.add_argument(
        "--prune-timeout-s",
        type=float,
        default=10.0,
        help="deadline of one pruner call in seconds; past it (or when the pruner is "
        "down) the round goes on unpruned and is counted (default 10)",
    )
    group.add_argument(
        "--upstream-timeout-s",
        type=float,
        default=600.0,
        help="seconds to wait for the upstream's next bytes (default 600)",
    )
    group.add_argument(
        "--default-max-tokens",
        type=int,
        default=8192,
        help="token budget of a request that sets no max_tokens (default 8192)",
    )
    _add_pruning_options(group)


def _add_pruning_options(group: Any) -> None:
    """The request options of the proxy's pruner calls."""
    group.add_argument(
        "--frozen-prefix-chars",
        type=int,
        default=0,
        help="never delete the reasoning's first N code points (keeps a prompt cache valid)",
    )
    group.add_argument(
        "--protect-tail-chars",
        type=int,
        default=200,
        help="never delete the reasoning's last N code points (default 200)",
    )
    group.add_argument(
        "--max-delete-fraction",
        type=float,
        default=0.6,
        help="the pruner's model may delete at most this fraction per call (default 0.6)",
    )
    group.add_argument(
        "--max-trace-chars",
        type=int,
        default=24_000,
        help="send at most the reasoning's last N code points to the pruner (a latency bound: "
        "each round's call must finish within --prune-timeout-s; default 24000)",
    )
    group.add_argument(
        "--max-commands",
        type=int,
        default=None,
        help="commands the pruner's model may write per call (0: its loop collapser alone, no "
        "model decoding; default: the pruner's)",
    )
    group.add_argument(
        "--max-question-chars",
        type=int,
        default=4_000,
        help="send at most the question's last N code points (default 4000)",
    )


def settings_of(args: argparse.Namespace) -> ProxySettings:
    """The settings the flags give. Raises ``ValueError`` naming a flag out of range."""
    try:
        token = read_token(args.pruner_token_file) if args.pruner_token_file else None
    except OSError as exc:
        raise ValueError(f"--pruner-token-file: {exc}") from None
    tls = tls_of(args.pruner_tls_ca, args.pruner_tls_client_cert, args.pruner_tls_client_key,
                 prefix="--pruner-")  # fmt: skip
    settings = ProxySettings(
        upstream=args.upstream,
        pruner=args.pruner,
        pruner_token=token,
        pruner_tls=tls,
        host=args.host,
        port=args.port,
        prune_every_tokens=args.prune_every_tokens,
        default_max_tokens=args.default_max_tokens,
        prune_timeout_s=args.prune_timeout_s,
        upstream_timeout_s=args.upstream_timeout_s,
        show_reasoning=args.show_reasoning,
        delimiters=Delimiters(args.think_start, args.think_end, args.starts_in_reasoning),
        frozen_prefix_chars=args.frozen_prefix_chars,
        protect_tail_chars=args.protect_tail_chars,
        max_delete_fraction=args.max_delete_fraction,
        max_trace_chars=args.max_trace_chars,
        max_question_chars=args.max_question_chars,
        passthrough_models=tuple(args.passthrough_model),
        max_commands=args.max_commands,
    )
    settings.check()
    return settings


def run(args: argparse.Namespace) -> int:
    """Serves the proxy until stopped; a bad flag is a one-line error (exit 2)."""
    from pruner_service.proxy.server import serve

    try:
        settings = settings_of(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return serve(settings)
