"""``none``: no steering; the model's greedy token under the grammar is written."""

from __future__ import annotations

from pruner_service.engine.steering.base import Steering, Step


class NoSteering(Steering):
    """Writes the model's token, unjudged."""

    def __init__(self, trace: str, max_anchor_chars: int, question: str = "") -> None:
        del trace, max_anchor_chars, question

    def choose(self, step: Step) -> int | None:
        return step.token
