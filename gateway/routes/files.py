"""Files in a box: raw bytes up and down, listing, deleting, watching. Paths resolve inside
the box."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import ValidationError

from boxes import BoxUnavailableError
from core.errors import ApiError
from gateway.deps import ManagerDep, OwnedBoxDep, SettingsDep
from gateway.proxy import read_body
from gateway.schemas import ErrorOut, FileEntryOut, FileEvent, ndjson

router = APIRouter(prefix="/v1/boxes/{box_id}/files", tags=["files"],
                   responses={401: {"model": ErrorOut}, 403: {"model": ErrorOut},
                              404: {"model": ErrorOut}, 409: {"model": ErrorOut},
                              413: {"model": ErrorOut}})

PathQuery = Annotated[str, Query(min_length=1, max_length=4096,
                                 description="absolute, or relative to /workspace")]


@router.put("", status_code=204,
            openapi_extra={"requestBody": {"content": {"application/octet-stream": {}}}})
async def upload(request: Request, path: PathQuery, box: OwnedBoxDep, manager: ManagerDep,
                 settings: SettingsDep,
                 mode: Annotated[int | None, Query(ge=0, le=0o7777)] = None) -> Response:
    """Write the request body to `path` (parents are created; an existing file is replaced
    once the whole body arrived). With a Content-Length the body streams through to the box;
    a chunked body is held, up to the server's body limit."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit():
        size = int(declared)
        if size > settings.max_body_bytes:
            raise ApiError(413, "too_large", f"the request body is over "
                                             f"{settings.max_body_bytes} bytes")
        await manager.write_file_stream(box.id, path, size, request.stream(), mode=mode)
        return Response(status_code=204)
    data = await read_body(request, settings.max_body_bytes)
    await manager.write_file(box.id, path, data, mode=mode)
    return Response(status_code=204)


@router.get("", response_class=Response,
            responses={200: {"content": {"application/octet-stream": {}}}})
async def download(path: PathQuery, box: OwnedBoxDep, manager: ManagerDep) -> Response:
    """The file's bytes, streamed from the box as they are read (any size)."""
    size, pieces = await manager.read_file_stream(box.id, path)
    return StreamingResponse(pieces, media_type="application/octet-stream",
                             headers={"content-length": str(size)})


@router.delete("", status_code=204)
async def delete(path: PathQuery, box: OwnedBoxDep, manager: ManagerDep,
                 recursive: bool = False) -> Response:
    await manager.delete_file(box.id, path, recursive=recursive)
    return Response(status_code=204)


@router.get("/list")
async def list_dir(box: OwnedBoxDep, manager: ManagerDep,
                   path: PathQuery = "/workspace") -> list[FileEntryOut]:
    return [FileEntryOut.of(e) for e in await manager.list_files(box.id, path)]


def _event_line(event: dict[str, Any]) -> bytes:
    try:
        checked = FileEvent.model_validate(event)
    except ValidationError:
        checked = FileEvent(type="overflow")  # a line we cannot read: events may be lost
    return checked.model_dump_json(exclude_none=True).encode() + b"\n"


@router.get("/watch", response_class=StreamingResponse, response_model=FileEvent,
            responses={200: ndjson(FileEvent, "one FileEvent per line, as files change")})
async def watch(box: OwnedBoxDep, manager: ManagerDep, path: PathQuery = "/workspace",
                recursive: bool = False) -> StreamingResponse:
    """Stream what happens under `path` (a directory, or one file), and with `recursive`
    below it, as NDJSON: `{"type": "created"|"modified"|"deleted"|"moved", "path", "is_dir"}`
    (`moved` also has `from_path`). Events are never lost silently: `{"type": "overflow"}` says
    some were (list the files again). The path resolves inside the box, so a watch reaches
    only the box's own files. Not activity for the idle policy; a freeze ends the stream with
    `{"type": "end"}`."""
    events = manager.watch(box.id, path, recursive)
    await anext(events)  # a missing path is a 404 before the stream starts

    async def lines() -> AsyncIterator[bytes]:
        try:
            async for event in events:
                yield _event_line(event)
                if event.get("type") == "end":
                    return
        except BoxUnavailableError as exc:
            yield _event_line({"type": "end", "reason": exc.message})
        finally:
            await events.aclose()

    return StreamingResponse(lines(), media_type="application/x-ndjson")
