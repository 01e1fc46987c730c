"""Deadlines that fit the work: the SDK's default deadline grows with the trace."""

from __future__ import annotations

import pytest
from freelm_pruner_client.client import SECONDS_PER_KCHAR, PrunerClient, scaled_timeout


def test_a_long_trace_gets_a_longer_default_deadline() -> None:
    assert scaled_timeout("", 300.0) == 300.0
    assert scaled_timeout("x" * 100_000, 300.0) == pytest.approx(300.0 + 100 * SECONDS_PER_KCHAR)
    assert scaled_timeout("x" * 2_000_000, 60.0) > 3600.0


class Stop(Exception):
    """Ends the stubbed call once its deadline is seen."""


def test_prune_sends_the_scaled_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[float] = []

    class Stub:
        def Prune(self, request: object, timeout: float, metadata: object = None) -> object:
            seen.append(timeout)
            raise Stop

    client = PrunerClient("127.0.0.1:9", timeout=10.0)
    monkeypatch.setattr(client, "_stub", Stub())
    for trace, explicit in (("x" * 20_000, None), ("x" * 20_000, 5.0)):
        with pytest.raises(Stop):
            client.prune(trace, timeout=explicit)
    client.close()
    assert seen == [pytest.approx(10.0 + 20 * SECONDS_PER_KCHAR), 5.0]
