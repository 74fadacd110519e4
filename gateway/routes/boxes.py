"""Boxes: create, list, get, delete; pause/resume/freeze/archive/wake; named snapshots."""

from __future__ import annotations

import contextlib
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from boxes import BoxError, BoxRecord, BoxSpec, BoxState, Limits
from core import quotas
from core.authz import Principal
from core.errors import ApiError
from core.previews import Previews
from core.remote import Boxes
from core.tenants import HOME_LABEL, Tenants
from gateway import gitrelay
from gateway.deps import CoreDep, ManagerDep, OwnedBoxDep, PoliciesDep, TenantsDep, UserDep
from gateway.schemas import (
    BoxCreate,
    BoxPublic,
    EgressIn,
    ErrorOut,
    SnapshotCreate,
    SnapshotPublic,
)

router = APIRouter(prefix="/v1", tags=["boxes"],
                   responses={401: {"model": ErrorOut}, 403: {"model": ErrorOut},
                              404: {"model": ErrorOut}})


async def _public(manager: Boxes, box: BoxRecord) -> BoxPublic:
    [usage] = await manager.usages([box])
    return BoxPublic.of(box, usage)


@router.post("/boxes", status_code=201, responses={409: {"model": ErrorOut},
                                                   422: {"model": ErrorOut}})
async def create_box(body: BoxCreate, who: UserDep, manager: ManagerDep,
                     tenants: TenantsDep, policies: PoliciesDep) -> BoxPublic:
    """Create a box and start it (it is ready for exec when this returns)."""
    owner = await _owner(body, who, tenants)
    if body.from_snapshot is not None:
        snap = await manager.get_snapshot(body.from_snapshot)
        if not who.is_operator and snap.owner != owner:
            raise ApiError(404, "not_found", f"no snapshot {body.from_snapshot!r}")
    if HOME_LABEL in body.labels:
        raise ApiError(422, "invalid_request", f"the label {HOME_LABEL} is reserved")
    asked = body.limits.model_dump(exclude_none=True) if body.limits else {}
    policy = None if who.is_operator else await policies.for_tenant(owner)
    if policy is not None and owner is not None:
        quotas.check_record(body.labels, body.env, policy)
        limits = quotas.default_limits(asked, policy)
        await quotas.check_tenant_room(manager, owner, policy, limits.disk_mb, body.keep_alive)
    else:
        limits = Limits.from_dict(asked)
    git = body.git.model_dump(exclude_none=True) if body.git else {}
    try:
        kept = gitrelay.prepare(git) if git else None
    except ValueError as exc:
        raise ApiError(422, "invalid_request", f"git.repos: {exc}") from None
    egress = body.egress or EgressIn()
    box = await manager.create(BoxSpec(
        runtime=body.runtime, name=body.name, owner=owner, env=body.env, labels=body.labels,
        network=body.network, limits=limits, from_snapshot=body.from_snapshot,
        egress_allow=tuple(egress.allow), egress_deny=tuple(egress.deny),
        meta={"keep_alive": body.keep_alive,
              "agent": body.agent.model_dump() if body.agent else None,
              "git": kept}))
    if policy is not None and owner is not None:
        await quotas.check_still_in_room(manager, owner, policy, box)
    if kept is not None:
        await _set_up_git(manager, box, kept, git.get("token"))
    box = await manager.get(box.id)
    if box.state == BoxState.DELETED:  # its tenant's deletion took it as it was made
        raise ApiError(409, "conflict", f"box {box.id} was deleted as it was made: tenant "
                                        f"{owner} is being deleted")
    return await _public(manager, box)


async def _owner(body: BoxCreate, who: Principal, tenants: Tenants) -> str | None:
    """The tenant a new box is for (none: an operator's own box); a tenant being deleted
    is refused here (409), before any work."""
    if not who.is_operator and body.tenant is not None and body.tenant != who.tenant:
        raise ApiError(403, "forbidden", "a tenant key creates boxes for its own tenant only")
    owner = body.tenant if who.is_operator else who.tenant
    if owner is not None:
        await tenants.require(owner)
    return owner


async def _set_up_git(manager: Boxes, box: BoxRecord, kept: dict[str, Any],
                      token: str | None) -> None:
    """The token stays on the host (the relay adds it); the box gets a .gitconfig."""
    try:
        if token:
            await manager.keep(box.id, gitrelay.TOKEN_FILE, token.encode())
        await manager.write_file(box.id, "/workspace/.gitconfig", gitrelay.git_config(kept),
                                 mode=0o600)
    except BoxError:
        with contextlib.suppress(BoxError):
            await manager.delete(box.id)
        raise


@router.get("/boxes")
async def list_boxes(who: UserDep, manager: ManagerDep,
                     label: Annotated[list[str] | None, Query(
                         description="k:v, repeatable; boxes having every one")] = None,
                     ) -> list[BoxPublic]:
    labels: dict[str, str] = {}
    for item in label or []:
        key, sep, value = item.partition(":")
        if not sep or not key:
            raise ApiError(422, "invalid_request", f"label filter {item!r} must be key:value")
        labels[key] = value
    owner = None if who.is_operator else who.tenant
    boxes = await manager.list(owner=owner, labels=labels)
    if owner is None and not who.is_operator:
        boxes = []
    usages = await manager.usages(boxes)
    return [BoxPublic.of(b, u) for b, u in zip(boxes, usages, strict=True)]


@router.get("/boxes/{box_id}")
async def get_box(box: OwnedBoxDep, manager: ManagerDep) -> BoxPublic:
    return await _public(manager, box)


@router.delete("/boxes/{box_id}", status_code=204, responses={409: {"model": ErrorOut}})
async def delete_box(box: OwnedBoxDep, manager: ManagerDep, core: CoreDep) -> Response:
    if box.labels.get(HOME_LABEL):
        raise ApiError(409, "conflict", f"box {box.id} is the home box of tenant {box.owner}; "
                       "delete the tenant instead")
    await manager.delete(box.id)
    await Previews(core.redis, core.keys, core.secret).forget_box(box.id, box.owner)
    return Response(status_code=204)


@router.post("/boxes/{box_id}/pause")
async def pause_box(box: OwnedBoxDep, manager: ManagerDep) -> BoxPublic:
    """Hold the box's processes in RAM with the cgroup freezer (no CPU); resume is instant."""
    return await _public(manager, await manager.pause(box.id))


@router.post("/boxes/{box_id}/resume")
async def resume_box(box: OwnedBoxDep, manager: ManagerDep) -> BoxPublic:
    return await _public(manager, await manager.resume(box.id))


@router.post("/boxes/{box_id}/freeze")
async def freeze_box(box: OwnedBoxDep, manager: ManagerDep) -> BoxPublic:
    """Stop the box's processes (after its pre-freeze hook) and pack its layer to storage."""
    return await _public(manager, await manager.freeze(box.id))


@router.post("/boxes/{box_id}/archive")
async def archive_box(box: OwnedBoxDep, manager: ManagerDep) -> BoxPublic:
    """Freeze the box and drop its local layer; a wake restores it from storage."""
    return await _public(manager, await manager.archive(box.id))


@router.post("/boxes/{box_id}/wake")
async def wake_box(box: OwnedBoxDep, manager: ManagerDep) -> BoxPublic:
    return await _public(manager, await manager.wake(box.id))


@router.post("/boxes/{box_id}/snapshots", status_code=201,
             responses={409: {"model": ErrorOut}, 422: {"model": ErrorOut}})
async def create_snapshot(body: SnapshotCreate, box: OwnedBoxDep, who: UserDep,
                          manager: ManagerDep, policies: PoliciesDep) -> SnapshotPublic:
    """A named snapshot of the box as it is now; start new boxes from it with from_snapshot.
    A tenant's named snapshots count against max_tenant_disk_mb (what their files hold) and
    max_snapshots_per_tenant."""
    tenant = None if who.is_operator else box.owner
    policy = await policies.for_tenant(tenant) if tenant is not None else None
    if tenant is not None and policy is not None:
        await quotas.check_snapshot_room(manager, tenant, policy)
    snap = await manager.snapshot(box.id, body.name)
    if tenant is not None and policy is not None:
        await quotas.check_snapshot_kept(manager, tenant, policy, snap)
    return SnapshotPublic.of(snap)


@router.get("/snapshots")
async def list_snapshots(who: UserDep, manager: ManagerDep) -> list[SnapshotPublic]:
    snaps = await manager.list_snapshots(owner=None if who.is_operator else who.tenant)
    if not who.is_operator and who.tenant is None:
        snaps = []
    return [SnapshotPublic.of(s) for s in snaps]


@router.delete("/snapshots/{snapshot_id}", status_code=204)
async def delete_snapshot(snapshot_id: str, who: UserDep, manager: ManagerDep) -> Response:
    snap = await manager.get_snapshot(snapshot_id)
    if not who.is_operator and snap.owner != who.tenant:
        raise ApiError(404, "not_found", f"no snapshot {snapshot_id!r}")
    await manager.delete_snapshot(snapshot_id)
    return Response(status_code=204)
