"""MCP clients for the built-in harness, inside the box: the servers a run names, their tools
offered to the model as `mcp__<server>__<tool>`, and their calls.

Two transports, as the MCP specification (2025-06-18) defines them:
- stdio: the server is a process of this box, started by the run as a session of its own (it
  and whatever it starts end with the run); JSON-RPC 2.0 messages, one a line, on its stdin
  and stdout. It gets the run's environment without the box token, plus its own `env`;
- streamable HTTP: each message POSTed to the server's URL, answered with JSON or an event
  stream. The connection is made by this process, so it goes where the box's network lets
  it (a box with network "none": its own loopback only) and nowhere else.

A server is someone else's code. Every wait has a deadline (a call's `timeout_s`, and the
run's), every message a size bound, every server a bounded number of tools; the tools'
names are prefixed, so a server's `shell` is `mcp__<server>__shell` and never the harness's.
A server that misbehaves — never answers, sends a message over the bound or one that is not
JSON-RPC, exits — fails its call with the reason, and the run goes on.

Stdlib only: runs inside boxes under `/usr/bin/python3 -I -S`.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import http.client
import json
import os
import queue
import re
import select
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any
from urllib.parse import urlsplit

from tenant_agent.runs.sessions import end_session

PROTOCOL_VERSION = "2025-06-18"
CLIENT_INFO = {"name": "burrow", "version": "1"}
# Unless the server's timeout_s says otherwise (it bounds each request to the server):
START_TIMEOUT_S = 30.0  # initialize, and each page of tools/list
CALL_TIMEOUT_S = 60.0  # a tool call
MAX_MESSAGE_BYTES = 1 << 20  # one JSON-RPC message (a line, a body, an event)
MAX_TOOLS = 64  # per server
MAX_PAGES = 8  # of tools/list
MAX_DESCRIPTION = 1024
MAX_PARAMETERS_BYTES = 16384
MAX_CONTENT_ITEMS = 100
STDERR_TAIL = 2000
QUEUED_MESSAGES = 64  # read ahead of the run; a flooding server waits on its own stdout
CLOSE_GRACE_S = 1.0
NAME_CHARS = re.compile(r"[^A-Za-z0-9_-]")
MAX_NAME = 64  # what model APIs take as a function's name
PREFIX = "mcp__"
# What a box with an unreachable address is told about its network.
NETWORK_HINT = ("a box reaches what its network allows: with network 'none' only its own "
                "loopback; with 'egress' public addresses within its egress rules, never the "
                "host's own, private, link-local or metadata addresses")
# Variables of the run that the servers do not get: the box token calls models and the
# knowledge base in the box's name.
WITHHELD_ENV = ("BURROW_BOX_TOKEN", "BURROW_HOST_SOCKET")


class McpError(Exception):
    """A call that failed, with the reason in words."""


def _error_text(error: Any) -> str:
    if isinstance(error, dict):
        return f"{error.get('message', '')} (code {error.get('code')})"[:500]
    return str(error)[:500]


class Transport:
    """One server's message channel: requests answered by id, notifications."""

    where = ""

    def request(self, method: str, params: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        raise NotImplementedError

    def notify(self, method: str, params: dict[str, Any]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


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


# -- the servers of a run ------------------------------------------------------------------------

@dataclass
class Tool:
    name: str  # as the model sees it: mcp__<server>__<tool>
    server: str
    remote: str  # the server's own name for it
    definition: dict[str, Any]  # the function tool the model is shown


def tool_name(server: str, tool: str) -> str:
    """The name the model calls a server's tool by: prefixed, in the characters model APIs
    take, at most 64 of them (a long name keeps a hash of the whole)."""
    name = PREFIX + server + "__" + NAME_CHARS.sub("_", tool)
    if len(name) > MAX_NAME:
        name = name[:MAX_NAME - 9] + "_" + hashlib.sha256(tool.encode()).hexdigest()[:8]
    return name


def _parameters(schema: Any) -> tuple[dict[str, Any], str]:
    if not isinstance(schema, dict) or schema.get("type", "object") != "object":
        return {"type": "object", "properties": {}}, ""
    if len(json.dumps(schema)) > MAX_PARAMETERS_BYTES:
        return {"type": "object"}, " (its parameter schema is too long to show)"
    return schema, ""


def tool_text(result: dict[str, Any]) -> str:
    """A tools/call result as the model reads it."""
    parts: list[str] = []
    content = result.get("content")
    for item in content[:MAX_CONTENT_ITEMS] if isinstance(content, list) else []:
        if not isinstance(item, dict):
            continue
        kind = item.get("type")
        if kind == "text":
            parts.append(str(item.get("text", "")))
        elif kind in ("image", "audio"):
            size = len(str(item.get("data", ""))) * 3 // 4
            parts.append(f"[{kind} {item.get('mimeType', '')}, {size} bytes]")
        elif kind == "resource" and isinstance(item.get("resource"), dict):
            resource = item["resource"]
            parts.append(str(resource["text"]) if "text" in resource
                         else f"[resource {resource.get('uri', '')}]")
        elif kind == "resource_link":
            parts.append(f"[resource link {item.get('uri', '')}: {item.get('name', '')}]")
    if not parts and "structuredContent" in result:
        parts.append(json.dumps(result["structuredContent"])[:MAX_MESSAGE_BYTES])
    return "\n".join(parts) or "(no output)"


class Server:
    """One MCP server of the run, started and listed."""

    def __init__(self, name: str, spec: dict[str, Any], workdir: str) -> None:
        self.name = name
        self.spec = spec
        self.workdir = workdir
        given = spec.get("timeout_s")
        # `timeout_s` bounds every request to it: its start (initialize, tools/list) and calls
        self.start_timeout_s = float(given or START_TIMEOUT_S)
        self.timeout_s = float(given or CALL_TIMEOUT_S)
        self.transport: Transport | None = None
        self.tools: list[Tool] = []
        self.error: str | None = None
        self.where = str(spec.get("url") or " ".join([str(spec.get("command", "")),
                                                       *map(str, spec.get("args") or [])]))[:200]

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in WITHHELD_ENV}
        env.update({str(k): str(v) for k, v in (self.spec.get("env") or {}).items()})
        return env

    def start(self, deadline: float) -> None:
        """Start it, initialize, list its tools; `error` says why not."""
        def timeout() -> float:
            return max(0.1, min(self.start_timeout_s, deadline - time.monotonic()))

        try:
            if self.spec.get("url"):
                self.transport = HttpTransport(str(self.spec["url"]),
                                               dict(self.spec.get("headers") or {}))
            else:
                cwd = os.path.join(self.workdir, str(self.spec.get("cwd") or "."))
                self.transport = StdioTransport(
                    [str(self.spec["command"]), *map(str, self.spec.get("args") or [])],
                    self.env(), cwd)
            answer = self.transport.request("initialize", {
                "protocolVersion": PROTOCOL_VERSION, "capabilities": {},
                "clientInfo": CLIENT_INFO}, timeout())
            if isinstance(self.transport, HttpTransport):
                version = answer.get("protocolVersion")
                self.transport.protocol = version if isinstance(version, str) else None
            self.transport.notify("notifications/initialized", {})
            self.tools = self._list(timeout)
        except McpError as exc:
            self.error = str(exc)
            self.close()

    def _list(self, timeout: Callable[[], float]) -> list[Tool]:
        assert self.transport is not None
        tools: list[Tool] = []
        seen: set[str] = set()
        cursor = None
        for _ in range(MAX_PAGES):
            page = self.transport.request("tools/list", {"cursor": cursor} if cursor else {},
                                          timeout())
            listed = page.get("tools")
            for item in listed if isinstance(listed, list) else []:
                if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                    continue
                name = tool_name(self.name, item["name"])
                if name in seen or len(tools) >= MAX_TOOLS:
                    continue
                seen.add(name)
                parameters, note = _parameters(item.get("inputSchema"))
                description = str(item.get("description") or item.get("title") or "")
                tools.append(Tool(name, self.name, item["name"], {
                    "type": "function", "function": {
                        "name": name, "parameters": parameters,
                        "description": (f"[MCP server {self.name}] "
                                        f"{description[:MAX_DESCRIPTION]}{note}").strip()}}))
            cursor = page.get("nextCursor")
            if not isinstance(cursor, str) or not cursor or len(tools) >= MAX_TOOLS:
                break
        return tools

    def call(self, tool: Tool, arguments: dict[str, Any], deadline: float) -> tuple[str, bool]:
        if self.transport is None:
            raise McpError(self.error or "the server is not running")
        timeout = min(self.timeout_s, deadline - time.monotonic())
        if timeout <= 0:
            raise McpError("the run has no time left for the call")
        result = self.transport.request("tools/call", {"name": tool.remote,
                                                       "arguments": arguments}, timeout)
        return tool_text(result), result.get("isError") is True

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
            self.transport = None


class McpTools:
    """The MCP servers of a run: started together, their tools, their calls."""

    def __init__(self, servers: dict[str, dict[str, Any]], workdir: str) -> None:
        self.servers = [Server(name, spec, workdir) for name, spec in servers.items()
                        if isinstance(spec, dict)]
        self.by_name: dict[str, Tool] = {}

    def start(self, deadline: float) -> list[Server]:
        """Start every server (at once); the ones that failed, each with its error."""
        threads = [threading.Thread(target=s.start, args=(deadline,), daemon=True)
                   for s in self.servers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for server in self.servers:
            for tool in server.tools:
                self.by_name.setdefault(tool.name, tool)
        return [s for s in self.servers if s.error is not None]

    @property
    def definitions(self) -> list[dict[str, Any]]:
        return [tool.definition for tool in self.by_name.values()]

    def owns(self, name: str) -> bool:
        return name in self.by_name

    def call(self, name: str, arguments: dict[str, Any], deadline: float) -> tuple[str, bool]:
        """(text, is_error) of a call; a call that fails is an error the model reads."""
        tool = self.by_name[name]
        server = next(s for s in self.servers if s.name == tool.server)
        try:
            return server.call(tool, arguments, deadline)
        except McpError as exc:
            return f"error: MCP server {server.name!r}: {exc}", True

    def close(self) -> None:
        for server in self.servers:
            server.close()
