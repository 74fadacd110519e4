"""Request dependencies: the Core and what routes use of it, who is calling (from the key or
the dashboard session), and the box a route may act on. The rules themselves are in
core/authz.py; reading the key off the request, and the caller the front door already
identified, are here."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import Depends, Request

from boxes import BoxNotFoundError, BoxRecord, BoxState
from core import authz
from core.authz import Principal
from core.errors import ApiError
from core.policy import Policies
from core.remote import Boxes
from core.security import SESSION_COOKIE, valid_session
from core.services import Core
from core.settings import Settings
from core.tenants import Tenants
from gateway.frontdoor import PRINCIPAL
from gateway.metrics import Metrics

DASHBOARD_HEADER = "x-burrow-dashboard"


# Dependencies are async: FastAPI runs sync ones in a thread pool, which costs a thread hop
# on every request.
async def get_core(request: Request) -> Core:
    opened: Core = request.app.state.core
    return opened


CoreDep = Annotated[Core, Depends(get_core)]


async def get_manager(core: CoreDep) -> Boxes:
    return core.manager


async def get_tenants(core: CoreDep) -> Tenants:
    return core.tenants


async def get_settings(core: CoreDep) -> Settings:
    return core.settings


async def get_policies(core: CoreDep) -> Policies:
    return core.policies


async def get_metrics(request: Request) -> Metrics:
    metrics: Metrics = request.app.metrics
    return metrics


ManagerDep = Annotated[Boxes, Depends(get_manager)]
PoliciesDep = Annotated[Policies, Depends(get_policies)]
TenantsDep = Annotated[Tenants, Depends(get_tenants)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]


def bearer_key(header: str | None) -> str:
    """The key of an `Authorization: Bearer <key>` header, or a 401 saying how to send it."""
    if not header:
        raise ApiError(401, "unauthenticated",
                       "send your key as `Authorization: Bearer <key>`")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise ApiError(401, "unauthenticated",
                       "the Authorization header must be `Bearer <key>`")
    return key.strip()


def _dashboard_session(request: Request, core: Core) -> Principal | None:
    """The operator, signed in to the dashboard. The cookie alone is not enough: the request
    must carry a header a cross-site form or link cannot add (and the cookie is SameSite)."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token or request.headers.get(DASHBOARD_HEADER) != "1":
        return None
    if valid_session(core.secret, core.operator_key, token, time.time()):
        return Principal("operator", via="dashboard")
    return None


async def principal(request: Request, core: CoreDep) -> Principal:
    known: Principal | None = request.scope.get(PRINCIPAL)
    if known is not None:  # identified at the door, before the body was read
        return known
    if "authorization" not in request.headers:
        signed_in = _dashboard_session(request, core)
        if signed_in is not None:
            return signed_in
    return await core.authenticator.authenticate(
        bearer_key(request.headers.get("authorization")))


def actor(request: Request, who: Principal) -> str:
    """Who made a change, for the policy history: the dashboard, or the operator key with the
    name its client gives in X-Burrow-Actor (the CLI sends user@host)."""
    if who.via == "dashboard":
        return "dashboard"
    name = "".join(c for c in request.headers.get("x-burrow-actor", "")[:64]
                   if c.isprintable()).strip()
    return f"{who.kind} ({name})" if name else who.kind


PrincipalDep = Annotated[Principal, Depends(principal)]


async def operator(who: PrincipalDep) -> Principal:
    authz.require_operator(who)
    return who


async def user(who: PrincipalDep) -> Principal:
    authz.require_user(who)
    return who


OperatorDep = Annotated[Principal, Depends(operator)]
UserDep = Annotated[Principal, Depends(user)]


async def owned_box(box_id: str, who: UserDep, manager: ManagerDep) -> BoxRecord:
    """The box, if the caller may use it. Someone else's box is "not found", like a missing one:
    its existence is not theirs to learn."""
    try:
        box = await manager.get(box_id)
    except BoxNotFoundError:
        box = None
    if box is None or not authz.may_see_box(box, who) or box.state == BoxState.DELETED:
        raise ApiError(404, "not_found", f"no box {box_id!r}")
    return box


OwnedBoxDep = Annotated[BoxRecord, Depends(owned_box)]
