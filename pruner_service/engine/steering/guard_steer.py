"""``steer``: a token whose command fails the anchor guard gives way to the model's best allowed
token that passes (of the ``CANDIDATES`` best; the model's own if none of them does).

With adapter 1.3.0 and the guard's sentence and paragraph rules (``docs/BENCHMARKS.md``,
bfloat16, 2026-12-01): F1 0.769 / 0.700 / 0.726 on the held-out set and check sets 13 and 17,
but 2.0% / 6.7% / 8.0% of traces lost an essential step (``stop``: 0.0% / 1.3% / 0.7%), as
steered commands go where the model did not mean them."""

from __future__ import annotations

from itertools import islice

from pruner_service.engine.guard import AnchorGuard
from pruner_service.engine.steering.base import Steering, Step

CANDIDATES = 64
"""How many of the best allowed tokens are tried before the model's own is kept."""


class GuardSteer(Steering):
    """Replaces a failing token with the best one that passes."""

    def __init__(self, trace: str, max_anchor_chars: int, question: str = "") -> None:
        self.guard = AnchorGuard(trace, max_anchor_chars, question)

    def choose(self, step: Step) -> int | None:
        writing = step.writing(None)
        if writing is None or not writing.open or self._passes(step, step.token):
            return step.token
        for candidate in islice(step.candidates(), CANDIDATES):
            if candidate != step.token and self._passes(step, candidate):
                return candidate
        return step.token

    def _passes(self, step: Step, token: int) -> bool:
        writing = step.writing(token)
        return writing is not None and self.guard.passes(writing)
