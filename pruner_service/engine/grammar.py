"""The output grammar: a JSON list of ``{"prefix", "suffix"}`` commands, anchors from the trace.

Built per request with llguidance's substring lexeme, so every anchor the model can emit is a
non-empty substring of that request's trace. Anchors are also limited to characters that need no
JSON escaping (no ``"``, ``\\`` or control characters such as newlines), so the raw output is the
JSON text itself and always parses, and to ``max_anchor_chars`` characters.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from freelm_pruner_client.anchors import AnchorCommand

_COMMAND = re.compile(r'\{"prefix": "([^"]*)", "suffix": "([^"]*)"\}')
_UNWRITABLE = re.compile(r'["\\\x00-\x1f]')


def writable_head(text: str, start: int, max_anchor_chars: int) -> str:
    """The longest anchor the grammar can write from ``text[start]`` on: at most
    ``max_anchor_chars`` characters, up to the first ``"``, ``\\`` or control character."""
    head = text[start : start + max_anchor_chars]
    cut = _UNWRITABLE.search(head)
    return head[: cut.start()] if cut else head


def anchor_fits(anchor: str, max_anchor_chars: int) -> bool:
    """Whether the grammar can write ``anchor``: 1 to ``max_anchor_chars`` characters, none of
    them ``"``, ``\\`` or a control character."""
    return 0 < len(anchor) <= max_anchor_chars and not _UNWRITABLE.search(anchor)


def _anchor(name: str, text: str, max_anchor_chars: int) -> str:
    substring = json.dumps({"substring_chars": text})
    return f'{name}: %regex {substring} & /[^"\\\\\\x00-\\x1f]{{1,{max_anchor_chars}}}/'


def _more(count: int) -> str:
    return f' ("," " " cmd){{0,{count}}}' if count > 0 else ""


def command_grammar(trace: str, max_commands: int, max_anchor_chars: int) -> str:
    """A Lark grammar for at most ``max_commands`` commands with anchors taken from ``trace``."""
    if max_commands < 1 or max_anchor_chars < 1:
        raise ValueError("max_commands and max_anchor_chars must be >= 1")
    return "\n".join(
        [
            f'start: "[" (cmd{_more(max_commands - 1)})? "]"',
            _CMD,
            _anchor("ANCHOR", trace, max_anchor_chars),
        ]
    )


_CMD = r'cmd: "{\"prefix\": \"" ANCHOR "\", \"suffix\": \"" ANCHOR "\"}"'
_PREFIX_OPENS = '"prefix": "'
_SUFFIX_OPENS = '", "suffix": "'


@dataclass(frozen=True)
class Writing:
    """The last command of a (partial) output as far as it is written."""

    prefix: str
    prefix_closed: bool
    suffix: str | None  # None until the suffix opens
    suffix_closed: bool

    @property
    def open(self) -> bool:
        """Whether an anchor is being written (the next token extends or closes it)."""
        return not self.prefix_closed or (self.suffix is not None and not self.suffix_closed)


def last_command(text: str) -> Writing | None:
    """The last command opened in ``text``, an output of the command grammar; None if none.
    A trailing U+FFFD (a character cut between tokens) is dropped from an open anchor."""
    opened = text.rfind(_PREFIX_OPENS)
    if opened < 0:
        return None
    rest = text[opened + len(_PREFIX_OPENS) :]
    if '"' not in rest:
        return Writing(rest.rstrip("\ufffd"), False, None, False)
    prefix = rest[: rest.index('"')]
    if not rest.startswith(_SUFFIX_OPENS, len(prefix)):
        return Writing(prefix, True, None, False)
    suffix = rest[len(prefix) + len(_SUFFIX_OPENS) :]
    if '"' in suffix:
        return Writing(prefix, True, suffix[: suffix.index('"')], True)
    return Writing(prefix, True, suffix.rstrip("\ufffd"), False)


def parse_commands(output: str) -> tuple[AnchorCommand, ...]:
    """The complete commands in a (possibly truncated) grammar-constrained output, in order.

    Anchors cannot contain ``"`` or ``\\``, so the command pattern matches exactly the commands the
    grammar produced; a command cut off by the token budget is dropped.
    """
    return tuple(AnchorCommand(m.group(1), m.group(2)) for m in _COMMAND.finditer(output))


def canonical_json(commands: tuple[AnchorCommand, ...]) -> str:
    """The commands as the JSON text the grammar would produce for them."""
    items = [{"prefix": c.prefix, "suffix": c.suffix} for c in commands]
    return json.dumps(items, ensure_ascii=False)
