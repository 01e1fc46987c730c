"""FreeLoop: reason with any OpenAI-compatible model, pruning the trace every N generated tokens.

The loop asks the model for at most ``prune_every_tokens`` tokens at a time, appends them to the
trace, sends the trace to the pruning service, applies the returned deletions and continues from
the pruned text, until the model stops on its own (``finish_reason == "stop"``) or the token budget
is spent. Two wire formats:

- ``completions``: ``POST /completions`` with ``prompt = prefix + trace`` (``prefix`` is the
  question rendered by the caller, e.g. with the model's chat template and ``<think>``);
- ``chat``: ``POST /chat/completions`` with the trace as a final assistant message to continue
  (``continue_final_message``, as vLLM and compatible servers accept it).

HTTP goes through the standard library; the pruning service through ``PrunerClient``.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Literal

from freelm_pruner_client.anchors import apply_deletions
from freelm_pruner_client.client import PrunerClient
from freelm_pruner_client.options import DEFAULT_MAX_DELETE_FRACTION


class ModelEndpointError(RuntimeError):
    """The model endpoint failed or answered something that is not a completion."""


@dataclass(frozen=True)
class Endpoint:
    """An OpenAI-compatible endpoint: ``base_url`` ends with ``/v1``."""

    base_url: str
    model: str
    api_key: str = ""
    mode: Literal["completions", "chat"] = "completions"
    timeout_s: float = 600.0
    extra_body: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LoopSettings:
    """How often to prune and what to protect."""

    prune_every_tokens: int = 512
    max_tokens: int = 8192
    frozen_prefix_chars: int = 0
    protect_tail_chars: int = 200
    max_delete_fraction: float = DEFAULT_MAX_DELETE_FRACTION


@dataclass
class LoopResult:
    """The final text and the accounting of one run."""

    trace: str = ""
    finished: bool = False
    rounds: int = 0
    prunes: int = 0
    tokens_generated: int = 0
    tokens_pruned: int = 0
    chars_pruned: int = 0
    peak_context_tokens: int = 0
    unpruned_peak_tokens: int = 0

    @property
    def peak_tokens_saved(self) -> int:
        """How much smaller the largest context was than it would have been without pruning."""
        return max(0, self.unpruned_peak_tokens - self.peak_context_tokens)


class FreeLoop:
    """Runs the reason → prune → continue loop for one question."""

    def __init__(self, endpoint: Endpoint, pruner: PrunerClient, settings: LoopSettings) -> None:
        if settings.prune_every_tokens < 1 or settings.max_tokens < 1:
            raise ValueError("prune_every_tokens and max_tokens must be positive")
        self.endpoint = endpoint
        self.pruner = pruner
        self.settings = settings

    def run(self, prefix: str, question: str = "", trace: str = "") -> LoopResult:
        """Generates from ``prefix`` (+ an optional starting ``trace``) until the model stops.

        ``prefix`` is what precedes the reasoning (the rendered question in ``completions`` mode,
        the user message in ``chat`` mode); ``question`` is sent to the pruner as context.
        """
        result = LoopResult(trace=trace)
        first_prompt_tokens = 0
        while result.tokens_generated < self.settings.max_tokens:
            budget = min(
                self.settings.prune_every_tokens,
                self.settings.max_tokens - result.tokens_generated,
            )
            text, finish, usage = self._generate(prefix, result.trace, budget)
            result.rounds += 1
            result.trace += text
            result.tokens_generated += usage.get("completion_tokens", 0)
            first_prompt_tokens = first_prompt_tokens or usage.get("prompt_tokens", 0)
            context = usage.get("prompt_tokens", 0) + usage.get("completion_tokens", 0)
            result.peak_context_tokens = max(result.peak_context_tokens, context)
            result.unpruned_peak_tokens = first_prompt_tokens + result.tokens_generated
            if finish == "stop":
                result.finished = True
                break
            self._prune(result, question)
        return result

    def _prune(self, result: LoopResult, question: str) -> None:
        if not result.trace.strip():
            return
        reply = self.pruner.prune(
            result.trace,
            question,
            frozen_prefix_chars=min(self.settings.frozen_prefix_chars, len(result.trace)),
            protect_tail_chars=min(self.settings.protect_tail_chars, len(result.trace)),
            max_delete_fraction=self.settings.max_delete_fraction,
            return_pruned_trace=False,
        )
        if not reply.deletions:
            return
        result.trace = apply_deletions(result.trace, reply.deletions)
        result.prunes += 1
        result.tokens_pruned += reply.usage.trace_tokens - reply.usage.kept_tokens
        result.chars_pruned += reply.usage.removed_chars

    def _generate(
        self, prefix: str, trace: str, max_tokens: int
    ) -> tuple[str, str, dict[str, int]]:
        body: dict[str, Any] = {
            "model": self.endpoint.model,
            "max_tokens": max_tokens,
            "temperature": 0,
        }
        if self.endpoint.mode == "completions":
            body["prompt"] = prefix + trace
            path = "/completions"
        else:
            body["messages"] = [{"role": "user", "content": prefix}]
            if trace:
                body["messages"].append({"role": "assistant", "content": trace})
                body.update(continue_final_message=True, add_generation_prompt=False)
            path = "/chat/completions"
        body.update(self.endpoint.extra_body)
        answer = self._post(path, body)
        try:
            choice = answer["choices"][0]
            text = (
                choice["text"]
                if self.endpoint.mode == "completions"
                else choice["message"]["content"]
            )
            return (
                text or "",
                str(choice.get("finish_reason") or ""),
                dict(answer.get("usage") or {}),
            )
        except (KeyError, IndexError, TypeError) as exc:
            raise ModelEndpointError(f"unexpected completion: {json.dumps(answer)[:500]}") from exc

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        request = urllib.request.Request(
            self.endpoint.base_url.rstrip("/") + path,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"}
            | (
                {"Authorization": f"Bearer {self.endpoint.api_key}"}
                if self.endpoint.api_key
                else {}
            ),
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=self.endpoint.timeout_s) as response:
                data: dict[str, Any] = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:500]
            raise ModelEndpointError(f"{path}: HTTP {exc.code}: {detail}") from exc
        except (urllib.error.URLError, TimeoutError) as exc:
            raise ModelEndpointError(f"{path}: {exc}") from exc
        return data
