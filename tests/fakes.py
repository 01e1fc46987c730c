"""A fake engine for unit tests of the service, queue and worker (no model)."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from freelm_pruner_client.anchors import AnchorCommand

from pruner_service.domain import PruneRequest
from pruner_service.engine.base import EngineInfo, Proposal

POISON = "POISON"

FAKE_INFO = EngineInfo(
    profile="fake",
    model_id="fake-model",
    adapter_id="",
    adapter_version="",
    template_sha256="0" * 64,
    dtype="float32",
    device="cpu",
    max_context_tokens=1024,
    max_commands=8,
    max_anchor_chars=48,
    note="fake engine",
)


class FakeEngine:
    """Deletes each trace's first sentence; a trace containing POISON crashes any batch it is in.

    ``gate`` (when set) blocks every batch until released, so tests can hold work in flight.
    """

    info = FAKE_INFO

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.gate = gate
        self.batches: list[list[str]] = []
        self.callers: list[str] = []
        self.lock = threading.Lock()

    def propose(self, requests: Sequence[PruneRequest]) -> list[Proposal | Exception]:
        with self.lock:
            self.batches.append([r.request_id for r in requests])
            self.callers += [r.caller for r in requests]
        if self.gate is not None:
            self.gate.wait(10)
        if any(POISON in r.trace for r in requests):
            raise RuntimeError("engine crashed")
        return [self._one(r) for r in requests]

    def _one(self, request: PruneRequest) -> Proposal:
        first = request.trace.split(". ")[0]
        words = first.split()
        commands = (AnchorCommand(words[0], words[-1]),) if len(words) > 1 else ()
        return Proposal(commands, "[]", 10, 5)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [len(t.split()) for t in texts]

    def warmup(self) -> None:
        pass

    @property
    def computed(self) -> list[str]:
        return [rid for batch in self.batches for rid in batch]
