"""The worker's housekeeping: the idle sweep, the knowledge base's index optimisation, the
snapshot store's garbage collection and the history's minute samples (the observation
pipeline's jobs are in core/pipeline.py). The worker holds no state: everything is in ctx,
built by whoever runs it (burrow serve in-process, or burrow worker)."""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any

from core.history import History
from core.pipeline import Pipeline
from core.policy import Policies
from core.remote import Boxes, RemoteBoxes
from core.stats import Collector
from knowledge.base import KnowledgeBase
from workers.sweeper import sweep_once

# A blob younger than this is kept even if nothing references it yet: a freeze may be
# writing the manifest that will.
GC_GRACE_S = 3600.0


async def optimize_knowledge(ctx: dict[str, Any]) -> None:
    """Rebuild the knowledge base's indexes off the request path."""
    kb: KnowledgeBase = ctx["kb"]
    await asyncio.to_thread(kb.store.optimize)


async def sweep(ctx: dict[str, Any]) -> dict[str, int] | None:
    """Apply the idle freeze policy (at most once per sweep interval across all workers)."""
    policies: Policies = ctx["policies"]
    manager: Boxes = ctx["manager"]
    if isinstance(manager, RemoteBoxes):
        return None  # a cluster's box hosts each sweep their own boxes (gateway/hostrunner.py)
    pipeline: Pipeline | None = ctx.get("pipeline")
    report = await sweep_once(manager, policies, ctx["keys"], ctx["sweep_interval_s"],
                              partial(pipeline.before_freeze, manager) if pipeline else None)
    return None if report is None else report.counts()


async def gc_store(ctx: dict[str, Any]) -> int:
    """Drop snapshots no box points at and blobs no snapshot references; return bytes freed."""
    manager: Boxes = ctx["manager"]
    return await manager.gc(grace_s=GC_GRACE_S)


async def sample_history(ctx: dict[str, Any]) -> bool:
    """This minute's sample of boxes per state, queue depth and backlog for the operator's
    charts, unless another worker took it (core/history.py); whether this one did."""
    history: History = ctx["history"]
    stats: Collector = ctx["stats"]
    return await history.sample(stats.sample) is not None
