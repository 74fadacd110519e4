"""Honest stand-ins for parts outside Burrow, for protocol tests: `FakeOpenAI` is a scripted
OpenAI chat-completions server (the model behind agent runs, when a test needs each step
exact; the harness in the box and the server around it stay real); `FakeHost` is the host
services socket a box calls, with a scripted model behind it (the tenant agent's memory
extraction, when a test needs each answer exact; the agent stays real)."""

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


class FakeHost:
    """The host services socket as a box sees it (POST /v1/model/chat in Burrow's chat API,
    POST /v1/knowledge/search, and POST /v1/embed once `embeddings` holds any), on a unix
    socket, answering model calls from a script and
    keeping what it was sent. A script entry is the model's text, an HTTP status to refuse
    with (429: the tenant's model budget is spent; 503: no model server), or a function of
    the request that returns either."""

    TOKEN = "fake-box-token"

    def __init__(self, path: str) -> None:
        import socketserver

        self.path = path
        self.script: list[Any] = []
        self.requests: list[dict[str, Any]] = []
        self.insights: list[dict[str, Any]] = []
        self.embeddings: dict[str, list[float]] = {}  # text -> vector, for POST /v1/embed
        self.embed_model = "fake-embedder"
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
                if self.headers.get("Authorization") != f"Bearer {FakeHost.TOKEN}":
                    return self._send(401, {"error": {"code": "unauthorized",
                                                      "message": "bad box token"}})
                if self.path == "/v1/knowledge/search":
                    return self._send(200, fake.insights[:int(body.get("limit", 5))])
                if self.path == "/v1/embed" and fake.embeddings:
                    return self._send(200, {"model": fake.embed_model, "vectors": [
                        fake.embeddings.get(t, []) for t in body["texts"]]})
                if self.path != "/v1/model/chat":
                    return self._send(404, {"error": {"code": "not_found", "message": "no"}})
                fake.requests.append(body)
                step = fake.script.pop(0) if fake.script else "(script ended)"
                if callable(step):
                    step = step(body)
                if isinstance(step, int):
                    return self._send(step, {"error": {"code": "refused",
                                                       "message": f"refused with {step}"}})
                self._send(200, {"model": body.get("model"), "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": step,
                                             "tool_calls": []},
                                 "usage": {"input_tokens": 10, "output_tokens": 5}})

            def _send(self, status: int, payload: object) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def address_string(self) -> str:
                return "box"

            def log_message(self, *args: object) -> None:
                pass

        self.server = socketserver.ThreadingUnixStreamServer(path, Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def env(self) -> dict[str, str]:
        """What a box's process has to reach this host."""
        return {"BURROW_HOST_SOCKET": self.path, "BURROW_BOX_TOKEN": self.TOKEN}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def memory_operations(*operations: dict[str, Any]) -> str:
    """A model's answer to the agent's extraction prompt (tenant_agent/extract.py)."""
    return json.dumps({"operations": [{"id": "", "kind": "fact", "text": "", "turns": [], **op}
                                      for op in operations]})
