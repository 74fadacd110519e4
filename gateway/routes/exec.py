"""Running commands in a box: collected, or streamed as NDJSON.

A collected exec's output is held in the gateway until the answer has gone out, so it is
held once, as the JSON text it is sent as, and charged to the tenant as it arrives
(quotas.OutputMeter): 16 Mi characters of each stream once took ~300 MB as strings, their
joins, the response model and its encoding, and four such execs 1.2 GB.
"""

from __future__ import annotations

import json
import weakref
from collections.abc import AsyncIterator, Callable

from fastapi import APIRouter
from fastapi.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from boxes import BoxUnavailableError, ExecEvent, ExecRequest
from boxes.models import DEFAULT_MAX_OUTPUT
from core import logs
from core.quotas import OutputHold
from gateway.deps import CoreDep, OwnedBoxDep, UserDep
from gateway.schemas import ErrorOut, ExecChunk, ExecIn, ExecOut, ndjson

router = APIRouter(prefix="/v1/boxes/{box_id}", tags=["exec"],
                   responses={401: {"model": ErrorOut}, 403: {"model": ErrorOut},
                              404: {"model": ErrorOut}, 409: {"model": ErrorOut}})

_PIECE = 1 << 20  # bytes per body message of a collected answer


def _request(body: ExecIn) -> ExecRequest:
    """The exec, carrying this request's id into the box as BURROW_REQUEST_ID."""
    env = {"BURROW_REQUEST_ID": logs.request_id.get() or "", **(body.env or {})}
    return ExecRequest(command=body.command, cwd=body.cwd, env=env,
                       timeout_s=body.timeout_s, stdin=body.stdin,
                       max_output=body.max_output_chars or DEFAULT_MAX_OUTPUT)


def _json_text(text: str) -> bytes:
    """`text` as the inside of a JSON string, UTF-8 (as FastAPI would encode it)."""
    return json.dumps(text, ensure_ascii=False)[1:-1].encode("utf-8", "replace")


class CollectedExec(Response):
    """An ExecOut sent from the output held for it, a piece at a time, after which the hold
    is released (also if the client went away, or the answer is never sent)."""

    media_type = "application/json"

    def __init__(self, parts: list[bytes | bytearray], release: Callable[[], None]) -> None:
        super().__init__(headers={"content-length": str(sum(len(p) for p in parts))})
        self._parts = parts
        self._release = release
        weakref.finalize(self, release)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await send({"type": "http.response.start", "status": self.status_code,
                        "headers": self.raw_headers})
            for part in self._parts:
                view = memoryview(part)
                for start in range(0, len(view), _PIECE):
                    await send({"type": "http.response.body", "more_body": True,
                                "body": view[start:start + _PIECE].tobytes()})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            self._parts = []
            self._release()


async def _collect(events: AsyncIterator[ExecEvent], max_output: int,
                   hold: OutputHold) -> list[bytes | bytearray]:
    """The exec's answer as JSON parts: each stream's first `max_output` characters, held
    (and charged to `hold`) as they arrive."""
    held = {"stdout": bytearray(), "stderr": bytearray()}
    chars = {"stdout": 0, "stderr": 0}
    truncated = False
    async for event in events:
        if event.type == "exit":
            return [b'{"exit_code":%d,"stdout":"' % (event.exit_code or 0), held["stdout"],
                    b'","stderr":"', held["stderr"],
                    b'","duration_ms":%s,"timed_out":%s,"truncated":%s}' % (
                        json.dumps(event.duration_ms or 0.0).encode(),
                        json.dumps(bool(event.timed_out)).encode(),
                        json.dumps(truncated).encode())]
        data = event.data or ""
        room = max_output - chars[event.type]
        if len(data) > room:
            truncated = True
            data = data[:max(0, room)]
        if data:
            piece = _json_text(data)
            hold.charge(len(piece))
            held[event.type] += piece
            chars[event.type] += len(data)
    raise BoxUnavailableError("the box daemon ended the exec without an exit status")


@router.post("/exec", response_model=ExecOut, responses={429: {"model": ErrorOut}})
async def exec_command(body: ExecIn, box: OwnedBoxDep, who: UserDep,
                       core: CoreDep) -> Response:
    """Run a command (a string for `sh -c`, or an argv) and return its output and exit code.
    A frozen or archived box is woken first. Each stream keeps its first `max_output_chars`
    (default 1 Mi); `truncated` says whether anything was dropped (stream the exec for all).
    A tenant's collected execs hold at most `max_tenant_exec_output_mb` of output in the
    gateway at once: an exec that would go beyond is stopped and answers 429 (stream it)."""
    tenant = None if who.is_operator else who.tenant
    limit = (await core.policies.for_tenant(tenant)).max_tenant_exec_output_mb \
        if tenant is not None else None
    hold = core.exec_output.hold(tenant, limit, box.id)
    request = _request(body)
    events = core.manager.exec_stream(box.id, request)
    try:
        parts = await _collect(events, request.max_output, hold)
    except BaseException:
        hold.release()
        raise
    finally:
        await events.aclose()  # a stopped exec's command is killed with it
    return CollectedExec(parts, hold.release)


def _line(event: ExecEvent) -> bytes:
    if event.type == "exit":
        payload = {"type": "exit", "exit_code": event.exit_code, "timed_out": event.timed_out,
                   "duration_ms": event.duration_ms}
    else:
        payload = {"type": event.type, "data": event.data}
    return json.dumps(payload).encode() + b"\n"


@router.post("/exec/stream", response_class=StreamingResponse, response_model=ExecChunk,
             responses={200: ndjson(ExecChunk, "one ExecChunk per line; the last is the exit")})
async def exec_stream(body: ExecIn, box: OwnedBoxDep, core: CoreDep) -> StreamingResponse:
    """Run a command and stream `{"type": "stdout"|"stderr", "data": …}` lines as output
    arrives, then `{"type": "exit", "exit_code": …}`. Closing the connection kills it."""
    events = core.manager.exec_stream(box.id, _request(body))
    first = await anext(events)  # errors (bad cwd, …) still get a proper status code

    async def lines() -> AsyncIterator[bytes]:
        try:
            yield _line(first)
            async for event in events:
                yield _line(event)
        finally:
            await events.aclose()

    return StreamingResponse(lines(), media_type="application/x-ndjson")
