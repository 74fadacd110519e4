"""The tenant agent route (wake on request, then proxy into the home box), and agent runs.

The agent route carries every end-user request, so it also has a fast path: serve_fast()
answers it ahead of FastAPI's middleware, routing and dependency machinery, which cost more
per request than the proxying itself. Both paths run the same agent_response().
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import time
from urllib.parse import unquote

from fastapi import APIRouter, FastAPI, Request, Response
from redis.exceptions import RedisError
from starlette.types import Receive, Scope, Send

from boxes import BoxError, BoxManager
from gateway.deps import OwnedBoxDep, authenticate, bearer
from gateway.errors import ApiError, box_error_response, error_response
from gateway.proxy import AgentProxy, AgentUnreachable, read_body
from gateway.schemas import ErrorOut
from gateway.services import Observer
from workers.observations import Observations

log = logging.getLogger("burrow.gateway")
CATCH_UP_LIMIT = 1000  # pairs delivered before the first answer after a wake; the rest later

router = APIRouter(tags=["agent"], responses={503: {"model": ErrorOut}})

_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
_PATH = re.compile(r"^/v1/tenants/([a-z0-9][a-z0-9_-]{0,62})/agent(/.*)?$")
_request_ids = itertools.count(1)
_ID_PREFIX = f"{os.getpid():x}-{os.urandom(3).hex()}"


def _target(request: Request, tenant_id: str) -> str:
    """What follows /agent in the request as the client sent it (still percent-encoded)."""
    raw = (request.scope.get("raw_path") or request.url.path.encode()).decode("latin-1")
    prefix = f"/v1/tenants/{tenant_id}/agent"
    rest = (raw[len(prefix):] if raw.startswith(prefix) else "") or "/"
    query = request.url.query
    return rest + ("?" + query if query else "")


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
    if unquote(target).lstrip("/").startswith("_burrow"):  # Burrow's own, never from outside
        raise ApiError(404, "not_found", "no such path on the agent")
    body = await read_body(request, app.state.settings.max_body_bytes)
    request_id = request.headers.get("x-request-id") or f"{_ID_PREFIX}-{next(_request_ids)}"
    headers = {"x-burrow-tenant": tenant_id, "x-request-id": request_id}
    socket_path = manager.service_path(box_id)
    started = time.perf_counter()
    observer: Observer = app.state.observer

    def observed(status: int, answer: bytes) -> None:
        observer.record(tenant_id, box_id, Observations.pair(
            request.method, request.url.path, request.url.query, body, status, answer,
            (time.perf_counter() - started) * 1000))

    for attempt in (1, 2):
        if await manager.ensure_running(box_id):
            await _catch_up(app, tenant_id, box_id)
        try:
            with manager.activity.in_flight(box_id):  # a slow answer is not idleness
                response = await proxy.forward(request, socket_path, target, body, headers,
                                               on_done=observed)
            response.headers["x-request-id"] = request_id
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


@router.post("/v1/boxes/{box_id}/agent/runs", responses={501: {"model": ErrorOut}},
             tags=["planned"])
async def agent_run(box: OwnedBoxDep) -> None:
    raise ApiError(501, "not_implemented", "agent runs are not part of this server yet")


@router.post("/v1/boxes/{box_id}/agent/runs/stream", responses={501: {"model": ErrorOut}},
             tags=["planned"])
async def agent_run_stream(box: OwnedBoxDep) -> None:
    raise ApiError(501, "not_implemented", "agent runs are not part of this server yet")
