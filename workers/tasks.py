"""Background tasks run by the arq worker: observation delivery, contributions to the
knowledge base, and housekeeping. The worker holds no state: everything is in ctx, built by
whoever runs it (burrow serve in-process, or burrow worker)."""

from __future__ import annotations

import asyncio
from typing import Any

from arq import Retry

from boxes import BoxError, BoxManager
from knowledge.base import KnowledgeBase
from workers.observations import BATCH, Observations
from workers.policy import Policies
from workers.sweeper import sweep_once

# A blob younger than this is kept even if nothing references it yet: a freeze may be
# writing the manifest that will.
GC_GRACE_S = 3600.0


async def observe(ctx: dict[str, Any], tenant: str, box_id: str) -> int:
    """Deliver the tenant's pending observations to its agent (never waking its box), a
    batch at a time, queueing what the agent proposes for the knowledge base after each batch:
    embedding a long backlog's insights overlaps with delivering the rest of it."""
    observations: Observations = ctx["observations"]
    pairs = 0
    while True:
        try:
            delivery = await observations.deliver(ctx["manager"], tenant, box_id,
                                                  limit=BATCH)
        except (BoxError, OSError, ValueError) as exc:
            # the box is between states or its agent is restarting: try again, backing off
            raise Retry(defer=min(30, 2 ** ctx.get("job_try", 1))) from exc
        if delivery.insights:
            await ctx["redis"].enqueue_job("contribute", tenant, delivery.insights,
                                           [tenant, *delivery.identifiers])
        if not delivery.pairs:  # drained, or the box is not running, or another delivers
            return pairs
        pairs += delivery.pairs


async def contribute(ctx: dict[str, Any], tenant: str, candidates: list[dict[str, Any]],
                     identifiers: list[str]) -> int:
    kb: KnowledgeBase = ctx["kb"]
    return len(await kb.contribute(tenant, candidates, identifiers))


async def flush_backlogs(ctx: dict[str, Any]) -> int:
    """Queue delivery for every tenant with pending observations (catches pairs recorded
    while a delivery was finishing, and pairs left behind by a worker that died)."""
    observations: Observations = ctx["observations"]
    await observations.replay_spool()
    pending = await observations.pending()
    for tenant, box_id in pending:
        # no job id: a job stuck with a worker that died must not block this one
        await ctx["redis"].enqueue_job("observe", tenant, box_id)
    return len(pending)


async def optimize_knowledge(ctx: dict[str, Any]) -> None:
    """Rebuild the knowledge base's indexes off the request path."""
    kb: KnowledgeBase = ctx["kb"]
    await asyncio.to_thread(kb.store.optimize)


async def sweep(ctx: dict[str, Any]) -> dict[str, int] | None:
    """Apply the idle freeze policy (at most once per sweep interval across all workers)."""
    policies: Policies = ctx["policies"]
    report = await sweep_once(ctx["manager"], policies, ctx["sweep_interval_s"])
    return None if report is None else report.counts()


async def gc_store(ctx: dict[str, Any]) -> int:
    """Drop snapshots no box points at and blobs no snapshot references; return bytes freed."""
    manager: BoxManager = ctx["manager"]
    return await manager.gc(grace_s=GC_GRACE_S)
