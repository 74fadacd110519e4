"""Background processes in a box: `box.processes.start(...)`, then list, get, logs, follow,
write, signal, kill, wait (the shapes of E2B's and Upstash's process handles)."""

from __future__ import annotations

import builtins
from collections.abc import AsyncGenerator, Sequence
from typing import Any, Literal

from burrow._async.http import AsyncHttp
from burrow._models import Process, ProcessChunk, ProcessLogPiece, ProcessLogs

Restart = Literal["never", "on-wake", "on-failure"]
Signal = Literal["HUP", "INT", "QUIT", "KILL", "USR1", "USR2", "TERM", "CONT", "STOP"]


class AsyncProcesses:
    """`cmd` is a shell command (run by `sh -c`) or an argv list. A frozen box wakes first.
    Processes run as the box's user with its limits; a freeze ends them (state `stopped`),
    and `restart="on-wake"` (or `"on-failure"`) ones start again when the box wakes."""

    def __init__(self, http: AsyncHttp, box_id: str) -> None:
        self._http = http
        self._path = f"/v1/boxes/{box_id}/processes"

    async def start(self, cmd: str | Sequence[str], *, cwd: str | None = None,
                    env: dict[str, str] | None = None, stdin: bool = False,
                    restart: Restart = "never") -> Process:
        """Start `cmd` in the background; returns once it runs (or could not start).
        stdin=True keeps its stdin open for write(); restart: "never", "on-wake" (started
        again when the box wakes) or "on-failure" (also when it exits non-zero, after a
        back-off of 1 s doubling to 60 s)."""
        body: dict[str, Any] = {"command": cmd if isinstance(cmd, str) else list(cmd),
                                "stdin": stdin, "restart": restart}
        for key, value in (("cwd", cwd), ("env", env)):
            if value is not None:
                body[key] = value
        return Process.model_validate(await self._http.json("POST", self._path, json=body))

    async def list(self) -> builtins.list[Process]:
        return [Process.model_validate(p) for p in await self._http.json("GET", self._path)]

    async def get(self, process_id: str) -> Process:
        return Process.model_validate(await self._http.json("GET",
                                                            f"{self._path}/{process_id}"))

    async def logs(self, process_id: str, *, stdout_offset: int = 0,
                   stderr_offset: int = 0) -> ProcessLogs:
        """Everything each stream holds from its offset (a box keeps the last 1-2 MiB of
        each), fetched a piece at a time; `next_offset` of each says where to ask next."""
        pieces: dict[str, builtins.list[ProcessLogPiece]] = {"stdout": [], "stderr": []}
        offsets = {"stdout": stdout_offset, "stderr": stderr_offset}
        while True:
            page = ProcessLogs.model_validate(await self._http.json(
                "GET", f"{self._path}/{process_id}/logs",
                params={"stdout_offset": str(offsets["stdout"]),
                        "stderr_offset": str(offsets["stderr"])}))
            got = False
            for name in ("stdout", "stderr"):
                piece: ProcessLogPiece = getattr(page, name)
                pieces[name].append(piece)
                offsets[name] = piece.next_offset
                got = got or bool(piece.data)
            if not got:
                break
        joined = {name: ProcessLogPiece(data="".join(p.data for p in found),
                                        offset=found[0].offset, next_offset=offsets[name])
                  for name, found in pieces.items()}
        return ProcessLogs(process=page.process, **joined)

    async def follow(self, process_id: str, *, stdout_offset: int = 0,
                     stderr_offset: int = 0) -> AsyncGenerator[ProcessChunk, None]:
        """Yield output as the process writes it (`chunk.type` stdout or stderr, `chunk.data`),
        then one `exit` chunk (`chunk.state`, `chunk.exit_code`) once it ended for good.
        Stopping early leaves the process running."""
        lines = self._http.lines(f"{self._path}/{process_id}/logs", method="GET",
                                 params={"follow": "true", "stdout_offset": str(stdout_offset),
                                         "stderr_offset": str(stderr_offset)})
        try:
            async for line in lines:
                yield ProcessChunk.model_validate(line)
        finally:
            await lines.aclose()

    async def wait(self, process_id: str) -> Process:
        """Wait until the process has ended for good (not between on-failure restarts)."""
        stream = self.follow(process_id)
        try:
            async for _chunk in stream:
                pass
        finally:
            await stream.aclose()
        return await self.get(process_id)

    async def write(self, process_id: str, data: str | bytes, *, eof: bool = False) -> None:
        """Write to the process's stdin (start it with stdin=True); eof=True closes it after."""
        content = data.encode() if isinstance(data, str) else data
        await self._http.request("POST", f"{self._path}/{process_id}/stdin", content=content,
                                 params={"eof": "true" if eof else "false"})

    async def signal(self, process_id: str, signal: Signal = "TERM") -> Process:
        """Signal the process and its process group. TERM, INT, QUIT or KILL also stop
        on-failure restarts."""
        return Process.model_validate(await self._http.json(
            "POST", f"{self._path}/{process_id}/signal", json={"signal": signal}))

    async def kill(self, process_id: str) -> None:
        """SIGKILL the process and its group, and forget it (its record and logs)."""
        await self._http.request("DELETE", f"{self._path}/{process_id}")
