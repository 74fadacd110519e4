"""What an operator watches: boxes per state, memory, storage, the observation queue and
backlog, the knowledge base, the last sweep, model usage. One collection serves /v1/stats,
/metrics and the dashboard."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from boxes import BoxState
from core.pipeline import STANDING_REASONS
from workers.sweeper import last_sweep

if TYPE_CHECKING:
    from gateway.services import Services

WARM = (BoxState.RUNNING, BoxState.PAUSED)


@dataclass
class Stats:
    now: float
    tenants: int
    boxes: dict[str, int]
    warm_memory_bytes: int
    storage: dict[str, int]
    observations: dict[str, int]
    knowledge: dict[str, Any]  # insights: count; refused: {reason: count}
    sweep: dict[str, Any] = field(default_factory=dict)
    # provider:calls, provider:input_tokens, provider:output_tokens, over all tenants
    models: dict[str, int] = field(default_factory=dict)


async def collect(services: Services) -> Stats:
    """One collection: boxes (their usage read in a thread), storage, queues, knowledge,
    the last sweep, model usage."""
    manager = services.manager
    boxes = [b for b in await manager.list() if b.state != BoxState.DELETED]
    by_state = dict.fromkeys((s.value for s in BoxState if s != BoxState.DELETED), 0)
    for box in boxes:
        by_state[box.state.value] += 1
    # cgroup files and filesystem sizes: read in a thread, not on the event loop
    measured = [b for b in boxes if b.state in WARM
                or (b.layer_local and b.state != BoxState.ARCHIVED)]
    usages = await asyncio.to_thread(lambda: [manager.usage(b) for b in measured])
    warm_memory = sum(u.memory_bytes for b, u in zip(measured, usages, strict=True)
                      if b.state in WARM)
    local_layers = sum(u.disk_bytes for u in usages)
    store = await asyncio.to_thread(manager.store.stats)
    sweep = await last_sweep(services.redis, services.keys)
    observations = services.observations
    return Stats(
        now=time.time(),
        tenants=await services.tenants.count(),
        boxes=by_state,
        warm_memory_bytes=warm_memory,
        storage={"local_layer_bytes": local_layers, "logical_bytes": store.logical_bytes,
                 "stored_bytes": store.stored_bytes, "snapshots": store.snapshots},
        # due now: a retry the worker scheduled for later is not waiting yet
        observations={"queue_depth": await services.redis.zcount(
                          services.keys.queue(), "-inf", int(time.time() * 1000)),
                      "backlog": await observations.backlog_size(),
                      "dropped": await observations.dropped_total()},
        knowledge={"insights": await services.kb.size(),
                   "refused": {**dict.fromkeys(STANDING_REASONS, 0),
                               **await services.kb.refused()}},
        sweep={"last_at": sweep.get("at"), "duration_ms": sweep.get("duration_ms"),
               "interval_s": services.settings.sweep_interval_s,
               "last_actions": {k: len(sweep.get(k) or ()) for k in
                                ("paused", "frozen", "archived", "failed")}},
        models=await services.budgets.totals(),
    )
