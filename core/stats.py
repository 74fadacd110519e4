"""What an operator watches: boxes per state, memory, storage, the observation queue and
backlog, the knowledge base, the last sweep, model usage. One collection serves /v1/stats,
/metrics and the dashboard."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis

from boxes import BoxRecord, BoxState
from core.keys import Keys
from core.observations import Observations
from core.pipeline import STANDING_REASONS
from core.remote import Boxes
from core.tenants import Tenants
from knowledge.base import KnowledgeBase
from models.budgets import ModelBudgets

WARM = (BoxState.RUNNING, BoxState.PAUSED)
STATES = tuple(s.value for s in BoxState if s != BoxState.DELETED)  # the states counted


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


async def last_sweep(redis: Redis, keys: Keys) -> dict[str, Any]:
    """What the last sweep did, as the sweeper recorded it (workers/sweeper.py)."""
    raw = await redis.get(keys.sweep_last())
    value: dict[str, Any] = json.loads(raw) if raw else {}
    return value


class Collector:
    """Collects Stats from the box runtime, tenants, the observation pipeline, the knowledge
    base and model budgets."""

    def __init__(self, redis: Redis, keys: Keys, manager: Boxes, tenants: Tenants,
                 observations: Observations, kb: KnowledgeBase, budgets: ModelBudgets,
                 sweep_interval_s: float) -> None:
        self.redis = redis
        self.keys = keys
        self.manager = manager
        self.tenants = tenants
        self.observations = observations
        self.kb = kb
        self.budgets = budgets
        self.sweep_interval_s = sweep_interval_s

    async def queue_depth(self) -> int:
        """Jobs due now in the worker's queue: a retry the worker scheduled for later is not
        waiting yet."""
        depth: int = await self.redis.zcount(self.keys.queue(), "-inf", int(time.time() * 1000))
        return depth

    async def sample(self) -> tuple[dict[str, int], int, int]:
        """What the history samples each minute (core/history.py), cheaply: boxes per state,
        the queue's depth, the observation backlog."""
        boxes = [b for b in await self.manager.list() if b.state != BoxState.DELETED]
        return _by_state(boxes), await self.queue_depth(), await self.observations.backlog_size()

    async def collect(self) -> Stats:
        """One collection: boxes (their usage read in a thread), storage, queues, knowledge,
        the last sweep, model usage."""
        manager = self.manager
        boxes = [b for b in await manager.list() if b.state != BoxState.DELETED]
        by_state = _by_state(boxes)
        measured = [b for b in boxes if b.state in WARM
                    or (b.layer_local and b.state != BoxState.ARCHIVED)]
        usages = await manager.usages(measured)
        warm_memory = sum(u.memory_bytes for b, u in zip(measured, usages, strict=True)
                          if b.state in WARM)
        local_layers = sum(u.disk_bytes for u in usages)
        store = await asyncio.to_thread(manager.store.stats)
        sweep = await last_sweep(self.redis, self.keys)
        observations = self.observations
        return Stats(
            now=time.time(),
            tenants=await self.tenants.count(),
            boxes=by_state,
            warm_memory_bytes=warm_memory,
            storage={"local_layer_bytes": local_layers, "logical_bytes": store.logical_bytes,
                     "stored_bytes": store.stored_bytes, "snapshots": store.snapshots},
            observations={"queue_depth": await self.queue_depth(),
                          "backlog": await observations.backlog_size(),
                          "dropped": await observations.dropped_total()},
            knowledge={"insights": await self.kb.size(),
                       "refused": {**dict.fromkeys(STANDING_REASONS, 0),
                                   **await self.kb.refused()}},
            sweep={"last_at": sweep.get("at"), "duration_ms": sweep.get("duration_ms"),
                   "interval_s": self.sweep_interval_s,
                   "last_actions": {k: len(sweep.get(k) or ()) for k in
                                    ("paused", "frozen", "archived", "failed")}},
            models=await self.budgets.totals(),
        )


def _by_state(boxes: list[BoxRecord]) -> dict[str, int]:
    by_state = dict.fromkeys(STATES, 0)
    for box in boxes:
        by_state[box.state.value] += 1
    return by_state
