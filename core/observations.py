"""The observation pipeline: every (request, response) pair of a tenant's agent route, in
order, exactly once in effect, to that tenant's agent.

The gateway records a pair after the response has gone out: one Lua call gives it the
tenant's next sequence number and appends it to the tenant's backlog (a Redis list), so
backlog order is sequence order. If Redis is unreachable the pair is spooled to a file and
recorded later. Delivery (the worker's observe task, or the gateway right after a wake) takes
the tenant's lock, posts the head of the backlog to the agent, and trims it only after the
agent answered; the agent skips ids it has seen, so a redelivery after a crash changes
nothing. A frozen box's pairs wait: delivery never wakes a box.

What runs in the box is not trusted to answer. Each batch must be answered within the
delivery deadline, and the tenant's lease lasts the deadline and a margin (renewed before
each batch), so a lease never lapses under a delivery still waiting for its agent; the trim
happens only while the lease is still held, so two deliveries never both trim. An agent that
lets a batch time out is marked: its deliveries are skipped for the deadline, then twice as
long each time it fails again (up to the backoff ceiling), and its pairs stay in the backlog,
redelivered (and skipped by id where it did apply them) once it answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from redis.asyncio import Redis
from redis.exceptions import RedisError

from boxes import BoxError, BoxRecord, BoxState, BoxUnavailableError
from boxes.servicehttp import ServiceClient, ServiceTimeout
from core.keys import Keys
from core.remote import Boxes

log = logging.getLogger("burrow.observe")

EXCERPT_BYTES = 4096
BATCH = 200
MAX_ANSWER = 8 << 20  # the agent's answer to a batch: a box does not make the host hold more
# A batch the agent has not answered within DEADLINE_S is given up; the tenant's lease lasts
# that long plus LEASE_MARGIN_S (the Redis round trips of a batch around the agent's answer).
DEADLINE_S = 10.0
LEASE_MARGIN_S = 2.0
BACKOFF_MAX_S = 300.0  # the longest an agent that does not answer is skipped at a time
STALL_KEEP_S = 86400  # a mark nobody renews goes after a day
# A tenant whose agent takes no deliveries (stuck, or replaced by one that refuses them)
# would grow its backlog without end: at BACKLOG_MAX pairs new ones are dropped and counted.
BACKLOG_MAX = 10_000
_RECORD = """
if redis.call('llen', KEYS[2]) >= tonumber(ARGV[3]) then
  redis.call('incr', KEYS[4])
  return {-1, 0}
end
local seq = redis.call('incr', KEYS[1])
local pair = cjson.decode(ARGV[1])
pair['seq'] = seq
redis.call('rpush', KEYS[2], cjson.encode(pair))
return {seq, redis.call('sadd', KEYS[3], ARGV[2])}
"""


_DONE = """
if redis.call('llen', KEYS[1]) == 0 then redis.call('srem', KEYS[2], ARGV[1]) end
return 0
"""

# The tenant's delivery lease (a token with a TTL): renewed, trimmed under and let go only by
# whoever holds it.
_RENEW = """
if redis.call('get', KEYS[1]) ~= ARGV[1] then return 0 end
return redis.call('pexpire', KEYS[1], ARGV[2])
"""
# Trim what the agent was given from the backlog; in a cluster (ARGV[4] = '1') keep it in the
# delivered list (KEYS[3]) until a durable snapshot holds what the agent made of it.
_TRIM = """
if redis.call('get', KEYS[1]) ~= ARGV[1] then return 0 end
local n = tonumber(ARGV[2])
if ARGV[4] == '1' then
  local given = redis.call('lrange', KEYS[2], 0, n - 1)
  if #given > 0 then redis.call('rpush', KEYS[3], unpack(given)) end
end
redis.call('ltrim', KEYS[2], n, -1)
return redis.call('pexpire', KEYS[1], ARGV[3])
"""
# The box woke from a state older than what its agent was given: give it again, first.
# KEYS: delivered, backlog, pending; ARGV: the pending member.
_REDELIVER = """
local given = redis.call('lrange', KEYS[1], 0, -1)
for i = #given, 1, -1 do redis.call('lpush', KEYS[2], given[i]) end
redis.call('del', KEYS[1])
if #given > 0 then redis.call('sadd', KEYS[3], ARGV[1]) end
return #given
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then redis.call('del', KEYS[1]) end
return 0
"""
# An agent that let a delivery time out: skipped until `until`, for longer each time.
_STALL = """
local n = redis.call('hincrby', KEYS[1], 'n', 1)
local wait = math.min(tonumber(ARGV[1]) * 2 ^ (n - 1), tonumber(ARGV[2]))
redis.call('hset', KEYS[1], 'until', tostring(tonumber(ARGV[3]) + wait))
redis.call('expire', KEYS[1], ARGV[4])
return tostring(wait)
"""


class AgentStalled(BoxUnavailableError):
    """A tenant's agent did not answer a delivery within the deadline; its deliveries are
    skipped for `backoff_s`."""

    def __init__(self, tenant: str, backoff_s: float) -> None:
        super().__init__(f"the agent of tenant {tenant} did not answer a delivery in time; "
                         f"its deliveries wait {backoff_s:.0f} s")
        self.backoff_s = backoff_s


class Recorded(NamedTuple):
    seq: int
    started_backlog: bool  # the tenant had nothing pending before: a delivery must be queued


class Batch(NamedTuple):
    accepted: int
    dropped: int  # the tenant's backlog was full
    started_backlog: bool


@dataclass
class Delivery:
    pairs: int = 0
    insights: list[dict[str, Any]] = field(default_factory=list)
    identifiers: list[str] = field(default_factory=list)  # what names the tenant: to scrub
    waiting_s: float = 0.0  # skipped: the tenant's agent is marked for this much longer


# What a client may tell the agent about its request (tenant_agent/memory/turns.py reads
# them): which JSON field holds the user's words, and when they were said (imported history).
KEPT_HEADERS = ("x-burrow-user-text", "x-burrow-said-at")


def excerpt(data: bytes) -> str:
    return data[:EXCERPT_BYTES].decode("utf-8", "replace")


def _part(data: bytes) -> dict[str, str]:
    """A body's excerpt, and its tail when the excerpt cut it: the newest turn of a long chat
    is at its end, so it is never the part that is cut."""
    part = {"body": excerpt(data)}
    if len(data) > EXCERPT_BYTES:
        part["body_tail"] = data[-EXCERPT_BYTES:].decode("utf-8", "replace")
    return part


class Observations:
    def __init__(self, redis: Redis, spool_dir: Path, *, keys: Keys,
                 backlog_max: int = BACKLOG_MAX, client: ServiceClient | None = None,
                 deadline_s: float = DEADLINE_S, backoff_max_s: float = BACKOFF_MAX_S,
                 clock: Callable[[], float] = time.time, durable: bool = False) -> None:
        self.redis = redis
        # A cluster's: what an agent was given is kept until a durable snapshot of its box
        # holds it (its host may be lost before, and the box wake elsewhere from older state).
        self.durable = durable
        self._delivered_key = keys.observed_delivered
        self.client = client or ServiceClient()
        self.backlog_max = backlog_max
        self.spool = spool_dir / "observations.ndjson"
        self.keys = keys
        self._seq_key = keys.observed_seq
        self.backlog_key = keys.observed_backlog
        self._dropped_key = keys.observed_dropped
        self._stall_key = keys.observed_unanswered
        self._lease_key = keys.delivery_lease
        self._pending = keys.observed_pending()  # "tenant box_id" of backlogs that may hold pairs
        self.deadline_s = deadline_s
        self.backoff_max_s = backoff_max_s
        self.clock = clock  # wall time: marks are read by every process sharing the Redis
        self._record = redis.register_script(_RECORD)  # EVALSHA: the script is sent once
        self._renew = redis.register_script(_RENEW)
        self._trim = redis.register_script(_TRIM)
        self._release = redis.register_script(_RELEASE)
        self._stall = redis.register_script(_STALL)

    @property
    def lease_s(self) -> float:
        """How long a tenant's delivery lease lasts past its last renewal."""
        return self.deadline_s + LEASE_MARGIN_S

    @staticmethod
    def pair(method: str, path: str, query: str, body: bytes, status: int, answer: bytes,
             latency_ms: float, request_id: str | None = None,
             headers: Mapping[str, str] | None = None) -> dict[str, Any]:
        kept = {k: headers[k][:200] for k in KEPT_HEADERS if headers and k in headers}
        request: dict[str, Any] = {"method": method, "path": path, "query": query,
                                   **_part(body)}
        if kept:
            request["headers"] = kept
        return {"id": uuid.uuid4().hex, "at": time.time(), "request_id": request_id,
                "request": request, "response": {"status": status, **_part(answer)},
                "latency_ms": round(latency_ms, 3)}

    async def record(self, tenant: str, box_id: str, pair: dict[str, Any]) -> Recorded | None:
        """Append the pair to the tenant's backlog (its sequence number assigned here);
        spool it to disk when Redis cannot be reached (and return None)."""
        try:
            seq, added = await self._record(
                keys=[self._seq_key(tenant), self.backlog_key(tenant), self._pending,
                      self._dropped_key(tenant)],
                args=[json.dumps(pair), f"{tenant} {box_id}", self.backlog_max])
            if int(seq) < 0:
                log.warning("tenant %s has %d undelivered observations, the most kept; this "
                            "one was dropped (is its agent taking deliveries?)", tenant,
                            self.backlog_max)
                return None
            return Recorded(int(seq), bool(added))
        except (RedisError, OSError) as exc:
            log.warning("observation spooled (Redis unreachable: %s)", exc)
            await asyncio.to_thread(self._spool, tenant, box_id, pair)
            return None

    async def record_many(self, tenant: str, box_id: str,
                          pairs: list[dict[str, Any]]) -> Batch:
        """Append pairs to the tenant's backlog in one round trip, in their order; what Redis
        cannot take now is spooled (and counts as accepted: it is recorded later). A pair
        recorded twice (a round trip cut midway, then spooled) has the same id, which the
        agent skips the second time."""
        keys = [self._seq_key(tenant), self.backlog_key(tenant), self._pending,
                self._dropped_key(tenant)]
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for pair in pairs:
                    await self._record(keys=keys, client=pipe, args=[
                        json.dumps(pair), f"{tenant} {box_id}", self.backlog_max])
                answers = await pipe.execute()
        except (RedisError, OSError) as exc:
            log.warning("%d observations spooled (Redis unreachable: %s)", len(pairs), exc)
            await asyncio.to_thread(self._spool_all, tenant, box_id, pairs)
            return Batch(len(pairs), 0, False)
        dropped = sum(1 for seq, _ in answers if int(seq) < 0)
        if dropped:
            log.warning("tenant %s has %d undelivered observations, the most kept; %d were "
                        "dropped (is its agent taking deliveries?)", tenant, self.backlog_max,
                        dropped)
        return Batch(len(pairs) - dropped, dropped, any(int(a) for _, a in answers))

    def _spool_all(self, tenant: str, box_id: str, pairs: list[dict[str, Any]]) -> None:
        for pair in pairs:
            self._spool(tenant, box_id, pair)

    def _spool(self, tenant: str, box_id: str, pair: dict[str, Any]) -> None:
        self.spool.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        line = json.dumps({"tenant": tenant, "box_id": box_id, "pair": pair}) + "\n"
        # tenants' requests and answers: root's alone
        fd = os.open(self.spool, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a") as f:
            f.write(line)

    async def replay_spool(self) -> int:
        """Record what was spooled while Redis was away; return how many pairs."""
        if not self.spool.exists():
            return 0
        claimed = self.spool.with_suffix(f".{os.getpid()}.replay")
        os.replace(self.spool, claimed)
        count = 0
        for line in claimed.read_text().splitlines():
            entry = json.loads(line)
            if await self.record(entry["tenant"], entry["box_id"], entry["pair"]) is not None:
                count += 1
        claimed.unlink()
        return count

    async def forget(self, tenant: str, box_id: str) -> None:
        """Drop a deleted tenant's pending observations and its sequence."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(self.backlog_key(tenant), self._seq_key(tenant),
                        self._dropped_key(tenant), self._stall_key(tenant),
                        self._delivered_key(tenant))
            pipe.srem(self._pending, f"{tenant} {box_id}")
            await pipe.execute()

    async def drop_backlog(self, tenant: str, box_id: str) -> int:
        """Drop the tenant's undelivered pairs unread (the tenant deleted its memory); the
        sequence goes on, so pairs recorded later are new to the agent. Returns how many."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.llen(self.backlog_key(tenant))
            pipe.delete(self.backlog_key(tenant), self._delivered_key(tenant))
            pipe.srem(self._pending, f"{tenant} {box_id}")
            size, _, _ = await pipe.execute()
        return int(size)

    # --- a cluster's: what a durable snapshot holds (boxes/manager.py's Durability) -------

    async def given(self, tenant: str) -> int:
        """How many pairs the agent was given that no durable snapshot holds yet: read while
        its box is still, before a snapshot of it is taken."""
        return int(await self.redis.llen(self._delivered_key(tenant)))  # type: ignore[misc]

    async def held(self, tenant: str, count: int) -> None:
        """A durable snapshot holds what the agent made of the first `count` of them."""
        if count > 0:
            await self.redis.ltrim(self._delivered_key(tenant), count, -1)  # type: ignore[misc]

    async def give_again(self, tenant: str, box_id: str) -> int:
        """The box woke from a state older than what its agent was given: those pairs go
        back to the head of the backlog (the agent skips those it has, by id)."""
        count: int = await self.redis.eval(  # type: ignore[misc]
            _REDELIVER, 3, self._delivered_key(tenant), self.backlog_key(tenant),
            self._pending, f"{tenant} {box_id}")
        if count:
            log.warning("tenant %s: its box woke from an older state; %d pairs its agent was "
                        "given go to it again", tenant, count)
        return count

    async def recorded(self, tenant: str) -> int:
        """How many pairs were recorded for the tenant (its sequence): the gateway's count of
        its turns, which its box cannot change."""
        return int(await self.redis.get(self._seq_key(tenant)) or 0)

    async def pending(self) -> list[tuple[str, str]]:
        """(tenant, box id) of every backlog that may hold pairs."""
        members = await self.redis.smembers(self._pending)  # type: ignore[misc]
        pairs = [m.decode().split(" ", 1) for m in members]
        return [(tenant, box_id) for tenant, box_id in pairs]

    async def awaits(self, tenant: str, box_id: str) -> bool:
        """Whether the tenant's backlog may hold pairs for this box (one round trip)."""
        return bool(await self.redis.sismember(self._pending, f"{tenant} {box_id}"))  # type: ignore[misc]

    async def has_backlog(self, tenant: str) -> bool:
        """Whether pairs of the tenant wait for delivery (one round trip)."""
        return bool(await self.redis.exists(self.backlog_key(tenant)))

    async def backlog_of(self, tenant: str) -> dict[str, int]:
        """A tenant's undelivered pairs, the cap, how many were dropped at the cap, and how
        many deliveries in a row its agent left unanswered (0: it answers)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.llen(self.backlog_key(tenant))
            pipe.get(self._dropped_key(tenant))
            pipe.hget(self._stall_key(tenant), "n")
            size, dropped, unanswered = await pipe.execute()
        return {"size": int(size), "max": self.backlog_max, "dropped": int(dropped or 0),
                "unanswered": int(unanswered or 0)}

    async def stalled_for(self, tenant: str) -> float:
        """How much longer the tenant's agent is skipped (0: not marked, or its wait is
        over and the next delivery tries it again)."""
        until = await self.redis.hget(self._stall_key(tenant), "until")  # type: ignore[misc]
        return max(0.0, float(until) - self.clock()) if until else 0.0

    async def _mark_stalled(self, tenant: str) -> float:
        wait = await self._stall(keys=[self._stall_key(tenant)], args=[
            self.deadline_s, self.backoff_max_s, self.clock(), STALL_KEEP_S])
        log.warning("the agent of tenant %s did not answer a delivery within %.0f s; its "
                    "deliveries wait %s s", tenant, self.deadline_s, wait.decode())
        return float(wait)

    async def dropped_total(self) -> int:
        total = 0
        async for key in self.redis.scan_iter(match=self._dropped_key("*")):
            total += int(await self.redis.get(key) or 0)
        return total

    async def backlog_size(self) -> int:
        """Pairs waiting in every backlog, in one round trip."""
        pending = await self.pending()
        if not pending:
            return 0
        async with self.redis.pipeline(transaction=False) as pipe:
            for tenant, _ in pending:
                pipe.llen(self.backlog_key(tenant))
            return sum(await pipe.execute())

    async def deliver(self, manager: Boxes, tenant: str, box_id: str,
                      limit: int | None = None,
                      prepare: Callable[[list[dict[str, Any]]], Awaitable[None]] | None = None,
                      headers: dict[str, str] | None = None,
                      retry_stalled: bool = False) -> Delivery:
        """Deliver the tenant's backlog to its agent if its box runs; return what the agent
        proposed for the shared knowledge base. Never wakes the box. `prepare` may add to a
        batch's pairs before they go (embeddings); `headers` go with each batch. An agent
        marked as not answering is skipped (`waiting_s` says for how long) unless
        `retry_stalled` (it was just restarted). Raises AgentStalled when a batch times out."""
        box = await manager.get(box_id)
        if box.state != BoxState.RUNNING:
            return Delivery()
        mark = await self.redis.hget(self._stall_key(tenant), "until")  # type: ignore[misc]
        waiting = max(0.0, float(mark) - self.clock()) if mark else 0.0
        if waiting and not retry_stalled:
            return Delivery(waiting_s=waiting)
        lease, token = self._lease_key(tenant), uuid.uuid4().hex
        lease_ms = int(self.lease_s * 1000)
        if not await self.redis.set(lease, token, nx=True, px=lease_ms):
            return Delivery()  # someone else is delivering this tenant's backlog right now
        result = Delivery()
        try:
            while limit is None or result.pairs < limit:
                raw = await self.redis.lrange(self.backlog_key(tenant), 0, BATCH - 1)  # type: ignore[misc]
                if not raw:
                    # atomically: a pair recorded meanwhile keeps the tenant pending
                    await self.redis.eval(_DONE, 2, self.backlog_key(tenant), self._pending,  # type: ignore[misc]
                                          f"{tenant} {box_id}")
                    break
                pairs = [json.loads(r) for r in raw]
                if prepare is not None:
                    await prepare(pairs)
                # the agent's whole deadline, within the lease (preparing may have taken long)
                if not await self._renew(keys=[lease], args=[token, lease_ms]):
                    break
                answer = await self._post(manager, tenant, box_id, pairs, headers)
                result.insights.extend(i for i in answer.get("insights", [])
                                       if isinstance(i, dict))
                result.identifiers.extend(str(i) for i in answer.get("identifiers", []))
                if mark:  # it answers again
                    await self.redis.delete(self._stall_key(tenant))
                    mark = None
                result.pairs += len(raw)
                if not await self._trim(keys=[lease, self.backlog_key(tenant),
                                              self._delivered_key(tenant)],
                                        args=[token, len(raw), lease_ms,
                                              "1" if self.durable else "0"]):
                    break  # the lease lapsed: whoever holds it now resends (the agent skips)
        finally:
            with contextlib.suppress(RedisError):
                await self._release(keys=[lease], args=[token])
        return result

    async def _post(self, manager: Boxes, tenant: str, box_id: str,
                    pairs: list[dict[str, Any]],
                    headers: dict[str, str] | None) -> dict[str, Any]:
        try:
            status, body = await self.client.request(
                manager.service_path(box_id), "POST", "/_burrow/observe",
                json.dumps({"pairs": pairs}).encode(), headers, max_answer=MAX_ANSWER,
                timeout_s=self.deadline_s)
        except ServiceTimeout as exc:
            raise AgentStalled(tenant, await self._mark_stalled(tenant)) from exc
        if status != 200:
            raise BoxError(f"the agent refused observations ({status}): {body[:200]!r}")
        answer = json.loads(body)
        if not isinstance(answer, dict):
            raise BoxError("the agent answered observations with something not an object")
        return answer


class HeldInSnapshots:
    """The box runtime's Durability (boxes/manager.py) for a cluster: what a tenant's agent
    was given counts as kept only once a durable snapshot of its home box holds it."""

    def __init__(self, observations: Observations, home_label: str) -> None:
        self.observations = observations
        self.home_label = home_label

    def _tenant(self, box: BoxRecord) -> str | None:
        return box.owner if box.owner and box.labels.get(self.home_label) == "true" else None

    async def taking(self, box: BoxRecord) -> int:
        tenant = self._tenant(box)
        return 0 if tenant is None else await self.observations.given(tenant)

    async def committed(self, box: BoxRecord, mark: int) -> None:
        tenant = self._tenant(box)
        if tenant is not None:
            await self.observations.held(tenant, mark)

    async def restored(self, box: BoxRecord) -> None:
        tenant = self._tenant(box)
        if tenant is not None:
            await self.observations.give_again(tenant, box.id)
