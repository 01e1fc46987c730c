"""FreeLoop: reason with any OpenAI-compatible model, pruning the trace every N generated tokens.

The loop asks the model for at most ``prune_every_tokens`` tokens at a time, appends them to the
trace, sends the trace to the pruning service, applies the returned deletions and continues from
the pruned text, until the model stops on its own (``finish_reason == "stop"``) or the token budget
is spent. Two wire formats:

- ``completions``: ``POST /completions`` with ``prompt = prefix + trace`` (``prefix`` is the
  question rendered by the caller, e.g. with the model's chat template and ``<think>``);
- ``chat``: ``POST /chat/completions`` with the trace as a final assistant message to continue
  (``continue_final_message``, as vLLM and compatible servers accept it).

HTTP goes through the standard library; the pruning service through ``PrunerClient``. The loop's
decisions and accounting are ``loopcore.LoopCore``'s, shared with the OpenAI-compatible proxy.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Literal

from freelm_pruner_client.client import PrunerClient
from freelm_pruner_client.loopcore import (
    Delta,
    LoopCore,
    LoopResult,
    LoopSettings,
    continuation_body,
    parse_completion,
)

__all__ = ["Endpoint", "FreeLoop", "LoopResult", "LoopSettings", "ModelEndpointError"]


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
        the user message in ``chat`` mode); ``question`` is sent to the pruner as context. Raises
        ``ModelEndpointError`` when the endpoint fails and ``PrunerClientError`` when the pruner
        does.
        """
        core = LoopCore(self.settings, trace=trace)
        while (budget := core.next_max_tokens()) is not None:
            delta = self._generate(prefix, core.partial(self.endpoint.mode), budget)
            core.feed(delta.content, delta.reasoning)
            call = core.end_round(
                delta.finish,
                delta.usage.get("prompt_tokens", 0),
                delta.usage.get("completion_tokens", 0),
            )
            if call is not None:
                reply = self.pruner.prune(call.trace, question, **call.options)
                core.apply(call, reply)
        core.finish()
        return core.result

    def _generate(self, prefix: str, partial: str, max_tokens: int) -> Delta:
        mode = self.endpoint.mode
        base = {"model": self.endpoint.model, "temperature": 0}
        prompt = prefix if mode == "completions" else [{"role": "user", "content": prefix}]
        body = continuation_body(base, mode, prompt, partial, max_tokens)
        body.update(self.endpoint.extra_body)
        answer = self._post("/completions" if mode == "completions" else "/chat/completions", body)
        try:
            return parse_completion(answer, mode)
        except (KeyError, IndexError, TypeError, AttributeError) as exc:
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
