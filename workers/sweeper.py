"""The idle sweep: apply the freeze policy to every box, coldest tier first.

Idle means no gateway traffic and no running exec (boxes.activity keeps a box with a call in
flight active; BoxManager.cool checks the daemon for execs and re-checks the activity under the
box's lock, so a request that races the sweep wins). Several workers may sweep at once: the
per-box lock and the state checks make a second freeze of the same box a no-op.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import asdict, dataclass, field

from boxes import BoxError, BoxRecord, BoxState
from core.keys import Keys
from core.policy import Policies, Policy
from core.remote import Boxes

log = logging.getLogger("burrow.sweeper")
# Freezes at once: each packs a layer in a thread and restarts nothing; more would only queue.
PARALLEL = 4
WARM = (BoxState.RUNNING, BoxState.PAUSED)
_PolicyOf = Callable[[BoxRecord], Policy]
BeforeFreeze = Callable[[BoxRecord], Awaitable[None]]


@dataclass
class SweepReport:
    at: float
    duration_ms: float = 0.0
    paused: list[str] = field(default_factory=list)
    frozen: list[str] = field(default_factory=list)
    archived: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        return {"paused": len(self.paused), "frozen": len(self.frozen),
                "archived": len(self.archived), "failed": len(self.failed)}


class Sweeper:
    def __init__(self, manager: Boxes, policies: Policies,
                 before_freeze: BeforeFreeze | None = None, mine_only: bool = False) -> None:
        self.manager = manager
        self.policies = policies
        self.before_freeze = before_freeze  # given each running box it is about to freeze
        # A box host of a cluster sweeps the boxes it runs, and those it cached frozen.
        self.mine_only = mine_only
        self._slots = asyncio.Semaphore(PARALLEL)

    async def sweep(self) -> SweepReport:
        report = SweepReport(at=time.time())
        started = time.perf_counter()
        base, per_tenant = await self.policies.effective()

        def policy(box: BoxRecord) -> Policy:
            return per_tenant.get(box.owner, base) if box.owner else base

        boxes = await self.manager.list()  # once a pass: 2,000 boxes take ~100 ms to list
        if self.mine_only:
            boxes = [b for b in boxes if b.host == self.manager.host]
        await self._apply_idle(boxes, policy, report)
        if base.max_warm_boxes is not None:
            await self._bound_warm(boxes, base.max_warm_boxes, policy, report)
        if base.local_layer_budget_bytes is not None:
            await self._bound_layers(boxes, base.local_layer_budget_bytes, policy, report)
        report.duration_ms = (time.perf_counter() - started) * 1000
        if report.paused or report.frozen or report.archived or report.failed:
            log.info("sweep: %s", json.dumps(report.counts()))
        return report

    async def _apply_idle(self, boxes: Iterable[BoxRecord], policy: _PolicyOf,
                          report: SweepReport) -> None:
        now = time.time()
        moves = []
        for box in boxes:
            rules = policy(box)
            if _kept_alive(box, rules):
                continue
            idle = now - box.last_active_at
            if box.state in WARM and _past(idle, rules.freeze_after_s):
                moves.append((box, BoxState.FROZEN))
            elif (box.state == BoxState.RUNNING and _past(idle, rules.pause_after_s)
                  and box.host == self.manager.host):  # the cgroup freezer is per process
                moves.append((box, BoxState.PAUSED))
            elif box.state == BoxState.FROZEN and _past(idle, rules.archive_after_s):
                moves.append((box, BoxState.ARCHIVED))
        await asyncio.gather(*(self._cool(box, to, report) for box, to in moves))

    async def _bound_warm(self, boxes: list[BoxRecord], limit: int, policy: _PolicyOf,
                          report: SweepReport) -> None:
        """Above `limit` warm boxes, freeze the least recently used (keep-alive ones count
        but are never chosen). `boxes` as the pass began: those it froze are not warm."""
        frozen = set(report.frozen)
        warm = [b for b in boxes if b.state in WARM and b.id not in frozen]
        excess = len(warm) - limit
        for box in sorted(warm, key=lambda b: b.last_active_at):
            if excess <= 0:
                break
            if not _kept_alive(box, policy(box)) and await self._cool(
                    box, BoxState.FROZEN, report):
                excess -= 1

    async def _bound_layers(self, boxes: list[BoxRecord], budget: int, policy: _PolicyOf,
                            report: SweepReport) -> None:
        """Above `budget` bytes of frozen layers on local disk, archive the least recently
        used frozen boxes (their snapshot is in the store; a wake restores from it).
        `boxes` as the pass began: what it froze counts, what it archived does not."""
        moved, archived = set(report.frozen), set(report.archived)
        frozen = [b for b in boxes if b.id in moved or (
            b.state == BoxState.FROZEN and b.layer_local and b.id not in archived)]
        sizes = {b.id: u.disk_bytes
                 for b, u in zip(frozen, await self.manager.usages(frozen), strict=True)}
        excess = sum(sizes.values()) - budget
        for box in sorted(frozen, key=lambda b: b.last_active_at):
            if excess <= 0:
                break
            if not _kept_alive(box, policy(box)) and await self._cool(
                    box, BoxState.ARCHIVED, report):
                excess -= sizes[box.id]

    async def _cool(self, box: BoxRecord, to: BoxState, report: SweepReport) -> bool:
        async with self._slots:
            if to == BoxState.FROZEN and box.state == BoxState.RUNNING and self.before_freeze:
                await self.before_freeze(box)
            try:
                done = await self.manager.cool(box.id, to, idle_since=box.last_active_at)
            except BoxError as exc:
                report.failed[box.id] = exc.message
                log.warning("sweep could not move %s to %s: %s", box.id, to.value, exc.message)
                return False
        if done is None:
            return False
        {BoxState.PAUSED: report.paused, BoxState.FROZEN: report.frozen,
         BoxState.ARCHIVED: report.archived}[to].append(box.id)
        return True



def _kept_alive(box: BoxRecord, rules: Policy) -> bool:
    return rules.keep_alive or bool(box.meta.get("keep_alive"))


def _past(idle: float, threshold: float | None) -> bool:
    return threshold is not None and idle >= threshold


async def sweep_once(manager: Boxes, policies: Policies, keys: Keys, interval_s: float,
                     before_freeze: BeforeFreeze | None = None) -> SweepReport | None:
    """One sweep, unless another ran less than `interval_s` ago or one is running now (the
    cron fires every second on every worker; this keeps it to one sweep per interval)."""
    redis = manager.redis
    if not await redis.set(keys.sweep_due(), b"1", nx=True,
                           px=max(1, int(interval_s * 1000) - 50)):
        return None
    running = redis.lock(keys.sweep_lock(), timeout=600)
    if not await running.acquire(blocking=False):
        return None
    try:
        report = await Sweeper(manager, policies, before_freeze).sweep()
        await redis.set(keys.sweep_last(), json.dumps(  # what /v1/stats shows (core/stats.py)
            {**asdict(report), "interval_s": interval_s}))
        return report
    finally:
        with contextlib.suppress(Exception):
            await running.release()
