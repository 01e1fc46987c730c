"""``skip``: the model writes its command list unjudged, and every command that fails the anchor
guard is left out of it; the commands after a failing one are kept (``stop`` ends the list
there). The decode is ``none``'s token for token, so the commands kept are exactly the model's
own that resolve to whole sentences within one paragraph.

With adapter 1.3.0 (``docs/BENCHMARKS.md``, bfloat16, 2026-12-01): F1 0.739 / 0.710 / 0.737 on
the held-out set and check sets 13 and 17 (``stop``: 0.649 / 0.658 / 0.670), traces with an
essential deletion 0.7% / 2.0% / 1.3% (``stop``: 0.0% / 0.7% / 0.0%); on a fresh set (seed 29)
F1 0.694 and 3.3%."""

from __future__ import annotations

from collections.abc import Sequence

from freelm_pruner_client.anchors import AnchorCommand

from pruner_service.engine.guard import AnchorGuard
from pruner_service.engine.steering.base import Steering, Step


class GuardSkip(Steering):
    """Leaves out each command the guard fails, keeping the rest of the list."""

    def __init__(self, trace: str, max_anchor_chars: int, question: str = "") -> None:
        self.guard = AnchorGuard(trace, max_anchor_chars, question)

    def choose(self, step: Step) -> int | None:
        return step.token

    def finish(self, commands: Sequence[AnchorCommand]) -> tuple[tuple[AnchorCommand, ...], bool]:
        """The commands that pass the guard, in order; cut when any was left out."""
        passing = self.guard.passing(commands)
        return passing, len(passing) < len(commands)
