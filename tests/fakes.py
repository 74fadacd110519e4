"""Honest stand-ins for parts outside Burrow, for protocol tests: `FakeOpenAI` is a scripted
OpenAI chat-completions server (the model behind agent runs, when a test needs each step
exact; the harness in the box and the server around it stay real)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FakeOpenAI:
    """An OpenAI chat-completions endpoint that answers from a script, one reply per call,
    and keeps what it was sent."""

    def __init__(self) -> None:
        self.script: list[dict[str, Any]] = []
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.delay_s = 0.0
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append(body)
                fake.headers.append({k.lower(): v for k, v in self.headers.items()})
                time.sleep(fake.delay_s)
                reply = fake.script.pop(0) if fake.script else text_reply("(script ended)")
                data = json.dumps({"id": "chatcmpl-1", "object": "chat.completion",
                                   "model": body.get("model"), "choices": [reply],
                                   "usage": {"prompt_tokens": 11, "completion_tokens": 7}})
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data.encode())

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def text_reply(content: str) -> dict[str, Any]:
    return {"index": 0, "finish_reason": "stop",
            "message": {"role": "assistant", "content": content}}


def tool_reply(name: str, **arguments: Any) -> dict[str, Any]:
    return {"index": 0, "finish_reason": "tool_calls", "message": {
        "role": "assistant", "content": None, "tool_calls": [
            {"id": f"call_{name}", "type": "function",
             "function": {"name": name, "arguments": json.dumps(arguments)}}]}}
