"""What every ``freelm-pruner`` command shares: the server-settings flags and exit codes."""

from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path

from pruner_service.config import Settings, settings_from

EXIT_USAGE = 2
EXIT_FAILED = 1


def add_settings_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per ``Settings`` field (``--max-batch`` for ``max_batch``), no defaults: unset
    flags fall back to ``FREELM_<NAME>`` variables, then the field's default."""
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


def settings_of(args: argparse.Namespace) -> Settings:
    """The settings of parsed ``args``: flags, then variables, then defaults. Raises
    ``ValueError`` or ``TypeError`` for a value that is not valid."""
    return settings_from({f.name: getattr(args, f.name, None) for f in fields(Settings)})
