"""The shared knowledge base (search for agents, browse and remove for operators)."""

from __future__ import annotations

from fastapi import APIRouter

from gateway.deps import OperatorDep, PrincipalDep
from gateway.errors import ApiError
from gateway.schemas import ErrorOut

router = APIRouter(prefix="/v1/knowledge", tags=["knowledge", "planned"],
                   responses={401: {"model": ErrorOut}, 403: {"model": ErrorOut},
                              501: {"model": ErrorOut}})

_LATER = "the shared knowledge base is not part of this server yet"


@router.post("/search")
async def search(who: PrincipalDep) -> None:
    raise ApiError(501, "not_implemented", _LATER)


@router.get("/insights")
async def list_insights(who: OperatorDep) -> None:
    raise ApiError(501, "not_implemented", _LATER)


@router.delete("/insights/{insight_id}")
async def delete_insight(insight_id: str, who: OperatorDep) -> None:
    raise ApiError(501, "not_implemented", _LATER)
