"""The engine interface: a batch of requests in, a batch of anchor-command proposals out.

An engine knows the model, the prompt and the grammar. It does not know the anchor semantics (the
worker resolves proposals), the queue or gRPC.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from freelm_pruner_client.anchors import AnchorCommand

from pruner_service.domain import PruneRequest


@dataclass(frozen=True)
class Proposal:
    """The model's commands for one request, with its raw output and token counts."""

    commands: tuple[AnchorCommand, ...]
    raw_output: str
    prompt_tokens: int
    generated_tokens: int
    truncated: bool = False
    """Decoding stopped before the list closed (token budget, or a repeated command), in any
    window; the complete commands are kept and ``raw_output`` is their JSON."""
    question_tokens: int = 0
    """Tokens of the question each prompt used."""
    windows: int = 1
    """Model calls (rows) the trace took: 1 when it fit one prompt."""


@dataclass(frozen=True)
class EngineInfo:
    """What the engine serves, for ``GetModelInfo`` and for every reply."""

    profile: str
    model_id: str
    adapter_id: str
    adapter_version: str
    template_sha256: str
    dtype: str
    device: str
    max_context_tokens: int
    max_commands: int
    max_anchor_chars: int
    note: str
    window_tokens: int = 0
    window_overlap_tokens: int = 0
    question_tokens: int = 0


class Engine(Protocol):
    """Turns a batch of requests into a batch of proposals, in one batched computation (a long
    trace's windows are rows of it)."""

    info: EngineInfo

    def propose(self, requests: Sequence[PruneRequest]) -> list[Proposal | Exception]:
        """One proposal per request, in order; a failing item gets its exception, not the batch."""
        ...

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Token counts of ``texts`` in the model's tokenizer (no special tokens)."""
        ...

    def warmup(self) -> None:
        """Runs one forward pass so the first request does not pay for it."""
        ...
