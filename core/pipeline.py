"""The observation pipeline, end to end, in one place: record a tenant's (request, response)
pair after the answer went out, deliver the backlog to the tenant's agent (from the worker, or
right after a wake before the first answer), and send what the agent proposes to the shared
knowledge base. The storage and exactly-once delivery are `Observations`
(core/observations.py); this module owns when each step runs, and the job names.

    gateway route ──record()──► backlog ──OBSERVE job──► deliver() ──► agent
                                   ▲           ▲               │
               catch_up() on wake ─┘  flush_backlogs() cron    └─CONTRIBUTE job──► knowledge
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from arq import ArqRedis, Retry
from redis.exceptions import RedisError

from boxes import BoxError, BoxRecord
from core.keys import Keys
from core.observations import BATCH, AgentStalled, Batch, Delivery, Observations
from core.remote import Boxes
from knowledge.base import KnowledgeBase

log = logging.getLogger("burrow.observe")

OBSERVE = "observe"          # deliver one tenant's backlog to its agent
CONTRIBUTE = "contribute"    # add what an agent proposed to the knowledge base
CATCH_UP_LIMIT = 1000        # pairs delivered before the first answer after a wake
# How long the delivery before an idle freeze waits for another delivery of the tenant (the
# worker's) to end, looking every LEASE_POLL_S, before it lets the freeze go on. With its
# own batch (at most the delivery deadline) it keeps the sweep at most LEASE_WAIT_S + the
# tenant's lease.
LEASE_WAIT_S = 2.0
LEASE_POLL_S = 0.05
# A pair recorded while its tenant's delivery job was finishing finds the job's id still
# taken: a second job, this much later, delivers it (also one at a time per tenant).
FOLLOW_UP_S = 1.0


Prepare = Callable[[list[dict[str, Any]]], Awaitable[None]]
ModelFor = Callable[[str], Awaitable[str | None]]  # a tenant's extraction model, or None
# A tenant's standing, from what the gateway keeps (never from its box): when the tenant was
# created and how many turns were recorded for it; None for a tenant that does not exist.
Standing = Callable[[str], Awaitable[tuple[float, int] | None]]
# Why the contribute job drops a tenant's proposals unread (counted beside the rules' reasons).
YOUNG_TENANT = "young_tenant"
FEW_TURNS = "few_turns"
STANDING_REASONS = (YOUNG_TENANT, FEW_TURNS)


class Pipeline:
    def __init__(self, observations: Observations, queue: ArqRedis, keys: Keys,
                 enabled: bool = True, prepare: Prepare | None = None,
                 model_for: ModelFor | None = None) -> None:
        """`prepare` adds to the pairs the worker delivers (the host's embeddings);
        `model_for(tenant)` is the tenant agent's extraction model, named to it with each
        delivery so that its extraction pass can start before any /ask names a model."""
        self.observations = observations
        self.queue = queue
        self.keys = keys
        self.enabled = enabled
        self.prepare = prepare
        self.model_for = model_for
        self._tasks: set[asyncio.Task[None]] = set()

    # --- recording, off the request path ----------------------------------------------------

    def record(self, tenant: str, box_id: str, pair: dict[str, Any]) -> None:
        """Costs the request a dict and a task; the Redis work happens after it."""
        if not self.enabled:
            return
        task = asyncio.create_task(self._record(tenant, box_id, pair))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _record(self, tenant: str, box_id: str, pair: dict[str, Any]) -> None:
        recorded = await self.observations.record(tenant, box_id, pair)
        # A backlog that already held pairs has a delivery queued or running, and a running
        # delivery goes on until the backlog is empty: one job per backlog, not per request.
        if recorded is not None and recorded.started_backlog:
            await self.enqueue_delivery(tenant, box_id)

    async def record_batch(self, tenant: str, box_id: str,
                           pairs: list[dict[str, Any]]) -> Batch:
        """Record pairs a product sends itself (imported history, traffic served elsewhere),
        waiting for Redis so the caller learns how many the backlog took. Like record(), it
        never wakes the box: a frozen one gets them at its next wake."""
        batch = await self.observations.record_many(tenant, box_id, pairs)
        if batch.started_backlog:
            await self.enqueue_delivery(tenant, box_id)
        return batch

    async def drain(self) -> None:
        """Wait for the recordings under way (shutdown, tests)."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    # --- delivery ---------------------------------------------------------------------------

    async def enqueue_delivery(self, tenant: str, box_id: str) -> None:
        """Queue a delivery of the tenant's backlog: one job per tenant at a time (its id is
        the tenant's), so a tenant whose agent does not answer holds one of the worker's
        slots at most, never a pile of them. While a job is queued or running, asking again
        queues at most one follow-up (the running one may be past its last look)."""
        job = self.keys.job(OBSERVE, tenant, box_id)
        with contextlib.suppress(RedisError, OSError):  # the worker's cron catches up
            if await self.queue.enqueue_job(OBSERVE, tenant, box_id, _job_id=job) is None:
                await self.queue.enqueue_job(OBSERVE, tenant, box_id, _defer_by=FOLLOW_UP_S,
                                             _job_id=self.keys.job(OBSERVE, tenant, box_id,
                                                                   "next"))

    async def deliver(self, manager: Boxes, tenant: str, box_id: str,
                      limit: int = BATCH, prepare: bool = True) -> Delivery:
        """One batch to the agent (never waking its box); what it proposed goes on to the
        knowledge base as a job of its own. `prepare`: False right after a wake, when the
        first answer waits for the delivery (and the agent, just started, is tried even if
        its predecessor was marked as not answering)."""
        model = await self.model_for(tenant) if self.model_for is not None else None
        delivery = await self.observations.deliver(
            manager, tenant, box_id, limit=limit, prepare=self.prepare if prepare else None,
            headers={"x-burrow-model": model} if model else None, retry_stalled=not prepare)
        if delivery.insights:
            await self.queue.enqueue_job(CONTRIBUTE, tenant, delivery.insights,
                                         [tenant, *delivery.identifiers],
                                         _job_id=self.keys.job(CONTRIBUTE, uuid.uuid4().hex))
        return delivery

    async def catch_up(self, manager: Boxes, tenant: str, box_id: str) -> None:
        """A box just woke: give its agent what it missed while frozen before it answers, so
        the answer reflects it. Never fails the request: the worker delivers what is left."""
        try:
            if not await self.observations.has_backlog(tenant):
                return  # nothing was missed: one round trip, no lease, no call to the agent
            delivery = await self.deliver(manager, tenant, box_id, limit=CATCH_UP_LIMIT,
                                          prepare=False)
            left = delivery.pairs >= CATCH_UP_LIMIT  # stopped by the limit, not an empty one
        except (BoxError, RedisError, OSError, ValueError) as exc:
            log.warning("catching up %s after a wake: %s", tenant, exc)
            left = True
        if left:  # new pairs only queue a delivery for an empty backlog
            await self.enqueue_delivery(tenant, box_id)

    async def before_freeze(self, manager: Boxes, box: BoxRecord) -> None:
        """An idle box about to be frozen is first given the pairs its agent has not been
        told: its snapshot then holds them, and its next wake answers without catching up
        first (at 2,000 tenants a fifth of the frozen boxes had missed a pair, recorded after
        the worker's last delivery). A delivery of the tenant already under way (the
        worker's, holding its lease) is waited for, up to LEASE_WAIT_S, and what it left is
        delivered: otherwise the freeze would stop the agent under it. It takes LEASE_WAIT_S
        plus the tenant's lease (the delivery deadline and a margin) at most, and does not try
        an agent marked as not answering. Never fails the freeze: what is left waits for the
        next wake."""
        if not box.owner:
            return
        deadline = time.monotonic() + LEASE_WAIT_S
        try:
            # Its own batch is within the tenant's lease, embedding included: a box whose
            # agent does not answer, or an embedder that does not, cannot hold the sweep.
            async with asyncio.timeout(LEASE_WAIT_S + self.observations.lease_s):
                while await self.observations.awaits(box.owner, box.id):
                    delivery = await self.deliver(manager, box.owner, box.id)
                    if delivery.waiting_s or time.monotonic() >= deadline:
                        break  # an agent marked as not answering is not tried here
                    if not delivery.pairs:  # another delivery holds the tenant's lease
                        await asyncio.sleep(LEASE_POLL_S)
        except (TimeoutError, BoxError, RedisError, OSError, ValueError) as exc:
            log.warning("delivering to %s before its freeze: %s", box.id,
                        str(exc) or "not within its bound")


# --- the pipeline's jobs (the worker's ctx holds "pipeline", "manager", "kb", "policies" and
# "standing") ----------------------------------------------------------------------------------

async def observe(ctx: dict[str, Any], tenant: str, box_id: str) -> int:
    """Deliver the tenant's pending observations to its agent, a batch at a time (embedding a
    long backlog's insights overlaps with delivering the rest of it)."""
    pipeline: Pipeline = ctx["pipeline"]
    pairs = 0
    while True:
        try:
            delivery = await pipeline.deliver(ctx["manager"], tenant, box_id)
        except AgentStalled as exc:  # the same job, once the agent's wait is over
            raise Retry(defer=exc.backoff_s) from exc
        except (BoxError, OSError, ValueError) as exc:
            # the box is between states or its agent is restarting: try again, backing off
            raise Retry(defer=min(30, 2 ** ctx.get("job_try", 1))) from exc
        if delivery.waiting_s:
            raise Retry(defer=delivery.waiting_s)
        if not delivery.pairs:  # drained, or the box is not running, or another delivers
            return pairs
        pairs += delivery.pairs


async def contribute(ctx: dict[str, Any], tenant: str, candidates: list[dict[str, Any]],
                     identifiers: list[str]) -> int:
    """What the tenant's agent proposed, into the knowledge base; dropped (and counted) while
    the tenant is younger or has said less than the policy's contribute_min_age_s and
    contribute_min_turns require."""
    kb: KnowledgeBase = ctx["kb"]
    reason = await _without_standing(ctx, tenant)
    if reason is not None:
        await kb.count_refused({reason: len(candidates)})
        return 0
    return len(await kb.contribute(tenant, candidates, identifiers))


async def _without_standing(ctx: dict[str, Any], tenant: str) -> str | None:
    """Why the tenant's proposals do not count yet, or None when they do."""
    policy = await ctx["policies"].for_tenant(tenant)
    min_age, min_turns = policy.contribute_min_age_s, policy.contribute_min_turns
    if not min_age and not min_turns:
        return None
    standing = await ctx["standing"](tenant)
    if standing is None:  # deleted meanwhile: what it said goes with it
        return YOUNG_TENANT
    created_at, turns = standing
    if min_age and time.time() - created_at < min_age:
        return YOUNG_TENANT
    if min_turns and turns < min_turns:
        return FEW_TURNS
    return None


async def flush_backlogs(ctx: dict[str, Any]) -> int:
    """Queue delivery for every tenant with pending observations (catches pairs recorded
    while a delivery was finishing, pairs left by a worker that died, and spooled pairs)."""
    pipeline: Pipeline = ctx["pipeline"]
    await pipeline.observations.replay_spool()
    pending = await pipeline.observations.pending()
    for tenant, box_id in pending:
        await pipeline.enqueue_delivery(tenant, box_id)
    return len(pending)
