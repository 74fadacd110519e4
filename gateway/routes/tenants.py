"""Tenants (operator only): create with a home box and a key shown once, list, get, delete."""

from __future__ import annotations

from fastapi import APIRouter, Response

from gateway.deps import OperatorDep, TenantsDep
from gateway.errors import ApiError
from gateway.schemas import ErrorOut, Policy, TenantCreate, TenantCreated, TenantPublic
from gateway.tenants import TenantRecord, Tenants

router = APIRouter(prefix="/v1/tenants", tags=["tenants"],
                   responses={401: {"model": ErrorOut}, 403: {"model": ErrorOut}})


async def _public(tenants: Tenants, record: TenantRecord) -> TenantPublic:
    summary = await tenants.summary(record)
    return TenantPublic(id=record.id, created_at=record.created_at,
                        home_box_id=record.home_box_id,
                        policy=Policy(**record.policy) if record.policy else None, **summary)


@router.post("", status_code=201, responses={409: {"model": ErrorOut}})
async def create_tenant(body: TenantCreate, who: OperatorDep,
                        tenants: TenantsDep) -> TenantCreated:
    """Create a tenant, its home box (running the tenant agent) and its API key."""
    policy = body.policy.model_dump(exclude_none=True) if body.policy else None
    record, api_key = await tenants.create(body.id, policy)
    return TenantCreated(id=record.id, api_key=api_key, home_box_id=record.home_box_id,
                         created_at=record.created_at)


@router.get("")
async def list_tenants(who: OperatorDep, tenants: TenantsDep) -> list[TenantPublic]:
    return [await _public(tenants, r) for r in await tenants.list()]


@router.get("/{tenant_id}", responses={404: {"model": ErrorOut}})
async def get_tenant(tenant_id: str, who: OperatorDep, tenants: TenantsDep) -> TenantPublic:
    return await _public(tenants, await tenants.require(tenant_id))


@router.delete("/{tenant_id}", status_code=204, responses={404: {"model": ErrorOut}})
async def delete_tenant(tenant_id: str, who: OperatorDep, tenants: TenantsDep) -> Response:
    """Delete the tenant with its boxes and snapshots; its key stops working at once."""
    await tenants.delete(tenant_id)
    return Response(status_code=204)


@router.put("/{tenant_id}/policy", responses={501: {"model": ErrorOut}}, tags=["planned"])
async def put_tenant_policy(tenant_id: str, body: Policy, who: OperatorDep,
                            tenants: TenantsDep) -> TenantPublic:
    await tenants.require(tenant_id)
    raise ApiError(501, "not_implemented", "freeze policies take effect once the idle sweeper "
                   "is part of this server; it is not yet")
