"""``freelm-pruner-client``: batch pruning of stored traces and server info, over gRPC only."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from google.protobuf.json_format import MessageToDict

from freelm_pruner_client.batch import BatchJob
from freelm_pruner_client.client import TOKEN_FILE_ENV, PrunerClient, Tls, read_token
from freelm_pruner_client.errors import PrunerClientError


def connection_options(in_command: bool) -> argparse.ArgumentParser:
    """The connection options, a parent of the top-level parser and of each command's, so they
    go before or after the command. A command's copy has no defaults (``SUPPRESS``): a value
    given before the command is kept, and the top-level copy supplies the defaults."""

    def default(value: object) -> object:
        return argparse.SUPPRESS if in_command else value

    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("connection (before or after the command)")
    group.add_argument(
        "--server",
        default=default("127.0.0.1:50051"),
        help="HOST:PORT of the service, or several frontends separated by commas (calls are "
        "balanced and fail over; default 127.0.0.1:50051)",
    )
    add_security_flags(group, default)
    group.add_argument(
        "--timeout",
        type=float,
        default=default(300.0),
        help="seconds per call (default 300); a prune call gets 3 s more per 1,000 code points "
        "of its trace",
    )
    return parent


def add_security_flags(group: Any, default: Callable[[object], object]) -> None:
    """``--tls-ca``, ``--tls-client-cert``, ``--tls-client-key`` and ``--token-file`` (shared
    by this CLI and ``freelm-pruner``'s client commands)."""
    group.add_argument(
        "--tls-ca", type=Path, default=default(None), help="PEM CA bundle: connect with TLS"
    )
    group.add_argument(
        "--tls-client-cert",
        type=Path,
        default=default(None),
        help="PEM client certificate chain to present (mutual TLS; with --tls-client-key)",
    )
    group.add_argument(
        "--tls-client-key", type=Path, default=default(None), help="PEM key of --tls-client-cert"
    )
    group.add_argument(
        "--token-file",
        type=Path,
        default=default(None),
        help=f"file whose first line is the bearer token to send (default: the file named by "
        f"${TOKEN_FILE_ENV}, if set); never pass a token itself on the command line",
    )


def tls_of(
    ca: str | Path | None, cert: str | Path | None, key: str | Path | None, prefix: str = "--"
) -> Tls | None:
    """TLS settings from a CA bundle and a client certificate and key (file paths), or None when
    none is given. Raises ``ValueError`` naming the flags (``{prefix}tls-client-cert`` and
    ``{prefix}tls-client-key``) when only one of the certificate and key is given."""
    if bool(cert) != bool(key):
        raise ValueError(f"{prefix}tls-client-cert and {prefix}tls-client-key go together")
    if not (ca or cert):
        return None

    def path(value: str | Path | None) -> Path | None:
        return Path(value) if value else None

    return Tls(root_certificates=path(ca), private_key=path(key), certificate_chain=path(cert))


def security_options(args: argparse.Namespace) -> dict[str, Any]:
    """``PrunerClient`` keyword arguments (``tls``, ``token``) from ``add_security_flags``'
    flags. Raises ``ValueError`` when only one of the client certificate and key is given, and
    ``OSError``/``ValueError`` when the token file cannot be read or holds no token."""
    tls = tls_of(args.tls_ca, args.tls_client_cert, args.tls_client_key)
    token = read_token(args.token_file) if args.token_file else None
    return {"tls": tls, "token": token}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="freelm-pruner-client",
        description="Client of the FreeLM Pruner service.",
        parents=[connection_options(in_command=False)],
    )
    commands = parser.add_subparsers(dest="command", required=True)
    batch = commands.add_parser(
        "batch",
        parents=[connection_options(in_command=True)],
        help="prune every record of a JSONL file",
        description="Prunes a UTF-8 JSONL file of records (a byte order mark is fine) into "
        "another; rerunning resumes. Each output line has the record's id (the same JSON value, "
        "or the line number) and a result or an error.",
    )
    batch.add_argument("input", type=Path, help="input JSONL file")
    batch.add_argument("-o", "--output", type=Path, required=True, help="output JSONL file")
    batch.add_argument("--field", default="trace", help="field holding the trace")
    batch.add_argument("--question-field", default="question", help="field holding the question")
    batch.add_argument("--concurrency", type=int, default=8, help="calls in flight")
    batch.add_argument("--frozen-prefix-chars", type=int, default=None)
    batch.add_argument("--protect-tail-chars", type=int, default=None)
    batch.add_argument("--max-delete-fraction", type=float, default=None)
    batch.add_argument(
        "--max-commands", type=int, default=None, help="0: loop collapser only, no model"
    )
    batch.add_argument(
        "--deletable-last-sentence",
        action="store_true",
        help="let deletions reach each trace's last sentence (protected by default)",
    )
    batch.add_argument(
        "--deletable-results",
        action="store_true",
        help="let deletions reach result sentences: where a number the trace uses again is first "
        "stated (protected by default)",
    )
    batch.add_argument("--no-progress", action="store_true", help="no progress bar")
    commands.add_parser(
        "info",
        parents=[connection_options(in_command=True)],
        help="print the server's model and limits as JSON",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        security = security_options(args)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    with PrunerClient(args.server, timeout=args.timeout, **security) as client:
        if args.command == "info":
            return _info(client)
        return _batch(args, client)


def _info(client: PrunerClient) -> int:
    try:
        info = client.model_info()
    except PrunerClientError as exc:
        print(f"error: {exc.code.name}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(MessageToDict(info, preserving_proto_field_name=True), indent=2))
    return 0


def _batch(args: argparse.Namespace, client: PrunerClient) -> int:
    if not args.input.is_file():
        print(f"error: no input file {args.input}", file=sys.stderr)
        return 2
    if args.concurrency < 1:
        print("error: --concurrency must be at least 1", file=sys.stderr)
        return 2
    names = ("frozen_prefix_chars", "protect_tail_chars", "max_delete_fraction", "max_commands")
    options = {n: getattr(args, n) for n in names if getattr(args, n) is not None}
    if args.deletable_last_sentence:
        options["protect_last_sentence"] = False
    if args.deletable_results:
        options["protect_results"] = False
    job = BatchJob(
        args.input,
        args.output,
        client,
        field_name=args.field,
        question_field=args.question_field,
        concurrency=args.concurrency,
        options=options,
        show_progress=not args.no_progress,
    )
    summary = job.run()
    print(summary.line(), file=sys.stderr)
    return 0
