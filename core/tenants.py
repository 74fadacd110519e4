"""Tenants: an end user of the product, with an API key (stored hashed) and a home box that
runs the tenant's agent. Records live in Redis next to the box registry."""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import itertools
import json
import secrets
import time
from dataclasses import asdict, dataclass, fields
from typing import Any

from redis.asyncio import Redis

from boxes import BoxError, BoxNotFoundError, BoxSpec, BoxState
from core.errors import ApiError
from core.keys import Keys
from core.observations import Observations
from core.policy import Policies
from core.remote import Boxes
from core.security import hash_key, new_key
from knowledge.base import KnowledgeBase
from models.budgets import ModelBudgets

HOME_LABEL = "burrow.home"
_KEY_CACHE_S = 10.0
# How long a tenant's deletion retries boxes that are busy (a wake or a freeze under way)
# before it answers 503 (a DELETE again finishes it).
_DELETE_WAIT_S = 120.0


@dataclass
class TenantRecord:
    id: str
    created_at: float
    home_box_id: str
    key_hash: str


_RECORD_FIELDS = [f.name for f in fields(TenantRecord)]


class Tenants:
    def __init__(self, redis: Redis, manager: Boxes, kb: KnowledgeBase,
                 observations: Observations, policies: Policies, agent_command: list[str],
                 budgets: ModelBudgets, keys: Keys) -> None:
        self.redis = redis
        self.budgets = budgets
        self.manager = manager
        self.kb = kb
        self.observations = observations
        self.policies = policies
        self.agent_command = agent_command
        self.keys = keys
        self._key = keys.tenant
        self._apikey = keys.api_key
        self._index = keys.tenants()
        self._key_cache: dict[str, tuple[str, float]] = {}
        self._home: dict[str, tuple[str, float]] = {}

    async def create(self, tenant_id: str | None, policy: dict[str, Any] | None,
                     by: str = "operator") -> tuple[TenantRecord, str]:
        """A tenant with its home box and key, and its policy overrides if any (checked
        before anything is created)."""
        tenant_id = tenant_id or "t-" + secrets.token_hex(6)
        if policy:
            await self.policies.check_override(policy)
        # Reserve the id first, so two creations of the same tenant cannot both succeed.
        if not await self.redis.set(self.keys.tenant_reserved(tenant_id), "1", nx=True,
                                    ex=300):
            raise ApiError(409, "conflict", f"tenant {tenant_id} is being created already")
        try:
            if await self.redis.exists(self._key(tenant_id)):
                raise ApiError(409, "conflict",
                               f"tenant {tenant_id} exists; choose another id or delete it first")
            if await self.manager.reopen_owner(tenant_id):
                # the id was a deleted tenant's: whatever of it arrived after its deletion
                # (a late observation, model usage, a contribution) is not the new one's
                await self._forget(tenant_id)
                await self.kb.withdraw(tenant_id)
            api_key = new_key("t")
            home = await self.manager.create(BoxSpec(
                runtime="python", owner=tenant_id, name=f"{tenant_id}-home",
                labels={HOME_LABEL: "true"}, service=list(self.agent_command),
                meta={"home_of": tenant_id}))
            record = TenantRecord(id=tenant_id, created_at=time.time(), home_box_id=home.id,
                                  key_hash=hash_key(api_key))
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.hset(self._key(tenant_id), mapping={"data": json.dumps(asdict(record))})
                pipe.set(self._apikey(record.key_hash), tenant_id)
                pipe.sadd(self._index, tenant_id)
                await pipe.execute()
            if policy:
                await self.policies.set_override(tenant_id, policy, by)
            return record, api_key
        finally:
            await self.redis.delete(self.keys.tenant_reserved(tenant_id))

    async def get(self, tenant_id: str) -> TenantRecord | None:
        raw = await self.redis.hget(self._key(tenant_id), "data")  # type: ignore[misc]
        if not raw:
            return None
        data = json.loads(raw)
        return TenantRecord(**{name: data[name] for name in _RECORD_FIELDS})

    async def standing(self, tenant_id: str) -> tuple[float, int] | None:
        """When the tenant was created and how many turns the gateway recorded for it (what the
        policy's contribute_min_age_s and contribute_min_turns are checked against); None for
        a tenant that does not exist."""
        record = await self.get(tenant_id)
        if record is None:
            return None
        return record.created_at, await self.observations.recorded(tenant_id)

    async def require(self, tenant_id: str) -> TenantRecord:
        record = await self.get(tenant_id)
        if record is None:
            raise ApiError(404, "not_found", f"no tenant {tenant_id!r}")
        if await self.redis.hexists(self._key(tenant_id), "deleting"):  # type: ignore[misc]
            raise ApiError(409, "conflict", f"tenant {tenant_id} is being deleted")
        return record

    async def list(self) -> builtins.list[TenantRecord]:
        ids = sorted(m.decode() for m in await self.redis.smembers(self._index))  # type: ignore[misc]
        records = await asyncio.gather(*(self.get(i) for i in ids))
        return [r for r in records if r is not None]

    async def count(self) -> int:
        return int(await self.redis.scard(self._index))  # type: ignore[misc]

    async def by_key(self, api_key: str) -> str | None:
        """The tenant an API key belongs to (cached briefly: this runs on every request)."""
        digest = hash_key(api_key)
        cached = self._key_cache.get(digest)
        now = time.monotonic()
        if cached is not None and cached[1] > now:
            return cached[0]
        raw = await self.redis.get(self._apikey(digest))
        if raw is None:
            return None
        tenant = bytes(raw).decode()
        self._key_cache[digest] = (tenant, now + _KEY_CACHE_S)
        return tenant

    async def home_box(self, tenant_id: str) -> str:
        cached = self._home.get(tenant_id)
        now = time.monotonic()
        if cached is not None and cached[1] > now:
            return cached[0]
        record = await self.require(tenant_id)
        self._home[tenant_id] = (record.home_box_id, now + _KEY_CACHE_S)
        return record.home_box_id

    async def delete(self, tenant_id: str) -> None:
        """Delete the tenant's boxes and named snapshots, withdraw its support from the
        knowledge base (removing what only it supported), then the tenant and its key.

        No box outlives it: its id is closed to new boxes before its boxes are listed (a box
        being made for it is refused, or listed), and they are deleted until none is left. The
        id stays closed until a new tenant takes it, which starts with nothing of this one."""
        record = await self.get(tenant_id)
        if record is None:
            raise ApiError(404, "not_found", f"no tenant {tenant_id!r}")
        # The key first: from here on it opens nothing, and nothing new is made for the
        # tenant (require() refuses) while its boxes and data go.
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(self._apikey(record.key_hash))
            pipe.hset(self._key(tenant_id), "deleting", str(time.time()))
            await pipe.execute()
        await self.manager.close_owner(tenant_id)
        self._key_cache = {k: v for k, v in self._key_cache.items() if v[0] != tenant_id}
        await self._delete_boxes(tenant_id)
        # (a named snapshot being made held its box's lock, so it is in the store by now)
        for snap in await self.manager.list_snapshots(owner=tenant_id):
            with contextlib.suppress(BoxError):
                await self.manager.delete_snapshot(snap.id)
        await self.kb.withdraw(tenant_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(self._apikey(record.key_hash))
            pipe.delete(self._key(tenant_id))
            pipe.srem(self._index, tenant_id)
            await pipe.execute()
        await self._forget(tenant_id)
        self._key_cache = {k: v for k, v in self._key_cache.items() if v[0] != tenant_id}
        self._home.pop(tenant_id, None)

    async def _delete_boxes(self, tenant_id: str) -> None:
        """Delete the tenant's boxes until none is left (a box that was being made when the
        deletion began is deleted once it is made; a busy one is tried again)."""
        deadline = time.monotonic() + _DELETE_WAIT_S
        why = "they were busy"
        for attempt in itertools.count():
            boxes = await self.manager.list(owner=tenant_id)
            if not boxes:
                return
            if attempt:
                if time.monotonic() > deadline:
                    raise ApiError(503, "unavailable",
                                   f"tenant {tenant_id}'s boxes could not all be deleted "
                                   f"({why}); it takes nothing new and its key is revoked; "
                                   "send DELETE again to finish", {"Retry-After": "5"})
                await asyncio.sleep(0.2)
            for box in boxes:
                try:
                    await self.manager.delete(box.id)
                except BoxNotFoundError:
                    continue
                except BoxError as exc:  # busy, or its layer would not go: again, shortly
                    why = exc.message

    async def _forget(self, tenant_id: str) -> None:
        """What is kept under the tenant's id outside its boxes and the knowledge base:
        observations (every backlog of it), policy overrides, model usage."""
        for tenant, box_id in await self.observations.pending():
            if tenant == tenant_id:
                await self.observations.forget(tenant_id, box_id)
        await self.observations.forget(tenant_id, "")
        await self.policies.forget(tenant_id)
        await self.budgets.forget(tenant_id)

    async def summary(self, record: TenantRecord) -> dict[str, Any]:
        """State, last activity and storage of a tenant, from its boxes."""
        boxes = await self.manager.list(owner=record.id)
        home = next((b for b in boxes if b.id == record.home_box_id), None)
        local = [b for b in boxes if b.layer_local and b.state != BoxState.ARCHIVED]
        storage = sum(u.disk_bytes for u in await self.manager.usages(local))
        last = max([record.created_at, *(b.last_active_at for b in boxes)])
        return {"state": home.state.value if home else "missing", "last_active_at": last,
                "storage_bytes": storage, "boxes": len(boxes),
                "observations": await self.observations.backlog_of(record.id)}
