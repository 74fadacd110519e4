"""Terminals of boxes, the gateway's side of them: one-use tickets that let a browser open one
(a browser cannot set an Authorization header on a WebSocket), and the limits on how many are
open at once per box and per tenant.

Invariants:
- A ticket is random, shown once, kept in Redis only as its hash, for TICKET_TTL_S; it names
  the box and the principal it was made for, and is taken (GETDEL) by the first attempt to use
  it, right or wrong, so it opens at most one terminal, of that box, for that principal.
- An open terminal holds a lease in two sorted sets (its box's, its box owner's), renewed
  while it is open and dropped when it closes; a gateway that dies leaves leases that lapse
  within LEASE_S, so the counts are of every gateway of the instance and never stick.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass
from typing import Literal

from redis.asyncio import Redis

from core.authz import Principal
from core.keys import Keys
from core.security import hash_key

TICKET_TTL_S = 30
MAX_PER_BOX = 4       # terminals open at once on one box
MAX_PER_TENANT = 16   # on all the boxes of one tenant (the operator's own boxes: one pool)
LEASE_S = 60.0        # an open terminal's lease, renewed every RENEW_S
RENEW_S = 20.0
_OPERATOR_POOL = "_operator"

# KEYS: the box's set, the owner's; ARGV: now, lease end, session, box max, owner max.
# 0: taken; 1: the box is at its limit; 2: the tenant is.
_TAKE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then return 1 end
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[5]) then return 2 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
local ttl = math.ceil(tonumber(ARGV[2]) - tonumber(ARGV[1]))
redis.call('EXPIRE', KEYS[1], ttl)
redis.call('EXPIRE', KEYS[2], ttl)
return 0
"""


@dataclass(frozen=True)
class Lease:
    box_key: str
    owner_key: str
    session: str


class Terminals:
    """Tickets and leases of terminals, in Redis under the instance's keys."""

    def __init__(self, redis: Redis, keys: Keys, max_per_box: int = MAX_PER_BOX,
                 max_per_tenant: int = MAX_PER_TENANT) -> None:
        self.redis = redis
        self.keys = keys
        self.max_per_box = max_per_box
        self.max_per_tenant = max_per_tenant
        self._take = redis.register_script(_TAKE)

    async def ticket(self, box_id: str, who: Principal) -> str:
        """A new one-use ticket to open the box's terminal as `who`."""
        ticket = f"brw_pty_{secrets.token_urlsafe(24)}"
        record = {"box": box_id, "kind": who.kind, "tenant": who.tenant}
        await self.redis.set(self.keys.pty_ticket(hash_key(ticket)), json.dumps(record),
                             ex=TICKET_TTL_S)
        return ticket

    async def redeem(self, ticket: str, box_id: str) -> Principal | None:
        """Who the ticket was made for, if it is live and for this box (it is used up either
        way); None otherwise."""
        if not ticket.startswith("brw_pty_") or len(ticket) > 64:
            return None
        raw = await self.redis.getdel(self.keys.pty_ticket(hash_key(ticket)))
        if raw is None:
            return None
        record = json.loads(raw)
        if record.get("box") != box_id or record.get("kind") not in ("operator", "tenant"):
            return None
        kind: Literal["operator", "tenant"] = record["kind"]
        return Principal(kind, tenant=record.get("tenant"))

    async def take(self, box_id: str, owner: str | None) -> Lease | Literal["box", "tenant"]:
        """A lease for one more terminal of the box; or which limit stands in the way."""
        lease = Lease(self.keys.box_ptys(box_id),
                      self.keys.owner_ptys(owner or _OPERATOR_POOL), secrets.token_hex(8))
        now = time.time()
        taken = await self._take(keys=[lease.box_key, lease.owner_key],
                                 args=[now, now + LEASE_S, lease.session, self.max_per_box,
                                       self.max_per_tenant])
        if taken == 1:
            return "box"
        if taken == 2:
            return "tenant"
        return lease

    async def renew(self, lease: Lease) -> None:
        until = time.time() + LEASE_S
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in (lease.box_key, lease.owner_key):
                pipe.zadd(key, {lease.session: until}, xx=True)
                pipe.expire(key, int(LEASE_S) + 1)
            await pipe.execute()

    async def release(self, lease: Lease) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zrem(lease.box_key, lease.session)
            pipe.zrem(lease.owner_key, lease.session)
            await pipe.execute()
