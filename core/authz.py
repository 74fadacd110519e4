"""Who is calling, and what each kind of caller may do: the one place these rules are written.
The routes (through gateway/deps.py), the agent route's fast path and the host services
socket all ask here.

    operator    everything
    tenant      its own tenant, its boxes, its agent, knowledge search (shared insights only)
                and votes on what it sees
    box token   knowledge search and votes and the host socket, as its tenant; nothing else
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Literal

from boxes import BoxRecord, BoxState
from boxes.registry import Registry
from core.errors import ApiError
from core.security import BOX_TOKEN_PREFIX, box_of_token
from core.tenants import Tenants

_DEAD = (BoxState.DELETED, BoxState.DELETING)


@dataclass(frozen=True)
class Principal:
    kind: Literal["operator", "tenant", "box"]
    tenant: str | None = None
    box_id: str | None = None
    via: Literal["key", "dashboard"] = "key"

    @property
    def is_operator(self) -> bool:
        return self.kind == "operator"


class Authenticator:
    """Who holds a key: the operator (by the operator key), a tenant (by its key), or a box
    (by the token derived from the server's secret)."""

    def __init__(self, tenants: Tenants, boxes: Registry, secret: bytes,
                 operator_key: str) -> None:
        self.tenants = tenants
        self.boxes = boxes
        self.secret = secret
        self.operator_key = operator_key

    async def authenticate(self, key: str) -> Principal:
        """Who holds `key`: the operator, a tenant, or a box (by its token)."""
        if hmac.compare_digest(key.encode(), self.operator_key.encode()):
            return Principal("operator")
        if key.startswith(BOX_TOKEN_PREFIX):
            box_id = box_of_token(self.secret, key)
            if box_id is not None:
                box = await self.boxes.get(box_id)
                if box is not None and box.state not in _DEAD:
                    return Principal("box", tenant=box.owner, box_id=box_id)
        else:
            tenant = await self.tenants.by_key(key)
            if tenant is not None:
                return Principal("tenant", tenant=tenant)
        raise ApiError(401, "unauthenticated", "this key is not valid (revoked, mistyped, or "
                                               "from another Burrow server)")

    async def box_caller(self, key: str, peer_uid: int | None) -> BoxRecord:
        """The box a host-socket caller is: its token names a live box, and (when the kernel
        told us) the connecting process runs as that box's uid. Raises ApiError otherwise."""
        box_id = box_of_token(self.secret, key)
        if box_id is None:
            raise ApiError(401, "unauthenticated", "the host socket answers box tokens only "
                                                   "($BURROW_BOX_TOKEN inside a box)")
        box = await self.boxes.get(box_id)
        if (box is None or box.state in _DEAD
                or box.state in (BoxState.FROZEN, BoxState.ARCHIVED)):
            raise ApiError(401, "unauthenticated", "this box token names no running box")
        if peer_uid is not None and peer_uid != box.uid:
            raise ApiError(403, "forbidden", "this token belongs to another box; use your own "
                                             "($BURROW_BOX_TOKEN)")
        return box


def require_operator(who: Principal) -> None:
    if not who.is_operator:
        raise ApiError(403, "forbidden", "this needs the operator key")


def require_user(who: Principal) -> None:
    """A tenant or the operator: box tokens only reach knowledge search and the host socket."""
    if who.kind == "box":
        raise ApiError(403, "forbidden", "a box token can only search knowledge; use a tenant "
                                         "or operator key for this")


def may_see_box(box: BoxRecord, who: Principal) -> bool:
    return who.is_operator or (who.tenant is not None and box.owner == who.tenant)


def require_tenant_access(who: Principal, tenant_id: str) -> None:
    """A tenant reaches its own tenant only; another tenant is "not found", like a missing
    one (its existence is not theirs to learn)."""
    require_user(who)
    if not who.is_operator and who.tenant != tenant_id:
        raise ApiError(404, "not_found", f"no tenant {tenant_id!r}")


def sees_all_knowledge(who: Principal) -> bool:
    """Everyone but the operator sees only insights enough tenants support (k-anonymity)."""
    return who.is_operator


def voter(who: Principal) -> str:
    """The tenant a vote on an insight counts for: votes are one per tenant per insight, so a
    caller with no tenant (the operator, a box made for no tenant) has none to cast."""
    if who.tenant is None:
        raise ApiError(403, "forbidden", "votes on insights are a tenant's: vote with a tenant "
                                         "key or from a tenant's box (the operator removes an "
                                         "insight with DELETE /v1/knowledge/insights/{id})")
    return who.tenant
