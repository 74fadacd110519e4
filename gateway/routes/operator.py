"""Operator surfaces: freeze policy, stats, metrics and the dashboard."""

from __future__ import annotations

from fastapi import APIRouter

from gateway.deps import OperatorDep
from gateway.errors import ApiError
from gateway.schemas import ErrorOut

router = APIRouter(tags=["operator", "planned"], responses={401: {"model": ErrorOut},
                                                 403: {"model": ErrorOut},
                                                 501: {"model": ErrorOut}})

_LATER = "is not part of this server yet"


@router.get("/v1/policy")
async def get_policy(who: OperatorDep) -> None:
    raise ApiError(501, "not_implemented", f"the freeze policy {_LATER}")


@router.put("/v1/policy")
async def put_policy(who: OperatorDep) -> None:
    raise ApiError(501, "not_implemented", f"the freeze policy {_LATER}")


@router.get("/v1/stats")
async def stats(who: OperatorDep) -> None:
    raise ApiError(501, "not_implemented", f"/v1/stats {_LATER}")


@router.get("/metrics")
async def metrics(who: OperatorDep) -> None:
    raise ApiError(501, "not_implemented", f"/metrics {_LATER}")


@router.get("/dashboard")
async def dashboard(who: OperatorDep) -> None:
    raise ApiError(501, "not_implemented", f"the dashboard {_LATER}")
