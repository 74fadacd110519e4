"""The agent CLIs' JSON output streams read as Burrow's run chunks: a `StreamParser` per CLI
turns the lines it prints into chunks of the shapes the built-in harness emits (`text`,
`tool_call`, `tool_result`; the run adds `result`), keeping the final answer, the error, the
usage and the session id (to continue the session, e.g. to ask again for a structured
result). Lines that are not JSON events, and events it does not know, are skipped.

- Claude Code (`-p --output-format stream-json --verbose`): `system` init, `assistant` and
  `user` messages of content blocks (`text`, `tool_use`, `tool_result`), `result`.
- Codex (`exec --json`): `thread.started`, `turn.completed` / `turn.failed`, `error`,
  `item.started` / `item.completed` of `agent_message`, `command_execution`, `file_change`,
  `mcp_tool_call`, `web_search`.
- OpenCode (`run --format json`): `step_start`, `text`, `tool_use` (a finished call with its
  state), `step_finish` (tokens, reason), `error`.

Stdlib only: runs inside boxes under `/usr/bin/python3 -I -S`.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from typing import Any

MAX_OUTPUT_CHARS = 8000


def _obj(value: Any) -> dict[str, Any]:
    """`value` if it is a JSON object, else an empty one (events are read defensively)."""
    return value if isinstance(value, dict) else {}


def _clip(text: str) -> str:
    if len(text) <= MAX_OUTPUT_CHARS:
        return text
    return text[:MAX_OUTPUT_CHARS] + f"\n[... {len(text) - MAX_OUTPUT_CHARS} more characters]"


class StreamParser(ABC):
    """Lines of a CLI's JSON output in, run chunks out; what the run needs to report kept."""

    def __init__(self) -> None:
        self.session: str | None = None
        self.final: str | None = None
        self.error: str | None = None
        self.texts: list[str] = []
        self.usage = {"input_tokens": 0, "output_tokens": 0}
        self.tool_calls = 0

    def feed(self, line: str) -> list[dict[str, Any]]:
        try:
            event = json.loads(line)
        except ValueError:
            return []  # a CLI's log line on stdout: not an event
        return self.event(event) if isinstance(event, dict) else []

    @abstractmethod
    def event(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        """The run chunks one decoded event of the CLI's stream makes."""

    def text(self, text: Any) -> list[dict[str, Any]]:
        if not isinstance(text, str) or not text.strip():
            return []
        self.texts.append(text)
        return [{"type": "text", "text": text}]

    def call(self, name: str, arguments: Any) -> dict[str, Any]:
        self.tool_calls += 1
        return {"type": "tool_call", "name": name,
                "input": arguments if isinstance(arguments, dict) else {"input": arguments}}

    @staticmethod
    def result(name: str, output: Any, is_error: bool) -> dict[str, Any]:
        text = output if isinstance(output, str) else json.dumps(output)
        return {"type": "tool_result", "name": name, "output": _clip(text),
                "is_error": bool(is_error)}


class ClaudeStream(StreamParser):
    """`claude -p --output-format stream-json --verbose`: system init, assistant and user
    messages of content blocks, a result."""

    def __init__(self) -> None:
        super().__init__()
        self.names: dict[str, str] = {}  # tool_use id -> tool name

    def event(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        kind = event.get("type")
        self.session = str(event.get("session_id") or self.session or "") or None
        message = _obj(event.get("message"))
        blocks = [b for b in message.get("content") or [] if isinstance(b, dict)]
        chunks: list[dict[str, Any]] = []
        if kind == "assistant" and not event.get("is_api_error_message"):
            for block in blocks:
                if block.get("type") == "text":
                    chunks += self.text(block.get("text"))
                elif block.get("type") == "tool_use":
                    self.names[str(block.get("id"))] = str(block.get("name"))
                    chunks.append(self.call(str(block.get("name")), block.get("input")))
        elif kind == "user":
            for block in blocks:
                if block.get("type") == "tool_result":
                    name = self.names.get(str(block.get("tool_use_id")), "tool")
                    output = block.get("content")
                    if isinstance(output, list):
                        output = "\n".join(str(p.get("text") or "") for p in output
                                           if isinstance(p, dict))
                    chunks.append(self.result(name, output or "", bool(block.get("is_error"))))
        elif kind == "result":
            self._result(event)
        return chunks

    def _result(self, event: dict[str, Any]) -> None:
        usage = _obj(event.get("usage"))
        self.usage["input_tokens"] = sum(int(usage.get(k) or 0) for k in (
            "input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"))
        self.usage["output_tokens"] = int(usage.get("output_tokens") or 0)
        text = event.get("result")
        if event.get("is_error") or str(event.get("subtype", "")).startswith("error"):
            self.error = str(text or event.get("subtype") or "Claude Code reported an error")
        else:
            self.final = str(text or "")


class CodexStream(StreamParser):
    """`codex exec --json`: thread.started, turn.*, item.started / item.completed of
    agent_message, command_execution, file_change, mcp_tool_call, error…"""

    def __init__(self) -> None:
        super().__init__()
        self.started: set[str] = set()

    def event(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        kind = event.get("type")
        item = _obj(event.get("item"))
        if kind == "thread.started":
            self.session = str(event.get("thread_id") or "") or None
        elif kind == "turn.completed":
            usage = _obj(event.get("usage"))
            self.usage["input_tokens"] += int(usage.get("input_tokens") or 0)
            self.usage["output_tokens"] += int(usage.get("output_tokens") or 0)
        elif kind in ("turn.failed", "error"):
            error = _obj(event.get("error")) or event
            self.error = str(error.get("message") or "Codex reported an error")
        elif kind == "item.started":
            return self._started(item)
        elif kind == "item.completed":
            return self._completed(item)
        return []

    def _call(self, item: dict[str, Any]) -> dict[str, Any] | None:
        kind = item.get("type")
        if kind == "command_execution":
            return self.call("shell", {"command": item.get("command")})
        if kind == "file_change":
            return self.call("apply_patch", {"changes": item.get("changes")})
        if kind == "mcp_tool_call":
            return self.call(f"{item.get('server')}.{item.get('tool')}", item.get("arguments"))
        if kind == "web_search":
            return self.call("web_search", {"query": item.get("query")})
        return None

    def _started(self, item: dict[str, Any]) -> list[dict[str, Any]]:
        call = self._call(item)
        if call is None:
            return []
        self.started.add(str(item.get("id")))
        return [call]

    def _completed(self, item: dict[str, Any]) -> list[dict[str, Any]]:
        kind = item.get("type")
        if kind == "agent_message":
            self.final = str(item.get("text") or "")
            return self.text(item.get("text"))
        chunks: list[dict[str, Any]] = []
        if str(item.get("id")) not in self.started:
            call = self._call(item)
            chunks += [call] if call is not None else []
        failed = item.get("status") == "failed"
        if kind == "command_execution":
            code = item.get("exit_code")
            output = f"exit code {code}\n{item.get('aggregated_output') or ''}"
            chunks.append(self.result("shell", output, failed or code not in (0, None)))
        elif kind == "file_change":
            changes = item.get("changes") or []
            output = "\n".join(f"{c.get('kind')} {c.get('path')}" for c in changes
                               if isinstance(c, dict))
            chunks.append(self.result("apply_patch", output, failed))
        elif kind == "mcp_tool_call":
            name = f"{item.get('server')}.{item.get('tool')}"
            chunks.append(self.result(name, item.get("result") or item.get("error") or "",
                                      failed))
        return chunks


class OpenCodeStream(StreamParser):
    """`opencode run --format json`: step_start, text, tool_use (a finished tool call with its
    state), step_finish (tokens, reason), error."""

    def __init__(self) -> None:
        super().__init__()
        self.step_texts: list[str] = []

    def event(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        kind = event.get("type")
        part = _obj(event.get("part"))
        self.session = str(event.get("sessionID") or self.session or "") or None
        if kind == "step_start":
            self.step_texts = []
        elif kind == "text":
            self.step_texts.append(str(part.get("text") or ""))
            return self.text(part.get("text"))
        elif kind == "tool_use":
            state = _obj(part.get("state"))
            name = str(part.get("tool") or "tool")
            failed = state.get("status") == "error"
            output = state.get("error") if failed else state.get("output")
            return [self.call(name, state.get("input")),
                    self.result(name, output or "", failed)]
        elif kind == "step_finish":
            tokens = _obj(part.get("tokens"))
            self.usage["input_tokens"] += int(tokens.get("input") or 0)
            self.usage["output_tokens"] += int(tokens.get("output") or 0)
            if part.get("reason") not in ("tool-calls", "tool_calls"):
                self.final = "".join(self.step_texts)
        elif kind == "error":
            error = _obj(event.get("error"))
            data = _obj(error.get("data"))
            self.error = str(data.get("message") or error.get("name") or "OpenCode reported "
                                                                         "an error")
        return []
