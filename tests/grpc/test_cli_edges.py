"""``freelm-pruner prune`` and ``info`` at their edges, in-process, with the fake engine (locally
or behind a real server): text that is not UTF-8 or holds a lone surrogate ends with a one-line
error, and ``--server``/``--timeout`` go before or after the command."""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from pruner_service import assembly, cli
from pruner_service.config import Settings
from pruner_service.domain import Limits
from pruner_service.server import build_server
from pruner_service.service import PrunerService
from tests.fakes import FakeEngine


@pytest.fixture(autouse=True)
def quiet_logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """``main`` would configure logging for the whole process onto this test's captured stderr;
    here logs go nowhere, so stdout and stderr hold only the command's own output."""
    monkeypatch.setattr(cli, "configure_logging", lambda *_: None)
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(io.StringIO()))
    yield
    structlog.reset_defaults()


@pytest.fixture(scope="module")
def fake_server() -> Iterator[tuple[str, FakeEngine]]:
    """A real server over the fake engine; yields its address and the engine."""
    engine = FakeEngine()
    settings = Settings(port=0, max_batch=2, max_wait_ms=1)
    service = PrunerService(settings, lambda: engine, Limits(1000, 100, 8))
    running = build_server(settings, service)
    running.server.start()
    service.start()
    assert service.wait_until_settled(10)
    yield f"127.0.0.1:{running.port}", engine
    running.stop(grace=1)


@pytest.fixture
def no_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """The local engine must not even be built."""

    def refuse(*_: Any, **__: Any) -> None:
        raise AssertionError("the local service was built")

    monkeypatch.setattr(assembly, "build_service", refuse)


@pytest.fixture
def trace_file(tmp_path: Path) -> Path:
    path = tmp_path / "trace.txt"
    path.write_text("Alpha beta gamma. Delta epsilon.", encoding="utf-8")
    return path


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err.strip()


def test_a_trace_file_that_is_not_utf8_is_a_one_line_usage_error_locally_and_remotely(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], no_model: None
) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"abc\xed\xa0\xbd def.")  # a UTF-8-encoded surrogate: not UTF-8
    for server in ([], ["--server", "127.0.0.1:1"]):
        assert cli.main(["prune", str(bad), *server]) == cli.EXIT_USAGE
        assert one_line_error(capsys) == f"error: {bad} is not valid UTF-8 at byte 3"


def test_stdin_that_is_not_utf8_is_a_one_line_usage_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], no_model: None
) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"ab\xff cd.")))
    assert cli.main(["prune", "-"]) == cli.EXIT_USAGE
    assert one_line_error(capsys) == "error: stdin is not valid UTF-8 at byte 2"


def test_a_lone_surrogate_in_a_text_is_refused_before_loading_the_model_or_calling(
    fake_server: tuple[str, FakeEngine],
    trace_file: Path,
    capsys: pytest.CaptureFixture[str],
    no_model: None,
) -> None:
    address, engine = fake_server
    computed = len(engine.computed)
    # argv bytes that are not UTF-8 reach Python as lone surrogates (surrogateescape)
    for server in ([], ["--server", address]):
        code = cli.main(["prune", str(trace_file), "--question", "\udcff", *server])
        assert code == cli.EXIT_FAILED
        expected = "error: INVALID_ARGUMENT: question has a lone surrogate at code point 0"
        assert one_line_error(capsys) == expected
    assert len(engine.computed) == computed


def test_the_local_engine_still_prunes(
    monkeypatch: pytest.MonkeyPatch, trace_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    real = assembly.build_service
    monkeypatch.setattr(
        assembly, "build_service", lambda settings: real(settings, None, FakeEngine)
    )
    assert cli.main(["prune", str(trace_file), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["pruned_trace"] == ". Delta epsilon."


def test_server_and_timeout_go_before_or_after_prune_and_info(
    fake_server: tuple[str, FakeEngine], trace_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    connection = ["--server", fake_server[0], "--timeout", "30"]
    for command in (["prune", str(trace_file), "--json"], ["info", "--json"]):
        replies = []
        for argv in (connection + command, command + connection):
            assert cli.main(argv) == 0, argv
            replies.append(json.loads(capsys.readouterr().out))
        assert replies[0].keys() == replies[1].keys()
    parse = cli.build_parser().parse_args
    assert parse(["--timeout", "5", "info"]).timeout == 5.0
    assert parse(["info", "--timeout", "5"]).timeout == 5.0
    assert (parse(["info"]).server, parse(["info"]).timeout) == (None, 300.0)
    assert parse(["--server", "a:1", "eval", "f.jsonl"]).server == "a:1"
