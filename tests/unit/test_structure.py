"""The structure docs/ARCHITECTURE.md states: no module imports from a layer above its own, and
no function is longer than ``MAX_FUNCTION_LINES``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "pruner_service"
CLIENT = ROOT / "clients" / "python" / "freelm_pruner_client"

LAYERS: list[tuple[str, ...]] = [
    ("errors", "domain", "config", "metrics", "logging", "job"),
    ("engine",),
    ("compute", "convert", "wire"),
    ("queue",),
    ("lifecycle", "service"),
    ("auth", "interceptors", "servicer", "server"),
    ("assembly",),
    ("cli", "cli_flags", "__main__", "training", "proxy"),
]
"""Bottom first, as docs/ARCHITECTURE.md states them: each entry is a module or a package of
``pruner_service`` (a package's modules share its layer)."""


def layer_of(module: str) -> int:
    """The layer of ``pruner_service.<module>`` (dotted, without the package name)."""
    head = module.split(".")[0]
    for index, members in enumerate(LAYERS):
        if head in members:
            return index
    raise LookupError(f"pruner_service.{module} is in no layer: add it to docs/ARCHITECTURE.md")


def imports_of(path: Path, package: str) -> set[str]:
    """The modules of ``package`` that the file at ``path`` imports (anywhere in it), dotted
    and without the package name."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == package:
                found.update(alias.name for alias in node.names)
            elif node.module.startswith(package + "."):
                found.add(node.module.removeprefix(package + "."))
        elif isinstance(node, ast.Import):
            found.update(
                alias.name.removeprefix(package + ".")
                for alias in node.names
                if alias.name.startswith(package + ".")
            )
    return found


def _module(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


SOURCES = [p for p in sorted(PACKAGE.rglob("*.py")) if p.parent.name != "profiles"]


@pytest.mark.parametrize("path", SOURCES, ids=[_module(p) or "__init__" for p in SOURCES])
def test_no_module_imports_from_a_layer_above_its_own(path: Path) -> None:
    module = _module(path)
    if not module:  # the package's own __init__
        return
    own = layer_of(module)
    above = sorted(m for m in imports_of(path, "pruner_service") if layer_of(m) > own)
    assert not above, f"pruner_service.{module} (layer {own}) imports {above} from above"


def test_the_client_package_never_imports_the_service() -> None:
    for path in sorted(CLIENT.rglob("*.py")):
        assert not imports_of(path, "pruner_service"), path


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    source = tmp_path / "x.py"
    source.write_text("def f():\n    from pruner_service.server import serve\n")
    assert layer_of(next(iter(imports_of(source, "pruner_service")))) > layer_of("queue.memory")
    with pytest.raises(LookupError, match="in no layer"):
        layer_of("newthing")


MAX_FUNCTION_LINES = 50
"""Longest function (definition line to last line) in the service, the client package and the
benchmarks."""


def long_functions(path: Path, limit: int = MAX_FUNCTION_LINES) -> list[str]:
    """``name (lines)`` of each function in the file at ``path`` longer than ``limit`` lines."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            lines = (node.end_lineno or node.lineno) - node.lineno + 1
            if lines > limit:
                found.append(f"{node.name} ({lines})")
    return found


def test_no_function_is_longer_than_the_limit() -> None:
    roots = (PACKAGE, CLIENT, ROOT / "bench")
    files = [p for root in roots for p in sorted(root.rglob("*.py")) if "_pb2" not in p.name]
    assert len(files) > 50
    too_long = {str(p.relative_to(ROOT)): f for p in files if (f := long_functions(p))}
    assert not too_long, too_long


def test_the_length_check_counts_lines(tmp_path: Path) -> None:
    source = tmp_path / "x.py"
    source.write_text("def f():\n" + "    x = 1\n" * 3 + "\n\ndef g():\n    pass\n")
    assert long_functions(source, limit=3) == ["f (4)"]
