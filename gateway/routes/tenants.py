"""Tenants (operator only): create with a home box and a key shown once, list, get, delete."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from core.previews import Previews
from core.quotas import policy_change
from core.tenants import TenantRecord, Tenants
from gateway.deps import CoreDep, OperatorDep, TenantsDep, actor
from gateway.schemas import (
    ErrorOut,
    PolicyIn,
    TenantCreate,
    TenantCreated,
    TenantPolicy,
    TenantPublic,
)

router = APIRouter(prefix="/v1/tenants", tags=["tenants"],
                   responses={401: {"model": ErrorOut}, 403: {"model": ErrorOut}})


async def _public(tenants: Tenants, record: TenantRecord) -> TenantPublic:
    summary = await tenants.summary(record)
    override = await tenants.policies.override(record.id)
    return TenantPublic(id=record.id, created_at=record.created_at,
                        home_box_id=record.home_box_id,
                        policy=TenantPolicy(**override) if override else None, **summary)


@router.post("", status_code=201, responses={409: {"model": ErrorOut},
                                             422: {"model": ErrorOut}})
async def create_tenant(body: TenantCreate, who: OperatorDep, tenants: TenantsDep,
                        request: Request) -> TenantCreated:
    """Create a tenant, its home box (running the tenant agent) and its API key; `policy`
    overrides parts of the global freeze policy for it."""
    policy = body.policy.model_dump(exclude_none=True) if body.policy else None
    with policy_change():
        record, api_key = await tenants.create(body.id, policy, actor(request, who))
    return TenantCreated(id=record.id, api_key=api_key, home_box_id=record.home_box_id,
                         created_at=record.created_at)


@router.get("")
async def list_tenants(who: OperatorDep, tenants: TenantsDep) -> list[TenantPublic]:
    return [await _public(tenants, r) for r in await tenants.list()]


@router.get("/{tenant_id}", responses={404: {"model": ErrorOut}})
async def get_tenant(tenant_id: str, who: OperatorDep, tenants: TenantsDep) -> TenantPublic:
    return await _public(tenants, await tenants.require(tenant_id))


@router.delete("/{tenant_id}", status_code=204, responses={404: {"model": ErrorOut}})
async def delete_tenant(tenant_id: str, who: OperatorDep, tenants: TenantsDep,
                        core: CoreDep) -> Response:
    """Delete the tenant with its boxes and snapshots; its key stops working at once."""
    await tenants.delete(tenant_id)
    await Previews(core.redis, core.keys, core.secret).forget_owner(tenant_id)
    return Response(status_code=204)


@router.put("/{tenant_id}/policy", responses={404: {"model": ErrorOut},
                                              422: {"model": ErrorOut}})
async def put_tenant_policy(tenant_id: str, body: PolicyIn, who: OperatorDep,
                            tenants: TenantsDep, request: Request) -> TenantPublic:
    """Override parts of the global freeze policy for this tenant: fields left out stay as they
    are, null removes an override. max_warm_boxes and local_layer_budget_bytes bound the whole
    host and are refused here. Applies on the next sweep; recorded in the history."""
    record = await tenants.require(tenant_id)
    with policy_change():
        await tenants.policies.set_override(tenant_id, body.model_dump(exclude_unset=True),
                                            actor(request, who))
    return await _public(tenants, record)


@router.delete("/{tenant_id}/policy", responses={404: {"model": ErrorOut}})
async def delete_tenant_policy(tenant_id: str, who: OperatorDep, tenants: TenantsDep,
                               request: Request) -> TenantPublic:
    """Remove every override: the tenant follows the global policy again."""
    record = await tenants.require(tenant_id)
    current = await tenants.policies.override(tenant_id) or {}
    await tenants.policies.set_override(tenant_id, dict.fromkeys(current), actor(request, who))
    return await _public(tenants, record)
