"""Placement: which host of a cluster a box runs on next, and the generation that makes every
other host's writes for it fail.

`Placer.place` runs under the box's lock (boxes/locks.py), when a box is to wake and its host,
if it had one, is gone or is not to keep it. One script chooses and commits: among the live
hosts that are not draining and have room, a host that reports the box's layer cached at the
box's current generation (only the host that last held the box can: nothing was placed
since), else the least loaded (the fuller of its two capacities, boxes and memory, as a
fraction; then fewer boxes; then the id). It raises the box's generation, names the host in
the record and counts the box into the host's load until the host's next report. Being one
script, a write racing it (a host that has just lost the box committing a snapshot) lands
either wholly before it, and is what the placement returns, or not at all (fenced).

Memory is counted as boxes take it, not by their limits: a host reports what its boxes'
cgroups hold with each renewal, and a box placed since counts `expected_mb` (PLACED_MB, or
its limit if lower) until the next report says what it takes. A box's limit is its ceiling
(the kernel stops it there); most boxes rest far below it (a box's sandbox and daemon take
~4 MB, a tenant agent some tens more), so counting limits would leave a 24 GiB host full at
24 boxes of 1 GiB. Boxes are overcommitted as a Kubernetes node's pods are beyond their
requests: a BURROW_HOST_MEMORY_MB below the machine's memory keeps a margin.

`revoke` takes a box from whatever host holds it without placing it anywhere (deleting the box
of a lost host); `pick` chooses a host for a new box.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from boxes.errors import BoxNotFoundError, NoCapacityError
from boxes.hosts import Hosts
from boxes.keys import BoxKeys
from boxes.models import BoxRecord
from boxes.registry import decode

# Choose a host among the candidates and reserve room on it; for a box ('place'), raise its
# generation and name the host. KEYS: the box (any key for 'pick'), then per candidate its
# lease, registration and layers. ARGV: 'place' or 'pick', box id, memory to reserve (MB),
# the generation the box must be at ('' for any), then the candidates' ids.
# Returns {'ok', host, generation, cached, the box's hash}, {'gone'}, {'moved', generation},
# or {'full'}.
_CHOOSE = """
local mode, box_id, need = ARGV[1], ARGV[2], tonumber(ARGV[3])
local generation = 0
if mode == 'place' then
  local state = redis.call('hget', KEYS[1], 'state')
  if not state or state == '"deleted"' or state == '"deleting"' then return {'gone'} end
  generation = tonumber(redis.call('hget', KEYS[1], 'generation') or '0')
  if ARGV[4] ~= '' and generation ~= tonumber(ARGV[4]) then
    return {'moved', generation}
  end
end
local best, best_load, best_boxes, best_cached = nil, 0, 0, false
for i = 5, #ARGV do
  local k = 2 + (i - 5) * 3
  if redis.call('exists', KEYS[k]) == 1 then
    local h = redis.call('hmget', KEYS[k + 1], 'draining', 'max_boxes', 'boxes',
                         'memory_mb', 'memory_used_mb')
    local max_boxes, boxes = tonumber(h[2]) or 0, tonumber(h[3]) or 0
    local memory, used = tonumber(h[4]) or 0, tonumber(h[5]) or 0
    if h[1] ~= '1' and boxes < max_boxes and used < memory and used + need <= memory then
      local cached = mode == 'place'
        and redis.call('hget', KEYS[k + 2], box_id) == tostring(generation)
      local load = math.max(boxes / max_boxes, used / memory)
      local better
      if best == nil or cached ~= best_cached then
        better = best == nil or cached
      elseif load ~= best_load then
        better = load < best_load
      elseif boxes ~= best_boxes then
        better = boxes < best_boxes
      else
        better = ARGV[i] < ARGV[best]
      end
      if better then best, best_load, best_boxes, best_cached = i, load, boxes, cached end
    end
  end
end
if best == nil then return {'full'} end
local info = KEYS[2 + (best - 5) * 3 + 1]
redis.call('hincrby', info, 'boxes', 1)
redis.call('hincrby', info, 'memory_used_mb', need)
if mode == 'pick' then return {'ok', ARGV[best]} end
local raised = redis.call('hincrby', KEYS[1], 'generation', 1)
redis.call('hset', KEYS[1], 'host', '"' .. ARGV[best] .. '"')
return {'ok', ARGV[best], raised, best_cached and 1 or 0, redis.call('hgetall', KEYS[1])}
"""
# Take a box from its host: raise its generation, name no host. KEYS: the box; ARGV: the
# generation it must be at ('' for any).
_REVOKE = """
local state = redis.call('hget', KEYS[1], 'state')
if not state or state == '"deleted"' then return false end
local generation = tonumber(redis.call('hget', KEYS[1], 'generation') or '0')
if ARGV[1] ~= '' and generation ~= tonumber(ARGV[1]) then return 'moved' end
redis.call('hincrby', KEYS[1], 'generation', 1)
redis.call('hset', KEYS[1], 'host', 'null')
return redis.call('hgetall', KEYS[1])
"""


# What a box placed on a host is expected to take there until the host's next report
# (a box at rest: its sandbox, its daemon and a tenant agent).
PLACED_MB = 64


def expected_mb(limit_mb: int) -> int:
    """The memory a box with limit `limit_mb` is counted as taking until its host reports."""
    return min(limit_mb, PLACED_MB)


@dataclass(frozen=True)
class Placement:
    box: BoxRecord      # the record as the placement left it
    host: str           # the host it is placed on
    generation: int     # the generation that host holds it at (box.generation)
    # The host reported the box's layer at the generation before this one: nothing placed
    # the box elsewhere since, so the host's cached layer is the box's newest state (a host
    # trusts a cached layer only then).
    layer_cached: bool


def _flat(reply: list[bytes]) -> dict[bytes, bytes]:
    return dict(zip(reply[::2], reply[1::2], strict=True))


class Placer:
    def __init__(self, redis: Redis, keys: BoxKeys, hosts: Hosts | None = None) -> None:
        self.redis = redis
        self.keys = keys
        self.hosts = hosts or Hosts(redis, keys)

    async def _choose(self, mode: str, box_id: str, memory_mb: int,
                      exclude: Collection[str], generation: int | None) -> list[Any]:
        if memory_mb < 0:
            raise ValueError("memory_mb must not be negative")
        candidates = [h for h in await self.hosts.ids() if h not in exclude]
        keys = [self.keys.box(box_id)]
        for host_id in candidates:
            keys += [self.keys.host_lease(host_id), self.keys.host(host_id),
                     self.keys.host_layers(host_id)]
        reply: list[Any] = await self.redis.eval(  # type: ignore[misc]
            _CHOOSE, len(keys), *keys, mode, box_id, str(memory_mb),
            "" if generation is None else str(generation), *candidates)
        status = reply[0].decode()
        if status == "gone":
            raise BoxNotFoundError(f"no box {box_id!r} to place")
        if status == "full":
            raise NoCapacityError(
                f"no box host has room for box {box_id} now ({len(candidates)} registered; "
                "every live one is full or draining); retry in a few seconds")
        return reply

    async def place(self, box_id: str, expected_generation: int | None, *,
                    memory_mb: int = 0, exclude: Collection[str] = ()) -> Placement | None:
        """Place the box (the caller holds its lock): choose a host, raise the generation.

        `expected_generation`: the generation the caller saw when it decided the box needs a
        host. If the box is at another one by now, nothing is placed and None is returned: a
        placer stopped after its look (its lock expired meanwhile) must not take the box from
        the host it was placed on since. (None: place whatever the generation.)
        `memory_mb`: what the box is expected to take there (reserved until the host's next
        report). `exclude`: hosts not to choose (the one being drained). NoCapacityError when
        no live host has room; BoxNotFoundError for a box that does not exist or is being
        deleted."""
        reply = await self._choose("place", box_id, memory_mb, exclude, expected_generation)
        if reply[0] == b"moved":
            return None
        box = decode(_flat(reply[4]))
        return Placement(box=box, host=reply[1].decode(), generation=int(reply[2]),
                         layer_cached=bool(reply[3]))

    async def pick(self, *, memory_mb: int = 0, exclude: Collection[str] = ()) -> str:
        """The host a new box is to be made on (the least loaded with room), its room
        reserved; the host registers the box as its own (Registry.add with its lease)."""
        reply = await self._choose("pick", "", memory_mb, exclude, None)
        host: str = reply[1].decode()
        return host

    async def revoke(self, box_id: str, expected_generation: int | None) -> BoxRecord | None:
        """Take the box from whatever host holds it (the caller holds its lock): its
        generation is raised and it names no host, so no host's write for it counts any
        more (before deleting a box whose host is lost, for one). None, and nothing done,
        if the box is no longer at `expected_generation` (as for place)."""
        reply = await self.redis.eval(  # type: ignore[misc]
            _REVOKE, 1, self.keys.box(box_id),
            "" if expected_generation is None else str(expected_generation))
        if reply == b"moved":
            return None
        if not reply:
            raise BoxNotFoundError(f"no box {box_id!r}")
        return decode(_flat(reply))

