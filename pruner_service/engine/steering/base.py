"""The steering interface: one object per decoded row, asked for each token the row writes."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from freelm_pruner_client.anchors import AnchorCommand

from pruner_service.engine.grammar import Writing


@dataclass(frozen=True)
class Step:
    """One decoding step of one row, as a strategy sees it.

    ``token``: the model's greedy token under the grammar. ``writing(t)``: the last command of
    the output with token ``t`` appended (``None`` for the output as it is), or ``None`` when
    no command is open. ``candidates()``: the allowed tokens, best score first."""

    token: int
    writing: Callable[[int | None], Writing | None]
    candidates: Callable[[], Iterator[int]]


class Steering(ABC):
    """What the decoder writes for one row (a trace or one window of it)."""

    ends_list = False
    """Whether commands that ``finish`` leaves out end the list there (the output then counts as
    finished even when the token budget cut it), rather than being dropped from a list that
    goes on."""

    @abstractmethod
    def choose(self, step: Step) -> int | None:
        """The token to write at ``step``; ``None`` ends the row's command list here."""

    def finish(self, commands: Sequence[AnchorCommand]) -> tuple[tuple[AnchorCommand, ...], bool]:
        """The row's final commands from those parsed from its output, and whether any was left
        out (then the output is rewritten as their JSON)."""
        return tuple(commands), False
