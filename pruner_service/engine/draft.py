"""Anchor drafts from the trace: prompt-lookup decoding inside the constrained decode.

Every anchor the grammar lets the model write is a substring of the trace, so once an anchor is
open and has its first characters, the trace text that follows them is a likely continuation.
The decoder feeds its tokens as a draft after the row's chosen tokens in the same forward pass
and keeps the longest prefix that equals its own greedy choice under the grammar and the
steering strategy (``hf.HFEngine._decide``): the output is the plain decode's, in fewer passes
(exactly in float32; in bfloat16 a pass verifying several tokens rounds differently from
single-token passes, and near ties can go the other way).

This is prompt-lookup decoding (A. Saxena, "Prompt Lookup Decoding", 2023; transformers'
``prompt_lookup_num_tokens``) matched on text rather than token n-grams: an anchor's first word
is tokenized without the space or newline it has in the trace (``"Let`` against `` Let``), so
the prompt's tokens rarely line up with the output's, while the text does. Where the anchor
occurs several times, the continuation most of its occurrences share is drafted. After an
anchor's key the space and quote that open the anchor are drafted too (the grammar requires
them, but llguidance's forced tokens stop before them: the tokenizer can also write them merged
with the anchor's first characters).
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from pruner_service.engine.grammar import last_command, writable_head

_WORD = re.compile(r"\s*\S+")

ANCHOR_KEY_END = '":'
"""How the output ends after an anchor's key (``"prefix":``, ``"suffix":``)."""

ANCHOR_OPENS = ' "'
"""What the grammar writes after an anchor's key, before the anchor."""

MAX_OCCURRENCES = 256
"""Most occurrences of an anchor compared to choose a continuation (the first ones)."""

MAX_WORDS = 8
"""Most words of the continuations compared (each word narrows the occurrences kept)."""


class AnchorLookup:
    """Drafts for one row: tokens of the trace text after the anchor being written."""

    def __init__(self, trace: str, tokenizer: Any, max_anchor_chars: int) -> None:
        self.trace = trace
        self.tokenizer = tokenizer
        self.max_anchor_chars = max_anchor_chars
        self._opening: list[int] = tokenizer(ANCHOR_OPENS, add_special_tokens=False)["input_ids"]

    def draft(self, output: str, size: int) -> list[int]:
        """At most ``size`` tokens for the output to continue with: after an anchor's key
        (``"prefix":``), the ``"`` that opens it; in an open anchor, the trace text that
        follows it. Empty elsewhere, for an anchor still empty or not in the trace."""
        if size < 1:
            return []
        writing = last_command(output)
        if output.endswith(ANCHOR_KEY_END) and (writing is None or not writing.open):
            return self._opening[:size]
        if writing is None or not writing.open:
            return []
        anchor = writing.prefix if not writing.prefix_closed else writing.suffix or ""
        room = self.max_anchor_chars - len(anchor)
        if not anchor or room < 1:
            return []
        start = self._continuation(anchor)
        if start is None:
            return []
        text = writable_head(self.trace, start, room)
        ids: list[int] = self.tokenizer(text, add_special_tokens=False)["input_ids"] if text else []
        return ids[:size]

    def _continuation(self, anchor: str) -> int | None:
        """Where the chosen occurrence of ``anchor`` ends in the trace (code points): of its
        occurrences (those starting a word, if any do), those sharing the most common next
        word, then the most common word after that, and so on (``MAX_WORDS``); the first of
        those left. None when it does not occur."""
        ends: list[int] = []
        found = self.trace.find(anchor)
        while found >= 0 and len(ends) < MAX_OCCURRENCES:
            ends.append(found + len(anchor))
            found = self.trace.find(anchor, found + 1)
        starts = [end - len(anchor) for end in ends]
        bounded = [
            e
            for s, e in zip(starts, ends, strict=True)
            if s == 0 or not self.trace[s - 1].isalnum()
        ]
        ends = bounded or ends  # an anchor mostly starts where a word does
        if len(ends) < 2:
            return ends[0] if ends else None
        words = {end: _WORD.findall(self.trace, end, end + self.max_anchor_chars) for end in ends}
        for depth in range(MAX_WORDS):
            counts = Counter(tuple(words[end][: depth + 1]) for end in ends)
            common = counts.most_common(1)[0][0]
            ends = [end for end in ends if tuple(words[end][: depth + 1]) == common]
            if len(ends) == 1:
                break
        return ends[0]
