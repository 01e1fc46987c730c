"""A small OpenAI-compatible HTTP server that serves a real transformers model, for tests.

Endpoints: ``POST /v1/completions``, ``POST /v1/chat/completions`` (with vLLM's
``continue_final_message`` / ``add_generation_prompt``; ``stream`` sends each token as it is
generated, as SSE, with a final usage chunk when ``stream_options.include_usage``), ``GET
/v1/models`` and ``GET /stats`` (calls, completion tokens served and streams stopped because
their client went away, so tests can check a client's accounting and cancellation). Greedy
decoding.

    python tests/support/openai_server.py --model-dir DIR [--port 0]
"""

from __future__ import annotations

import argparse
import json
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    StoppingCriteria,
    StoppingCriteriaList,
)
from transformers.generation.streamers import BaseStreamer


class TokenStream(BaseStreamer):
    """Sends each generated token's text through ``send`` as generation goes; notes when the
    receiver has gone away (``send`` raised ``OSError``) so generation can stop."""

    def __init__(self, tokenizer: Any, send: Any) -> None:
        self.tokenizer = tokenizer
        self.send = send
        self.ids: list[int] = []
        self.sent = ""
        self.prompt_seen = False
        self.gone = False

    def put(self, value: torch.Tensor) -> None:
        if not self.prompt_seen:  # generate() puts the prompt first
            self.prompt_seen = True
            return
        self.ids += value.reshape(-1).tolist()
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        if not text.endswith("\ufffd"):  # wait for a multi-byte character to complete
            self._send(text)

    def end(self) -> None:
        self._send(self.tokenizer.decode(self.ids, skip_special_tokens=True))

    def _send(self, text: str) -> None:
        piece, self.sent = text[len(self.sent) :], text
        if piece and not self.gone:
            try:
                self.send(piece)
            except OSError:
                self.gone = True


class StopWhenGone(StoppingCriteria):
    def __init__(self, stream: TokenStream) -> None:
        self.stream = stream

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> Any:
        return torch.full((input_ids.shape[0],), self.stream.gone, dtype=torch.bool)


class ModelServer:
    """The model and its counters, shared by the handler threads (one generation at a time)."""

    def __init__(self, model_dir: Path) -> None:
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
        self.lock = threading.Lock()
        self.calls = 0
        self.completion_tokens = 0
        self.cancelled = 0

    def complete(
        self, prompt: str, max_tokens: int, send: Any = None
    ) -> tuple[str, str, dict[str, int]]:
        """Generates greedily; with ``send``, streams each token's text through it."""
        ids = self.tokenizer(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"]
        stream = TokenStream(self.tokenizer, send) if send else None
        with self.lock, torch.inference_mode():
            out = self.model.generate(
                ids,
                max_new_tokens=max_tokens,
                do_sample=False,
                pad_token_id=self.tokenizer.eos_token_id,
                streamer=stream,
                stopping_criteria=StoppingCriteriaList([StopWhenGone(stream)] if stream else []),
            )
            new = out[0, ids.shape[1] :].tolist()
            self.calls += 1
            self.completion_tokens += len(new)
            self.cancelled += bool(stream and stream.gone)
        finish = "stop" if self.tokenizer.eos_token_id in new else "length"
        text = self.tokenizer.decode(new, skip_special_tokens=True)
        return text, finish, {"prompt_tokens": ids.shape[1], "completion_tokens": len(new)}

    def chat_prompt(self, body: dict[str, Any]) -> str:
        prompt: str = self.tokenizer.apply_chat_template(
            body["messages"],
            tokenize=False,
            add_generation_prompt=body.get("add_generation_prompt", True),
            continue_final_message=body.get("continue_final_message", False),
        )
        return prompt


ROUTES = ("/v1/completions", "/v1/chat/completions")


def complete_reply(server: ModelServer, path: str, body: dict[str, Any]) -> tuple[int, Any]:
    """The status and JSON reply of a non-streamed request. Raises ``KeyError``,
    ``ValueError`` or ``TypeError`` on a bad body."""
    max_tokens = int(body.get("max_tokens", 16))
    if path == "/v1/completions":
        text, finish, usage = server.complete(body["prompt"], max_tokens)
        choice: dict[str, Any] = {"index": 0, "text": text, "finish_reason": finish}
    elif path == "/v1/chat/completions":
        text, finish, usage = server.complete(server.chat_prompt(body), max_tokens)
        message = {"role": "assistant", "content": text}
        choice = {"index": 0, "message": message, "finish_reason": finish}
    else:
        return 404, {"error": {"message": f"no route {path}"}}
    usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    return 200, {"object": "text_completion", "choices": [choice], "usage": usage}


def sse_chunk(chat: bool, text: str | None, finish: str | None = None) -> dict[str, Any]:
    """One streamed chunk: ``text`` as a completion's text or a chat delta's content."""
    if not chat:
        choice: dict[str, Any] = {"index": 0, "text": text or ""}
    else:
        choice = {"index": 0, "delta": {"content": text} if text else {}}
    return {"object": "chunk", "choices": [{**choice, "finish_reason": finish}]}


def stream_reply(
    handler: BaseHTTPRequestHandler, server: ModelServer, body: dict[str, Any]
) -> None:
    """Answers ``body`` as SSE, one chunk per token, then finish, usage and ``[DONE]``."""
    chat = handler.path == "/v1/chat/completions"
    prompt = server.chat_prompt(body) if chat else body["prompt"]

    def event(payload: dict[str, Any]) -> None:
        handler.wfile.write(b"data: " + json.dumps(payload).encode() + b"\n\n")
        handler.wfile.flush()

    handler.send_response(200)
    handler.send_header("Content-Type", "text/event-stream")
    handler.end_headers()
    max_tokens = int(body.get("max_tokens", 16))
    _, finish, usage = server.complete(prompt, max_tokens, lambda t: event(sse_chunk(chat, t)))
    try:
        event(sse_chunk(chat, None, finish))
        if (body.get("stream_options") or {}).get("include_usage"):
            usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
            event({"object": "chunk", "choices": [], "usage": usage})
        handler.wfile.write(b"data: [DONE]\n\n")
    except OSError:
        pass


def make_handler(server: ModelServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _send(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path == "/v1/models":
                self._send(200, {"object": "list", "data": [{"id": "smollm2", "object": "model"}]})
            elif self.path == "/stats":
                counters = ("calls", "completion_tokens", "cancelled")
                self._send(200, {name: getattr(server, name) for name in counters})
            else:
                self._send(404, {"error": {"message": f"no route {self.path}"}})

        def do_POST(self) -> None:
            try:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if body.get("stream") and self.path in ROUTES:
                    stream_reply(self, server, body)
                    return
                status, payload = complete_reply(server, self.path, body)
            except (KeyError, ValueError, TypeError) as exc:
                status, payload = 400, {"error": {"message": f"bad request: {exc}"}}
            self._send(status, payload)

    return Handler


def stats(base_url: str) -> dict[str, int]:
    """The counters of a running server, given its ``.../v1`` base URL."""
    with urllib.request.urlopen(base_url.removesuffix("/v1") + "/stats") as response:
        data: dict[str, int] = json.loads(response.read())
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    server = ThreadingHTTPServer(
        ("127.0.0.1", args.port), make_handler(ModelServer(args.model_dir))
    )
    print(f"listening on 127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
