# Generated from burrow/_async/agent.py by `python -m burrow._unasync`; do not edit.
# ruff: noqa: I001
"""Agent runs in a box: `box.agent.run(prompt=...)` to the end, `box.agent.stream(...)` event
by event."""

from __future__ import annotations

import builtins
from collections.abc import Generator
from types import TracebackType
from typing import Any, Generic, TypeVar, overload

from pydantic import BaseModel

from burrow._agent import Schema, parse_run, run_body
from burrow._sync.http import Http
from burrow._errors import BurrowError
from burrow._models import Agent, Run, RunChunk

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")


class RunStream(Generic[T]):
    """The chunks of a run as they happen (start, text, tool_call, tool_result, finish);
    after the finish chunk, `run` is the final Run."""

    def __init__(self, lines: Generator[dict[str, Any], None, None], schema: Schema) -> None:
        self._lines = lines
        self._schema = schema
        self.run: Run[T] | None = None

    def __iter__(self) -> RunStream[T]:
        return self

    def __next__(self) -> RunChunk:
        line = next(self._lines)
        chunk = RunChunk.model_validate(line)
        if chunk.type == "finish" and line.get("run") is not None:
            self.run = parse_run(line["run"], self._schema)
            chunk = chunk.model_copy(update={"run": self.run})
        return chunk

    def final_run(self) -> Run[T]:
        """Read the rest of the stream; return the final Run."""
        for _ in self:
            pass
        if self.run is None:
            raise BurrowError("the run's stream ended without its finish event",
                              code="bad_stream")
        return self.run

    def close(self) -> None:
        self._lines.close()

    def __enter__(self) -> RunStream[T]:
        return self

    def __exit__(self, exc_type: type[BaseException] | None,
                 exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


class AgentRuns:
    """The box's agent (configured at create with agent={"harness", "model"}, or per run)."""

    def __init__(self, http: Http, box_id: str) -> None:
        self._http = http
        self._path = f"/v1/boxes/{box_id}/agent/runs"

    @overload
    def run(self, prompt: str, *, response_schema: type[M],
            timeout_s: float | None = None, max_turns: int | None = None,
            model: str | None = None, harness: Agent | str | None = None,
            mcp_servers: dict[str, dict[str, Any]] | None = None) -> Run[M]: ...

    @overload
    def run(self, prompt: str, *, response_schema: dict[str, Any] | None = None,
            timeout_s: float | None = None, max_turns: int | None = None,
            model: str | None = None, harness: Agent | str | None = None,
            mcp_servers: dict[str, dict[str, Any]] | None = None) -> Run[Any]: ...

    def run(self, prompt: str, *, response_schema: Schema = None,
            timeout_s: float | None = None, max_turns: int | None = None,
            model: str | None = None, harness: Agent | str | None = None,
            mcp_servers: dict[str, dict[str, Any]] | None = None) -> Run[Any]:
        """Run the agent on `prompt` to the end. With `response_schema` (a pydantic model
        class or a JSON schema dict) the answer is validated and `run.result` is the object.
        `mcp_servers` adds MCP servers to the box's for this run, by name: `{"command":
        "python3", "args": [...], "env": {...}}` started in the box, or `{"url": ...,
        "headers": {...}}` reached from it; their tools are `mcp__<name>__<tool>`.
        A failed or timed-out run is returned (`run.status`, `run.error`), not raised."""
        body = run_body(prompt, response_schema, timeout_s, max_turns, model, harness,
                        mcp_servers)
        data = self._http.json("POST", self._path, json=body, wait_s=timeout_s,
                               unbounded=True)
        return parse_run(data, response_schema)

    @overload
    def stream(self, prompt: str, *, response_schema: type[M],
               timeout_s: float | None = None, max_turns: int | None = None,
               model: str | None = None, harness: Agent | str | None = None,
               mcp_servers: dict[str, dict[str, Any]] | None = None) -> RunStream[M]: ...

    @overload
    def stream(self, prompt: str, *, response_schema: dict[str, Any] | None = None,
               timeout_s: float | None = None, max_turns: int | None = None,
               model: str | None = None, harness: Agent | str | None = None,
               mcp_servers: dict[str, dict[str, Any]] | None = None,
               ) -> RunStream[Any]: ...

    def stream(self, prompt: str, *, response_schema: Schema = None,
               timeout_s: float | None = None, max_turns: int | None = None,
               model: str | None = None, harness: Agent | str | None = None,
               mcp_servers: dict[str, dict[str, Any]] | None = None) -> RunStream[Any]:
        """Like run(), as its events happen: iterate for the chunks; afterwards `.run` (or
        `stream.final_run()`) is the final Run."""
        body = run_body(prompt, response_schema, timeout_s, max_turns, model, harness,
                        mcp_servers)
        return RunStream(self._http.lines(f"{self._path}/stream", body, wait_s=timeout_s),
                         response_schema)

    def list(self) -> builtins.list[Run[Any]]:
        """The box's runs, newest first."""
        data = self._http.json("GET", self._path)
        return [parse_run(item, None) for item in data]

    def get(self, run_id: str) -> Run[Any]:
        return parse_run(self._http.json("GET", f"{self._path}/{run_id}"), None)
