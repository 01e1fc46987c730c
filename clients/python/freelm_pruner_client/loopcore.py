"""The Free() loop's decisions, without I/O: one implementation for ``FreeLoop`` and the proxy.

A run generates in rounds. ``LoopCore`` says how many tokens the next round may ask for, builds
the text to continue from, classifies what the model writes (text before its reasoning, the
reasoning, the end delimiter, the answer), decides after each round whether to prune, applies the
pruning service's deletions and keeps the accounting (rounds, tokens generated and pruned, peak
context). It never sends anything: ``FreeLoop`` (blocking, ``urllib``) and the proxy (asyncio,
streaming) do the calls and feed the outcomes back. ``continuation_body`` and
``parse_completion``/``parse_chunk`` are the OpenAI wire shapes both of them use.

Only the reasoning is pruned. With ``Delimiters`` the reasoning is the text between ``start`` and
``end`` (or a ``reasoning_content``/``reasoning`` field of the reply); without, the whole output
is reasoning (``FreeLoop``'s contract).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from freelm_pruner_client.anchors import OffsetSpan, apply_deletions
from freelm_pruner_client.options import DEFAULT_MAX_DELETE_FRACTION

Phase = Literal["before", "reasoning", "answer"]
PieceKind = Literal["lead", "reasoning", "end", "answer"]
Mode = Literal["completions", "chat"]
REASONING_FIELDS = ("reasoning_content", "reasoning")
"""Reply fields that carry reasoning apart from ``content`` (DeepSeek's and vLLM's names)."""


@dataclass(frozen=True)
class LoopSettings:
    """How often to prune and what to protect.

    ``prune_every_tokens`` and ``max_tokens`` are tokens; ``frozen_prefix_chars`` and
    ``protect_tail_chars`` code points of the reasoning; ``max_trace_chars`` (0: no limit) is the
    longest reasoning sent to the pruner: past it, only the last ``max_trace_chars`` are sent and
    pruned, the earlier text kept as it is. ``max_commands`` is how many commands the pruner's
    model may write per call (``None``: the server's default; 0: the loop collapser alone).
    """

    prune_every_tokens: int = 512
    max_tokens: int = 8192
    frozen_prefix_chars: int = 0
    protect_tail_chars: int = 200
    max_delete_fraction: float = DEFAULT_MAX_DELETE_FRACTION
    max_trace_chars: int = 0
    max_commands: int | None = None


@dataclass
class LoopResult:
    """The final reasoning (``trace``, pruned) and the accounting of one run, in tokens as the
    model endpoint counts them and characters (code points) of the reasoning.

    ``rounds`` are generation requests, ``prunes`` the pruner replies that deleted something,
    ``prune_calls`` all pruner replies, ``prune_failures`` the calls that failed or timed out
    (the run went on without pruning).
    """

    trace: str = ""
    finished: bool = False
    rounds: int = 0
    prunes: int = 0
    tokens_generated: int = 0
    tokens_pruned: int = 0
    chars_pruned: int = 0
    peak_context_tokens: int = 0
    unpruned_peak_tokens: int = 0
    prune_calls: int = 0
    prune_failures: int = 0

    @property
    def peak_tokens_saved(self) -> int:
        """How much smaller the largest context was than it would have been without pruning."""
        return max(0, self.unpruned_peak_tokens - self.peak_context_tokens)


@dataclass(frozen=True)
class Delimiters:
    """Where a model's reasoning starts and ends in its text.

    ``starts_inside``: the output begins inside the reasoning (the prompt already opened it, as
    chat templates that end the generation prompt with ``<think>`` do).
    """

    start: str = "<think>"
    end: str = "</think>"
    starts_inside: bool = False


@dataclass(frozen=True)
class Piece:
    """A classified part of the model's output: ``lead`` (text up to and including the start
    delimiter), ``reasoning``, ``end`` (the end delimiter) or ``answer``."""

    kind: PieceKind
    text: str


@dataclass(frozen=True)
class PruneCall:
    """What to send to the pruner: ``trace`` is the reasoning from code point ``offset`` on."""

    trace: str
    offset: int
    options: dict[str, Any] = field(default_factory=dict)


class PruneReply(Protocol):
    """The parts of a ``PruneResponse`` the loop reads."""

    @property
    def deletions(self) -> Sequence[OffsetSpan]: ...

    @property
    def usage(self) -> Any: ...


class ReasoningSplitter:
    """Splits streamed output into ``Piece`` s, holding back text that may be the start of a
    delimiter split across deltas (``pending``) until it is decided."""

    def __init__(self, delimiters: Delimiters | None) -> None:
        self.delimiters = delimiters
        self.phase: Phase = (
            "reasoning" if delimiters is None or delimiters.starts_inside else "before"
        )
        self.by_field = False
        self.pending = ""

    def feed(self, content: str, reasoning: str = "") -> list[Piece]:
        """Classifies one delta: ``content`` text and the text of a reasoning field."""
        pieces: list[Piece] = []
        if reasoning:
            if self.phase == "before":
                self.phase, self.by_field = "reasoning", True
            pieces.append(Piece("reasoning", reasoning))
        if content:
            if self.by_field and self.phase == "reasoning":
                self.phase = "answer"
            pieces += self._scan(self.pending + content)
        return pieces

    def flush(self) -> list[Piece]:
        """The held-back text, in the current phase (at the end of the output)."""
        text, self.pending = self.pending, ""
        if not text:
            return []
        return [Piece("answer" if self.phase == "before" else _kind(self.phase), text)]

    def _scan(self, text: str) -> list[Piece]:
        self.pending = ""
        pieces: list[Piece] = []
        while text:
            if self.delimiters is None or self.phase == "answer":
                return [*pieces, Piece(_kind(self.phase), text)]
            marker = self.delimiters.start if self.phase == "before" else self.delimiters.end
            at = text.find(marker)
            if at < 0:
                return pieces + self._undecided(text, marker)
            pieces += self._crossed(text[:at], marker)
            text = text[at + len(marker) :]
        return pieces

    def _crossed(self, before: str, marker: str) -> list[Piece]:
        """The pieces up to and including a delimiter found in the text; moves the phase on."""
        if self.phase == "before":
            self.phase = "reasoning"
            return [Piece("lead", before + marker)]
        self.phase = "answer"
        return [p for p in (Piece("reasoning", before), Piece("end", marker)) if p.text]

    def _undecided(self, text: str, marker: str) -> list[Piece]:
        """Text without ``marker``: held back while it may still become the delimiter."""
        if self.phase == "before":
            if marker.startswith(text.lstrip()):
                self.pending = text
                return []
            self.phase = "answer"
            return [Piece("answer", text)]
        keep = _partial_suffix(text, marker)
        self.pending = text[len(text) - keep :] if keep else ""
        body = text[: len(text) - keep]
        return [Piece("reasoning", body)] if body else []


def _kind(phase: Phase) -> PieceKind:
    return "answer" if phase == "answer" else "reasoning"


def _partial_suffix(text: str, marker: str) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of ``marker``."""
    for size in range(min(len(marker) - 1, len(text)), 0, -1):
        if marker.startswith(text[-size:]):
            return size
    return 0


class LoopCore:
    """The state and decisions of one run; see the module docstring for who does the I/O."""

    def __init__(
        self, settings: LoopSettings, delimiters: Delimiters | None = None, trace: str = ""
    ) -> None:
        """``trace``: reasoning to start from (continued, as if the model had written it).
        Raises ``ValueError`` if ``prune_every_tokens`` or ``max_tokens`` is not positive."""
        if settings.prune_every_tokens < 1 or settings.max_tokens < 1:
            raise ValueError("prune_every_tokens and max_tokens must be positive")
        self.settings = settings
        self.delimiters = delimiters
        self.splitter = ReasoningSplitter(delimiters)
        self.result = LoopResult(trace=trace)
        self.full_reasoning = trace
        self.lead = ""
        self.end = ""
        self.answer = ""
        self.first_prompt_tokens = 0

    @property
    def phase(self) -> Phase:
        return self.splitter.phase

    def next_max_tokens(self) -> int | None:
        """Tokens the next round may generate, or ``None`` when the run is over. Inside the
        reasoning (or before it) a round stops at ``prune_every_tokens``; after it, the rest of
        the budget goes in one round."""
        remaining = self.settings.max_tokens - self.result.tokens_generated
        if self.result.finished or remaining <= 0:
            return None
        if self.phase == "answer":
            return remaining
        return min(self.settings.prune_every_tokens, remaining)

    def feed(self, content: str, reasoning: str = "") -> list[Piece]:
        """Takes one delta of the model's output (all of a round's text, or a streamed part)."""
        pieces = self.splitter.feed(content, reasoning)
        self._keep(pieces)
        return pieces

    def end_round(
        self, finish: str, prompt_tokens: int, completion_tokens: int
    ) -> PruneCall | None:
        """Accounts a finished round (``finish`` is the endpoint's ``finish_reason``); returns
        the pruner call to make now, or ``None``: only inside the reasoning, and never after the
        last round (nothing would continue from it). A round that ended for any reason but
        ``length`` ends the run."""
        result = self.result
        result.rounds += 1
        result.tokens_generated += completion_tokens
        self.first_prompt_tokens = self.first_prompt_tokens or prompt_tokens
        result.peak_context_tokens = max(
            result.peak_context_tokens, prompt_tokens + completion_tokens
        )
        result.unpruned_peak_tokens = self.first_prompt_tokens + result.tokens_generated
        if finish not in ("length", ""):
            result.finished = True
            return None
        spent = result.tokens_generated >= self.settings.max_tokens
        if spent or self.phase != "reasoning" or not result.trace.strip():
            return None
        return self._prune_call()

    def finish(self) -> list[Piece]:
        """The held-back text at the end of the run."""
        pieces = self.splitter.flush()
        self._keep(pieces)
        return pieces

    def apply(self, call: PruneCall, reply: PruneReply) -> bool:
        """Applies a reply to ``call``; returns whether it deleted anything. Raises
        ``ValueError`` if the deletions do not fit the trace that was sent."""
        self.result.prune_calls += 1
        if not reply.deletions:
            return False
        head, tail = self.result.trace[: call.offset], self.result.trace[call.offset :]
        if tail[: len(call.trace)] != call.trace:
            raise ValueError("the reasoning changed while it was being pruned")
        pruned = apply_deletions(call.trace, reply.deletions)
        self.result.trace = head + pruned + tail[len(call.trace) :]
        self.result.prunes += 1
        self.result.tokens_pruned += reply.usage.trace_tokens - reply.usage.kept_tokens
        self.result.chars_pruned += reply.usage.removed_chars
        return True

    def failed(self) -> None:
        """Counts a pruner call that failed or timed out; the run goes on unpruned."""
        self.result.prune_failures += 1

    def partial(self, mode: Mode) -> str:
        """The text generated so far (the reasoning pruned), to continue from. In ``chat`` mode a
        reasoning whose start delimiter the model did not write (a reasoning field, or
        ``starts_inside``) is wrapped in the delimiters, so the continued message is whole."""
        reasoning, rest = self.result.trace, self.answer + self.splitter.pending
        wrap = mode == "chat" and self.delimiters is not None and not self.lead
        if wrap and self.delimiters is not None and reasoning:
            end = self.end or (self.delimiters.end if self.phase == "answer" else "")
            return f"{self.delimiters.start}\n{reasoning}{end}{rest}"
        return self.lead + reasoning + self.end + rest

    def _keep(self, pieces: list[Piece]) -> None:
        for piece in pieces:
            if piece.kind == "reasoning":
                self.result.trace += piece.text
                self.full_reasoning += piece.text
            elif piece.kind == "lead":
                self.lead += piece.text
            elif piece.kind == "end":
                self.end += piece.text
            else:
                self.answer += piece.text

    def _prune_call(self) -> PruneCall:
        trace, limit = self.result.trace, self.settings.max_trace_chars
        offset = max(0, len(trace) - limit) if limit > 0 else 0
        window = trace[offset:]
        frozen = max(0, self.settings.frozen_prefix_chars - offset)
        options = {
            "frozen_prefix_chars": min(frozen, len(window)),
            "protect_tail_chars": min(self.settings.protect_tail_chars, len(window)),
            "max_delete_fraction": self.settings.max_delete_fraction,
            "return_pruned_trace": False,
        }
        if self.settings.max_commands is not None:
            options["max_commands"] = self.settings.max_commands
        return PruneCall(window, offset, options)


def continuation_body(
    base: Mapping[str, Any],
    mode: Mode,
    prompt: str | Sequence[Mapping[str, Any]],
    partial: str,
    max_tokens: int,
) -> dict[str, Any]:
    """The request body of one round: ``base`` (model, sampling, ...) with ``max_tokens`` and
    either ``prompt + partial`` (``completions``; ``prompt`` is a string) or ``prompt``'s messages
    with ``partial`` as a final assistant message to continue (``chat``, vLLM's
    ``continue_final_message``)."""
    body = dict(base)
    body["max_tokens"] = max_tokens
    if mode == "completions":
        body["prompt"] = str(prompt) + partial
        return body
    messages = [dict(m) for m in prompt] if not isinstance(prompt, str) else []
    if partial:
        messages.append({"role": "assistant", "content": partial})
        body.update(continue_final_message=True, add_generation_prompt=False)
    body["messages"] = messages
    return body


@dataclass(frozen=True)
class Delta:
    """One reply (or one streamed chunk) of an endpoint, read: its text, the text of a
    reasoning field (and the field's name), its ``finish_reason`` and ``usage`` (empty when
    absent)."""

    content: str = ""
    reasoning: str = ""
    finish: str = ""
    usage: Mapping[str, int] = field(default_factory=dict)
    reasoning_key: str = ""


def parse_completion(answer: Mapping[str, Any], mode: Mode) -> Delta:
    """Reads a non-streamed reply. Raises ``KeyError``, ``IndexError`` or ``TypeError`` when it
    is not a completion."""
    choice = answer["choices"][0]
    message = choice["text"] if mode == "completions" else choice["message"]
    return _delta(choice, message, answer.get("usage"))


def parse_chunk(chunk: Mapping[str, Any], mode: Mode) -> Delta:
    """Reads one streamed chunk (``delta`` instead of ``message``); a chunk without choices
    (the final usage chunk) gives only its usage. Raises as ``parse_completion``."""
    choices = chunk.get("choices") or []
    if not choices:
        return Delta(usage=dict(chunk.get("usage") or {}))
    choice = choices[0]
    message = choice.get("text", "") if mode == "completions" else choice.get("delta") or {}
    return _delta(choice, message, chunk.get("usage"))


def _delta(choice: Mapping[str, Any], message: Any, usage: Any) -> Delta:
    content, reasoning, key = message, "", ""
    if not isinstance(message, str):
        content = message.get("content") or ""
        key = next((k for k in REASONING_FIELDS if message.get(k)), "")
        reasoning = message[key] if key else ""
    finish = str(choice.get("finish_reason") or "")
    return Delta(content, reasoning, finish, dict(usage or {}), key)
