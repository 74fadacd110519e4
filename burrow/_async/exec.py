"""Commands in a box: `box.exec.command(...)` collected, `box.exec.stream(...)` line by line."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

from burrow._async.http import AsyncHttp
from burrow._models import ExecChunk, ExecResult

Command = str | Sequence[str]


def exec_body(cmd: Command, cwd: str | None, env: dict[str, str] | None,
              timeout_s: float | None, stdin: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {"command": cmd if isinstance(cmd, str) else list(cmd)}
    for key, value in (("cwd", cwd), ("env", env), ("timeout_s", timeout_s),
                       ("stdin", stdin)):
        if value is not None:
            body[key] = value
    return body


class AsyncExec:
    """`cmd` is a shell command (run by `sh -c`) or an argv list. A frozen box wakes first."""

    def __init__(self, http: AsyncHttp, box_id: str) -> None:
        self._http = http
        self._path = f"/v1/boxes/{box_id}/exec"

    async def command(self, cmd: Command, *, cwd: str | None = None,
                      env: dict[str, str] | None = None, timeout_s: float | None = None,
                      stdin: str | None = None,
                      max_output_chars: int | None = None) -> ExecResult:
        """Run `cmd` to the end; a non-zero exit is a result (`exit_code`), not an error.
        Each of stdout and stderr keeps its first `max_output_chars` (server default 1 Mi);
        `result.truncated` says whether more was dropped (use `stream` for everything)."""
        body = exec_body(cmd, cwd, env, timeout_s, stdin)
        if max_output_chars is not None:
            body["max_output_chars"] = max_output_chars
        data = await self._http.json("POST", self._path, json=body, wait_s=timeout_s,
                                     unbounded=True)
        return ExecResult.model_validate(data)

    async def stream(self, cmd: Command, *, cwd: str | None = None,
                     env: dict[str, str] | None = None, timeout_s: float | None = None,
                     stdin: str | None = None) -> AsyncIterator[ExecChunk]:
        """Yield output as it arrives (`chunk.type` stdout or stderr, `chunk.data`), then one
        `exit` chunk with `chunk.exit_code`. Stopping early kills the command."""
        lines = self._http.lines(f"{self._path}/stream",
                                 exec_body(cmd, cwd, env, timeout_s, stdin), wait_s=timeout_s)
        try:
            async for line in lines:
                yield ExecChunk.model_validate(line)
        finally:
            await lines.aclose()
