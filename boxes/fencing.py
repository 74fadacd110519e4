"""Fencing: when a box host of a cluster's write of a box's record lands.

Only where the host holds the box: the record names it as the box's host at the generation
the writer read (each placement raises it: boxes/placement.py), and the host's lease is live
(boxes/hosts.py) — both checked in the script that writes, so nothing comes between the check
and the write. Otherwise nothing is written and FencedError says why: a host stopped past its
lease, or one the box was placed away from meanwhile (a "zombie"), cannot overwrite newer
state. A snapshot's commit is such a write: a compare-and-set of (box, generation) ->
snapshot id. The registry (boxes/registry.py) writes through here when it is given a lease.
"""

from __future__ import annotations

import json
from typing import Any

from redis.asyncio import Redis

from boxes.errors import FencedError
from boxes.hosts import HostLease
from boxes.keys import BoxKeys
from boxes.models import BoxRecord

# The fence (the write follows in the same script): the box names the writer as its host at
# the writer's generation, and the writer's lease is live. {0, host, generation}: the box is
# elsewhere (or gone); {-1}: the lease lapsed.
# KEYS: the box, the writer's lease; ARGV: the writer (as JSON), its generation, ...
_FENCE = """
local host = redis.call('hget', KEYS[1], 'host')
local generation = redis.call('hget', KEYS[1], 'generation') or '0'
if host ~= ARGV[1] or tonumber(generation) ~= tonumber(ARGV[2]) then
  return {0, host or 'null', generation}
end
if redis.call('exists', KEYS[2]) == 0 then return {-1} end
"""
# ARGV: ..., then fields and values. {1, the snapshot id it replaced (JSON)}.
_SET = _FENCE + """
local previous = redis.call('hget', KEYS[1], 'snapshot_id') or 'null'
redis.call('hset', KEYS[1], unpack(ARGV, 3))
return {1, previous}
"""
# KEYS: ..., the index, the owner's index; ARGV: ..., box id, tombstone TTL, then the
# tombstone's fields and values.
_DELETE = _FENCE + """
redis.call('del', KEYS[1])
redis.call('hset', KEYS[1], unpack(ARGV, 5))
redis.call('expire', KEYS[1], ARGV[4])
redis.call('srem', KEYS[3], ARGV[3])
redis.call('srem', KEYS[4], ARGV[3])
return {1}
"""


class Fence:
    """The writes of one host (`lease`) for the boxes it holds."""

    def __init__(self, redis: Redis, keys: BoxKeys, lease: HostLease) -> None:
        self.redis = redis
        self.keys = keys
        self.lease = lease

    def _args(self, box: BoxRecord) -> tuple[str, str, str, str]:
        writer = self.lease.host_id
        return (self.keys.box(box.id), self.keys.host_lease(writer), json.dumps(writer),
                str(box.generation))

    def _refused(self, box: BoxRecord, answer: list[Any]) -> FencedError:
        writer = self.lease.host_id
        if int(answer[0]) == -1:
            return FencedError(
                f"box {box.id}: the lease of box host {writer} lapsed, so nothing was written; "
                "stop the box here (it may run elsewhere by now) and register the host again")
        host, generation = json.loads(answer[1]), int(answer[2])
        where = f"on box host {host}" if host else "on no host (deleted or taken back)"
        return FencedError(
            f"box {box.id} is at generation {generation} {where}, not generation "
            f"{box.generation} on {writer}; nothing was written: stop the box here, and send "
            "its requests where it is now")

    async def set(self, box: BoxRecord, fields: dict[str, str]) -> str | None:
        """Write `fields` (JSON values) of the box's record if this host holds it at
        `box.generation`; the snapshot id the write replaced."""
        if "generation" in fields or fields.get("host", "null") not in ("null",
                                                                       json.dumps(box.host)):
            raise ValueError("a host cannot place a box: only placement changes its host "
                             "and generation (a host may only let go of it: host=None)")
        answer = await self.redis.eval(  # type: ignore[misc]
            _SET, 2, *self._args(box), *[x for item in fields.items() for x in item])
        if int(answer[0]) != 1:
            raise self._refused(box, answer)
        previous: str | None = json.loads(answer[1])
        return previous

    async def delete(self, box: BoxRecord, index: str, owner_index: str, ttl_s: int,
                     tombstone: dict[str, str]) -> None:
        """Replace the box's record with its tombstone (JSON values) and drop it from the
        indexes, if this host holds it at `box.generation`."""
        answer = await self.redis.eval(  # type: ignore[misc]
            _DELETE, 4, *self._args(box), index, owner_index, box.id, str(ttl_s),
            *[x for item in tombstone.items() for x in item])
        if int(answer[0]) != 1:
            raise self._refused(box, answer)
