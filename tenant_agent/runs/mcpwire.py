"""The MCP transports the built-in harness speaks (tenant_agent/runs/mcp.py holds the servers
of a run): JSON-RPC 2.0 requests answered by id and notifications, as the MCP specification
(2025-06-18) carries them —
- stdio: the server is a process of this box, started as a session of its own (it and
  whatever it starts end with `close()`); messages one a line on its stdin and stdout, read
  by a thread into a bounded queue (a flooding server waits on its own stdout), stderr kept as
  a tail for the error;
- streamable HTTP: each message POSTed to the server's URL on a new connection, answered with
  JSON or an event stream; the connection is this process's, so it goes where the box's
  network lets it, and a watchdog shuts it at the request's deadline (a server trickling
  bytes cannot outlast it).

Every request has a deadline and every message a bound (MAX_MESSAGE_BYTES); what goes wrong
is an McpError with the reason in words.

Stdlib only: runs inside boxes under `/usr/bin/python3 -I -S`.
"""

from __future__ import annotations

import contextlib
import errno
import http.client
import json
import os
import queue
import select
import socket
import ssl
import subprocess
import threading
import time
from abc import ABC, abstractmethod
from typing import IO, Any
from urllib.parse import urlsplit

from tenant_agent.runs.sessions import end_session

MAX_MESSAGE_BYTES = 1 << 20  # one JSON-RPC message (a line, a body, an event)
STDERR_TAIL = 2000
QUEUED_MESSAGES = 64  # read ahead of the run; a flooding server waits on its own stdout
CLOSE_GRACE_S = 1.0
# What a box with an unreachable address is told about its network.
NETWORK_HINT = ("a box reaches what its network allows: with network 'none' only its own "
                "loopback; with 'egress' public addresses within its egress rules, never the "
                "host's own, private, link-local or metadata addresses")


class McpError(Exception):
    """A call that failed, with the reason in words."""


def _error_text(error: Any) -> str:
    if isinstance(error, dict):
        return f"{error.get('message', '')} (code {error.get('code')})"[:500]
    return str(error)[:500]


class Transport(ABC):
    """One server's message channel: requests answered by id, notifications."""

    where = ""

    @abstractmethod
    def request(self, method: str, params: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        """The result of `method`, or an McpError; waits at most timeout_s."""

    @abstractmethod
    def notify(self, method: str, params: dict[str, Any]) -> None:
        """Send a notification (no answer)."""

    @abstractmethod
    def close(self) -> None:
        """End the channel and whatever it started."""


# -- stdio ---------------------------------------------------------------------------------------

class StdioTransport(Transport):
    def __init__(self, argv: list[str], env: dict[str, str], cwd: str) -> None:
        self.where = " ".join(argv)[:200]
        try:
            self.proc = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                         start_new_session=True)
        except OSError as exc:
            raise McpError(f"cannot start {self.where!r}: {exc.strerror or exc}"
                           + (f" ({exc.filename})" if exc.filename else "")) from None
        assert self.proc.stdin and self.proc.stdout and self.proc.stderr
        self.stdin = self.proc.stdin.fileno()
        os.set_blocking(self.stdin, False)
        self.messages: queue.Queue[dict[str, Any] | str] = queue.Queue(QUEUED_MESSAGES)
        self.stderr = b""
        self.broken: str | None = None
        self.closed = threading.Event()
        self.next_id = 1
        self.readers = [threading.Thread(target=self._read, args=(self.proc.stdout,),
                                         daemon=True),
                        threading.Thread(target=self._drain, args=(self.proc.stderr,),
                                         daemon=True)]
        for reader in self.readers:
            reader.start()

    def _put(self, item: dict[str, Any] | str) -> None:
        while not self.closed.is_set():
            with contextlib.suppress(queue.Full):
                self.messages.put(item, timeout=0.2)
                return

    def _read(self, stdout: IO[bytes]) -> None:
        """Messages of the server's stdout into the queue; "eof" or "oversize" at its end.
        A line that is not a JSON object is skipped (a stray print)."""
        with contextlib.suppress(OSError, ValueError):
            while not self.closed.is_set():
                line = stdout.readline(MAX_MESSAGE_BYTES + 1)
                if not line:
                    break
                if len(line) > MAX_MESSAGE_BYTES:
                    self._put("oversize")
                    return
                try:
                    message = json.loads(line)
                except ValueError:
                    continue
                if isinstance(message, dict):
                    self._put(message)
        self._put("eof")

    def _drain(self, stderr: IO[bytes]) -> None:
        with contextlib.suppress(OSError, ValueError):
            while chunk := os.read(stderr.fileno(), 65536):
                self.stderr = (self.stderr + chunk)[-STDERR_TAIL:]

    def _tail(self) -> str:
        text = " ".join(self.stderr.decode(errors="replace").split())
        return f": {text[-500:]}" if text else ""

    def _send(self, message: dict[str, Any], deadline: float) -> None:
        data = json.dumps(message, separators=(",", ":")).encode() + b"\n"
        while data:
            left = deadline - time.monotonic()
            if left <= 0:
                raise McpError("the server is not reading its stdin")
            if not select.select([], [self.stdin], [], left)[1]:
                continue
            try:
                data = data[os.write(self.stdin, data):]
            except BlockingIOError:
                continue
            except OSError:
                raise McpError(self._exited()) from None

    def _exited(self) -> str:
        code = self.proc.poll()
        if code is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                code = self.proc.wait(0.5)
        self.broken = (f"the server exited with code {code}" if code is not None
                       else "the server closed its stdout") + self._tail()
        return self.broken

    def request(self, method: str, params: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        if self.broken:
            raise McpError(self.broken)
        deadline = time.monotonic() + timeout_s
        ident, self.next_id = self.next_id, self.next_id + 1
        self._send({"jsonrpc": "2.0", "id": ident, "method": method, "params": params},
                   deadline)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                with contextlib.suppress(McpError):
                    self._send({"jsonrpc": "2.0", "method": "notifications/cancelled",
                                "params": {"requestId": ident, "reason": "timed out"}},
                               time.monotonic() + 0.5)
                raise McpError(f"no answer to {method} within {timeout_s:.0f} s")
            try:
                item = self.messages.get(timeout=min(left, 0.5))
            except queue.Empty:
                continue
            if item == "eof":
                raise McpError(self._exited())
            if item == "oversize":
                self.broken = (f"the server sent a message over {MAX_MESSAGE_BYTES} bytes; it "
                               "was stopped")
                self.close()
                raise McpError(self.broken)
            assert isinstance(item, dict)
            if isinstance(item.get("method"), str):
                if "id" in item:  # the server asks something of the client
                    self._answer(item)
                continue
            if item.get("id") != ident:
                continue  # a late answer to a call that timed out
            return _result(item, method)

    def _answer(self, request: dict[str, Any]) -> None:
        reply: dict[str, Any] = {"jsonrpc": "2.0", "id": request.get("id")}
        if request.get("method") == "ping":
            reply["result"] = {}
        else:  # no roots, sampling or elicitation: none was offered at initialize
            reply["error"] = {"code": -32601, "message": "not supported by this client"}
        with contextlib.suppress(McpError):
            self._send(reply, time.monotonic() + 1.0)

    def notify(self, method: str, params: dict[str, Any]) -> None:
        self._send({"jsonrpc": "2.0", "method": method, "params": params},
                   time.monotonic() + 2.0)

    def close(self) -> None:
        self.closed.set()
        end_session(self.proc, CLOSE_GRACE_S)
        pipes = [self.proc.stdin, self.proc.stdout, self.proc.stderr]
        for reader in self.readers:
            reader.join(CLOSE_GRACE_S)
        if any(reader.is_alive() for reader in self.readers):
            pipes = pipes[:1]  # held open by a process that left the session: not waited for
        for pipe in pipes:
            with contextlib.suppress(OSError):
                if pipe is not None:
                    pipe.close()


def _result(message: dict[str, Any], method: str) -> dict[str, Any]:
    if "error" in message:
        raise McpError(f"the server answered {method} with an error: "
                       f"{_error_text(message['error'])}")
    result = message.get("result")
    if not isinstance(result, dict):
        raise McpError(f"the server's answer to {method} is not JSON-RPC (no result object)")
    return result


# -- streamable HTTP -----------------------------------------------------------------------------

def _unreachable(host: str, port: int, exc: BaseException) -> str:
    if isinstance(exc, socket.gaierror):
        reason = f"cannot resolve {host}"
    elif isinstance(exc, TimeoutError | socket.timeout):
        reason = "no answer in time"
    elif isinstance(exc, ssl.SSLError):
        reason = f"TLS failed: {exc.reason or exc}"
    elif isinstance(exc, ConnectionRefusedError):
        reason = "connection refused"
    elif isinstance(exc, OSError) and exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
        reason = "no route to it"
    else:
        reason = str(exc) or type(exc).__name__
    return f"cannot reach {host}:{port} from this box ({reason}); {NETWORK_HINT}"


class HttpTransport(Transport):
    """Streamable HTTP: a request per message on a new connection, made from this box."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        parts = urlsplit(url)
        self.where = url[:200]
        self.https = parts.scheme == "https"
        self.host = parts.hostname or ""
        self.port = parts.port or (443 if self.https else 80)
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.headers = dict(headers)
        self.session: str | None = None
        self.protocol: str | None = None
        self.next_id = 1

    def _post(self, message: dict[str, Any] | None, deadline: float,
              verb: str = "POST") -> tuple[http.client.HTTPConnection, Any]:
        left = deadline - time.monotonic()
        if left <= 0:
            raise McpError("no time left for the call")
        conn: http.client.HTTPConnection
        if self.https:
            conn = http.client.HTTPSConnection(self.host, self.port, timeout=left,
                                               context=ssl.create_default_context())
        else:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=left)
        headers = {**self.headers, "Accept": "application/json, text/event-stream",
                   "Content-Type": "application/json", "User-Agent": "burrow-mcp/1"}
        if self.session:
            headers["Mcp-Session-Id"] = self.session
        if self.protocol:
            headers["MCP-Protocol-Version"] = self.protocol
        body = json.dumps(message).encode() if message is not None else None
        # A server that trickles bytes cannot outlast the deadline: the socket is shut then.
        watchdog = threading.Timer(left, _shut, args=(conn,))
        watchdog.daemon = True
        watchdog.start()
        conn.watchdog = watchdog  # type: ignore[attr-defined]
        try:
            conn.request(verb, self.path, body=body, headers=headers)
            return conn, conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            _close(conn)
            if time.monotonic() >= deadline:
                raise McpError("no answer in time") from None
            raise McpError(_unreachable(self.host, self.port, exc)) from None

    def request(self, method: str, params: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        ident, self.next_id = self.next_id, self.next_id + 1
        conn, response = self._post({"jsonrpc": "2.0", "id": ident, "method": method,
                                     "params": params}, deadline)
        try:
            if response.status == 404 and self.session:
                raise McpError("the server ended its session (HTTP 404)")
            if response.status != 200:
                said = response.read(2000).decode(errors="replace")
                raise McpError(f"the server answered HTTP {response.status}: "
                               f"{' '.join(said.split())[:300]}")
            if method == "initialize":
                self.session = response.getheader("Mcp-Session-Id") or None
            kind = (response.getheader("Content-Type") or "").split(";")[0].strip().lower()
            if kind == "text/event-stream":
                return self._from_stream(response, ident, method, deadline)
            if kind != "application/json":
                raise McpError(f"the server answered {method} with {kind or 'no type'}, not "
                               "JSON or an event stream")
            body = _bounded(response, MAX_MESSAGE_BYTES)
            try:
                message = json.loads(body)
            except ValueError:
                raise McpError(f"the server's answer to {method} is not JSON") from None
            if not isinstance(message, dict) or message.get("id") != ident:
                raise McpError(f"the server's answer to {method} is not JSON-RPC (no answer "
                               "with the request's id)")
            return _result(message, method)
        except (OSError, http.client.HTTPException):
            if time.monotonic() >= deadline:
                raise McpError(f"no answer to {method} within {timeout_s:.0f} s") from None
            raise McpError(f"the connection to the server broke during {method}") from None
        finally:
            _close(conn, response)

    def _from_stream(self, response: Any, ident: int, method: str,
                     deadline: float) -> dict[str, Any]:
        data: list[bytes] = []
        size = 0
        while True:
            line = response.readline(MAX_MESSAGE_BYTES + 1)
            if not line:
                raise McpError(f"the server's event stream ended without an answer to {method}")
            if time.monotonic() >= deadline:
                raise McpError(f"no answer to {method} in time")
            line = line.rstrip(b"\r\n")
            if line.startswith(b"data:"):
                piece = line[5:].removeprefix(b" ")
                size += len(piece)
                if size > MAX_MESSAGE_BYTES:
                    raise McpError(f"the server sent a message over {MAX_MESSAGE_BYTES} bytes")
                data.append(piece)
                continue
            if line or not data:
                continue  # event:, id:, retry:, a comment; or a blank line between events
            try:
                message = json.loads(b"\n".join(data))
            except ValueError:
                message = None
            data, size = [], 0
            if not isinstance(message, dict):
                continue
            if isinstance(message.get("method"), str):
                if "id" in message:
                    self._answer(message)
                continue
            if message.get("id") == ident:
                return _result(message, method)

    def _answer(self, request: dict[str, Any]) -> None:
        reply: dict[str, Any] = {"jsonrpc": "2.0", "id": request.get("id")}
        if request.get("method") == "ping":
            reply["result"] = {}
        else:
            reply["error"] = {"code": -32601, "message": "not supported by this client"}
        with contextlib.suppress(McpError):
            _close(*self._post(reply, time.monotonic() + 2.0))

    def notify(self, method: str, params: dict[str, Any]) -> None:
        conn, response = self._post({"jsonrpc": "2.0", "method": method, "params": params},
                                    time.monotonic() + 5.0)
        _close(conn, response)
        if response.status not in (200, 202, 204):
            raise McpError(f"the server answered {method} with HTTP {response.status}")

    def close(self) -> None:
        if self.session:  # the session's end, as the specification asks; no answer needed
            with contextlib.suppress(McpError):
                _close(*self._post(None, time.monotonic() + 2.0, verb="DELETE"))


def _bounded(response: Any, limit: int) -> bytes:
    body: bytes = response.read(limit + 1)
    if len(body) > limit:
        raise McpError(f"the server sent a message over {limit} bytes")
    return body


def _shut(conn: http.client.HTTPConnection) -> None:
    with contextlib.suppress(OSError, AttributeError):
        conn.sock.shutdown(socket.SHUT_RDWR)


def _close(conn: http.client.HTTPConnection, response: Any = None) -> None:
    watchdog = getattr(conn, "watchdog", None)
    if watchdog is not None:
        watchdog.cancel()
    with contextlib.suppress(OSError):
        if response is not None:
            response.close()
        conn.close()
