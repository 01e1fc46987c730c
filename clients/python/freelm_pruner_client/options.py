"""The one type of a request's pruning options: its defaults and its validation.

The server, the command lines, ``FreeLoop``, ``synth`` and the resolver all take their defaults
from ``PruneOptions`` and validate with ``PruneOptions.check``; the proto's ``PruneOptions``
leaves a field unset to mean "the server's default", which is this type's default.
The resolver sees the options through ``protection()`` (``anchors.Protection``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields

from freelm_pruner_client.anchors import Protection, check_limits

DEFAULT_MAX_DELETE_FRACTION = 0.6
"""The default safety limit: the model's deletions may remove at most this fraction of a trace
beyond the loop copies."""

DEFAULT_MAX_COMMANDS = 8
"""The default number of commands a request lets the model write."""


@dataclass(frozen=True)
class PruneOptions:
    """Per-request options (field names and meanings as the proto's ``PruneOptions``).

    ``frozen_prefix_chars`` and ``protect_tail_chars`` are code points;
    ``max_delete_fraction`` is a fraction of the trace's code points in (0, 1].
    """

    frozen_prefix_chars: int = 0
    protect_tail_chars: int = 0
    max_delete_fraction: float = DEFAULT_MAX_DELETE_FRACTION
    max_commands: int = DEFAULT_MAX_COMMANDS
    return_pruned_trace: bool = True
    collapse_loops: bool = True
    protect_last_sentence: bool = True
    protect_results: bool = True

    def check(self, max_commands_limit: int | None = None) -> None:
        """Raises ``ValueError`` naming the first invalid field (``options.NAME must be …,
        got …``); ``max_commands_limit`` is the server's bound on ``max_commands``."""
        check_limits(self.frozen_prefix_chars, self.protect_tail_chars, self.max_delete_fraction)
        if max_commands_limit is None:
            if self.max_commands < 0:
                raise ValueError(f"options.max_commands must be >= 0, got {self.max_commands}")
        elif not 0 <= self.max_commands <= max_commands_limit:
            raise ValueError(
                f"options.max_commands must be in [0, {max_commands_limit}], "
                f"got {self.max_commands}"
            )

    def protection(self) -> Protection:
        """The resolver's view of these options."""
        return Protection(
            self.frozen_prefix_chars,
            self.protect_tail_chars,
            self.max_delete_fraction,
            self.protect_last_sentence,
            self.protect_results,
        )

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The option names, in the proto's field order."""
        return tuple(f.name for f in fields(cls))


def as_flag_message(error: ValueError) -> str:
    """``check``'s message with each ``options.NAME`` written as the flag ``--name`` (for the
    command lines that take these options as flags)."""
    return re.sub(r"options\.(\w+)", lambda m: "--" + m.group(1).replace("_", "-"), str(error))
