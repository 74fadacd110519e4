"""The shared knowledge base: search (agents with their box token, tenants, the operator); votes
(tenants and their boxes); browse and remove (the operator)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from core.errors import ApiError
from gateway.deps import CoreDep, OperatorDep, PrincipalDep
from gateway.schemas import ErrorOut, InsightOut, InsightPage, InsightVote, KnowledgeQuery

router = APIRouter(prefix="/v1/knowledge", tags=["knowledge"],
                   responses={401: {"model": ErrorOut}, 403: {"model": ErrorOut}})


@router.post("/search")
async def search(body: KnowledgeQuery, who: PrincipalDep,
                 core: CoreDep) -> list[InsightOut]:
    """Insights like the query, most relevant first, above the relevance floor; `kinds`,
    `since` and `until` filter. A tenant or a box token sees only what enough tenants share
    (k-anonymity), with `support` rounded down to a coarse step and time to the day, and each
    search spends one text of its tenant's embed_texts_per_minute (429 beyond); the operator
    sees everything, exactly."""
    found = await core.insights.search(who, body.query, body.limit, body.kinds, body.since,
                                       body.until)
    return [InsightOut(**i.to_dict()) for i in found]


@router.post("/insights/{insight_id}/vote", responses={404: {"model": ErrorOut}})
async def vote(insight_id: str, body: InsightVote, who: PrincipalDep,
               core: CoreDep) -> InsightOut:
    """The caller's tenant found a shared insight helpful or not (one vote per tenant; the
    latest counts). Insights that enough tenants find unhelpful fade from search."""
    voted = await core.insights.vote(who, insight_id, body.helpful)
    return InsightOut(**voted.to_dict())


@router.get("/insights")
async def list_insights(who: OperatorDep, core: CoreDep,
                        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                        offset: Annotated[str | None, Query(max_length=64)] = None,
                        ) -> InsightPage:
    kb = core.kb
    try:
        items, next_offset = await kb.browse(limit, offset)
    except ValueError:
        raise ApiError(422, "invalid_request", "offset must be a next_offset this endpoint "
                       "returned") from None
    return InsightPage(items=[InsightOut(**i.to_dict()) for i in items],
                       next_offset=next_offset)


@router.delete("/insights/{insight_id}", status_code=204, responses={404: {"model": ErrorOut}})
async def delete_insight(insight_id: str, who: OperatorDep, core: CoreDep) -> Response:
    if not await core.kb.remove(insight_id):
        raise ApiError(404, "not_found", f"no insight {insight_id!r}")
    return Response(status_code=204)
