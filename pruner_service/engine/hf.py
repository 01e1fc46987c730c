"""The transformers engine: batched prefill and greedy decoding under the command grammar.

A request whose prompt fits the model's context is one row, unless its trace has more than the
profile's ``window_tokens`` (when set: ``serve --window-tokens``). A longer one is cleaned in
windows (``windows.split``): each window of the trace is a row with the question bounded to the
profile's ``question_tokens`` (its start and end), and its commands carry the window as their
scope. Rows are decoded in groups whose padded KV cache holds at most ``max_batch_tokens``
positions (plus, per row, up to ``MAX_HOLES`` masked positions of rejected drafts and one step's
tokens), which bounds its memory whatever the trace's length.

Rows of one group are left-padded into one tensor and decoded together with a KV cache; at
every step each row's logits are masked by its own grammar matcher (llguidance), so each output
is a valid command list whose anchors are substrings of that row's trace, and each token is
passed through the row's steering strategy (the profile's ``steering``, see ``steering``).
"""

from __future__ import annotations

import inspect
import json
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import llguidance
import llguidance.hf
import numpy as np
import structlog
import torch
from freelm_pruner_client.anchors import AnchorCommand, Span
from llguidance.torch import allocate_token_bitmask, fill_next_token_bitmask
from transformers import DynamicCache

from pruner_service.domain import PruneOptions, PruneRequest
from pruner_service.engine.base import Proposal
from pruner_service.engine.draft import AnchorLookup
from pruner_service.engine.grammar import (
    Writing,
    canonical_json,
    command_grammar,
    last_command,
    parse_commands,
)
from pruner_service.engine.load import LoadedModel
from pruner_service.engine.profile import WINDOW_MARGIN, Profile, describe
from pruner_service.engine.prompt import render_prompt
from pruner_service.engine.reuse import Layers, PrefixCache, RowResults
from pruner_service.engine.steering import NoSteering, Steering, Step, steering_for
from pruner_service.engine.steering.guard_steer import CANDIDATES
from pruner_service.engine.windows import split, token_starts
from pruner_service.errors import InvalidArgument

log = structlog.get_logger(__name__)


def _cache_argument(model: Any) -> str:
    """The KV-cache keyword of ``model.forward``: ``cache`` in newer transformers, else the old."""
    parameters = inspect.signature(model.forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"


def _tokens_containing(tokenizer: Any, text: str) -> dict[int, str]:
    """The tokens whose text contains ``text``: id → the token's text before it."""
    heads = {}
    for i in range(len(tokenizer)):
        token = tokenizer.decode([i], skip_special_tokens=True)
        if text in token:
            heads[i] = token[: token.index(text)]
    return heads


def _cache_of(layers: Layers) -> DynamicCache:
    """A KV cache holding ``layers`` (per layer, keys and values [rows, heads, positions, dim])."""
    cache = DynamicCache()
    for index, (keys, values) in enumerate(layers):
        cache.update(keys, values, index)
    return cache


def _merge_caches(caches: list[Any], width: int) -> DynamicCache:
    """One batch cache from single-row caches, each left-padded with zeros to ``width``."""
    layers = []
    for index in range(len(caches[0].layers)):
        keys, values = [], []
        for cache in caches:
            layer = cache.layers[index]
            pad = (0, 0, width - layer.keys.shape[-2], 0)
            keys.append(torch.nn.functional.pad(layer.keys, pad))
            values.append(torch.nn.functional.pad(layer.values, pad))
        layers.append((torch.cat(keys), torch.cat(values)))
    return _cache_of(layers)


MAX_HOLES = 64
"""Most masked positions (draft tokens one row rejected while another kept its own, padding)
the batch's KV cache holds beyond its longest row before it is compacted (``_compact``)."""


def _compact(cache: Any, attention: torch.Tensor) -> torch.Tensor:
    """Keeps only each row's unmasked positions in ``cache`` (in order, left-padded to the row
    with the most) and returns the matching attention mask [rows, positions]. Position ids are
    passed explicitly, so rows go on from where they were."""
    keep = attention.bool()
    width = int(keep.sum(dim=1).max())
    index = torch.zeros((keep.shape[0], width), dtype=torch.long, device=attention.device)
    mask = torch.zeros((keep.shape[0], width), dtype=attention.dtype, device=attention.device)
    for i in range(keep.shape[0]):
        columns = keep[i].nonzero().squeeze(1)
        index[i, width - columns.numel() :] = columns
        mask[i, width - columns.numel() :] = 1
    for layer in cache.layers:
        gather = index[:, None, :, None].expand(-1, layer.keys.shape[1], -1, layer.keys.shape[3])
        layer.keys = layer.keys.gather(2, gather)
        layer.values = layer.values.gather(2, gather)
    return mask


def _scoped_json(command: AnchorCommand) -> dict[str, Any]:
    item: dict[str, Any] = {"prefix": command.prefix, "suffix": command.suffix}
    if command.scope is not None:
        item["scope"] = [command.scope.start, command.scope.end]
    return item


def _unique(commands: tuple[AnchorCommand, ...]) -> tuple[AnchorCommand, ...]:
    """``commands`` without repeats, first occurrence kept."""
    return tuple(dict.fromkeys(commands))


@dataclass
class _Row:
    """Decoding state of one request in a batch."""

    prompt_ids: list[int]
    matcher: Any
    generated: list[int] = field(default_factory=list)
    done: bool = False
    repeated: bool = False
    steering: Steering = field(default_factory=lambda: NoSteering("", 1))
    cut: bool = False  # the steering strategy ended the command list (``stop``)
    lookup: AnchorLookup | None = None  # drafts from the trace; None: no drafting


@dataclass(frozen=True)
class _Spec:
    """What one row is built from, when its group is decoded (a row's grammar matcher and
    guard are built then and dropped after, so a long trace's windows never all hold theirs)."""

    prompt_ids: list[int]
    text: str
    max_commands: int
    window: Span | None = None
    question: str = ""
    """The request's whole question, which the row's anchor guard reads (a windowed row's
    prompt may hold a bounded one)."""


@dataclass
class _Plan:
    """One request's rows: the whole trace in one, or one per window."""

    specs: list[_Spec]
    question_tokens: int
    windowed: bool


QUESTION_JOINER = "\n[…]\n"
"""Joins the start and end of a question longer than the profile's ``question_tokens``."""

QUESTION_HEAD = 0.75
"""The share of ``question_tokens`` given to the question's start (the rest to its end)."""


class HFEngine:
    """An ``Engine`` over a transformers causal LM with the Free-Module already merged."""

    def __init__(
        self,
        loaded: LoadedModel,
        profile: Profile,
        max_new_tokens: int = 0,
        prefix_cache_bytes: int = 0,
        reused_rows: int = 0,
    ) -> None:
        """``prefix_cache_bytes``: most bytes of prompt KV caches kept for later prompts that
        start the same way; ``reused_rows``: most decoded rows whose results are kept for an
        identical later row (``reuse``; 0: off, each)."""
        self.model = loaded.model
        self.tokenizer = loaded.tokenizer
        self.device = loaded.device
        self.profile = profile
        self.max_new_tokens = max_new_tokens or profile.max_new_tokens
        self.ll_tokenizer = llguidance.hf.from_tokenizer(self.tokenizer)
        self._cache_arg = _cache_argument(self.model)
        self._closing_tokens = _tokens_containing(self.tokenizer, "}")
        self.prefill_rows_separately = self.device.type == "cpu"
        self.jump_forward = profile.jump_forward
        self.draft_tokens = profile.draft_tokens
        self.max_holes = MAX_HOLES
        self.forward_passes = 0
        """Forward passes run since the engine was built (prefills and decode steps)."""
        self.steering = profile.steering
        self._guard_window = 2 * profile.max_anchor_chars + 32  # tokens: a whole command
        self.pad_id = self.tokenizer.pad_token_id
        if self.pad_id is None:
            self.pad_id = self.tokenizer.eos_token_id
        overhead = (
            len(self._tokens(render_prompt(profile.template, "", ""))) + profile.question_tokens
        )
        dtype = str(loaded.dtype).removeprefix("torch.")
        served = replace(profile, max_new_tokens=self.max_new_tokens, dtype=dtype)
        self.info = describe(served, loaded.adapter, str(self.device), overhead)
        self.prefix_cache = PrefixCache(prefix_cache_bytes)
        self.row_results: RowResults[Proposal] = RowResults(reused_rows)
        self.progress: Callable[[int, int], None] | None = None
        """Called after each group of rows with (rows decoded, rows of the call) when set."""

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Token counts of ``texts`` (no special tokens)."""
        encoded = self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]
        return [len(ids) for ids in encoded]

    def warmup(self) -> None:
        """One short constrained decode: a real forward pass through the whole path."""
        request = PruneRequest("warmup", "Let me think. So the answer is 4.", "", PruneOptions())
        result = self.propose([request], max_new_tokens=4)[0]
        if isinstance(result, Exception):
            raise result

    def propose(
        self, requests: Sequence[PruneRequest], max_new_tokens: int = 0
    ) -> list[Proposal | Exception]:
        """Decodes all requests' rows (a long trace's windows included) in groups of rows; a
        row decoded before with the same prompt and settings is taken from ``row_results``.
        Per-item errors are returned in place."""
        plans: list[_Plan | Exception] = []
        for request in requests:
            try:
                plans.append(self._plan(request))
            except InvalidArgument as exc:
                plans.append(exc)
        specs = [(i, spec) for i, plan in enumerate(plans) if isinstance(plan, _Plan)
                 for spec in plan.specs]  # fmt: skip
        budget = max_new_tokens or self.max_new_tokens
        keys = [self._row_key(spec, budget) for _, spec in specs]
        results = [self.row_results.get(key) for key in keys]
        todo = [(k, spec) for k, (_, spec) in enumerate(specs) if results[k] is None]
        done = len(specs) - len(todo)
        for group in self._groups(todo, budget):
            for k, proposal in self._decode_group(group, specs, plans, budget):
                results[k] = proposal
                self.row_results.put(keys[k], proposal)
            done += len(group)
            if self.progress is not None:
                self.progress(done, len(specs))
        parts: dict[int, list[Proposal]] = {i: [] for i, _ in specs}
        for (owner, _), result in zip(specs, results, strict=True):
            if result is not None:
                parts[owner].append(result)
        return [
            plan if isinstance(plan, Exception) else self._combine(plan, parts[i])
            for i, plan in enumerate(plans)
        ]

    def _row_key(self, spec: _Spec, budget: int) -> bytes:
        """The row's key for ``row_results``: its prompt, and its trace text (the grammar's
        anchors come from it: two requests can render the same prompt from a different split
        of question and trace), its command limit, the budget, the steering and the question
        its guard reads (a windowed row's prompt holds a bounded one)."""
        return RowResults.key(
            spec.prompt_ids, spec.text, spec.max_commands, budget, self.steering, spec.question
        )

    def _decode_group(
        self,
        group: list[tuple[int, _Spec]],
        specs: list[tuple[int, _Spec]],
        plans: list[_Plan | Exception],
        budget: int,
    ) -> list[tuple[int, Proposal]]:
        """Decodes one group of rows (``group``: index into ``specs``, spec); a row that cannot
        be built makes its request's plan the error (``plans`` is updated)."""
        rows, indices = [], []
        for k, spec in group:
            owner = specs[k][0]
            try:
                if not isinstance(plans[owner], Exception):
                    rows.append(self._row(spec))
                    indices.append(k)
            except InvalidArgument as exc:
                plans[owner] = exc
        started = time.perf_counter()
        if rows:
            self._decode(rows, budget)
        log.debug("rows_decoded", rows=len(rows), ms=(time.perf_counter() - started) * 1e3)
        return [(k, self._proposal(row)) for k, row in zip(indices, rows, strict=True)]

    def _groups(
        self, specs: list[tuple[int, _Spec]], max_new_tokens: int
    ) -> list[list[tuple[int, _Spec]]]:
        """``specs`` in order, in groups whose KV cache holds at most ``max_batch_tokens``
        positions: the rows times (the longest prompt + ``max_new_tokens``), as a group is
        left-padded to its longest row (a row longer than that is a group of its own)."""
        limit = self.profile.max_batch_tokens or self.profile.context_tokens
        groups: list[list[tuple[int, _Spec]]] = []
        width = 0
        for item in specs:
            length = len(item[1].prompt_ids) + max_new_tokens
            wider = max(width, length)
            if not groups or (len(groups[-1]) + 1) * wider > limit:
                groups.append([])
                wider = length
            groups[-1].append(item)
            width = wider
        return groups

    def _combine(self, plan: _Plan, parts: list[Proposal]) -> Proposal:
        """One request's proposal from its rows: a windowed request's commands carry their
        window as scope, and its raw output is their JSON list, each command with its
        ``"scope": [start, end]``."""
        if not plan.windowed:
            return replace(parts[0], question_tokens=plan.question_tokens)
        commands = tuple(
            AnchorCommand(c.prefix, c.suffix, spec.window)
            for spec, part in zip(plan.specs, parts, strict=True)
            if spec.window is not None
            for c in part.commands
        )
        return Proposal(
            commands,
            json.dumps([_scoped_json(c) for c in commands], ensure_ascii=False),
            sum(part.prompt_tokens for part in parts),
            sum(part.generated_tokens for part in parts),
            truncated=any(part.truncated for part in parts),
            question_tokens=plan.question_tokens,
            windows=len(parts),
        )

    def _proposal(self, row: _Row) -> Proposal:
        """The row's commands; an output cut by the budget, a repeat or the stopping guard, or
        one whose commands the steering left out (``skip``), is written again as valid JSON.
        Stopping, the list also ends before any command that fails the guard without the guard
        having judged it (a closing the grammar forced); skipping, the output is truncated when
        the budget cut it, whatever was left out."""
        text = self.tokenizer.decode(row.generated, skip_special_tokens=True)
        commands, left_out = row.steering.finish(_unique(parse_commands(text)))
        row.cut = row.cut or (left_out and row.steering.ends_list)
        finished = (row.matcher.is_stopped() or row.cut) and not row.repeated
        whole = row.matcher.is_stopped() and not row.cut and not left_out and not row.repeated
        return Proposal(
            commands,
            text if whole else canonical_json(commands),
            len(row.prompt_ids),
            len(row.generated),
            truncated=not finished,
        )

    def _tokens(self, text: str) -> list[int]:
        ids: list[int] = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return ids

    def _plan(self, request: PruneRequest) -> _Plan:
        """The request's rows: one when its whole prompt fits the context and its trace has at
        most the profile's ``window_tokens`` tokens (when set), exactly as a short trace always
        was; else one per window. Raises ``InvalidArgument`` when a row cannot be built."""
        budget = self.profile.context_tokens - self.max_new_tokens
        max_commands = max(min(request.options.max_commands, self.profile.max_commands), 1)
        prompt = render_prompt(self.profile.template, request.trace, request.question)
        cap = self.profile.window_tokens
        if len(prompt) <= 32 * budget and not (cap and len(self._tokens(request.trace)) > cap):
            ids = self._tokens(prompt)
            if len(ids) <= budget:
                spec = _Spec(ids, request.trace, max_commands, question=request.question)
                return _Plan([spec], len(self._tokens(request.question)), windowed=False)
        question, question_tokens = self._bounded_question(request.question)
        overhead = len(self._tokens(render_prompt(self.profile.template, "", question)))
        size = min(self.info.window_tokens, budget - overhead - WINDOW_MARGIN)
        if size < 1:
            raise InvalidArgument(f"the prompt template and question take {overhead} tokens of "
                                  f"the {budget} the model has for a prompt")  # fmt: skip
        specs = []
        for window in self.windows(request.trace, size):
            specs += [
                replace(spec, question=request.question)
                for spec in self._window_specs(
                    request.trace, window, question, max_commands, size
                )
            ]
        return _Plan(specs, question_tokens, windowed=True)

    def windows(self, trace: str, size: int) -> list[Span]:
        """``trace`` split into windows of at most ``size`` tokens (``windows.split``, with the
        profile's overlap)."""
        overlap = min(self.profile.window_overlap_tokens, max(size // 2 - 1, 0))
        return split(trace, self._token_starts(trace), size, overlap)

    def _token_starts(self, text: str) -> list[int]:
        return token_starts(self.tokenizer, text)

    def _window_specs(
        self, trace: str, window: Span, question: str, max_commands: int, size: int
    ) -> list[_Spec]:
        """The row of ``window`` (none when it is only whitespace); a window whose prompt
        re-tokenizes past the context's prompt budget is split again, smaller, until each fits."""
        text = trace[window.start : window.end]
        if not text.strip():
            return []
        ids = self._tokens(render_prompt(self.profile.template, text, question))
        budget = self.profile.context_tokens - self.max_new_tokens
        if len(ids) <= budget:
            return [_Spec(ids, text, max_commands, window)]  # _plan adds the whole question
        smaller = size - (len(ids) - budget) - WINDOW_MARGIN
        if smaller < 1 or len(text) < 2:
            raise InvalidArgument(f"a window of the trace takes {len(ids)} prompt tokens; the "
                                  f"model has {budget}")  # fmt: skip
        specs = []
        for part in split(text, self._token_starts(text), smaller):
            inner = Span(window.start + part.start, window.start + part.end)
            specs += self._window_specs(trace, inner, question, max_commands, smaller)
        return specs

    def _bounded_question(self, question: str) -> tuple[str, int]:
        """The question a windowed prompt uses and its token count: the whole question when it
        has at most ``question_tokens`` tokens, else its start (``QUESTION_HEAD`` of the budget
        left after the joiner) and its end, joined by ``QUESTION_JOINER``; never more than
        ``question_tokens`` tokens."""
        limit = self.profile.question_tokens
        if not question.strip() or limit == 0:
            return "", 0
        ids = self._tokens(question)
        if len(ids) <= limit:
            return question, len(ids)
        room = limit - len(self._tokens(QUESTION_JOINER)) - 2  # decoding can merge at the seams
        while room > 0:
            head = int(room * QUESTION_HEAD)
            tail = ids[len(ids) - (room - head) :] if room > head else []
            text = self.tokenizer.decode(ids[:head]) + QUESTION_JOINER + self.tokenizer.decode(tail)
            count = len(self._tokens(text))
            if count <= limit:
                return text, count
            room -= count - limit
        return "", 0

    def _row(self, spec: _Spec) -> _Row:
        grammar = command_grammar(spec.text, spec.max_commands, self.profile.max_anchor_chars)
        matcher = self._matcher(grammar)
        if matcher.is_error():
            raise InvalidArgument(f"cannot build the output grammar: {matcher.get_error()}")
        steering = steering_for(
            self.steering, spec.text, self.profile.max_anchor_chars, spec.question
        )
        lookup = (
            AnchorLookup(spec.text, self.tokenizer, self.profile.max_anchor_chars)
            if self.draft_tokens
            else None
        )
        return _Row(spec.prompt_ids, matcher, steering=steering, lookup=lookup)

    def _matcher(self, grammar: str) -> Any:
        return llguidance.LLMatcher(
            self.ll_tokenizer, llguidance.LLMatcher.grammar_from_lark(grammar), log_level=0
        )

    @torch.inference_mode()
    def _decode(self, rows: list[_Row], max_new_tokens: int) -> None:
        """Decodes ``rows`` together until each is done. Each forward feeds every row's chosen
        and forced tokens, then its draft (``draft.AnchorLookup``); the draft tokens that equal
        the row's own choices are kept and the others are masked out of the cache (cut off it
        when no row keeps them), so each row's output is the plain decode's (exactly in
        float32)."""
        cache, logits, attention, positions = self._prefill(rows)
        bitmask = allocate_token_bitmask(len(rows), self.ll_tokenizer.vocab_size)
        pending = [self._decide(row, i, logits[i : i + 1], [], bitmask, max_new_tokens)[0]
                   for i, row in enumerate(rows)]  # fmt: skip
        while not all(r.done for r in rows):
            drafts = [self._draft(row, max_new_tokens) for row in rows]
            chunks = [fed + draft for fed, draft in zip(pending, drafts, strict=True)]
            ids, chunk_mask, chunk_positions = self._chunk(chunks, positions)
            attention = torch.cat([attention, chunk_mask], dim=1)
            keep = 1 + max(len(d) for d in drafts)
            out = self._forward(ids, attention, chunk_positions, cache, keep)
            rejected = []
            for i, row in enumerate(rows):
                if row.done:
                    pending[i] = [self.pad_id]
                    rejected.append(len(chunks[i]))
                    continue
                scores = out.logits[i, keep - 1 - len(drafts[i]) :]
                pending[i], kept = self._decide(row, i, scores, drafts[i], bitmask, max_new_tokens)
                rejected.append(len(drafts[i]) - kept)
            positions = positions + chunk_mask.sum(dim=1, keepdim=True)
            positions -= torch.tensor(rejected, device=self.device).unsqueeze(1)
            attention = self._drop_rejected(attention, cache, rejected)
            if attention.shape[1] - int(attention.sum(dim=1).max()) > self.max_holes:
                attention = _compact(cache, attention)

    def _draft(self, row: _Row, budget: int) -> list[int]:
        """The row's draft for the next forward: trace tokens that may continue its anchor."""
        size = min(self.draft_tokens, budget - len(row.generated))
        if row.done or row.lookup is None or size < 1:
            return []
        text = self.tokenizer.decode(row.generated[-self._guard_window :], skip_special_tokens=True)
        if text.endswith("\ufffd"):  # a character cut between tokens: the text is not aligned
            return []
        return row.lookup.draft(text, size)

    def _drop_rejected(
        self, attention: torch.Tensor, cache: Any, rejected: list[int]
    ) -> torch.Tensor:
        """The attention mask with each row's last ``rejected`` positions masked out; the
        positions no row keeps are cut off the mask and the KV cache."""
        for i, count in enumerate(rejected):
            if count:
                attention[i, attention.shape[1] - count :] = 0
        common = min(rejected)
        if common:
            for layer in cache.layers:
                layer.keys = layer.keys[..., :-common, :]
                layer.values = layer.values[..., :-common, :]
            attention = attention[:, :-common]
        return attention

    def _decide(
        self,
        row: _Row,
        i: int,
        logits: torch.Tensor,
        draft: list[int],
        bitmask: torch.Tensor,
        budget: int,
    ) -> tuple[list[int], int]:
        """The row's next tokens to feed and how many of ``draft`` it keeps. ``logits``: the
        scores after the row's last fed token, then after each draft token ([len(draft) + 1,
        vocab]). Each choice is the greedy token under the grammar and the steering; a draft
        token equal to it is kept and the next choice read after it."""
        for j, scores in enumerate(logits):
            token = self._pick(row, i, scores, bitmask)
            if row.done:  # the steering ended the list
                return [self.pad_id], j
            fed = self._advance(row, token, budget)
            drafted = j < len(draft) and token == draft[j]
            if not drafted:
                return fed, j
            if row.done or len(fed) > 1:  # forced tokens follow: fed after the kept ones
                return (fed[1:] if not row.done else [self.pad_id]), j + 1
        raise AssertionError("a decision after the last draft token always returns")

    def _chunk(
        self, chunks: list[list[int]], positions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One step's input: each row's new tokens, left-padded (mask 0) to the longest row,
        with each real token's position continuing its row."""
        ids, mask = self._left_pad(chunks)
        steps = (mask.cumsum(dim=1) - 1).clamp(min=0)
        return ids, mask, positions + steps

    def _forward(
        self,
        input_ids: torch.Tensor,
        attention: torch.Tensor,
        positions: torch.Tensor | None,
        cache: Any,
        keep: int = 1,
    ) -> Any:
        """One forward pass; the logits of the last ``keep`` positions."""
        self.forward_passes += 1
        return self.model(
            input_ids=input_ids,
            attention_mask=attention,
            position_ids=positions,
            use_cache=True,
            logits_to_keep=keep,
            **{self._cache_arg: cache},
        )

    def _prefill(self, rows: list[_Row]) -> tuple[Any, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The batch's KV cache, last-position logits, attention mask and next positions.

        On an accelerator the prompts run as one left-padded forward, unless a row can start
        from a cached prompt's KV cache (``prefix_cache``). On a CPU, prefill is compute-bound:
        a batch of 4 equal 2k-token prompts took 11% longer than the same prompts one by one,
        and a padding mask moves attention to a path about 50% slower. So there each prompt is
        prefilled alone and the caches are merged, left-padded, for the batched decode, which
        is where batching pays (decode reads all weights once per step, for every row).
        """
        lengths = [len(r.prompt_ids) for r in rows]
        input_ids, attention = self._left_pad([r.prompt_ids for r in rows])
        next_positions = torch.tensor(lengths, device=self.device).unsqueeze(1)
        hits = [self.prefix_cache.longest(r.prompt_ids) for r in rows]
        if not self.prefill_rows_separately and not any(shared for shared, _ in hits):
            positions = (attention.cumsum(-1) - 1).clamp(min=0)
            out = self._forward(input_ids, attention, positions, None)
            cache = getattr(out, self._cache_arg)
            for i, row in enumerate(rows):
                self._keep_prefix(row.prompt_ids, cache, i, attention.shape[1] - lengths[i])
            return cache, out.logits[:, -1, :], attention, next_positions
        caches, logits = [], []
        for row, (shared, layers) in zip(rows, hits, strict=True):
            cache, last = self._prefill_row(row.prompt_ids, shared, layers)
            caches.append(cache)
            logits.append(last)
        if len(rows) == 1:
            return caches[0], logits[0], attention, next_positions
        return _merge_caches(caches, max(lengths)), torch.cat(logits), attention, next_positions

    def _prefill_row(self, prompt_ids: list[int], shared: int, layers: Layers) -> tuple[Any, Any]:
        """One prompt's KV cache and last logits, computed from its ``shared`` first tokens'
        cached ``layers`` on (all of it when ``shared`` is 0)."""
        cache = None
        positions = None
        if shared:
            cache = _cache_of(layers)
            positions = torch.arange(shared, len(prompt_ids), device=self.device).unsqueeze(0)
        ids = torch.tensor([prompt_ids[shared:]], device=self.device)
        mask = torch.ones((1, len(prompt_ids)), dtype=torch.long, device=self.device)
        out = self._forward(ids, mask, positions, cache)
        cache = getattr(out, self._cache_arg)
        self._keep_prefix(prompt_ids, cache)
        return cache, out.logits[:, -1, :]

    def _keep_prefix(self, prompt_ids: list[int], cache: Any, row: int = 0, pad: int = 0) -> None:
        """Keeps row ``row`` of ``cache`` (after ``pad`` left-padding positions) for later
        prompts that start like ``prompt_ids``; a row of a batch is copied out of it."""
        if not self.prefix_cache.fits(len(prompt_ids), cache):
            return
        whole = cache.layers[0].keys.shape[0] == 1

        def own(tensor: torch.Tensor) -> torch.Tensor:
            return tensor if whole else tensor[row : row + 1, :, pad:].clone()

        self.prefix_cache.store(prompt_ids, [(own(x.keys), own(x.values)) for x in cache.layers])

    def _pick(self, row: _Row, i: int, logits: torch.Tensor, bitmask: torch.Tensor) -> int:
        """The row's greedy token under its grammar (``logits``: [vocab]), passed through its
        steering strategy (a pad, with ``row.done``, when the strategy ends the list)."""
        fill_next_token_bitmask(row.matcher, bitmask, i)
        allowed = np.unpackbits(bitmask[i].numpy().view(np.uint8), bitorder="little")
        scores = logits.float().cpu().clone()
        vocab = min(scores.shape[0], allowed.shape[0])
        scores[vocab:] = float("-inf")
        scores[:vocab].masked_fill_(torch.from_numpy(allowed[:vocab] == 0), float("-inf"))
        return self._steered(row, scores, int(scores.argmax()))

    def _steered(self, row: _Row, scores: torch.Tensor, token: int) -> int:
        """The token the row's steering strategy writes instead of ``token`` (the greedy one);
        a pad when it ends the command list (``row.done``, ``row.cut``)."""
        if isinstance(row.steering, NoSteering):
            return token
        window = row.generated[-self._guard_window :]

        def writing(extra: int | None) -> Writing | None:
            ids = window if extra is None else [*window, extra]
            return last_command(self.tokenizer.decode(ids, skip_special_tokens=True))

        def candidates() -> Iterator[int]:
            ranked = torch.topk(scores, k=min(CANDIDATES, scores.shape[0]))
            for score, candidate in zip(ranked.values.tolist(), ranked.indices.tolist(),
                                        strict=True):  # fmt: skip
                if score == float("-inf"):
                    return
                yield int(candidate)

        chosen = row.steering.choose(Step(token, writing, candidates))
        if chosen is None:
            row.done = row.cut = True
            return int(self.pad_id)
        return chosen

    def _advance(self, row: _Row, token: int, budget: int) -> list[int]:
        """Consumes ``token`` (and any forced tokens) into ``row``; returns the tokens to feed."""
        if token == self.tokenizer.eos_token_id or not row.matcher.consume_token(token):
            row.done = True
            return [self.pad_id]
        fed = [token]
        if self.jump_forward and not row.matcher.is_stopped():
            forced = row.matcher.compute_ff_tokens()[: budget - len(row.generated) - 1]
            if forced and row.matcher.consume_tokens(forced):
                fed += forced
        row.generated += fed
        closing = any(t in self._closing_tokens for t in fed)
        row.done = (
            row.matcher.is_stopped()
            or len(row.generated) >= budget
            or (closing and self._repeats(row))
        )
        return fed

    def _repeats(self, row: _Row) -> bool:
        """Whether the command just completed repeats an earlier one (a decoding loop)."""
        commands = parse_commands(self.tokenizer.decode(row.generated, skip_special_tokens=True))
        row.repeated = len(commands) > 1 and commands[-1] in commands[:-1]
        return row.repeated

    def _left_pad(self, sequences: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(s) for s in sequences)
        ids = torch.full((len(sequences), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(sequences), width), dtype=torch.long)
        for i, seq in enumerate(sequences):
            ids[i, width - len(seq) :] = torch.tensor(seq, dtype=torch.long)
            mask[i, width - len(seq) :] = 1
        return ids.to(self.device), mask.to(self.device)
