"""Starting ``freelm-pruner serve`` as a real process and finding the address it listens on."""

from __future__ import annotations

import subprocess
import sys


def start_server(*args: str) -> tuple[subprocess.Popen[str], str]:
    """``python -m pruner_service serve ARGS`` with stdout and stderr merged into one text pipe
    (the caller reads the rest of it, e.g. after ``terminate``), and the ``HOST:PORT`` its
    ``listening on`` line names. Raises ``AssertionError`` if it exits before listening."""
    process = subprocess.Popen(
        [sys.executable, "-m", "pruner_service", "serve", *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert process.stdout is not None
    line = process.stdout.readline()
    while "listening on" not in line:
        if not line:
            process.wait(30)
            raise AssertionError("the server exited before listening")
        line = process.stdout.readline()
    return process, line.split("listening on ")[1].split()[0]
