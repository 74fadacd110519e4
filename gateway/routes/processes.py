"""Background processes in a box: start, list, get, logs (followed as NDJSON), stdin, signal,
kill. The box's daemon supervises them (boxes/daemon.py); they are no activity for the idle
policy, nor is a stream following their logs: only each request is."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import ValidationError

from boxes import BoxUnavailableError
from gateway.deps import ManagerDep, OwnedBoxDep, SettingsDep
from gateway.proxy import read_body
from gateway.schemas import (
    ErrorOut,
    ProcessChunk,
    ProcessCreate,
    ProcessLogs,
    ProcessPublic,
    ProcessSignalIn,
    ndjson,
)

router = APIRouter(prefix="/v1/boxes/{box_id}/processes", tags=["processes"],
                   responses={401: {"model": ErrorOut}, 403: {"model": ErrorOut},
                              404: {"model": ErrorOut}, 409: {"model": ErrorOut},
                              422: {"model": ErrorOut}})

LOG_PIECE = 1 << 16  # the most of each stream one logs call returns (the daemon's bound)
Offset = Annotated[int, Query(ge=0, le=1 << 62)]


def _public(record: dict[str, Any]) -> ProcessPublic:
    """The daemon's record, checked: it runs in the box, and so may its records' files."""
    try:
        return ProcessPublic.model_validate(record)
    except ValidationError:
        raise BoxUnavailableError("the box daemon sent a malformed process record; kill the "
                                  "process and start it again") from None


@router.post("", status_code=201)
async def start_process(body: ProcessCreate, box: OwnedBoxDep,
                        manager: ManagerDep) -> ProcessPublic:
    """Start a command that outlives this request, as the box's user with the box's limits.
    A box keeps at most 16 processes (running or not: an ended one gives way to a new one);
    each stream of output keeps its last 1-2 MiB on the box's disk. A freeze ends them (state
    `stopped`, their exit recorded); `restart: on-wake` ones start again when the box wakes."""
    spec = body.model_dump(exclude_none=True)
    return _public(await manager.start_process(box.id, spec))


@router.get("")
async def list_processes(box: OwnedBoxDep, manager: ManagerDep) -> list[ProcessPublic]:
    return [_public(p) for p in await manager.list_processes(box.id)]


@router.get("/{process_id}")
async def get_process(process_id: str, box: OwnedBoxDep, manager: ManagerDep) -> ProcessPublic:
    return _public(await manager.get_process(box.id, process_id))


def _line(event: dict[str, Any]) -> bytes:
    try:
        chunk = ProcessChunk.model_validate(event)
    except ValidationError:
        chunk = ProcessChunk.model_validate({"type": "error", "message":
                                             "the box daemon sent a malformed log line"})
    return chunk.model_dump_json().encode() + b"\n"


@router.get("/{process_id}/logs", response_model=ProcessLogs | ProcessChunk,
            responses={200: {"description": "the logs from the offsets (ProcessLogs), or with "
                                            "follow=true NDJSON lines (ProcessChunk)",
                             "content": ndjson(ProcessChunk, "")["content"]}})
async def process_logs(process_id: str, box: OwnedBoxDep, manager: ManagerDep,
                       stdout_offset: Offset = 0, stderr_offset: Offset = 0,
                       limit: Annotated[int, Query(ge=1, le=LOG_PIECE)] = LOG_PIECE,
                       follow: bool = False) -> Response:
    """Up to `limit` bytes of each of stdout and stderr from their offsets, with the offsets to
    ask from next. With `follow=true`: NDJSON lines `{"type": "stdout"|"stderr", "data",
    "offset"}` as the process writes, then `{"type": "exit", "state", "exit_code"}` once it
    has ended for good (a freeze ends it too). Closing the stream leaves the process running."""
    if not follow:
        answer = await manager.process_logs(box.id, process_id, stdout_offset, stderr_offset,
                                            limit)
        try:
            logs = ProcessLogs.model_validate(answer)
        except ValidationError:
            raise BoxUnavailableError("the box daemon sent a malformed reply") from None
        return Response(logs.model_dump_json(), media_type="application/json")
    events = manager.follow_process(box.id, process_id, stdout_offset, stderr_offset)
    await anext(events)  # its record: a missing process is a 404 before the stream starts

    async def lines() -> AsyncIterator[bytes]:
        try:
            async for event in events:
                yield _line(event)
                if event.get("type") == "exit":
                    return
        except BoxUnavailableError as exc:
            yield _line({"type": "error", "message": f"{exc.message}; get the process for "
                                                     "its state"})
        finally:
            await events.aclose()

    return StreamingResponse(lines(), media_type="application/x-ndjson")


@router.post("/{process_id}/stdin", status_code=204,
             openapi_extra={"requestBody": {"content": {"application/octet-stream": {}}}})
async def write_stdin(process_id: str, request: Request, box: OwnedBoxDep, manager: ManagerDep,
                      settings: SettingsDep, eof: bool = False) -> Response:
    """Write the request body to the process's stdin (it was started with `stdin: true`);
    `eof=true` closes it after. A process that reads nothing for 10 s makes this a 503."""
    data = await read_body(request, settings.max_json_body_bytes)
    await manager.write_process(box.id, process_id, data, eof)
    return Response(status_code=204)


@router.post("/{process_id}/signal")
async def signal_process(process_id: str, body: ProcessSignalIn, box: OwnedBoxDep,
                         manager: ManagerDep) -> ProcessPublic:
    """Send a signal to the process and everything in its process group."""
    return _public(await manager.signal_process(box.id, process_id, body.signal))


@router.delete("/{process_id}", status_code=204)
async def kill_process(process_id: str, box: OwnedBoxDep, manager: ManagerDep) -> Response:
    """SIGKILL the process and its group, and forget it (its record and logs)."""
    await manager.kill_process(box.id, process_id)
    return Response(status_code=204)

