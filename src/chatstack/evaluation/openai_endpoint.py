"""A minimal OpenAI-compatible chat-completions endpoint over a local model folder.

It lets any saved chatstack/transformers model act as the judge of `chatstack eval model`
(or answer any OpenAI client) without a GPU server: `POST /v1/chat/completions` with
`{"model", "messages", "max_tokens"}` → `{"choices": [{"message": {"role": "assistant",
"content": ...}}]}`. Greedy decoding, one request at a time, standard library HTTP server.

    python -m chatstack.evaluation.openai_endpoint --model artifacts/demo-chat --port 8090
    chatstack eval model --candidate ... --judge-url http://127.0.0.1:8090/v1 --judge-model demo-chat
"""

from __future__ import annotations

import argparse
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from chatstack.evaluation.answering import LocalAnswerer
from chatstack.evaluation.models import load_model
from chatstack.text.chat_template import Message


def parse_request(body: bytes) -> tuple[list[Message], int]:
    """(messages, max_tokens) of a chat-completions request; ValueError names the bad field."""
    try:
        raw = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ValueError("body: not a JSON object") from None
    if not isinstance(raw, dict):
        raise ValueError("body: not a JSON object")
    messages = raw.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ValueError("messages: must be a non-empty list")
    try:
        parsed = [Message(str(m["role"]), str(m["content"])) for m in messages]
    except (KeyError, TypeError):
        raise ValueError("messages: each item needs role and content") from None
    max_tokens = raw.get("max_tokens", 256)
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or not 1 <= max_tokens <= 4096:
        raise ValueError(f"max_tokens: must be an integer in [1, 4096], got {max_tokens!r}")
    return parsed, max_tokens


class ChatCompletionsServer:
    """Serves one model on 127.0.0.1:`port` (0: a free port) in a background thread."""

    def __init__(self, model_dir: Path, port: int = 0, host: str = "127.0.0.1"):
        self.answerer = LocalAnswerer(load_model(model_dir))
        self.model_name = Path(model_dir).name
        self._lock = threading.Lock()  # one generation at a time: the model is not shared across threads
        self.httpd = ThreadingHTTPServer((host, port), self._handler())
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def complete(self, messages: list[Message], max_tokens: int) -> str:
        with self._lock:
            self.answerer.max_new_tokens = max_tokens
            return self.answerer.reply(messages)

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server naming)
                if self.path.rstrip("/") != "/v1/chat/completions":
                    return self._send(404, {"error": {"message": f"no route {self.path}"}})
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    messages, max_tokens = parse_request(self.rfile.read(length))
                except ValueError as exc:
                    return self._send(400, {"error": {"message": str(exc), "type": "invalid_request_error"}})
                content = server.complete(messages, max_tokens)
                self._send(200, {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion",
                                 "created": int(time.time()), "model": server.model_name,
                                 "choices": [{"index": 0, "finish_reason": "stop",
                                              "message": {"role": "assistant", "content": content}}]})

            def _send(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode("utf-8")
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:  # quiet: no line per request on stderr
                pass

        return Handler

    def start(self) -> "ChatCompletionsServer":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--port", type=int, default=8090)
    args = parser.parse_args(argv)
    server = ChatCompletionsServer(args.model, args.port)
    print(f"serving {args.model} at {server.base_url}/chat/completions", flush=True)
    try:
        server.httpd.serve_forever()
    except KeyboardInterrupt:
        server.httpd.server_close()


if __name__ == "__main__":
    main()
