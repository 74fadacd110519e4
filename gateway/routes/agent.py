"""The tenant agent route (wake on request, then proxy into the home box), and agent runs."""

from __future__ import annotations

import secrets

from fastapi import APIRouter, Request
from starlette.responses import StreamingResponse

from gateway.deps import ManagerDep, OwnedBoxDep, SettingsDep, TenantsDep, UserDep
from gateway.errors import ApiError
from gateway.proxy import AgentProxy, AgentUnreachable, read_body
from gateway.schemas import ErrorOut

router = APIRouter(tags=["agent"], responses={401: {"model": ErrorOut}, 403: {"model": ErrorOut},
                                              404: {"model": ErrorOut}, 503: {"model": ErrorOut}})

_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


async def agent(tenant_id: str, path: str, request: Request, who: UserDep,
                tenants: TenantsDep, manager: ManagerDep,
                settings: SettingsDep) -> StreamingResponse:
    """Send a request to the tenant's own agent, in the tenant's home box. A frozen or paused
    box is woken first (one wake however many requests arrive together)."""
    if not who.is_operator and who.tenant != tenant_id:
        raise ApiError(404, "not_found", f"no tenant {tenant_id!r}")
    box_id = await tenants.home_box(tenant_id)
    target = _target(request, tenant_id)
    body = await read_body(request, settings.max_body_bytes)
    proxy: AgentProxy = request.app.state.proxy
    request_id = request.headers.get("x-request-id") or secrets.token_hex(8)
    headers = {"x-burrow-tenant": tenant_id, "x-request-id": request_id}
    socket_path = manager.service_path(box_id)
    for attempt in (1, 2):
        await manager.ensure_running(box_id)
        try:
            response = await proxy.forward(request, socket_path, target, body, headers)
            response.headers["x-request-id"] = request_id
            return response
        except AgentUnreachable:
            await proxy.forget(socket_path)  # pooled connections died with the old box
            if attempt == 2:
                break
            await manager.recover(box_id)
    raise ApiError(503, "unavailable", "the tenant's agent is not answering; retry shortly",
                   {"Retry-After": "2"})


def _target(request: Request, tenant_id: str) -> str:
    """What follows /agent in the request as the client sent it (still percent-encoded)."""
    raw = (request.scope.get("raw_path") or request.url.path.encode()).decode("latin-1")
    prefix = f"/v1/tenants/{tenant_id}/agent"
    rest = raw[len(prefix):] if raw.startswith(prefix) else "/"
    query = request.url.query
    return rest + ("?" + query if query else "")


for _method in _METHODS:  # one operation per method, so each has its own OpenAPI id
    router.add_api_route("/v1/tenants/{tenant_id}/agent/{path:path}", agent,
                         methods=[_method], response_class=StreamingResponse,
                         operation_id=f"agent_{_method.lower()}", name=f"agent_{_method.lower()}")


@router.post("/v1/boxes/{box_id}/agent/runs", responses={501: {"model": ErrorOut}},
             tags=["planned"])
async def agent_run(box: OwnedBoxDep) -> None:
    raise ApiError(501, "not_implemented", "agent runs are not part of this server yet")


@router.post("/v1/boxes/{box_id}/agent/runs/stream", responses={501: {"model": ErrorOut}},
             tags=["planned"])
async def agent_run_stream(box: OwnedBoxDep) -> None:
    raise ApiError(501, "not_implemented", "agent runs are not part of this server yet")
