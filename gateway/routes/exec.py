"""Running commands in a box: collected, or streamed as NDJSON."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from boxes import ExecEvent, ExecRequest
from boxes.models import DEFAULT_MAX_OUTPUT
from gateway import logs
from gateway.deps import ManagerDep, OwnedBoxDep
from gateway.schemas import ErrorOut, ExecChunk, ExecIn, ExecOut, ndjson

router = APIRouter(prefix="/v1/boxes/{box_id}", tags=["exec"],
                   responses={401: {"model": ErrorOut}, 403: {"model": ErrorOut},
                              404: {"model": ErrorOut}, 409: {"model": ErrorOut}})


def _request(body: ExecIn) -> ExecRequest:
    """The exec, carrying this request's id into the box as BURROW_REQUEST_ID."""
    env = {"BURROW_REQUEST_ID": logs.request_id.get() or "", **(body.env or {})}
    return ExecRequest(command=body.command, cwd=body.cwd, env=env,
                       timeout_s=body.timeout_s, stdin=body.stdin,
                       max_output=body.max_output_chars or DEFAULT_MAX_OUTPUT)


@router.post("/exec")
async def exec_command(body: ExecIn, box: OwnedBoxDep, manager: ManagerDep) -> ExecOut:
    """Run a command (a string for `sh -c`, or an argv) and return its output and exit code.
    A frozen or archived box is woken first. Each stream keeps its first `max_output_chars`
    (default 1 Mi); `truncated` says whether anything was dropped (stream the exec for all)."""
    r = await manager.exec(box.id, _request(body))
    return ExecOut(exit_code=r.exit_code, stdout=r.stdout, stderr=r.stderr,
                   duration_ms=r.duration_ms, timed_out=r.timed_out, truncated=r.truncated)


def _line(event: ExecEvent) -> bytes:
    if event.type == "exit":
        payload = {"type": "exit", "exit_code": event.exit_code, "timed_out": event.timed_out,
                   "duration_ms": event.duration_ms}
    else:
        payload = {"type": event.type, "data": event.data}
    return json.dumps(payload).encode() + b"\n"


@router.post("/exec/stream", response_class=StreamingResponse, response_model=ExecChunk,
             responses={200: ndjson(ExecChunk, "one ExecChunk per line; the last is the exit")})
async def exec_stream(body: ExecIn, box: OwnedBoxDep, manager: ManagerDep) -> StreamingResponse:
    """Run a command and stream `{"type": "stdout"|"stderr", "data": …}` lines as output
    arrives, then `{"type": "exit", "exit_code": …}`. Closing the connection kills it."""
    events = manager.exec_stream(box.id, _request(body))
    first = await anext(events)  # errors (bad cwd, …) still get a proper status code

    async def lines() -> AsyncIterator[bytes]:
        try:
            yield _line(first)
            async for event in events:
                yield _line(event)
        finally:
            await events.aclose()

    return StreamingResponse(lines(), media_type="application/x-ndjson")
