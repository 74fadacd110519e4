"""The shared knowledge base: search (agents with their box token, tenants, the operator);
browse and remove (the operator)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from gateway.deps import OperatorDep, Principal, PrincipalDep
from gateway.errors import ApiError
from gateway.schemas import ErrorOut, InsightOut, InsightPage, KnowledgeQuery
from knowledge.base import KnowledgeBase

router = APIRouter(prefix="/v1/knowledge", tags=["knowledge"],
                   responses={401: {"model": ErrorOut}, 403: {"model": ErrorOut}})


async def search_for(kb: KnowledgeBase, who: Principal,
                     query: KnowledgeQuery) -> list[InsightOut]:
    """Everyone but the operator sees only insights at least k distinct tenants support."""
    found = await kb.search(query.query, query.limit, everyone=who.is_operator)
    return [InsightOut(**i.to_dict()) for i in found]


@router.post("/search")
async def search(body: KnowledgeQuery, who: PrincipalDep, request: Request) -> list[InsightOut]:
    """Insights like the query, most similar first. A tenant or a box token sees only what
    enough tenants share (k-anonymity); the operator sees everything."""
    return await search_for(request.app.state.kb, who, body)


@router.get("/insights")
async def list_insights(who: OperatorDep, request: Request,
                        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                        offset: Annotated[str | None, Query(max_length=64)] = None,
                        ) -> InsightPage:
    kb: KnowledgeBase = request.app.state.kb
    try:
        items, next_offset = await kb.browse(limit, offset)
    except ValueError:
        raise ApiError(422, "invalid_request", "offset must be a next_offset this endpoint "
                       "returned") from None
    return InsightPage(items=[InsightOut(**i.to_dict()) for i in items],
                       next_offset=next_offset)


@router.delete("/insights/{insight_id}", status_code=204, responses={404: {"model": ErrorOut}})
async def delete_insight(insight_id: str, who: OperatorDep, request: Request) -> Response:
    kb: KnowledgeBase = request.app.state.kb
    if not await kb.remove(insight_id):
        raise ApiError(404, "not_found", f"no insight {insight_id!r}")
    return Response(status_code=204)
