"""The thin client installs into a fresh virtual environment without torch and passes its tests
against real servers (started with this project's interpreter)."""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_client_installs_without_torch_and_passes_its_tests(tmp_path: Path) -> None:
    env_dir = tmp_path / "client-venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", f"{REPO / 'clients' / 'python'}[test]"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    probe = subprocess.run(
        [str(python), "-c", "import importlib.util as u; print(u.find_spec('torch') is None)"],
        capture_output=True,
        text=True,
    )
    assert probe.stdout.strip() == "True", "the client venv must not contain torch"
    run = subprocess.run(
        [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "clients/python/tests"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "FREELM_SERVER_PYTHON": sys.executable},
        timeout=1800,
    )
    assert run.returncode == 0, run.stdout[-5000:] + run.stderr[-3000:]
    assert " passed" in run.stdout
