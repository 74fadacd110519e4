"""Request dependencies: the services object, who is calling (from the key or the dashboard
session), and the box a route may act on. The rules themselves are in core/authz.py."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import Depends, Request

from boxes import BoxManager, BoxNotFoundError, BoxRecord, BoxState
from core import authz
from core.authz import Principal
from core.errors import ApiError
from core.policy import Policies
from core.security import SESSION_COOKIE, valid_session
from core.settings import Settings
from core.tenants import Tenants
from gateway.services import Services

DASHBOARD_HEADER = "x-burrow-dashboard"


# Dependencies are async: FastAPI runs sync ones in a thread pool, which costs a thread hop
# on every request.
async def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


async def get_manager(services: ServicesDep) -> BoxManager:
    return services.manager


async def get_tenants(services: ServicesDep) -> Tenants:
    return services.tenants


async def get_settings(services: ServicesDep) -> Settings:
    return services.settings


async def get_policies(services: ServicesDep) -> Policies:
    return services.policies


ManagerDep = Annotated[BoxManager, Depends(get_manager)]
PoliciesDep = Annotated[Policies, Depends(get_policies)]
TenantsDep = Annotated[Tenants, Depends(get_tenants)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


def _dashboard_session(request: Request, services: Services) -> Principal | None:
    """The operator, signed in to the dashboard. The cookie alone is not enough: the request
    must carry a header a cross-site form or link cannot add (and the cookie is SameSite)."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token or request.headers.get(DASHBOARD_HEADER) != "1":
        return None
    if valid_session(services.secret, services.operator_key, token, time.time()):
        return Principal("operator", via="dashboard")
    return None


async def principal(request: Request, services: ServicesDep) -> Principal:
    known: Principal | None = request.scope.get(authz.PRINCIPAL)
    if known is not None:  # identified at the door, before the body was read
        return known
    if "authorization" not in request.headers:
        signed_in = _dashboard_session(request, services)
        if signed_in is not None:
            return signed_in
    return await authz.authenticate(services,
                                    authz.bearer_key(request.headers.get("authorization")))


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
