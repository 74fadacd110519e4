"""MCP clients for the built-in harness, inside the box: the servers a run names, their tools
offered to the model as `mcp__<server>__<tool>`, and their calls.

Two transports (tenant_agent/runs/mcpwire.py), as the MCP specification (2025-06-18)
defines them:
- stdio: the server is a process of this box, started by the run as a session of its own (it
  and whatever it starts end with the run). It gets the run's environment without the box
  token, plus its own `env`;
- streamable HTTP: the connection is made by this process, so it goes where the box's
  network lets it (a box with network "none": its own loopback only) and nowhere else.

A server is someone else's code. Every wait has a deadline (a call's `timeout_s`, and the
run's), every message a size bound, every server a bounded number of tools; the tools'
names are prefixed, so a server's `shell` is `mcp__<server>__shell` and never the harness's.
A server that misbehaves — never answers, sends a message over the bound or one that is not
JSON-RPC, exits — fails its call with the reason, and the run goes on.

Stdlib only: runs inside boxes under `/usr/bin/python3 -I -S`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tenant_agent.runs.mcpwire import (
    MAX_MESSAGE_BYTES,
    HttpTransport,
    McpError,
    StdioTransport,
    Transport,
)

PROTOCOL_VERSION = "2025-06-18"
CLIENT_INFO = {"name": "burrow", "version": "1"}
# Unless the server's timeout_s says otherwise (it bounds each request to the server):
START_TIMEOUT_S = 30.0  # initialize, and each page of tools/list
CALL_TIMEOUT_S = 60.0  # a tool call
MAX_TOOLS = 64  # per server
MAX_PAGES = 8  # of tools/list
MAX_DESCRIPTION = 1024
MAX_PARAMETERS_BYTES = 16384
MAX_CONTENT_ITEMS = 100
NAME_CHARS = re.compile(r"[^A-Za-z0-9_-]")
MAX_NAME = 64  # what model APIs take as a function's name
PREFIX = "mcp__"
# Variables of the run that the servers do not get: the box token calls models and the
# knowledge base in the box's name.
WITHHELD_ENV = ("BURROW_BOX_TOKEN", "BURROW_HOST_SOCKET")


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
