"""Request dependencies: who is calling (from the key), and the services a route needs."""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import Depends, FastAPI, Request

from boxes import BoxManager, BoxNotFoundError, BoxRecord, BoxState
from gateway.errors import ApiError
from gateway.security import BOX_TOKEN_PREFIX, SESSION_COOKIE, box_of_token, valid_session
from gateway.settings import Settings
from gateway.tenants import Tenants
from workers.policy import Policies


@dataclass(frozen=True)
class Principal:
    kind: Literal["operator", "tenant", "box"]
    tenant: str | None = None
    box_id: str | None = None
    via: Literal["key", "dashboard"] = "key"

    @property
    def is_operator(self) -> bool:
        return self.kind == "operator"


# Dependencies are async: FastAPI runs sync ones in a thread pool, which costs a thread hop
# on every request.
async def get_manager(request: Request) -> BoxManager:
    manager: BoxManager = request.app.state.manager
    return manager


async def get_tenants(request: Request) -> Tenants:
    tenants: Tenants = request.app.state.tenants
    return tenants


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_policies(request: Request) -> Policies:
    policies: Policies = request.app.state.policies
    return policies


ManagerDep = Annotated[BoxManager, Depends(get_manager)]
PoliciesDep = Annotated[Policies, Depends(get_policies)]
TenantsDep = Annotated[Tenants, Depends(get_tenants)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


DASHBOARD_HEADER = "x-burrow-dashboard"


def _dashboard_session(request: Request) -> Principal | None:
    """The operator, signed in to the dashboard. The cookie alone is not enough: the request
    must carry a header a cross-site form or link cannot add (and the cookie is SameSite)."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token or request.headers.get(DASHBOARD_HEADER) != "1":
        return None
    state = request.app.state
    if valid_session(state.secret, state.operator_key, token, time.time()):
        return Principal("operator", via="dashboard")
    return None


def bearer(request: Request) -> str:
    header = request.headers.get("authorization")
    if not header:
        raise ApiError(401, "unauthenticated",
                       "send your key as `Authorization: Bearer <key>`")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise ApiError(401, "unauthenticated",
                       "the Authorization header must be `Bearer <key>`")
    return key.strip()


async def authenticate(app: FastAPI, key: str) -> Principal:
    """Who holds `key`: the operator, a tenant, or a box (by its token)."""
    if hmac.compare_digest(key.encode(), app.state.operator_key.encode()):
        return Principal("operator")
    if key.startswith(BOX_TOKEN_PREFIX):
        box_id = box_of_token(app.state.secret, key)
        if box_id is not None:
            box = await app.state.manager.registry.get(box_id)
            if box is not None and box.state not in (BoxState.DELETED, BoxState.DELETING):
                return Principal("box", tenant=box.owner, box_id=box_id)
    else:
        tenant = await app.state.tenants.by_key(key)
        if tenant is not None:
            return Principal("tenant", tenant=tenant)
    raise ApiError(401, "unauthenticated", "this key is not valid (revoked, mistyped, or "
                                           "from another Burrow server)")


async def principal(request: Request) -> Principal:
    if "authorization" not in request.headers:
        signed_in = _dashboard_session(request)
        if signed_in is not None:
            return signed_in
    return await authenticate(request.app, bearer(request))


def actor(request: Request, who: Principal) -> str:
    """Who made a change, for the policy history: the dashboard, or the operator key with the
    name its client gives in X-Burrow-Actor (the CLI sends user@host)."""
    if who.via == "dashboard":
        return "dashboard"
    name = "".join(c for c in request.headers.get("x-burrow-actor", "")[:64]
                   if c.isprintable()).strip()
    return f"{who.kind} ({name})" if name else who.kind


async def operator(request: Request) -> Principal:
    who = await principal(request)
    if not who.is_operator:
        raise ApiError(403, "forbidden", "this needs the operator key")
    return who


async def user(request: Request) -> Principal:
    """A tenant or the operator: box tokens only reach knowledge search and the host socket."""
    who = await principal(request)
    if who.kind == "box":
        raise ApiError(403, "forbidden", "a box token can only search knowledge; use a tenant "
                                         "or operator key for this")
    return who


PrincipalDep = Annotated[Principal, Depends(principal)]
OperatorDep = Annotated[Principal, Depends(operator)]
UserDep = Annotated[Principal, Depends(user)]


def visible(box: BoxRecord, who: Principal) -> bool:
    return who.is_operator or (who.tenant is not None and box.owner == who.tenant)


async def owned_box(box_id: str, who: UserDep, manager: ManagerDep) -> BoxRecord:
    """The box, if the caller may use it. Someone else's box is "not found", like a missing one:
    its existence is not theirs to learn."""
    try:
        box = await manager.get(box_id)
    except BoxNotFoundError:
        box = None
    if box is None or not visible(box, who) or box.state == BoxState.DELETED:
        raise ApiError(404, "not_found", f"no box {box_id!r}")
    return box


OwnedBoxDep = Annotated[BoxRecord, Depends(owned_box)]
