"""The tenant agent route: wake on request, then proxy into the home box.

The agent route carries every end-user request, so it also has a fast path: serve_fast()
answers it ahead of FastAPI's middleware, routing and dependency machinery, which cost more
per request than the proxying itself. Both paths run the same agent_response().
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from starlette.types import Receive, Scope, Send

from boxes import BoxError
from core import authz, logs
from core.errors import ApiError
from core.observations import Observations
from core.services import Core
from gateway.deps import bearer_key
from gateway.errors import box_error_response, error_response
from gateway.frontdoor import PRINCIPAL
from gateway.proxy import AGENT_PATH, AgentUnreachable, forward, read_body
from gateway.schemas import (
    AgentAsk,
    AgentAskOut,
    AgentProfile,
    ErrorOut,
    RecallIn,
    RecallOut,
    plain_path,
)
from tenant_agent.memory.turns import PROTOCOL

log = logging.getLogger("burrow.gateway")

router = APIRouter(tags=["agent"], responses={503: {"model": ErrorOut}})

_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


def _target(request: Request, tenant_id: str) -> str:
    """What follows /agent in the request as the client sent it (still percent-encoded)."""
    raw = (request.scope.get("raw_path") or request.url.path.encode()).decode("latin-1")
    prefix = f"/v1/tenants/{tenant_id}/agent"
    rest = (raw[len(prefix):] if raw.startswith(prefix) else "") or "/"
    query = request.url.query
    return rest + ("?" + query if query else "")


def _observed(target: str) -> bool:
    """Whether the agent learns from a request to `target`: not from its own protocol
    (/recall, /profile, /health, the memory API), which is then not recorded at all, so a
    probe or a recall leaves no backlog for the next wake to deliver first."""
    return not plain_path(target.partition("?")[0]).lower().startswith(PROTOCOL)


def _is_internal(target: str) -> bool:
    """Whether a path reaches the agent's /_burrow/ routes however it is spelled: percent-
    encoded (also twice), with dot segments, doubled slashes or backslashes, any case."""
    return plain_path(target.partition("?")[0]).lstrip("/").lower().startswith("_burrow")


async def agent_response(request: Request, tenant_id: str) -> Response:
    """Send a request to the tenant's own agent, in the tenant's home box. A frozen or paused
    box is woken first (one wake however many requests arrive together)."""
    core: Core = request.app.state.core
    who = request.scope.get(PRINCIPAL) or await core.authenticator.authenticate(
        bearer_key(request.headers.get("authorization")))
    authz.require_tenant_access(who, tenant_id)
    manager, client, pipeline = core.manager, core.service_client, core.pipeline
    box_id = await core.tenants.home_box(tenant_id)
    target = _target(request, tenant_id)
    if _is_internal(target):  # Burrow's own, never from outside
        raise ApiError(404, "not_found", "no such path on the agent")
    body = await read_body(request, core.settings.max_body_bytes)
    request_id = logs.request_id.get() or logs.new_request_id(None)
    headers = {"x-burrow-tenant": tenant_id, "x-request-id": request_id}
    socket_path = manager.service_path(box_id)
    started = time.perf_counter()
    # the model the tenant's agent answers through, looked up while a wake runs
    model_lookup = asyncio.ensure_future(core.agent_model(tenant_id))
    try:
        woke = await manager.ensure_running(box_id)
    except BaseException:
        model_lookup.cancel()
        raise
    model = await model_lookup
    if model:
        headers["x-burrow-model"] = model

    def observed(status: int, answer: bytes) -> None:
        pipeline.record(tenant_id, box_id, Observations.pair(
            request.method, request.url.path, request.url.query, body, status, answer,
            (time.perf_counter() - started) * 1000, request_id, request.headers))

    for attempt in (1, 2):
        answering = time.perf_counter()
        if woke:
            await pipeline.catch_up(manager, tenant_id, box_id)
        caught_up, answering = time.perf_counter() - answering, time.perf_counter()
        try:
            with manager.activity.in_flight(box_id):  # a slow answer is not idleness
                response = await forward(client, request, socket_path, target, body, headers,
                                         on_done=observed if _observed(target) else None)
            if woke:  # the metrics show a served wake phase by phase
                now = time.perf_counter()
                request.app.metrics.served_wake(caught_up, now - answering, now - started)
            return response
        except AgentUnreachable:
            await client.forget(socket_path)  # pooled connections died with the old box
            if attempt == 2:
                break
            await manager.recover(box_id)
            woke = await manager.ensure_running(box_id)
    raise ApiError(503, "unavailable", "the tenant's agent is not answering; retry shortly",
                   {"Retry-After": "2"})


async def serve_fast(app: FastAPI, scope: Scope, receive: Receive, send: Send) -> bool:
    """Answer an agent-route request directly; False if `scope` is not one."""
    match = AGENT_PATH.match(scope["path"]) if scope["type"] == "http" else None
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


_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut}, 403: {"model": ErrorOut}, 404: {"model": ErrorOut}}
_ANSWER_HEADERS = {
    "X-Request-Id": {"description": "the request's id: the agent learns from the request "
                                    "and its answer under it", "schema": {"type": "string"}},
    "X-Burrow-Tenant": {"description": "the tenant whose agent answered",
                        "schema": {"type": "string"}}}


# The built-in agent's own routes, declared so that clients get their types; the fast path
# serves them like any other agent path (a replacement agent may answer differently).
@router.post("/v1/tenants/{tenant_id}/agent/ask", response_model=AgentAskOut,
             responses={**_ERRORS, 200: {"headers": _ANSWER_HEADERS}}, operation_id="agent_ask")
async def agent_ask(tenant_id: str, body: AgentAsk, request: Request) -> Response:
    """Ask the tenant's agent: it answers from what it learned of the tenant and from the
    shared knowledge (through BURROW_AGENT_MODEL when the server sets one), and says what it
    used."""
    return await agent(tenant_id, "ask", request)


@router.post("/v1/tenants/{tenant_id}/agent/recall", response_model=RecallOut,
             responses={**_ERRORS, 200: {"headers": _ANSWER_HEADERS}},
             operation_id="agent_recall")
async def agent_recall(tenant_id: str, body: RecallIn, request: Request) -> Response:
    """What the tenant's agent recalls for a query: memories and the tenant's own turns, most
    relevant first, each with the X-Request-Ids of the requests it came from. Not learned
    from."""
    return await agent(tenant_id, "recall", request)


@router.get("/v1/tenants/{tenant_id}/agent/profile", response_model=AgentProfile,
            responses={**_ERRORS, 200: {"headers": _ANSWER_HEADERS}},
            operation_id="agent_profile")
async def agent_profile(tenant_id: str, request: Request) -> Response:
    """What the tenant's agent has learned of the tenant."""
    return await agent(tenant_id, "profile", request)


for _method in _METHODS:  # one operation per method, so each has its own OpenAPI id
    _body = ({"requestBody": {"required": False, "content": {"application/json": {"schema": {}}},
                              "description": "passed to the agent as it is"}}
             if _method in ("POST", "PUT", "PATCH") else None)
    router.add_api_route("/v1/tenants/{tenant_id}/agent/{path:path}", agent,
                         methods=[_method], response_class=Response,
                         responses={**_ERRORS, 200: {
                             "description": "the agent's answer, as it gave it",
                             "headers": _ANSWER_HEADERS,
                             "content": {"application/json": {"schema": {}}}}},
                         openapi_extra=_body,
                         operation_id=f"agent_{_method.lower()}", name=f"agent_{_method.lower()}")
