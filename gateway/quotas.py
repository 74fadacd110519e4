"""The operator's ceilings applied to tenants' boxes: what a tenant key may ask for at creation
(422 naming the ceiling when it asks for more), and the limits every tenant box is clamped to
when it starts, so a ceiling lowered later reaches boxes made before it.

Operators are not bound by the ceilings; boxes an operator made for no tenant keep their
limits. A disk keeps its size (a filesystem is not shrunk under a box's files), but a tenant's
total disk counts every box it has.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import replace

from boxes import BoxManager, BoxRecord, Limits
from boxes.models import StartPolicy
from gateway.errors import ApiError
from workers.policy import Policies, Policy, PolicyError


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


async def check_tenant_room(manager: BoxManager, tenant: str, policy: Policy,
                            disk_mb: int, keep_alive: bool) -> None:
    """Refuse a new box the tenant has no room for: box count, total disk, keep-alive."""
    if keep_alive and not policy.tenant_keep_alive:
        raise ApiError(422, "over_ceiling",
                       "keep_alive boxes are not allowed for tenants (tenant_keep_alive is "
                       "false); leave keep_alive out, or ask the operator to allow it")
    boxes = await manager.list(owner=tenant)
    if policy.max_boxes_per_tenant is not None and len(boxes) >= policy.max_boxes_per_tenant:
        raise ApiError(422, "over_ceiling",
                       f"tenant {tenant} has {len(boxes)} boxes, the most the operator allows "
                       f"(max_boxes_per_tenant={policy.max_boxes_per_tenant}); delete one "
                       "first")
    used = sum(b.limits.disk_mb for b in boxes)
    if policy.max_tenant_disk_mb is not None and used + disk_mb > policy.max_tenant_disk_mb:
        raise ApiError(422, "over_ceiling",
                       f"tenant {tenant}'s boxes have {used} MB of disk and this one asks for "
                       f"{disk_mb} MB, over max_tenant_disk_mb={policy.max_tenant_disk_mb}; "
                       "delete a box or ask for a smaller disk")


async def check_still_in_room(manager: BoxManager, tenant: str, policy: Policy,
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
