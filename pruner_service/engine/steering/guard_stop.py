"""``stop``: the command list ends before the first command that fails
the anchor guard, so the commands kept are exactly those the model would have written first.

On the held-out set with adapter 1.3.0 (``docs/BENCHMARKS.md``): commands that resolve 80.1% →
100%, traces with an essential deletion 2.7% → 0%, F1 0.744 → 0.672 (the commands after a
failing one go too)."""

from __future__ import annotations

from collections.abc import Sequence

from freelm_pruner_client.anchors import AnchorCommand

from pruner_service.engine.guard import AnchorGuard
from pruner_service.engine.steering.base import Steering, Step


class GuardStop(Steering):
    """Ends the list at the first command the guard fails."""

    ends_list = True

    def __init__(self, trace: str, max_anchor_chars: int, question: str = "") -> None:
        self.guard = AnchorGuard(trace, max_anchor_chars, question)

    def choose(self, step: Step) -> int | None:
        writing = step.writing(None)
        if writing is None or not writing.open:
            return step.token
        with_token = step.writing(step.token)
        return step.token if with_token is not None and self.guard.passes(with_token) else None

    def finish(self, commands: Sequence[AnchorCommand]) -> tuple[tuple[AnchorCommand, ...], bool]:
        """Also ends the list before a command the grammar closed without the guard judging it
        (a closing forced by the grammar)."""
        passing = self.guard.leading_passes(commands)
        return passing, len(passing) < len(commands)
