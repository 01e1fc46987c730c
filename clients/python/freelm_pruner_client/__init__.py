"""Thin client of the FreeLM Pruner service: the shared resolver, the loop collapser and stubs."""

from freelm_pruner_client.anchors import (
    AnchorCommand,
    ByteSpan,
    Deletion,
    Protection,
    PruneOutcome,
    ResolvedCommand,
    Source,
    Span,
    Status,
    apply_deletions,
    prune,
    resolve_anchor,
)
from freelm_pruner_client.loop_collapser import loop_spans

__all__ = [
    "AnchorCommand",
    "ByteSpan",
    "Deletion",
    "Protection",
    "PruneOutcome",
    "ResolvedCommand",
    "Source",
    "Span",
    "Status",
    "apply_deletions",
    "loop_spans",
    "prune",
    "resolve_anchor",
]
