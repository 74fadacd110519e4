"""The built-in agent harness (Agent.BURROW): one agent run, inside the box.

The gateway starts it through the box daemon with the run on stdin; it talks to the model
through the host services socket (the gateway adds the provider's key there, so no key is
ever in the box) and runs the model's tool calls — shell commands and file operations — as
this box's own processes. It writes one JSON event per line on stdout: text, tool_call,
tool_result, and last a result with the run's status, result and usage.

The run's MCP servers (tenant_agent/runs/mcp.py) are started before the first model call;
their tools join the harness's own under `mcp__<server>__<tool>`. A server that does not start
shows in the stream as a failed tool call named `mcp__<server>`, and the model is told so.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tenant_agent.common import host
from tenant_agent.runs.jsonschema import SchemaError, untitled, validate
from tenant_agent.runs.mcp import McpTools

WORKSPACE = "/workspace"
MAX_TOOL_OUTPUT = 8000
SCHEMA_ATTEMPTS = 3

SYSTEM = (
    "You are an agent working inside a Linux computer of your own. Your working directory "
    "is /workspace. Use the tools to look at files, run commands and write files. When the "
    "task is done, answer with a short summary of what you did and found, without a tool call.")

TOOLS: list[dict[str, Any]] = [
    {"type": "function", "function": {
        "name": "shell", "description": "Run a shell command in /workspace; returns its exit "
                                        "code and output.",
        "parameters": {"type": "object", "properties": {
            "command": {"type": "string", "description": "the command, run by sh -c"}},
            "required": ["command"]}}},
    {"type": "function", "function": {
        "name": "write_file", "description": "Create or replace a text file.",
        "parameters": {"type": "object", "properties": {
            "path": {"type": "string", "description": "path, relative to /workspace"},
            "content": {"type": "string", "description": "the whole new content"}},
            "required": ["path", "content"]}}},
    {"type": "function", "function": {
        "name": "read_file", "description": "Read a text file.",
        "parameters": {"type": "object", "properties": {
            "path": {"type": "string", "description": "path, relative to /workspace"}},
            "required": ["path"]}}},
    {"type": "function", "function": {
        "name": "list_dir", "description": "List a directory.",
        "parameters": {"type": "object", "properties": {
            "path": {"type": "string", "description": "path, relative to /workspace"}},
            "required": []}}},
]


class RunFailed(Exception):
    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status


def emit(**event: Any) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def _path(raw: Any) -> Path:
    if not isinstance(raw, str) or not raw:
        raise ValueError("a path is required")
    return Path(raw) if raw.startswith("/") else Path(WORKSPACE) / raw


def _clip(text: str) -> str:
    if len(text) <= MAX_TOOL_OUTPUT:
        return text
    return text[:MAX_TOOL_OUTPUT] + f"\n[... {len(text) - MAX_TOOL_OUTPUT} more characters]"


BUILT_IN = tuple(tool["function"]["name"] for tool in TOOLS)


def run_tool(name: str, args: dict[str, Any], deadline: float) -> str:
    """A tool call's result as text; raises ValueError/OSError for the model to read."""
    if name == "shell":
        command = args.get("command")
        if not isinstance(command, str) or not command.strip():
            raise ValueError("shell needs a command")
        left = max(1.0, deadline - time.monotonic())
        try:
            done = subprocess.run(["/bin/sh", "-c", command], cwd=WORKSPACE, text=True,
                                  capture_output=True, timeout=min(left, 300),
                                  stdin=subprocess.DEVNULL, errors="replace")
        except subprocess.TimeoutExpired:
            return f"the command timed out after {min(left, 300):.0f} s"
        return _clip(f"exit code {done.returncode}\n{done.stdout}{done.stderr}")
    if name == "write_file":
        content = args.get("content")
        if not isinstance(content, str):
            raise ValueError("write_file needs content (a string)")
        path = _path(args.get("path"))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
        return f"wrote {len(content.encode())} bytes to {path}"
    if name == "read_file":
        return _clip(_path(args.get("path")).read_text(errors="replace"))
    if name == "list_dir":
        path = _path(args.get("path") or WORKSPACE)
        entries = sorted(p.name + ("/" if p.is_dir() else "") for p in path.iterdir())
        return _clip("\n".join(entries) or "(empty)")
    raise ValueError(f"there is no tool {name!r}; use one of {', '.join(BUILT_IN)} (or an "
                     "MCP server's tool, named mcp__<server>__<tool>, as the tools list it)")


class Run:
    def __init__(self, job: dict[str, Any]) -> None:
        self.model = str(job["model"])
        self.prompt = str(job["prompt"])
        self.schema: dict[str, Any] | None = job.get("response_schema")
        self.max_turns = int(job.get("max_turns") or 10)
        self.deadline = time.monotonic() + float(job.get("timeout_s") or 600)
        self.usage = {"input_tokens": 0, "output_tokens": 0, "turns": 0, "tool_calls": 0}
        self.texts: list[str] = []
        self.messages: list[dict[str, Any]] = [{"role": "system", "content": SYSTEM},
                                               {"role": "user", "content": self.prompt}]
        self.mcp = McpTools(job.get("mcp_servers") or {}, WORKSPACE)
        self.tools = TOOLS

    def start_mcp(self) -> None:
        """Start the run's MCP servers and offer their tools; say which did not start."""
        failed = self.mcp.start(self.deadline)
        self.tools = TOOLS + self.mcp.definitions
        for server in failed:
            emit(type="tool_call", name=f"mcp__{server.name}", input={"start": server.where})
            emit(type="tool_result", name=f"mcp__{server.name}", is_error=True,
                 output=f"MCP server {server.name!r} did not start: {server.error}")
        if failed:
            self.messages[0]["content"] += "\n\nThese MCP servers are unavailable: " + "; ".join(
                f"{s.name} ({s.error})" for s in failed)

    def chat(self, **extra: Any) -> dict[str, Any]:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise RunFailed("timed_out", "the run reached its timeout")
        body = {"model": self.model, "messages": self.messages, **extra}
        try:
            answer = host.call("/v1/model/chat", body, timeout_s=left)
        except host.HostError as exc:
            status = "timed_out" if time.monotonic() >= self.deadline else "failed"
            raise RunFailed(status, f"model call failed: {exc}") from None
        if not isinstance(answer, dict) or not isinstance(answer.get("message"), dict):
            raise RunFailed("failed", "the model call gave no message")
        usage = answer.get("usage") or {}
        self.usage["input_tokens"] += int(usage.get("input_tokens") or 0)
        self.usage["output_tokens"] += int(usage.get("output_tokens") or 0)
        self.usage["turns"] += 1
        message: dict[str, Any] = answer["message"]
        return message

    def say(self, text: str | None) -> None:
        if text and text.strip():
            self.texts.append(text)
            emit(type="text", text=text)

    def work(self) -> str | None:
        """The tool loop; the final answer's text, or None if the turns ran out first."""
        previous: list[tuple[str, str]] = []
        for turn in range(self.max_turns):
            # With a schema the final answer may already come in its shape: one call saved.
            message = self.chat(tools=self.tools, **self.result_format())
            self.say(message.get("content"))
            calls = message.get("tool_calls") or []
            if not calls:
                return str(message.get("content") or "")
            steps = [_step(call) for call in calls]
            if steps == previous and turn + 1 < self.max_turns:
                # The same call again, with the same result to come: small models loop here.
                # Ask for the answer instead of spending the remaining turns on it.
                return self.conclude()
            previous = steps
            self.messages.append({"role": "assistant", "content": message.get("content"),
                                  "tool_calls": calls})
            for call in calls:
                self.messages.append({"role": "tool", "tool_call_id": call.get("id", ""),
                                      "content": self.call_tool(call)})
        return None

    def conclude(self) -> str:
        self.messages.append({"role": "user", "content": (
            "You already did that step and saw its result. Do not call a tool again: give "
            "your final answer now.")})
        message = self.chat()
        self.say(message.get("content"))
        return str(message.get("content") or "")

    def call_tool(self, call: dict[str, Any]) -> str:
        function = call.get("function") or {}
        name = str(function.get("name", ""))
        try:
            args = json.loads(function.get("arguments") or "{}")
            if not isinstance(args, dict):
                raise ValueError("tool arguments must be a JSON object")
        except ValueError as exc:
            args, output, is_error = {}, f"bad arguments: {exc}", True
        else:
            emit(type="tool_call", name=name, input=args)
            if self.mcp.owns(name):
                output, is_error = self.mcp.call(name, args, self.deadline)
                output = _clip(output)
            else:
                try:
                    output, is_error = run_tool(name, args, self.deadline), False
                except (ValueError, OSError) as exc:
                    output, is_error = f"error: {exc}", True
        self.usage["tool_calls"] += 1
        emit(type="tool_result", name=name, output=output, is_error=is_error)
        return output

    def result_format(self) -> dict[str, Any]:
        if self.schema is None:
            return {}
        return {"response_format": {"type": "json_schema", "json_schema": {
            "name": "result", "schema": self.schema}}}

    def parsed(self, text: str) -> Any:
        """`text` as the structured result; ValueError saying why it is not one."""
        assert self.schema is not None
        # strict=False: a raw newline inside a string is what small models write most
        value = json.loads(_strip_fence(text), strict=False)
        validate(value, self.schema)
        return value

    def structured(self, final: str | None) -> Any:
        """The result as JSON matching the schema, asked for until it does (a few times)."""
        assert self.schema is not None
        if final:
            try:
                return self.parsed(final)
            except ValueError:
                pass  # a summary in words: ask for the result in the schema's shape
        self.messages.append({"role": "user", "content": (
            "Now give the final result as one JSON value matching this JSON schema, and "
            f"nothing else:\n{json.dumps(untitled(self.schema))}")})
        problem = ""
        for _ in range(SCHEMA_ATTEMPTS):
            message = self.chat(**self.result_format())
            text = str(message.get("content") or "")
            try:
                return self.parsed(text)
            except ValueError as exc:  # SchemaError is a ValueError, as is bad JSON
                problem = str(exc)
            self.messages += [{"role": "assistant", "content": text},
                              {"role": "user", "content": f"That is not valid: {problem}. "
                                                          "Reply with the JSON only."}]
        raise RunFailed("failed", f"the model's output did not match response_schema after "
                                  f"{SCHEMA_ATTEMPTS} attempts: {problem}")


def _step(call: dict[str, Any]) -> tuple[str, str]:
    function = call.get("function") or {}
    return str(function.get("name", "")), str(function.get("arguments", ""))


def _strip_fence(text: str) -> str:
    text = text.strip()
    if text.startswith("```"):
        text = text.split("\n", 1)[1] if "\n" in text else ""
        text = text.rsplit("```", 1)[0]
    return text


def main() -> None:
    job = json.loads(sys.stdin.read())
    run = Run(job)
    status, result, error = "completed", None, None
    try:
        run.start_mcp()
        final = run.work()
        if run.schema is not None:  # what the tools found may be enough even without a summary
            result = run.structured(final)
        elif final is None:
            raise RunFailed("failed", f"no final answer after {run.max_turns} turns; raise "
                                      "max_turns or make the task smaller")
        else:
            result = final
    except RunFailed as exc:
        status, error = exc.status, str(exc)
    except SchemaError as exc:  # the schema itself is broken
        status, error = "failed", f"response_schema: {exc}"
    finally:
        run.mcp.close()
    emit(type="result", status=status, result=result, output="\n".join(run.texts),
         error=error, usage=run.usage)

