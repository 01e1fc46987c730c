"""What a client's request asks for, and the OpenAI-shaped replies the proxy gives back.

Pure functions and one ``Renderer`` per request: no I/O. A request the proxy cannot prune
faithfully is passed through (``passthrough_reason``). ``usage`` is the OpenAI usage object with
the pruning figures added as extra integer fields, which OpenAI clients keep.
"""

from __future__ import annotations

import fnmatch
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from freelm_pruner_client.loopcore import LoopCore, Mode, Piece

from pruner_service.proxy.settings import ProxySettings, Show

LOOP_KEYS = ("stream", "stream_options", "max_tokens", "max_completion_tokens", "n")
"""Request fields the loop sets itself each round; every other field goes upstream as sent."""

SIGNED_KEYS = frozenset({"signature", "encrypted_content", "thinking_blocks", "redacted_thinking"})
"""Message fields of providers that sign or encrypt their thinking: such reasoning must come back
unmodified, so these requests are passed through."""


def passthrough_reason(mode: Mode, body: Any, settings: ProxySettings) -> str:
    """Why this request is passed through unchanged (``""``: the proxy prunes it)."""
    if settings.prune_every_tokens == 0:
        return "pruning off"
    if not isinstance(body, dict):
        return "not a JSON object"
    checks = (
        (
            any(
                fnmatch.fnmatchcase(str(body.get("model", "")), p)
                for p in settings.passthrough_models
            ),
            "model",
        ),
        (int(body.get("n") or 1) != 1 or int(body.get("best_of") or 1) != 1, "several choices"),
        (bool(body.get("logprobs") or body.get("echo")), "logprobs or echo"),
        (bool(body.get("tools") or body.get("functions")), "tools"),
        (mode == "completions" and not isinstance(body.get("prompt"), str), "prompt not a string"),
        (mode == "chat" and not _messages_ok(body.get("messages")), "messages"),
    )
    return next((reason for failed, reason in checks if failed), "")


def _messages_ok(messages: Any) -> bool:
    """A list of message objects, none carrying signed or encrypted reasoning."""
    if not isinstance(messages, list) or not messages:
        return False
    return all(isinstance(m, dict) and not _signed(m) for m in messages)


def _signed(message: Mapping[str, Any]) -> bool:
    parts = message.get("content")
    typed = parts if isinstance(parts, list) else []
    kinds = {p.get("type") for p in typed if isinstance(p, dict)}
    return bool(SIGNED_KEYS & message.keys()) or bool(kinds & {"thinking", "redacted_thinking"})


def prompt_of(mode: Mode, body: Mapping[str, Any]) -> str | list[dict[str, Any]]:
    """The prompt string (``completions``) or the messages (``chat``) of a request."""
    if mode == "completions":
        return str(body["prompt"])
    return [dict(m) for m in body["messages"]]


def question_of(mode: Mode, body: Mapping[str, Any], limit: int) -> str:
    """What the pruner gets as the question: the last user message (``chat``) or the prompt,
    its last ``limit`` code points."""
    if mode == "completions":
        return str(body["prompt"])[-limit:]
    users = [m for m in body["messages"] if m.get("role") == "user"]
    return _text(users[-1].get("content") if users else "")[-limit:]


def _text(content: Any) -> str:
    if isinstance(content, list):
        return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return str(content or "")


def base_body(body: Mapping[str, Any]) -> dict[str, Any]:
    """The request's fields that every round sends unchanged."""
    return {k: v for k, v in body.items() if k not in LOOP_KEYS and k not in ("prompt", "messages")}


def max_tokens_of(body: Mapping[str, Any], default: int) -> int:
    """The request's token budget (``max_completion_tokens`` or ``max_tokens``), else
    ``default``."""
    value = body.get("max_completion_tokens") or body.get("max_tokens")
    return int(value) if value else default


def usage(core: LoopCore) -> dict[str, int]:
    """The OpenAI usage object of a run, with the pruning figures: ``pruned_tokens`` (reasoning
    tokens removed), ``pruning_rounds`` (pruner calls answered), ``pruning_skipped`` (calls that
    failed or timed out) and ``peak_context_saved_tokens`` (how much smaller the largest context
    was than without pruning: the KV-memory saving)."""
    result = core.result
    prompt = core.first_prompt_tokens
    return {
        "prompt_tokens": prompt,
        "completion_tokens": result.tokens_generated,
        "total_tokens": prompt + result.tokens_generated,
        "pruned_tokens": result.tokens_pruned,
        "pruning_rounds": result.prune_calls,
        "pruning_skipped": result.prune_failures,
        "peak_context_saved_tokens": result.peak_tokens_saved,
    }


class Renderer:
    """Shapes one request's reply: streamed chunks or the whole response, with the reasoning
    shown as ``show`` says (in a stream, ``pruned`` sends the pruned reasoning in one chunk when
    the reasoning ends, since a stream cannot take back text already sent)."""

    def __init__(self, mode: Mode, model: str, show: Show) -> None:
        self.mode = mode
        self.model = model
        self.show = show
        self.id = ("chatcmpl-" if mode == "chat" else "cmpl-") + uuid.uuid4().hex
        self.created = int(time.time())
        self.reasoning_key = ""
        self._held = False
        self._started = False

    def pieces(self, pieces: Sequence[Piece], core: LoopCore) -> list[dict[str, Any]]:
        """The chunks that stream ``pieces`` (possibly none)."""
        chunks: list[dict[str, Any]] = []
        for piece in pieces:
            chunks += self._piece(piece, core)
        return chunks

    def closing(self, core: LoopCore, finish: str, with_usage: bool) -> list[dict[str, Any]]:
        """The last chunks: reasoning still held back, the finish reason and, if asked, usage."""
        chunks = self._release(core)
        chunks.append(self._chunk("", finish=finish))
        if with_usage:
            chunks.append({**self._envelope(), "choices": [], "usage": usage(core)})
        return chunks

    def response(self, core: LoopCore, finish: str) -> dict[str, Any]:
        """The whole (non-streamed) response."""
        reasoning = self._view(core)
        tagged = not self.reasoning_key
        text = core.lead + reasoning + core.end if tagged and self.show != "none" else ""
        text += core.answer
        choice: dict[str, Any] = {"index": 0, "finish_reason": finish}
        if self.mode == "completions":
            choice.update(text=text, logprobs=None)
        else:
            message: dict[str, Any] = {"role": "assistant", "content": text}
            if not tagged and self.show != "none":
                message[self.reasoning_key] = reasoning
            choice["message"] = message
        obj = "chat.completion" if self.mode == "chat" else "text_completion"
        return {**self._envelope(obj), "choices": [choice], "usage": usage(core)}

    def _piece(self, piece: Piece, core: LoopCore) -> list[dict[str, Any]]:
        if piece.kind == "answer":
            return [*self._release(core), self._chunk(piece.text)]
        if self.show == "none":
            return []
        if piece.kind == "reasoning":
            if self.show == "pruned":
                self._held = True
                return []
            return [self._chunk(piece.text, reasoning=bool(self.reasoning_key))]
        if piece.kind == "end":
            return [*self._release(core), self._chunk(piece.text)]
        return [self._chunk(piece.text)]

    def _release(self, core: LoopCore) -> list[dict[str, Any]]:
        """The held-back pruned reasoning, once."""
        if not self._held:
            return []
        self._held = False
        return [self._chunk(core.result.trace, reasoning=bool(self.reasoning_key))]

    def _view(self, core: LoopCore) -> str:
        return {"full": core.full_reasoning, "pruned": core.result.trace}.get(self.show, "")

    def _chunk(
        self, text: str, reasoning: bool = False, finish: str | None = None
    ) -> dict[str, Any]:
        choice: dict[str, Any] = {"index": 0, "finish_reason": finish}
        if self.mode == "completions":
            choice.update(text=text, logprobs=None)
        else:
            delta: dict[str, Any] = {"role": "assistant"} if not self._started else {}
            if text or finish is None:
                delta[self.reasoning_key if reasoning else "content"] = text
            choice["delta"] = delta
        self._started = True
        obj = "chat.completion.chunk" if self.mode == "chat" else "text_completion"
        return {**self._envelope(obj), "choices": [choice]}

    def _envelope(self, obj: str = "") -> dict[str, Any]:
        if not obj:
            obj = "chat.completion.chunk" if self.mode == "chat" else "text_completion"
        return {"id": self.id, "object": obj, "created": self.created, "model": self.model}
