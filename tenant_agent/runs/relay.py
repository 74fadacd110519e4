"""The in-box model relay: a loopback HTTP server that an agent CLI (Claude Code, Codex,
OpenCode) takes for its provider, and that passes each of its calls to the host services
socket, where the gateway adds the real key. The CLI sees only `base_url` and a dummy key.

Protocol, per call: the CLI's `METHOD /path?query` with its body becomes
`METHOD /v1/relay/{family}/path?query` on the host socket (`BURROW_HOST_SOCKET`), with
`Authorization: Bearer $BURROW_BOX_TOKEN`, `X-Burrow-Run: <run id>`, `Connection: close`, the
run's own headers (`X-Burrow-Tools: a,b` — the tools a small model should see) and the CLI's
other headers minus its credentials and hop-by-hop ones (the CLI cannot set the run's). The
host's answer — status, headers, body — streams back as it arrives (an SSE stream byte for
byte, its framing kept), then the connection closes. `family` is the API family the CLI
speaks: `anthropic` or `openai`.

Invariants:
- Inference calls (`POST` to a path ending in `/messages`, `/responses` or
  `/chat/completions`) are counted; past `max_calls` they are refused here with a 400 in the
  family's error shape, and `limit_reached` is set — this is how a run's `max_turns` is
  enforced, by model calls. The host decides what is relayed at all.
- The host's failures (unreachable, 429, 5xx) are counted in a row and their message kept, so
  the run can stop a CLI that would retry a dead endpoint for minutes.
- A body over `MAX_BODY` is refused (413); a host that goes quiet for `idle_timeout_s` is
  given up on.

Stdlib only: it runs inside boxes under `/usr/bin/python3 -I -S`, in the run's own process
(`start()` serves from a thread) or alone (`python3 relay.py FAMILY [PORT]`).
"""

from __future__ import annotations

import http.server
import json
import os
import socket
import sys
import threading
from typing import Any

MAX_BODY = 32 << 20
CHUNK = 65536
INFERENCE_SUFFIXES = ("/messages", "/responses", "/chat/completions")
# Never passed on: credentials (the CLI's dummy key), hop-by-hop headers, what is set here.
_DROPPED = frozenset({"authorization", "x-api-key", "api-key", "proxy-authorization", "cookie",
                      "host", "connection", "keep-alive", "transfer-encoding", "te", "upgrade",
                      "content-length", "accept-encoding", "x-burrow-run", "x-burrow-tools",
                      "trailer"})
# The host's headers the CLI sees; framing headers are added as the host framed its answer.
_KEPT = frozenset({"content-type", "retry-after", "request-id", "x-request-id",
                   "anthropic-ratelimit-requests-remaining", "openai-processing-ms"})


class Relay:
    """One loopback relay for one CLI. `start()` returns the port; `close()` stops it."""

    def __init__(self, family: str, socket_path: str, token: str, run_id: str = "",
                 max_calls: int | None = None, idle_timeout_s: float = 330.0,
                 connect_timeout_s: float = 10.0,
                 headers: dict[str, str] | None = None) -> None:
        self.family = family
        self.socket_path = socket_path
        self.token = token
        self.run_id = run_id
        self.max_calls = max_calls
        self.idle_timeout_s = idle_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.headers = dict(headers or {})  # added to every call (e.g. X-Burrow-Tools)
        self.calls = 0
        self.limit_reached = False
        self.failures_in_row = 0
        self.last_failure = ""
        self._lock = threading.Lock()
        self._server: http.server.ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        assert self._server is not None, "start() the relay first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self, port: int = 0) -> int:
        relay = self

        class Handler(_Handler):
            owner = relay

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                         name="relay", daemon=True).start()
        return int(self._server.server_address[1])

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def admit(self, method: str, path: str) -> bool:
        """Count an inference call; False once `max_calls` have been made."""
        if method != "POST" or not path.split("?", 1)[0].rstrip("/").endswith(
                INFERENCE_SUFFIXES):
            return True
        with self._lock:
            if self.max_calls is not None and self.calls >= self.max_calls:
                self.limit_reached = True
                return False
            self.calls += 1
            return True

    def outcome(self, status: int, message: str = "") -> None:
        with self._lock:
            if status == 429 or status >= 500 or status == 0:
                self.failures_in_row += 1
                self.last_failure = message or f"HTTP {status}"
            elif status < 400:
                self.failures_in_row = 0

    def error_body(self, status: int, message: str) -> bytes:
        """An error in the shape the family's clients read."""
        if self.family == "anthropic":
            kind = {400: "invalid_request_error", 413: "request_too_large"}.get(status,
                                                                                "api_error")
            body: dict[str, Any] = {"type": "error", "error": {"type": kind, "message": message}}
        else:
            body = {"error": {"message": message, "code": "relay_error", "param": None,
                              "type": "invalid_request_error" if status < 500 else "server_error"}}
        return json.dumps(body).encode()


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    owner: Relay

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the CLI's stderr is the run's; keep it for the CLI

    def do_POST(self) -> None:
        self._relay()

    do_GET = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_POST

    def _relay(self) -> None:
        relay = self.owner
        self.close_connection = True
        try:
            body = self._body()
        except ValueError as exc:
            self._answer(413 if "large" in str(exc) else 400, relay.error_body(400, str(exc)))
            return
        if not relay.admit(self.command, self.path):
            self._answer(400, relay.error_body(400, (
                f"this run's max_turns ({relay.max_calls} model calls) is used up")))
            return
        try:
            host = self._open_host(body)
        except OSError as exc:
            message = f"the host services socket did not answer: {exc}"
            relay.outcome(0, message)
            self._answer(502, relay.error_body(502, message))
            return
        try:
            self._pass_back(host)
        except OSError as exc:
            relay.outcome(0, f"the host's answer broke off: {exc}")
        finally:
            host.close()

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def _body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._chunked()
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            raise ValueError(f"the request body is too large (over {MAX_BODY} bytes)")
        return self.rfile.read(length) if length > 0 else b""

    def _chunked(self) -> bytes:
        data = b""
        while True:
            size = int(self.rfile.readline(100).split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline(8192) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return data
            if len(data) + size > MAX_BODY:
                raise ValueError(f"the request body is too large (over {MAX_BODY} bytes)")
            data += self.rfile.read(size)
            self.rfile.readline(10)

    def _open_host(self, body: bytes) -> socket.socket:
        relay = self.owner
        lines = [f"{self.command} /v1/relay/{relay.family}/{self.path.lstrip('/')} HTTP/1.1",
                 "Host: burrow", f"Authorization: Bearer {relay.token}", "Connection: close",
                 f"Content-Length: {len(body)}"]
        if relay.run_id:
            lines.append(f"X-Burrow-Run: {relay.run_id}")
        lines += [f"{k}: {v}" for k, v in relay.headers.items()]
        lines += [f"{k}: {v}" for k, v in self.headers.items()
                  if k.lower() not in _DROPPED and "\n" not in v and "\r" not in v]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode()
        host = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            host.settimeout(relay.connect_timeout_s)
            host.connect(relay.socket_path)
            host.settimeout(relay.idle_timeout_s)
            host.sendall(head + body)
        except OSError:
            host.close()
            raise
        return host

    def _pass_back(self, host: socket.socket) -> None:
        relay = self.owner
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = host.recv(CHUNK)
            if not chunk:
                raise OSError("the host closed the connection before answering")
            data += chunk
            if len(data) > 1 << 20:
                raise OSError("the host's answer head is too large")
        head, _, rest = data.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split()[1])
        headers = [line.split(":", 1) for line in header_lines if ":" in line]
        names = {k.strip().lower(): v.strip() for k, v in headers}
        if status != 200:
            rest = self._rest(host, rest, names)
            relay.outcome(status, _message(rest, names) or f"the host answered {status}")
        else:
            relay.outcome(status)
        self.send_response(status)
        for name, value in headers:
            if name.strip().lower() in _KEPT:
                self.send_header(name.strip(), value.strip())
        if "chunked" in names.get("transfer-encoding", "").lower():
            self.send_header("Transfer-Encoding", "chunked")  # its chunks pass through as they are
        elif "content-length" in names and status == 200:
            self.send_header("Content-Length", names["content-length"])
        elif status != 200:
            self.send_header("Content-Length", str(len(rest)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(rest)
        self.wfile.flush()
        if status != 200:
            return
        while chunk := host.recv(CHUNK):
            self.wfile.write(chunk)
            self.wfile.flush()

    @staticmethod
    def _rest(host: socket.socket, rest: bytes, names: dict[str, str]) -> bytes:
        """A whole (error) answer's body, de-chunked, up to a bound."""
        while len(rest) < (1 << 20) and (chunk := host.recv(CHUNK)):
            rest += chunk
        if "chunked" in names.get("transfer-encoding", "").lower():
            rest = _unchunk(rest)
            names.pop("transfer-encoding")
        return rest


def _unchunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, _, data = data.partition(b"\r\n")
        try:
            size = int(size_line.split(b";")[0] or b"0", 16)
        except ValueError:
            break
        if size == 0:
            break
        out += data[:size]
        data = data[size + 2:]
    return out


def _message(body: bytes, names: dict[str, str]) -> str:
    """The error message in a host answer (Burrow's, Anthropic's or OpenAI's shape)."""
    if "json" not in names.get("content-type", ""):
        return body[:300].decode(errors="replace").strip()
    try:
        doc = json.loads(body)
    except ValueError:
        return ""
    error = doc.get("error") if isinstance(doc, dict) else None
    return str(error.get("message") or "") if isinstance(error, dict) else ""


def main(argv: list[str]) -> None:
    """`relay.py FAMILY [PORT]`: serve until killed, after printing the base URL."""
    relay = Relay(argv[0], os.environ["BURROW_HOST_SOCKET"], os.environ["BURROW_BOX_TOKEN"],
                  os.environ.get("BURROW_RUN_ID", ""))
    relay.start(int(argv[1]) if len(argv) > 1 else 0)
    sys.stdout.write(relay.base_url + "\n")
    sys.stdout.flush()
    threading.Event().wait()


if __name__ == "__main__":
    main(sys.argv[1:])
