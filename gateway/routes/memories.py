"""The tenant's memory, as the tenant (or the operator) owns it: list (paged), get, add,
correct, delete one, delete all, export. Each call goes to the memory API of the tenant's
agent (tenant_agent/memory/owner.py), in its home box, woken first if frozen; none is observed (the
agent never learns from its own protocol).

"Delete all" also drops the tenant's observed requests not yet delivered (else the agent would
learn them again right after), and the home box is checkpointed before the answer: its
snapshot is replaced by one of the wiped state and the old one deleted, so a host lost right
after cannot bring the memories back, and nothing of them stays in the store once its blobs
are collected.

A replacement agent (BURROW_AGENT_COMMAND) need not serve this API: an answer that is not the
API's (any status but the API's own errors, or a body of another shape) is a 501 that says
so, never passed on as if it were the tenant's memory.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, ValidationError

from boxes import BoxError
from boxes.servicehttp import BadAnswer, ServiceUnreachable
from core import authz, logs
from core.errors import ApiError
from core.services import Core
from gateway.deps import CoreDep, bearer_key
from gateway.schemas import (
    ErrorOut,
    MemoryCorrection,
    MemoryDeleted,
    MemoryExport,
    MemoryIn,
    MemoryItem,
    MemoryPage,
    MemoryWiped,
)

router = APIRouter(prefix="/v1/tenants/{tenant_id}/memories", tags=["memory"],
                   responses={401: {"model": ErrorOut}, 403: {"model": ErrorOut},
                              404: {"model": ErrorOut}, 501: {"model": ErrorOut},
                              503: {"model": ErrorOut}})

MemoryId = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$",
                               description="a memory (m_…) or an episode (e_…)")]
Out = TypeVar("Out", bound=BaseModel)


async def _call(core: Core, request: Request, tenant_id: str, method: str,
                target: str, out: type[Out], body: Any = None) -> Out:
    """One call to the memory API of the tenant's agent; its answer as `out`, its own errors
    as they are, anything else a 501 naming what the agent did."""
    who = await core.authenticator.authenticate(
        bearer_key(request.headers.get("authorization")))
    authz.require_tenant_access(who, tenant_id)
    box_id = await core.tenants.home_box(tenant_id)
    socket_path = core.manager.service_path(box_id)
    headers = {"x-burrow-tenant": tenant_id,
               "x-request-id": logs.request_id.get() or logs.new_request_id(None)}
    data = b"" if body is None else json.dumps(body).encode()
    for attempt in (1, 2):
        if await core.manager.ensure_running(box_id):
            await core.pipeline.catch_up(core.manager, tenant_id, box_id)
        try:
            with core.manager.activity.in_flight(box_id):
                status, answer = await core.service_client.request(
                    socket_path, method, target, data, headers, max_answer=64 << 20)
            break
        except ServiceUnreachable:
            await core.service_client.forget(socket_path)
            if attempt == 2:
                raise ApiError(503, "unavailable", "the tenant's agent is not answering; "
                               "retry shortly", {"Retry-After": "2"}) from None
            await core.manager.recover(box_id)
        except (BadAnswer, BoxError) as exc:
            raise ApiError(503, "unavailable", f"the tenant's agent did not answer its memory "
                           f"API ({exc}); retry shortly", {"Retry-After": "5"}) from None
    try:
        parsed = json.loads(answer)
    except ValueError:
        parsed = None
    error = parsed.get("error") if isinstance(parsed, dict) else None
    # The API's own refusals: a bad body, or no such memory (a 404 on a collection route is
    # an agent without the API, not a missing memory).
    one = target.startswith("/memories/") and target != "/memories/export"
    own = (400, 404) if one else (400,)
    if status in own and isinstance(error, dict) and isinstance(error.get("message"), str):
        code = "invalid_request" if status == 400 else "not_found"
        raise ApiError(status, code, error["message"])
    if status == 200:
        try:
            return out.model_validate(parsed)
        except ValidationError:
            pass
    raise ApiError(501, "agent_lacks_memory_api",
                   f"the tenant's agent answered {method} {target.partition('?')[0]} with "
                   f"{status} and not the memory API's answer: a replacement agent "
                   "(BURROW_AGENT_COMMAND) must serve the /memories routes of the agent "
                   "protocol (tenant_agent/memory/server.py) for this to work")


@router.get("", operation_id="memories_list")
async def list_memories(
        tenant_id: str, request: Request, core: CoreDep,
        kind: Literal["preference", "fact", "event", "plan", "episode"] | None = None,
        status: Literal["current", "all"] = "current",
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        cursor: Annotated[str | None, Query(pattern=r"^[0-9]{1,19}$")] = None) -> MemoryPage:
    """The tenant's memories, newest first, a page at a time (`status=all` includes the
    versions later ones superseded; `kind=episode` lists the tenant's turns instead)."""
    query = {"status": status, "limit": str(limit), **({"kind": kind} if kind else {}),
             **({"cursor": cursor} if cursor else {})}
    return await _call(core, request, tenant_id, "GET", "/memories?" + urlencode(query),
                       MemoryPage)


@router.get("/export", operation_id="memories_export")
async def export_memories(tenant_id: str, request: Request,
                          core: CoreDep) -> MemoryExport:
    """Everything the agent holds of the tenant, as JSON: every memory with its history,
    every episode."""
    return await _call(core, request, tenant_id, "GET", "/memories/export", MemoryExport)


@router.post("", operation_id="memories_add")
async def add_memory(tenant_id: str, body: MemoryIn, request: Request,
                     core: CoreDep) -> MemoryItem:
    """Tell the agent something directly (source `api`); it cites this request's
    X-Request-Id."""
    return await _call(core, request, tenant_id, "POST", "/memories", MemoryItem,
                       body.model_dump(exclude_none=True))


@router.get("/{memory_id}", operation_id="memories_get")
async def get_memory(tenant_id: str, memory_id: MemoryId, request: Request,
                     core: CoreDep) -> MemoryItem:
    """One memory with its history (what it superseded), or one episode."""
    return await _call(core, request, tenant_id, "GET",
                       f"/memories/{quote(memory_id, safe='')}", MemoryItem)


@router.patch("/{memory_id}", operation_id="memories_correct")
async def correct_memory(tenant_id: str, memory_id: MemoryId, body: MemoryCorrection,
                         request: Request, core: CoreDep) -> MemoryItem:
    """Correct a memory: the new version supersedes it (its history is kept)."""
    return await _call(core, request, tenant_id, "PATCH",
                       f"/memories/{quote(memory_id, safe='')}", MemoryItem,
                       body.model_dump())


@router.delete("/{memory_id}", operation_id="memories_delete")
async def delete_memory(tenant_id: str, memory_id: MemoryId, request: Request,
                        core: CoreDep) -> MemoryDeleted:
    """Delete a memory with the versions it superseded and the turns it came from (or one
    episode)."""
    return await _call(core, request, tenant_id, "DELETE",
                       f"/memories/{quote(memory_id, safe='')}", MemoryDeleted)


class _Wiped(BaseModel):
    deleted: dict[str, int]
    replace_snapshot: bool


@router.delete("", operation_id="memories_delete_all")
async def delete_all_memories(tenant_id: str, request: Request,
                              core: CoreDep) -> MemoryWiped:
    """Delete everything the agent learned of the tenant and every turn it kept, with the
    requests not yet delivered to it; nothing readable is left in the agent's files, and the
    home box's snapshot is replaced (a checkpoint) before the answer."""
    who = await core.authenticator.authenticate(
        bearer_key(request.headers.get("authorization")))
    authz.require_tenant_access(who, tenant_id)
    box_id = await core.tenants.home_box(tenant_id)
    # An agent without the API keeps its backlog (this is a 501 then); else the backlog goes
    # before the wipe, so that nothing recorded before this call is learned after it.
    await _call(core, request, tenant_id, "GET", "/memories?limit=1", MemoryPage)
    dropped = await core.observations.drop_backlog(tenant_id, box_id)
    wiped = await _call(core, request, tenant_id, "DELETE", "/memories", _Wiped)
    try:  # durable before it is acknowledged: a host lost now must not bring them back
        await core.manager.checkpoint(box_id)
    except BoxError as exc:
        raise ApiError(503, "unavailable", f"the memories were deleted in the tenant's box, "
                       f"but its snapshot could not be replaced yet ({exc.message}); send the "
                       "same request again", {"Retry-After": "5"}) from exc
    return MemoryWiped(deleted=wiped.deleted, backlog_dropped=dropped,
                       replace_snapshot=wiped.replace_snapshot)
