"""The shared knowledge base as a caller may use it — search what it may see, vote as its
tenant — written once for the public API (gateway/routes/knowledge.py) and the host services
socket (gateway/hostsvc.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway import authz
from gateway.errors import ApiError
from gateway.schemas import InsightOut, InsightVote, KnowledgeQuery

if TYPE_CHECKING:
    from gateway.services import Services


async def search(services: Services, who: authz.Principal,
                 body: KnowledgeQuery) -> list[InsightOut]:
    found = await services.kb.search(body.query, body.limit,
                                     everyone=authz.sees_all_knowledge(who), kinds=body.kinds,
                                     since=body.since, until=body.until)
    return [InsightOut(**i.to_dict()) for i in found]


async def vote(services: Services, who: authz.Principal, insight_id: str,
               body: InsightVote) -> InsightOut:
    tenant = authz.voter(who)
    voted = await services.kb.vote(tenant, insight_id, body.helpful)
    if voted is None:  # unknown and not shared look the same: nothing leaks what exists
        raise ApiError(404, "not_found", f"no insight {insight_id!r} that this tenant can see")
    return InsightOut(**voted.to_dict())
