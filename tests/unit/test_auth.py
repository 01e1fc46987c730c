"""The token file: its format, rights, reloading and constant-time lookup."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from pruner_service.auth import TokenFile, TokenFileError, bearer, parse_tokens


def test_a_line_is_a_token_and_its_rights() -> None:
    grants = parse_tokens(
        "# header\n\nalpha-0123456789ab\nbeta-0123456789ab info   # reader\n"
        "gamma-0123456789ab prune,info\n"
    )
    assert [sorted(g.rights) for g in grants] == [["info", "prune"], ["info"], ["info", "prune"]]
    assert len({g.digest for g in grants}) == 3
    assert all(len(g.fingerprint) == 12 for g in grants)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("alpha-0123456789ab admin\n", "line 1: unknown right admin"),
        ("alpha-0123456789ab\nbeta-0123456789ab prune,root\n", "line 2: unknown right root"),
        ("alpha-0123456789ab prune info\n", "line 1: expected TOKEN [RIGHT,...]"),
        ("alpha-0123456789ab ,\n", "line 1: unknown right (none)"),
        ("alpha\n", "line 1: a token has at least 16 characters"),
    ],
)
def test_a_bad_line_is_named_without_its_token(text: str, message: str) -> None:
    with pytest.raises(TokenFileError) as e:
        parse_tokens(text)
    assert message in str(e.value)
    assert "alpha" not in str(e.value) and "beta" not in str(e.value)


def test_find_returns_the_grant_of_a_known_token_only(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text("alpha-0123456789ab\nbeta-0123456789ab info\n")
    tokens = TokenFile(path)
    assert tokens.find("alpha-0123456789ab") is not None
    found = tokens.find("beta-0123456789ab")
    assert found is not None and found.rights == frozenset({"info"})
    assert tokens.find("alpha-0123456789a") is None
    assert tokens.find("alpha-0123456789abb") is None
    assert tokens.find("") is None


def test_an_empty_or_missing_file_refuses_to_start(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("# nothing yet\n")
    with pytest.raises(TokenFileError, match="holds no token"):
        TokenFile(empty)
    with pytest.raises(TokenFileError, match="cannot read token file"):
        TokenFile(tmp_path / "missing")


def test_a_changed_file_is_read_again(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text("alpha-0123456789ab\n")
    tokens = TokenFile(path)
    path.write_text("beta-0123456789ab\n")
    assert tokens.find("alpha-0123456789ab") is None
    assert tokens.find("beta-0123456789ab") is not None


def _rewrite_unnoticed(path: Path, text: str) -> None:
    """Writes ``text`` (the same length) over ``path``: same inode, size and modification time."""
    stamp = os.stat(path)
    with path.open("r+") as f:
        f.write(text)
    os.utime(path, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))


def test_reload_rereads_a_file_whose_size_and_time_did_not_change(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text("alpha-0123456789ab\n")
    tokens = TokenFile(path)
    _rewrite_unnoticed(path, "omega-0123456789ab\n")
    assert tokens.find("alpha-0123456789ab") is not None  # nothing tells it the file changed
    tokens.reload()
    assert tokens.find("alpha-0123456789ab") is None
    assert tokens.find("omega-0123456789ab") is not None


def test_sighup_handler_reloads(tmp_path: Path) -> None:
    from pruner_service.server import _reload_on_sighup

    path = tmp_path / "tokens"
    path.write_text("alpha-0123456789ab\n")
    tokens = TokenFile(path)
    previous = signal.getsignal(signal.SIGHUP)
    try:
        _reload_on_sighup(tokens)
        _rewrite_unnoticed(path, "omega-0123456789ab\n")
        os.kill(os.getpid(), signal.SIGHUP)
        assert tokens.find("omega-0123456789ab") is not None
    finally:
        signal.signal(signal.SIGHUP, previous)


def test_a_broken_file_keeps_the_tokens_read_last(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text("alpha-0123456789ab\n")
    tokens = TokenFile(path)
    path.write_text("alpha-0123456789ab superuser\n")
    assert tokens.find("alpha-0123456789ab") is not None
    path.unlink()
    tokens.reload()
    assert tokens.find("alpha-0123456789ab") is not None


@pytest.mark.parametrize(
    ("metadata", "token"),
    [
        ([("authorization", "Bearer abc")], "abc"),
        ([("Authorization", "bearer   abc ")], "abc"),
        ([("x-other", "1"), ("authorization", "Bearer abc")], "abc"),
        ([("authorization", "Basic abc")], None),
        ([("authorization", "Bearer ")], None),
        ([("authorization", b"Bearer abc")], None),
        ([], None),
        (None, None),
    ],
)
def test_bearer_reads_the_authorization_metadata(
    metadata: list[tuple[str, object]] | None, token: str | None
) -> None:
    assert bearer(metadata) == token
