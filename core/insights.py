"""The shared knowledge base as a caller may use it — search what it may see, vote as its
tenant — written once for the public API (gateway/routes/knowledge.py) and the host services
socket (gateway/hostsvc.py). It is the domain's rule of what a principal learns from the
base, so it takes the principal and answers insights as they may be shown.

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

import dataclasses
import math
from collections.abc import Sequence

from redis.exceptions import RedisError

from core import authz
from core.errors import ApiError
from core.policy import Policies
from knowledge.base import Insight, KnowledgeBase
from models.budgets import ModelBudgets
from models.metered import OPERATOR

DAY_S = 86_400  # the resolution of time tenants see


class Insights:
    def __init__(self, kb: KnowledgeBase, budgets: ModelBudgets, policies: Policies) -> None:
        self.kb = kb
        self.budgets = budgets
        self.policies = policies

    async def search(self, who: authz.Principal, query: str, limit: int,
                     kinds: Sequence[str] = (), since: float | None = None,
                     until: float | None = None) -> list[Insight]:
        everyone = authz.sees_all_knowledge(who)
        if not everyone:
            await self.admit_embeds(who.tenant, 1)
            since = None if since is None else _day(since)
            until = None if until is None else _day(until) + DAY_S
        found = await self.kb.search(query, limit, everyone=everyone, kinds=kinds,
                                     since=since, until=until)
        return [self._shown(i, everyone) for i in found]

    async def vote(self, who: authz.Principal, insight_id: str, helpful: bool) -> Insight:
        tenant = authz.voter(who)
        voted = await self.kb.vote(tenant, insight_id, helpful)
        if voted is None:  # unknown and not shared look the same: nothing leaks what exists
            raise ApiError(404, "not_found",
                           f"no insight {insight_id!r} that this tenant can see")
        return self._shown(voted, authz.sees_all_knowledge(who))

    async def admit_embeds(self, tenant: str | None, texts: int) -> None:
        """Spend `texts` of the tenant's embedding budget (a box made for no tenant spends the
        operator's), or raise the 429 that says when to retry."""
        try:
            await self.budgets.admit_embed(tenant or OPERATOR, texts,
                                           await self.policies.for_tenant(tenant))
        except RedisError as exc:
            raise ApiError(503, "unavailable", "the embedding rate cannot be checked right "
                                               "now; retry shortly",
                           {"Retry-After": "2"}) from exc

    def _shown(self, insight: Insight, exact: bool) -> Insight:
        if exact:
            return insight
        return dataclasses.replace(
            insight, support=coarse_support(insight.support, self.kb.k),
            updated_at=_day(insight.updated_at) if insight.updated_at else 0.0)


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
