"""A small OpenAI-compatible HTTP server that serves a real transformers model, for tests.

Endpoints: ``POST /v1/completions``, ``POST /v1/chat/completions`` (with vLLM's
``continue_final_message`` / ``add_generation_prompt``), ``GET /v1/models`` and ``GET /stats``
(calls and completion tokens served, so tests can check a client's accounting). Greedy decoding.

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
from transformers import AutoModelForCausalLM, AutoTokenizer


class ModelServer:
    """The model and its counters, shared by the handler threads (one generation at a time)."""

    def __init__(self, model_dir: Path) -> None:
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
        self.lock = threading.Lock()
        self.calls = 0
        self.completion_tokens = 0

    def complete(self, prompt: str, max_tokens: int) -> tuple[str, str, dict[str, int]]:
        ids = self.tokenizer(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"]
        with self.lock, torch.inference_mode():
            out = self.model.generate(
                ids,
                max_new_tokens=max_tokens,
                do_sample=False,
                pad_token_id=self.tokenizer.eos_token_id,
            )
            new = out[0, ids.shape[1] :].tolist()
            self.calls += 1
            self.completion_tokens += len(new)
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
                self._send(
                    200, {"calls": server.calls, "completion_tokens": server.completion_tokens}
                )
            else:
                self._send(404, {"error": {"message": f"no route {self.path}"}})

        def do_POST(self) -> None:
            try:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                max_tokens = int(body.get("max_tokens", 16))
                if self.path == "/v1/completions":
                    text, finish, usage = server.complete(body["prompt"], max_tokens)
                    choice: dict[str, Any] = {"index": 0, "text": text, "finish_reason": finish}
                elif self.path == "/v1/chat/completions":
                    text, finish, usage = server.complete(server.chat_prompt(body), max_tokens)
                    message = {"role": "assistant", "content": text}
                    choice = {"index": 0, "message": message, "finish_reason": finish}
                else:
                    self._send(404, {"error": {"message": f"no route {self.path}"}})
                    return
            except (KeyError, ValueError, TypeError) as exc:
                self._send(400, {"error": {"message": f"bad request: {exc}"}})
                return
            usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
            self._send(200, {"object": "text_completion", "choices": [choice], "usage": usage})

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
