"""The shared knowledge base as a caller may use it — search what it may see, vote as its
tenant — written once for the public API (gateway/routes/knowledge.py) and the host services
socket (gateway/hostsvc.py).

Two things hold for every caller but the operator:
- Each search embeds its query on the host's shared embedder, so it spends one text of the
  tenant's `embed_texts_per_minute`, the budget the host socket's /v1/embed spends too (429
  with Retry-After beyond it).
- What the base shows cannot be used to watch other tenants: `support` is rounded down to a
  coarse step (1, 2, 5, 10, 50, 100, 500, 1000, 5000, …; never below k, which visibility
  already tells), and time to the UTC day — `updated_at` and the `since`/`until` window alike.
  Otherwise, under k=2, a tenant could contribute a guess and see from an exact count or
  time whether, and when, another tenant said the same.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from redis.exceptions import RedisError

from core import authz
from core.errors import ApiError
from gateway.schemas import InsightOut, InsightVote, KnowledgeQuery
from knowledge.base import Insight
from models.metered import OPERATOR

if TYPE_CHECKING:
    from gateway.services import Services

DAY_S = 86_400  # the resolution of time tenants see


async def search(services: Services, who: authz.Principal,
                 body: KnowledgeQuery) -> list[InsightOut]:
    everyone = authz.sees_all_knowledge(who)
    since, until = body.since, body.until
    if not everyone:
        await admit_embeds(services, who.tenant, 1)
        since = None if since is None else _day(since)
        until = None if until is None else _day(until) + DAY_S
    found = await services.kb.search(body.query, body.limit, everyone=everyone,
                                     kinds=body.kinds, since=since, until=until)
    return [_shown(services, i, everyone) for i in found]


async def vote(services: Services, who: authz.Principal, insight_id: str,
               body: InsightVote) -> InsightOut:
    tenant = authz.voter(who)
    voted = await services.kb.vote(tenant, insight_id, body.helpful)
    if voted is None:  # unknown and not shared look the same: nothing leaks what exists
        raise ApiError(404, "not_found", f"no insight {insight_id!r} that this tenant can see")
    return _shown(services, voted, authz.sees_all_knowledge(who))


async def admit_embeds(services: Services, tenant: str | None, texts: int) -> None:
    """Spend `texts` of the tenant's embedding budget (a box made for no tenant spends the
    operator's), or raise the 429 that says when to retry."""
    try:
        await services.budgets.admit_embed(tenant or OPERATOR, texts,
                                           await services.policies.for_tenant(tenant))
    except RedisError as exc:
        raise ApiError(503, "unavailable", "the embedding rate cannot be checked right now; "
                                           "retry shortly", {"Retry-After": "2"}) from exc


def coarse_support(support: int, k: int) -> int:
    """`support` rounded down to 1, 2, 5, 10, 50, 100, 500, … but not below k (an insight
    tenants see has at least k)."""
    step = 1
    for candidate in (2, 5):
        if support >= candidate:
            step = candidate
    if support >= 10:
        power = 10 ** (len(str(support)) - 1)
        step = 5 * power if support >= 5 * power else power
    return max(step, min(k, support))


def _day(t: float) -> float:
    return float(math.floor(t / DAY_S) * DAY_S)


def _shown(services: Services, insight: Insight, exact: bool) -> InsightOut:
    out = InsightOut(**insight.to_dict())
    if not exact:
        out.support = coarse_support(insight.support, services.kb.k)
        out.updated_at = _day(insight.updated_at) if insight.updated_at else None
    return out
