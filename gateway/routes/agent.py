"""The tenant agent route (wake on request, then proxy into the home box), and agent runs.

The agent route carries every end-user request, so it also has a fast path: serve_fast()
answers it ahead of FastAPI's middleware, routing and dependency machinery, which cost more
per request than the proxying itself. Both paths run the same agent_response().
"""

from __future__ import annotations

import json
import logging
import posixpath
import re
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import unquote

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import StreamingResponse
from redis.exceptions import RedisError
from starlette.types import Receive, Scope, Send

from boxes import BoxError, BoxManager
from gateway import logs
from gateway.deps import OwnedBoxDep, authenticate, bearer
from gateway.errors import ApiError, box_error_response, error_response
from gateway.proxy import AgentProxy, AgentUnreachable, read_body
from gateway.runs import AgentRuns
from gateway.schemas import ErrorOut, RunCreate, RunPublic
from gateway.services import Observer
from workers.observations import Observations

log = logging.getLogger("burrow.gateway")
CATCH_UP_LIMIT = 1000  # pairs delivered before the first answer after a wake; the rest later

router = APIRouter(tags=["agent"], responses={503: {"model": ErrorOut}})

_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
_PATH = re.compile(r"^/v1/tenants/([a-z0-9][a-z0-9_-]{0,62})/agent(/.*)?$")


def _target(request: Request, tenant_id: str) -> str:
    """What follows /agent in the request as the client sent it (still percent-encoded)."""
    raw = (request.scope.get("raw_path") or request.url.path.encode()).decode("latin-1")
    prefix = f"/v1/tenants/{tenant_id}/agent"
    rest = (raw[len(prefix):] if raw.startswith(prefix) else "") or "/"
    query = request.url.query
    return rest + ("?" + query if query else "")


def _is_internal(target: str) -> bool:
    """Whether a path reaches the agent's /_burrow/ routes however it is spelled: percent-
    encoded (also twice), with dot segments, doubled slashes or backslashes, any case."""
    path = target.partition("?")[0]
    for _ in range(4):
        decoded = unquote(path)
        if decoded == path:
            break
        path = decoded
    path = posixpath.normpath("/" + path.replace("\\", "/"))
    return path.lstrip("/").lower().startswith("_burrow")


async def agent_response(request: Request, tenant_id: str) -> Response:
    """Send a request to the tenant's own agent, in the tenant's home box. A frozen or paused
    box is woken first (one wake however many requests arrive together)."""
    app = request.app
    who = await authenticate(app, bearer(request))
    if who.kind == "box":
        raise ApiError(403, "forbidden", "a box token can only search knowledge")
    if not who.is_operator and who.tenant != tenant_id:
        raise ApiError(404, "not_found", f"no tenant {tenant_id!r}")
    manager: BoxManager = app.state.manager
    proxy: AgentProxy = app.state.proxy
    box_id = await app.state.tenants.home_box(tenant_id)
    target = _target(request, tenant_id)
    if _is_internal(target):  # Burrow's own, never from outside
        raise ApiError(404, "not_found", "no such path on the agent")
    body = await read_body(request, app.state.settings.max_body_bytes)
    request_id = logs.request_id.get() or logs.new_request_id(None)
    headers = {"x-burrow-tenant": tenant_id, "x-request-id": request_id}
    if app.state.settings.agent_model:  # tenant agents answer through this model
        headers["x-burrow-model"] = app.state.settings.agent_model
    socket_path = manager.service_path(box_id)
    started = time.perf_counter()
    observer: Observer = app.state.observer

    def observed(status: int, answer: bytes) -> None:
        observer.record(tenant_id, box_id, Observations.pair(
            request.method, request.url.path, request.url.query, body, status, answer,
            (time.perf_counter() - started) * 1000, request_id))

    for attempt in (1, 2):
        if await manager.ensure_running(box_id):
            await _catch_up(app, tenant_id, box_id)
        try:
            with manager.activity.in_flight(box_id):  # a slow answer is not idleness
                response = await proxy.forward(request, socket_path, target, body, headers,
                                               on_done=observed)
            return response
        except AgentUnreachable:
            await proxy.forget(socket_path)  # pooled connections died with the old box
            if attempt == 2:
                break
            await manager.recover(box_id)
    raise ApiError(503, "unavailable", "the tenant's agent is not answering; retry shortly",
                   {"Retry-After": "2"})


async def _catch_up(app: FastAPI, tenant_id: str, box_id: str) -> None:
    """A box just woke: give its agent what it missed while frozen before it answers, so the
    answer reflects it. Never fails the request: the worker delivers whatever is left."""
    observations: Observations = app.state.observations
    try:
        delivery = await observations.deliver(app.state.manager, tenant_id, box_id,
                                              limit=CATCH_UP_LIMIT)
        if delivery.insights:
            await app.state.queue.enqueue_job("contribute", tenant_id, delivery.insights,
                                              [tenant_id, *delivery.identifiers])
        left = delivery.pairs >= CATCH_UP_LIMIT  # stopped by the limit, not by an empty backlog
    except (BoxError, RedisError, OSError, ValueError) as exc:
        log.warning("catching up %s after a wake: %s", tenant_id, exc)
        left = True
    if left:  # the worker delivers the rest (new pairs only queue a delivery for an empty one)
        await app.state.observer.enqueue(tenant_id, box_id)


async def serve_fast(app: FastAPI, scope: Scope, receive: Receive, send: Send) -> bool:
    """Answer an agent-route request directly; False if `scope` is not one."""
    match = _PATH.match(scope["path"]) if scope["type"] == "http" else None
    if match is None or scope["method"] not in _METHODS:
        return False
    scope["app"] = app
    scope["burrow.route"] = "/v1/tenants/{tenant_id}/agent/{path}"  # for the metrics
    request = Request(scope, receive)
    try:
        response = await agent_response(request, match.group(1))
    except ApiError as exc:
        response = error_response(exc.status, exc.code, exc.message, exc.headers)
    except BoxError as exc:
        response = box_error_response(exc)
    await response(scope, receive, send)
    return True


async def agent(tenant_id: str, path: str, request: Request) -> Response:
    """Send a request to the tenant's own agent, in its home box (woken first if frozen):
    method, path, query, headers (minus credentials) and body go in, the answer streams back.
    Needs the tenant's key or the operator's."""
    response: Response = await agent_response(request, tenant_id)
    return response


for _method in _METHODS:  # one operation per method, so each has its own OpenAPI id
    router.add_api_route("/v1/tenants/{tenant_id}/agent/{path:path}", agent,
                         methods=[_method], response_class=Response,
                         responses={401: {"model": ErrorOut}, 403: {"model": ErrorOut},
                                    404: {"model": ErrorOut}},
                         operation_id=f"agent_{_method.lower()}", name=f"agent_{_method.lower()}")


_RUN_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut}, 403: {"model": ErrorOut}, 404: {"model": ErrorOut},
    409: {"model": ErrorOut}, 422: {"model": ErrorOut}, 503: {"model": ErrorOut}}


def _runs(request: Request) -> AgentRuns:
    runs: AgentRuns = request.app.state.runs
    return runs


@router.post("/v1/boxes/{box_id}/agent/runs", responses=_RUN_ERRORS)
async def agent_run(body: RunCreate, box: OwnedBoxDep, request: Request) -> RunPublic:
    """Run the box's agent on a prompt and return when it is done: its status, result (an
    object matching `response_schema` when one is given), what it said, and its usage. The
    agent works inside the box with shell and file tools; the model's key never enters it."""
    last: dict[str, Any] = {}
    async for chunk in await _runs(request).start(box, body):
        last = chunk
    return RunPublic.model_validate(last["run"])


@router.post("/v1/boxes/{box_id}/agent/runs/stream", response_class=StreamingResponse,
             responses={**_RUN_ERRORS, 200: {"content": {"application/x-ndjson": {}},
                                             "description": "one chunk per line; the last is "
                                                            "finish, with the Run"}})
async def agent_run_stream(body: RunCreate, box: OwnedBoxDep,
                           request: Request) -> StreamingResponse:
    """Like a run, streamed as NDJSON chunks as they happen: start, text, tool_call,
    tool_result, and finish with the Run. Closing the connection stops the run."""
    chunks = await _runs(request).start(box, body)

    async def lines() -> AsyncIterator[bytes]:
        try:
            async for chunk in chunks:
                yield json.dumps(chunk).encode() + b"\n"
        finally:
            await chunks.aclose()

    return StreamingResponse(lines(), media_type="application/x-ndjson")


@router.get("/v1/boxes/{box_id}/agent/runs", responses=_RUN_ERRORS)
async def list_runs(box: OwnedBoxDep, request: Request) -> list[RunPublic]:
    """The box's runs, newest first (kept for a week, the last 100)."""
    return await _runs(request).list(box.id)


@router.get("/v1/boxes/{box_id}/agent/runs/{run_id}", responses=_RUN_ERRORS)
async def get_run(run_id: str, box: OwnedBoxDep, request: Request) -> RunPublic:
    """One run: while it is going (status running) and after."""
    return await _runs(request).get(box.id, run_id)
