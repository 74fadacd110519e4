"""Agent runs in a box: `box.agent.run(prompt=...)` to the end, `box.agent.stream(...)` event
by event."""

from __future__ import annotations

import builtins
from collections.abc import AsyncGenerator
from types import TracebackType
from typing import Any, Generic, TypeVar, overload

from pydantic import BaseModel

from burrow._agent import Schema, parse_run, run_body
from burrow._async.http import AsyncHttp
from burrow._errors import BurrowError
from burrow._models import Agent, Run, RunChunk

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")


class AsyncRunStream(Generic[T]):
    """The chunks of a run as they happen (start, text, tool_call, tool_result, finish);
    after the finish chunk, `run` is the final Run."""

    def __init__(self, lines: AsyncGenerator[dict[str, Any], None], schema: Schema) -> None:
        self._lines = lines
        self._schema = schema
        self.run: Run[T] | None = None

    def __aiter__(self) -> AsyncRunStream[T]:
        return self

    async def __anext__(self) -> RunChunk:
        line = await anext(self._lines)
        chunk = RunChunk.model_validate(line)
        if chunk.type == "finish" and line.get("run") is not None:
            self.run = parse_run(line["run"], self._schema)
            chunk = chunk.model_copy(update={"run": self.run})
        return chunk

    async def final_run(self) -> Run[T]:
        """Read the rest of the stream; return the final Run."""
        async for _ in self:
            pass
        if self.run is None:
            raise BurrowError("the run's stream ended without its finish event",
                              code="bad_stream")
        return self.run

    async def aclose(self) -> None:
        await self._lines.aclose()

    async def __aenter__(self) -> AsyncRunStream[T]:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.aclose()


class AsyncAgentRuns:
    """The box's agent (configured at create with agent={"harness", "model"}, or per run)."""

    def __init__(self, http: AsyncHttp, box_id: str) -> None:
        self._http = http
        self._path = f"/v1/boxes/{box_id}/agent/runs"

    @overload
    async def run(self, prompt: str, *, response_schema: type[M],
                  timeout_s: float | None = None, max_turns: int | None = None,
                  model: str | None = None, harness: Agent | str | None = None,
                  mcp_servers: dict[str, dict[str, Any]] | None = None) -> Run[M]: ...

    @overload
    async def run(self, prompt: str, *, response_schema: dict[str, Any] | None = None,
                  timeout_s: float | None = None, max_turns: int | None = None,
                  model: str | None = None, harness: Agent | str | None = None,
                  mcp_servers: dict[str, dict[str, Any]] | None = None) -> Run[Any]: ...

    async def run(self, prompt: str, *, response_schema: Schema = None,
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
        data = await self._http.json("POST", self._path, json=body, wait_s=timeout_s,
                                     unbounded=True)
        return parse_run(data, response_schema)

    @overload
    def stream(self, prompt: str, *, response_schema: type[M],
               timeout_s: float | None = None, max_turns: int | None = None,
               model: str | None = None, harness: Agent | str | None = None,
               mcp_servers: dict[str, dict[str, Any]] | None = None) -> AsyncRunStream[M]: ...

    @overload
    def stream(self, prompt: str, *, response_schema: dict[str, Any] | None = None,
               timeout_s: float | None = None, max_turns: int | None = None,
               model: str | None = None, harness: Agent | str | None = None,
               mcp_servers: dict[str, dict[str, Any]] | None = None,
               ) -> AsyncRunStream[Any]: ...

    def stream(self, prompt: str, *, response_schema: Schema = None,
               timeout_s: float | None = None, max_turns: int | None = None,
               model: str | None = None, harness: Agent | str | None = None,
               mcp_servers: dict[str, dict[str, Any]] | None = None) -> AsyncRunStream[Any]:
        """Like run(), as its events happen: iterate for the chunks; afterwards `.run` (or
        `await stream.final_run()`) is the final Run."""
        body = run_body(prompt, response_schema, timeout_s, max_turns, model, harness,
                        mcp_servers)
        return AsyncRunStream(self._http.lines(f"{self._path}/stream", body, wait_s=timeout_s),
                              response_schema)

    async def list(self) -> builtins.list[Run[Any]]:
        """The box's runs, newest first."""
        data = await self._http.json("GET", self._path)
        return [parse_run(item, None) for item in data]

    async def get(self, run_id: str) -> Run[Any]:
        return parse_run(await self._http.json("GET", f"{self._path}/{run_id}"), None)
