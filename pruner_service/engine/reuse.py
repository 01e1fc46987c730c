"""Work reused across calls on a growing trace: prompt KV caches and decoded rows.

A sidecar or ``FreeLoop`` prunes the same trace every few hundred tokens, each time a little
longer, so consecutive prompts share their start (template, question, the unchanged head of the
trace). ``PrefixCache`` keeps the KV cache of recent prompts, bounded in bytes (least recently
used first out), and a later prompt starts its prefill from the longest cached start it shares
token for token: any change before a point makes the caches differ there, so nothing past it is
reused. ``RowResults`` keeps the outputs of recently decoded rows by their exact prompt, so an
unchanged window of a long trace is not decoded again.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from threading import Lock
from typing import Any, Generic, TypeVar

import numpy as np
import torch

MIN_REUSED_TOKENS = 16
"""Fewest shared prompt tokens worth starting a prefill from."""

MIN_REUSED_SHARE = 0.5
"""Least share of a prompt that must be cached to start its prefill from the cache. A prefill
that continues a cache needs an explicit causal mask (its queries are not all the keys), and
attention then takes a slower path: a 2,150-token prompt continuing the 150 tokens of the
template it shared with another trace took 0.6-1.0 s longer than a cold prefill (4.9 s against
4.1 s, on the AMD EPYC of docs/BENCHMARKS.md); reusing half or more of the prompt saves time."""

Layers = list[tuple[torch.Tensor, torch.Tensor]]
"""A prompt's KV cache: per layer, keys and values of shape [1, kv heads, tokens, head dim]."""


@dataclass
class _Entry:
    ids: np.ndarray
    layers: Layers
    size: int  # bytes


def _nbytes(layers: Layers) -> int:
    return sum(k.numel() * k.element_size() + v.numel() * v.element_size() for k, v in layers)


def _shared(a: np.ndarray, b: np.ndarray) -> int:
    """Length of the common start of two token id arrays."""
    n = min(len(a), len(b))
    differ = np.flatnonzero(a[:n] != b[:n])
    return int(differ[0]) if differ.size else n


class PrefixCache:
    """KV caches of recent prompts (one row each), at most ``max_bytes`` in all (0: off)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[int, _Entry] = OrderedDict()
        self._lock = Lock()
        self._next = 0
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def longest(self, prompt_ids: Sequence[int]) -> tuple[int, Layers]:
        """The most tokens of ``prompt_ids``' start that a cached prompt shares (at least
        ``MIN_REUSED_TOKENS`` and ``MIN_REUSED_SHARE`` of the prompt, at most all but the last
        token, whose logits a prefill must compute) and their KV cache (views, never written);
        ``(0, [])`` when none does."""
        if not self._entries:
            return 0, []
        ids = np.asarray(prompt_ids, dtype=np.int64)
        best, layers, key = 0, [], None
        with self._lock:
            for k, entry in self._entries.items():
                shared = min(_shared(entry.ids, ids), len(ids) - 1)
                if shared > best:
                    best, layers, key = shared, entry.layers, k
            if key is None or best < max(MIN_REUSED_TOKENS, MIN_REUSED_SHARE * len(ids)):
                return 0, []
            self._entries.move_to_end(key)
        return best, [(k[..., :best, :], v[..., :best, :]) for k, v in layers]

    def fits(self, tokens: int, cache: Any) -> bool:
        """Whether one row of ``tokens`` positions of ``cache`` (a transformers KV cache of any
        batch size) is at most ``max_bytes``: checked before a row is copied out of a batch."""
        if not self.max_bytes:
            return False
        per_token = sum(
            (layer.keys[0, :, 0].numel() * layer.keys.element_size()
             + layer.values[0, :, 0].numel() * layer.values.element_size())
            for layer in cache.layers
        )  # fmt: skip
        return bool(per_token * tokens <= self.max_bytes)

    def store(self, prompt_ids: Sequence[int], layers: Layers) -> None:
        """Keeps ``layers`` (the KV cache of exactly ``prompt_ids``), dropping the caches it
        supersedes (those sharing at least half their prompt with it: earlier versions of a
        growing trace) and then the least recently used beyond ``max_bytes``; one larger than
        ``max_bytes`` alone is not kept."""
        size = _nbytes(layers)
        if size > self.max_bytes:
            return
        ids = np.asarray(prompt_ids, dtype=np.int64)
        with self._lock:
            for key in [
                k for k, e in self._entries.items() if 2 * _shared(e.ids, ids) >= len(e.ids)
            ]:
                self.bytes -= self._entries.pop(key).size
            self._entries[self._next] = _Entry(ids, layers, size)
            self._next += 1
            self.bytes += size
            while self.bytes > self.max_bytes:
                self.bytes -= self._entries.popitem(last=False)[1].size


T = TypeVar("T")


class RowResults(Generic[T]):
    """The results of the last ``max_rows`` decoded rows, by their exact prompt and the
    settings that shape the output (0: off)."""

    def __init__(self, max_rows: int) -> None:
        self.max_rows = max_rows
        self._results: OrderedDict[bytes, T] = OrderedDict()
        self._lock = Lock()

    @staticmethod
    def key(prompt_ids: Sequence[int], *settings: object) -> bytes:
        """A row's key: a hash of its prompt token ids and ``settings``."""
        digest = hashlib.blake2b(np.asarray(prompt_ids, dtype=np.int64).tobytes(), digest_size=16)
        digest.update(repr(settings).encode())
        return digest.digest()

    def get(self, key: bytes) -> T | None:
        with self._lock:
            result = self._results.get(key)
            if result is not None:
                self._results.move_to_end(key)
            return result

    def put(self, key: bytes, result: T) -> None:
        if self.max_rows < 1:
            return
        with self._lock:
            self._results[key] = result
            self._results.move_to_end(key)
            while len(self._results) > self.max_rows:
                self._results.popitem(last=False)
