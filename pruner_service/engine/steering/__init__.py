"""Decode-time steering: how the decoder treats a command the anchor guard says cannot resolve.

One strategy per file, all behind ``base.Steering``, chosen by the profile's ``steering``:

- ``none`` (``none.py``): the model's greedy token under the grammar, unjudged;
- ``steer`` (``guard_steer.py``): a failing token gives way to the model's best allowed token
  that passes the guard;
- ``stop`` (``guard_stop.py``): the command list ends before the first command that fails, so
  it only ever takes the model's commands away;
- ``skip`` (``guard_skip.py``, the shipped default): the model writes its list unjudged and each
  failing command is left out, the commands after it kept.

The guard's rules themselves live in ``engine.guard`` (their one home); a strategy only decides
what to do with its verdict. Two older settings were retired, on the figures in
``docs/BENCHMARKS.md`` (held-out set): ``constrain_suffix`` (suffix narrowed to the trace after
its prefix; adapter 1.1.0: F1 0.675 → 0.650, essential violations 18.0% → 19.3%) and
``unique_prefix`` (a prefix held open until unique; 1.1.0: violations 18.0% → 19.3%; with the
later candidate adapter, both together: F1 0.742 → 0.720, violations 4.0% → 6.0%). Both rules
are enforced by the guard instead (rule 2: a closed prefix occurs once; rule 3: a suffix occurs
after its prefix), without writing commands the model did not mean.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum

from pruner_service.engine.steering.base import Steering, Step
from pruner_service.engine.steering.guard_skip import GuardSkip
from pruner_service.engine.steering.guard_steer import GuardSteer
from pruner_service.engine.steering.guard_stop import GuardStop
from pruner_service.engine.steering.none import NoSteering


class SteeringMode(StrEnum):
    """The profile's ``steering`` setting."""

    NONE = "none"
    STEER = "steer"
    STOP = "stop"
    SKIP = "skip"


STRATEGIES: dict[SteeringMode, Callable[[str, int, str], Steering]] = {
    SteeringMode.NONE: NoSteering,
    SteeringMode.STEER: GuardSteer,
    SteeringMode.STOP: GuardStop,
    SteeringMode.SKIP: GuardSkip,
}
"""Each mode's strategy, built per row from (the row's trace, the profile's max_anchor_chars,
the row's question)."""


def steering_for(
    mode: SteeringMode, trace: str, max_anchor_chars: int, question: str = ""
) -> Steering:
    """The strategy of ``mode`` for one row whose trace (or window) is ``trace`` and whose prompt
    holds ``question`` (as the row's prompt has it)."""
    return STRATEGIES[mode](trace, max_anchor_chars, question)


__all__ = ["STRATEGIES", "GuardSkip", "GuardSteer", "GuardStop", "NoSteering", "Steering",
           "SteeringMode", "Step", "steering_for"]  # fmt: skip
