"""Agent runs in a box: start one and wait, stream one, list and get them."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from gateway.deps import CoreDep, OwnedBoxDep
from gateway.schemas import ErrorOut, RunChunk, RunCreate, RunPublic, ndjson

router = APIRouter(tags=["agent"], responses={503: {"model": ErrorOut}})

_RUN_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut}, 403: {"model": ErrorOut}, 404: {"model": ErrorOut},
    409: {"model": ErrorOut}, 422: {"model": ErrorOut}, 503: {"model": ErrorOut}}


@router.post("/v1/boxes/{box_id}/agent/runs", responses=_RUN_ERRORS)
async def agent_run(body: RunCreate, box: OwnedBoxDep, core: CoreDep) -> RunPublic:
    """Run the box's agent on a prompt and return when it is done: its status, result (an
    object matching `response_schema` when one is given), what it said, and its usage. The
    agent works inside the box with shell and file tools; the model's key never enters it."""
    last: dict[str, Any] = {}
    async for chunk in await core.runs.start(box, body):
        last = chunk
    return RunPublic.model_validate(last["run"])


@router.post("/v1/boxes/{box_id}/agent/runs/stream", response_class=StreamingResponse,
             response_model=RunChunk,
             responses={**_RUN_ERRORS, 200: ndjson(RunChunk, "one RunChunk per line; the last "
                                                             "is finish, with the Run")})
async def agent_run_stream(body: RunCreate, box: OwnedBoxDep,
                           core: CoreDep) -> StreamingResponse:
    """Like a run, streamed as NDJSON chunks as they happen: start, text, tool_call,
    tool_result, and finish with the Run. Closing the connection stops the run."""
    chunks = await core.runs.start(box, body)

    async def lines() -> AsyncIterator[bytes]:
        try:
            async for chunk in chunks:
                yield json.dumps(chunk).encode() + b"\n"
        finally:
            await chunks.aclose()

    return StreamingResponse(lines(), media_type="application/x-ndjson")


@router.get("/v1/boxes/{box_id}/agent/runs", responses=_RUN_ERRORS)
async def list_runs(box: OwnedBoxDep, core: CoreDep) -> list[RunPublic]:
    """The box's runs, newest first (kept for a week, the last 100)."""
    return await core.runs.list(box.id)


@router.get("/v1/boxes/{box_id}/agent/runs/{run_id}", responses=_RUN_ERRORS)
async def get_run(run_id: str, box: OwnedBoxDep, core: CoreDep) -> RunPublic:
    """One run: while it is going (status running) and after."""
    return await core.runs.get(box.id, run_id)
