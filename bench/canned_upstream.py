"""An OpenAI-compatible upstream that answers at once with a fixed one-token completion (no
model), so a benchmark sees the proxy's own cost without the model's time and its noise.

``POST /v1/completions`` and ``/v1/chat/completions``: the whole JSON reply, or (``stream``) two
SSE events, a usage event when asked, and ``[DONE]``; HTTP/1.1 with keep-alive and
``TCP_NODELAY``, as production model servers run. ``GET
/v1/models``: one model.

    python bench/canned_upstream.py [--port 0]     # prints "listening on 127.0.0.1:PORT"
"""

from __future__ import annotations

import argparse
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

USAGE = {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}


def reply(chat: bool) -> dict[str, Any]:
    choice: dict[str, Any] = {"index": 0, "finish_reason": "length"}
    if chat:
        choice["message"] = {"role": "assistant", "content": "Twelve"}
    else:
        choice["text"] = "Twelve"
    kind = "chat.completion" if chat else "text_completion"
    return {"id": "canned", "object": kind, "model": "canned", "choices": [choice],
            "usage": USAGE}  # fmt: skip


def chunk(chat: bool, text: str | None) -> dict[str, Any]:
    choice: dict[str, Any] = {"index": 0, "finish_reason": None if text else "length"}
    if chat:
        choice["delta"] = {"content": text} if text else {}
    else:
        choice["text"] = text or ""
    kind = "chat.completion.chunk" if chat else "text_completion"
    return {"id": "canned", "object": kind, "model": "canned", "choices": [choice]}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # as uvicorn (vLLM, SGLang) and other model servers do

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._send({"object": "list", "data": [{"id": "canned", "object": "model"}]})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        chat = self.path == "/v1/chat/completions"
        if not body.get("stream"):
            self._send(reply(chat))
            return
        events = [chunk(chat, "Twelve"), chunk(chat, None)]
        if (body.get("stream_options") or {}).get("include_usage"):
            events.append({"id": "canned", "object": "chunk", "choices": [], "usage": USAGE})
        data = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events)
        data += b"data: [DONE]\n\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print(f"listening on 127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
