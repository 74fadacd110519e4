"""Operator surfaces: the freeze policy and its history, stats and their last hours,
Prometheus metrics."""

from __future__ import annotations

import dataclasses
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from core.history import HISTORY_S, SAMPLE_SIZE
from core.policy import Versioned
from core.quotas import policy_change
from core.stats import STATES
from gateway.deps import CoreDep, MetricsDep, OperatorDep, PoliciesDep, actor
from gateway.schemas import (
    ErrorOut,
    PolicyChange,
    PolicyIn,
    PolicyOut,
    PolicyValues,
    SampleHistory,
    StatsHistoryOut,
    StatsOut,
    WakeHistory,
)

router = APIRouter(tags=["operator"], responses={401: {"model": ErrorOut},
                                                 403: {"model": ErrorOut}})


def _out(current: Versioned) -> PolicyOut:
    return PolicyOut(policy=PolicyValues(**dataclasses.asdict(current.policy)),
                     version=current.version, updated_at=current.updated_at,
                     updated_by=current.updated_by)


@router.get("/v1/policy")
async def get_policy(who: OperatorDep, policies: PoliciesDep) -> PolicyOut:
    """The global policy: idle times and the ceilings of what tenants may take (tenants may
    be given overrides of parts of it)."""
    return _out(await policies.get())


@router.put("/v1/policy", responses={422: {"model": ErrorOut}})
async def put_policy(body: PolicyIn, who: OperatorDep, request: Request,
                     policies: PoliciesDep) -> PolicyOut:
    """Change the global freeze policy: fields left out stay, null means never / no limit.
    Applies on the next sweep; recorded in the history."""
    with policy_change():
        return _out(await policies.update(body.model_dump(exclude_unset=True),
                                          actor(request, who)))


@router.get("/v1/policy/history")
async def policy_history(who: OperatorDep, policies: PoliciesDep,
                         limit: Annotated[int, Query(ge=1, le=200)] = 50) -> list[PolicyChange]:
    """Changes to the global policy and tenants' overrides, newest first: who, when, what."""
    return [PolicyChange(**entry) for entry in await policies.history(limit)]


@router.get("/v1/stats")
async def stats(who: OperatorDep, core: CoreDep) -> StatsOut:
    """Boxes per state, warm memory, storage (logical and stored), observation queue and
    backlog, knowledge base size, and the last idle sweep."""
    collected = await core.stats.collect()
    return StatsOut(**dataclasses.asdict(collected))


@router.get("/v1/stats/history", responses={422: {"model": ErrorOut}})
async def stats_history(
        who: OperatorDep, core: CoreDep,
        hours: Annotated[int, Query(ge=1, le=HISTORY_S // 3600,
                                    description="how many hours back, the current minute "
                                                "included")] = 6) -> StatsHistoryOut:
    """The last hours, for charts: wakes per minute with their p50 and p99 (recorded by the
    processes that run the boxes), and once a minute the boxes per state, the worker's queue
    depth and the observation backlog (sampled by a worker). Kept for 24 hours."""
    history = core.history
    now, first, last = history.window(hours)
    wakes = await history.wakes(first, last)
    samples = await history.samples(first, last)
    states = list(dict.fromkeys([*STATES,
                                 *(s for sample in samples for s in sample.boxes)]))
    return StatsHistoryOut(
        now=now, hours=hours, kept_hours=HISTORY_S // 3600, sample_size=SAMPLE_SIZE,
        wakes=WakeHistory(minute=[w.minute for w in wakes], count=[w.count for w in wakes],
                          p50_ms=[w.p50_ms for w in wakes], p99_ms=[w.p99_ms for w in wakes],
                          sampled=[w.sampled for w in wakes]),
        samples=SampleHistory(
            at=[x.at for x in samples],
            boxes={state: [x.boxes.get(state, 0) for x in samples] for state in states},
            queue_depth=[x.queue_depth for x in samples], backlog=[x.backlog for x in samples]))


@router.get("/metrics", response_class=Response,
            responses={200: {"content": {"text/plain": {}}}})
async def metrics(who: OperatorDep, core: CoreDep, metrics: MetricsDep) -> Response:
    """Prometheus text format; scrape with the operator key as a bearer token."""
    body = metrics.render(await core.stats.collect())
    return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")
