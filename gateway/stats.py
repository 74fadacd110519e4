"""What an operator watches: boxes per state, memory, storage, the observation queue and
backlog, the knowledge base, the last sweep. One collection serves /v1/stats, /metrics and the
dashboard."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

from arq.constants import default_queue_name
from fastapi import FastAPI

from boxes import BoxManager, BoxState
from boxes.snapshots import StoreStats

# Walking the snapshot store costs a stat per blob: at most once per this many seconds.
STORE_STATS_TTL_S = 10.0

WARM = (BoxState.RUNNING, BoxState.PAUSED)


@dataclass
class Stats:
    now: float
    tenants: int
    boxes: dict[str, int]
    warm_memory_bytes: int
    storage: dict[str, int]
    observations: dict[str, int]
    knowledge: dict[str, int]
    sweep: dict[str, Any] = field(default_factory=dict)


class StatsCollector:
    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self._store: tuple[float, StoreStats] | None = None

    async def _store_stats(self, manager: BoxManager) -> StoreStats:
        now = time.monotonic()
        if self._store is None or now - self._store[0] > STORE_STATS_TTL_S:
            self._store = (now, await asyncio.to_thread(manager.store.stats))
        return self._store[1]

    async def collect(self) -> Stats:
        state = self.app.state
        manager: BoxManager = state.manager
        boxes = await manager.list()
        by_state = dict.fromkeys((s.value for s in BoxState if s != BoxState.DELETED), 0)
        warm_memory = local_layers = 0
        for box in boxes:
            if box.state == BoxState.DELETED:
                continue
            by_state[box.state.value] += 1
            if box.state in WARM or (box.layer_local and box.state != BoxState.ARCHIVED):
                usage = manager.usage(box)
                warm_memory += usage.memory_bytes if box.state in WARM else 0
                local_layers += usage.disk_bytes
        store = await self._store_stats(manager)
        backlog = 0
        for tenant, _ in await state.observations.pending():
            backlog += await state.redis.llen(state.observations.backlog_key(tenant))
        last = await state.redis.get(f"{manager.config.key_prefix}:sweep:last")
        sweep = json.loads(last) if last else {}
        return Stats(
            now=time.time(),
            tenants=await state.redis.scard(f"{state.tenants.prefix}:tenants"),
            boxes=by_state,
            warm_memory_bytes=warm_memory,
            storage={"local_layer_bytes": local_layers, "logical_bytes": store.logical_bytes,
                     "stored_bytes": store.stored_bytes, "snapshots": store.snapshots},
            observations={"queue_depth": await state.redis.zcard(default_queue_name),
                          "backlog": backlog},
            knowledge={"insights": await state.kb.size()},
            sweep={"last_at": sweep.get("at"), "duration_ms": sweep.get("duration_ms"),
                   "interval_s": state.settings.sweep_interval_s,
                   "last_actions": {k: len(sweep.get(k) or ()) for k in
                                    ("paused", "frozen", "archived", "failed")}},
        )
