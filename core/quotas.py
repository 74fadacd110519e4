"""The operator's ceilings applied to tenants' boxes: what a tenant key may ask for at creation
(422 naming the ceiling when it asks for more), and the limits every tenant box is clamped to
when it starts, so a ceiling lowered later reaches boxes made before it.

Operators are not bound by the ceilings; boxes an operator made for no tenant keep their
limits. A disk keeps its size (a filesystem is not shrunk under a box's files), but a tenant's
total disk counts every box it has and what its named snapshots hold. What a tenant's
collected execs hold in the gateway is metered here too (OutputMeter).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import replace

from boxes import BoxRecord, Limits, SnapshotNotFoundError, SnapshotRecord
from boxes.models import StartPolicy
from core.errors import ApiError
from core.policy import Policies, Policy, PolicyError
from core.remote import Boxes


@contextlib.contextmanager
def policy_change() -> Iterator[None]:
    """An invalid policy change as the API's 422, saying what to change."""
    try:
        yield
    except PolicyError as exc:
        raise ApiError(422, "invalid_policy", str(exc)) from None


def _over(what: str, asked: float, ceiling: float, field: str) -> ApiError:
    return ApiError(422, "over_ceiling",
                    f"{what} {asked:g} is over the operator's ceiling {field}={ceiling:g}; ask "
                    "for less, or ask the operator to raise it")


def check_limits(limits: Limits, policy: Policy) -> None:
    for what, asked, ceiling, field in (
            ("limits.memory_mb", limits.memory_mb, policy.max_box_memory_mb, "max_box_memory_mb"),
            ("limits.disk_mb", limits.disk_mb, policy.max_box_disk_mb, "max_box_disk_mb"),
            ("limits.pids", limits.pids, policy.max_box_pids, "max_box_pids"),
            ("limits.cpus", limits.cpus, policy.max_box_cpus, "max_box_cpus")):
        if ceiling is not None and asked > ceiling:
            raise _over(what, asked, ceiling, field)


def clamp(limits: Limits, policy: Policy) -> Limits:
    """`limits` lowered to the ceilings (never raised); the disk stays as it is."""
    def low(value: float, ceiling: float | None) -> float:
        return value if ceiling is None else min(value, ceiling)
    return replace(limits, memory_mb=int(low(limits.memory_mb, policy.max_box_memory_mb)),
                   pids=int(low(limits.pids, policy.max_box_pids)),
                   cpus=low(limits.cpus, policy.max_box_cpus))


def default_limits(asked: dict[str, float], policy: Policy) -> Limits:
    """A tenant's box limits: what it asked for, the defaults (within the ceilings) for the
    rest; a value it asked for over a ceiling is refused."""
    base = Limits()
    base = replace(clamp(base, policy), disk_mb=int(min(
        base.disk_mb, policy.max_box_disk_mb or base.disk_mb)))
    limits = Limits.from_dict(asked, base)
    check_limits(limits, policy)
    return limits


def check_record(labels: dict[str, str], env: dict[str, str], policy: Policy) -> None:
    """Refuse a box whose record would carry more than the ceilings allow: it is kept in
    Redis and read by every listing of the tenant's boxes."""
    if policy.max_box_labels is not None and len(labels) > policy.max_box_labels:
        raise ApiError(422, "over_ceiling",
                       f"{len(labels)} labels is over the operator's ceiling max_box_labels="
                       f"{policy.max_box_labels}; keep fewer labels (a file in the box holds "
                       "the rest)")
    size = sum(len(k.encode("utf-8", "surrogatepass")) + len(v.encode("utf-8", "surrogatepass"))
               for k, v in env.items())
    if policy.max_box_env_bytes is not None and size > policy.max_box_env_bytes:
        raise ApiError(422, "over_ceiling",
                       f"env of {size} bytes (names and values) is over the operator's ceiling "
                       f"max_box_env_bytes={policy.max_box_env_bytes}; write large values to a "
                       "file in the box, or give them to one exec (its env)")


def _mb(nbytes: int) -> int:
    return -(-nbytes // (1 << 20))


async def _holdings(manager: Boxes, tenant: str) -> tuple[
        list[BoxRecord], list[SnapshotRecord], int]:
    """The tenant's boxes, its named snapshots (oldest first), and the disk they take in MB:
    each box its disk's size, each snapshot what its files hold."""
    boxes, snaps = await asyncio.gather(manager.list(owner=tenant),
                                        manager.list_snapshots(owner=tenant))
    snaps = sorted(snaps, key=lambda s: (s.created_at, s.id))
    used = sum(b.limits.disk_mb for b in boxes) + sum(_mb(s.logical_bytes) for s in snaps)
    return boxes, snaps, used


async def check_tenant_room(manager: Boxes, tenant: str, policy: Policy,
                            disk_mb: int, keep_alive: bool) -> None:
    """Refuse a new box the tenant has no room for: box count, total disk, keep-alive."""
    if keep_alive and not policy.tenant_keep_alive:
        raise ApiError(422, "over_ceiling",
                       "keep_alive boxes are not allowed for tenants (tenant_keep_alive is "
                       "false); leave keep_alive out, or ask the operator to allow it")
    boxes, _, used = await _holdings(manager, tenant)
    if policy.max_boxes_per_tenant is not None and len(boxes) >= policy.max_boxes_per_tenant:
        raise ApiError(422, "over_ceiling",
                       f"tenant {tenant} has {len(boxes)} boxes, the most the operator allows "
                       f"(max_boxes_per_tenant={policy.max_boxes_per_tenant}); delete one "
                       "first")
    if policy.max_tenant_disk_mb is not None and used + disk_mb > policy.max_tenant_disk_mb:
        raise ApiError(422, "over_ceiling",
                       f"tenant {tenant}'s boxes and named snapshots take {used} MB of disk "
                       f"and this box asks for {disk_mb} MB, over max_tenant_disk_mb="
                       f"{policy.max_tenant_disk_mb}; delete a box or a snapshot, or ask for "
                       "a smaller disk")


async def check_snapshot_room(manager: Boxes, tenant: str, policy: Policy) -> None:
    """Refuse a named snapshot before anything is packed when the tenant has no room left:
    snapshot count, or its disk already full."""
    _, snaps, used = await _holdings(manager, tenant)
    if (policy.max_snapshots_per_tenant is not None
            and len(snaps) >= policy.max_snapshots_per_tenant):
        raise ApiError(422, "over_ceiling",
                       f"tenant {tenant} has {len(snaps)} named snapshots, the most the "
                       f"operator allows (max_snapshots_per_tenant="
                       f"{policy.max_snapshots_per_tenant}); delete one first (DELETE "
                       "/v1/snapshots/{id})")
    if policy.max_tenant_disk_mb is not None and used >= policy.max_tenant_disk_mb:
        raise ApiError(422, "over_ceiling",
                       f"tenant {tenant}'s boxes and named snapshots take {used} MB, its "
                       f"ceiling max_tenant_disk_mb={policy.max_tenant_disk_mb}: no room for "
                       "a snapshot; delete a snapshot or a box first")


async def check_snapshot_kept(manager: Boxes, tenant: str, policy: Policy,
                              snap: SnapshotRecord) -> None:
    """After a named snapshot is packed: if it takes the tenant over its count or its disk
    (snapshots made at the same moment: the earliest keep their place), it is deleted."""
    boxes, snaps, _ = await _holdings(manager, tenant)
    ids = [s.id for s in snaps]
    if snap.id not in ids:
        return
    place = ids.index(snap.id)
    total = sum(b.limits.disk_mb for b in boxes) + sum(
        _mb(s.logical_bytes) for s in snaps[:place + 1])
    count = policy.max_snapshots_per_tenant
    disk = policy.max_tenant_disk_mb
    if count is not None and place >= count:
        why = (f"tenant {tenant} reached max_snapshots_per_tenant={count} (snapshots were "
               "being made at once); delete one first")
    elif disk is not None and total > disk:
        why = (f"this snapshot holds {_mb(snap.logical_bytes)} MB, which takes tenant "
               f"{tenant}'s boxes and named snapshots to {total} MB, over max_tenant_disk_mb="
               f"{disk}; it was not kept: delete a snapshot or a box, or free space in the "
               "box, first")
    else:
        return
    with contextlib.suppress(SnapshotNotFoundError):
        await manager.delete_snapshot(snap.id)
    raise ApiError(422, "over_ceiling", why)


async def check_still_in_room(manager: Boxes, tenant: str, policy: Policy,
                              box: BoxRecord) -> None:
    """After a create: boxes made at the same moment all passed the count; the latest ones
    beyond the ceiling are taken back (the earliest keep their place)."""
    if policy.max_boxes_per_tenant is None:
        return
    boxes = sorted(await manager.list(owner=tenant), key=lambda b: (b.created_at, b.id))
    if box.id in [b.id for b in boxes[policy.max_boxes_per_tenant:]]:
        await manager.delete(box.id)
        raise ApiError(422, "over_ceiling",
                       f"tenant {tenant} reached max_boxes_per_tenant="
                       f"{policy.max_boxes_per_tenant} (boxes were being created at once); "
                       "delete one first")


def start_policy(policies: Policies) -> Callable[[BoxRecord], Awaitable[StartPolicy]]:
    """The box runtime's hook: at each start, a tenant box's limits clamped to the ceilings
    in force, and the operator's egress rules."""
    async def decide(box: BoxRecord) -> StartPolicy:
        policy = await policies.for_tenant(box.owner)
        limits = clamp(box.limits, policy) if box.owner else box.limits
        return StartPolicy(limits, egress_allow=policy.egress_allow,
                           egress_deny=policy.egress_deny)
    return decide


class OutputMeter:
    """What each tenant's collected execs hold in this gateway process: their output as it
    will be sent, from the first byte until the answer has gone out. A tenant's execs
    together hold at most max_tenant_exec_output_mb; an exec that would take it beyond is
    stopped and answers 429 (the stream endpoint holds nothing, so it is the way out).
    Operators' execs are counted under no tenant and bounded by nothing."""

    def __init__(self) -> None:
        self._held: dict[str, int] = {}

    def held(self, tenant: str) -> int:
        return self._held.get(tenant, 0)

    def hold(self, tenant: str | None, limit_mb: int | None, box_id: str) -> OutputHold:
        """A hold for one exec; a 429 at once if the tenant's execs hold all they may."""
        hold = OutputHold(self, tenant, limit_mb, box_id)
        if tenant is not None and limit_mb is not None and self.held(tenant) >= limit_mb << 20:
            raise ApiError(429, "output_limit",
                           f"tenant {tenant}'s collected execs hold {self.held(tenant)} bytes "
                           f"of output, its ceiling max_tenant_exec_output_mb={limit_mb}; "
                           f"stream this exec (POST /v1/boxes/{box_id}/exec/stream) or wait "
                           "for the others to finish", {"Retry-After": "2"})
        return hold

    def _add(self, tenant: str, nbytes: int) -> None:
        left = self._held.get(tenant, 0) + nbytes
        if left > 0:
            self._held[tenant] = left
        else:
            self._held.pop(tenant, None)


class OutputHold:
    """The output one collected exec holds, charged to its tenant as it arrives."""

    def __init__(self, meter: OutputMeter, tenant: str | None, limit_mb: int | None,
                 box_id: str) -> None:
        self._meter = meter
        self._tenant = tenant
        self._limit_mb = limit_mb
        self._box_id = box_id
        self.nbytes = 0
        self._released = False

    def charge(self, nbytes: int) -> None:
        """Count `nbytes` more, or raise the 429 that stops the exec."""
        tenant, limit = self._tenant, self._limit_mb
        if tenant is not None and limit is not None and (
                self._meter.held(tenant) + nbytes > limit << 20):
            raise ApiError(429, "output_limit",
                           f"this exec's output would take what tenant {tenant}'s collected "
                           f"execs hold in the gateway over max_tenant_exec_output_mb={limit}, "
                           "so it was stopped; stream it (POST /v1/boxes/"
                           f"{self._box_id}/exec/stream) for all of its output, ask for less "
                           "with max_output_chars, or wait for the tenant's other execs",
                           {"Retry-After": "2"})
        self.nbytes += nbytes
        if tenant is not None:
            self._meter._add(tenant, nbytes)

    def release(self) -> None:
        """Give back what this exec held (once; later calls do nothing)."""
        if self._released:
            return
        self._released = True
        if self._tenant is not None:
            self._meter._add(self._tenant, -self.nbytes)
