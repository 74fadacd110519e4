"""The tenant agent's HTTP server: HTTP/1.1 with keep-alive on the socket the host handed in.

This build's agent answers `GET /health` and echoes every other request (method, path,
query, headers, body) with a request counter that is kept in the tenant's workspace, so it
survives freezes. It runs inside the box with the box's /usr/bin/python3 and the stdlib only.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time

STATE_DIR = "/workspace/.burrow-agent"
STATE_FILE = STATE_DIR + "/state.json"
MAX_HEADER = 64 * 1024


class State:
    """The agent's small persistent state (a request counter), written after each change."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        os.makedirs(STATE_DIR, exist_ok=True)
        try:
            with open(STATE_FILE) as f:
                self.data = json.load(f)
        except (OSError, ValueError):
            self.data = {"requests": 0, "started": []}
        self.data["started"] = [*self.data.get("started", []), time.time()][-10:]

    def count(self) -> int:
        with self.lock:
            self.data["requests"] = int(self.data.get("requests", 0)) + 1
            tmp = STATE_FILE + ".tmp"
            with open(tmp, "w") as f:
                json.dump(self.data, f)
            os.replace(tmp, STATE_FILE)
            return int(self.data["requests"])


def read_request(conn: socket.socket, buf: bytes) -> tuple[dict[str, object], bytes] | None:
    while b"\r\n\r\n" not in buf:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        buf += chunk
        if len(buf) > MAX_HEADER:
            raise ValueError("headers too large")
    head, _, buf = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, target, _version = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0") or 0)
    while len(buf) < length:
        chunk = conn.recv(min(65536, length - len(buf)))
        if not chunk:
            return None
        buf += chunk
    body, buf = buf[:length], buf[length:]
    path, _, query = target.partition("?")
    return {"method": method, "path": path, "query": query, "headers": headers,
            "body": body}, buf


def respond(conn: socket.socket, status: int, payload: object, head_only: bool = False) -> None:
    body = json.dumps(payload).encode()
    reason = {200: "OK", 400: "Bad Request", 404: "Not Found"}.get(status, "OK")
    conn.sendall(f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {len(body)}\r\n\r\n".encode()
                 + (b"" if head_only else body))


def handle(request: dict[str, object], state: State) -> tuple[int, object]:
    if request["path"] == "/health":
        return 200, {"ok": True}
    body = request["body"]
    assert isinstance(body, bytes)
    return 200, {"echo": {"method": request["method"], "path": request["path"],
                          "query": request["query"], "headers": request["headers"],
                          "body": body.decode("utf-8", "replace")},
                 "requests": state.count()}


def serve_connection(conn: socket.socket, state: State) -> None:
    buf = b""
    try:
        while True:
            parsed = read_request(conn, buf)
            if parsed is None:
                return
            request, buf = parsed
            status, payload = handle(request, state)
            respond(conn, status, payload, head_only=request["method"] == "HEAD")
            headers = request["headers"]
            assert isinstance(headers, dict)
            if headers.get("connection", "").lower() == "close":
                return
    except (OSError, ValueError) as exc:
        with contextlib.suppress(OSError):
            respond(conn, 400, {"error": str(exc)})
    finally:
        conn.close()


def main() -> None:
    listener = socket.socket(fileno=int(os.environ.get("BURROW_SERVICE_FD", "3")))
    state = State()
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=serve_connection, args=(conn, state), daemon=True).start()
