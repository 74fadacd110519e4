"""The box hosts of a cluster: each registers in Redis with a lease it keeps renewing (where it
is reached, its capacity and load, the box layers it has cached); the hosts are listed,
described and drained from here. Placement on them is boxes/placement.py; the writes a host
makes for its boxes are fenced in boxes/registry.py.

A lease is a key with a TTL (BURROW_HOST_LEASE_S), renewed every third of it, so one lost
renewal is not a lapse. Redis's clock alone expires it: no two machines' clocks are compared.
The renewals run in a thread of their own, with their own connection: a host whose event loop
is slow for a few seconds (a burst of work on a loaded machine) keeps its lease, while one
whose loop has not turned for STALLED_LEASES leases (it hangs) lets it lapse. A renewal only
extends a lease that still exists, so a host whose lease lapsed (stopped past it, cut off
from Redis, hung) never revives it: its boxes may have been placed elsewhere since. It is
done as that host; `register()` again makes it a new one. That is why a host's id is its name
(the machine) and a random tag of this registration: writes made under the old id fail (the
lease they are checked against is gone), whatever the new one does.

A host's registration (its hash) outlives its lease by a few leases, so `burrow host ls`
still shows a host that just lapsed; then it is forgotten.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from redis.asyncio import ConnectionPool, Redis
from redis.exceptions import RedisError

from boxes.errors import HostNotFoundError, InvalidRequestError
from boxes.keys import BoxKeys

log = logging.getLogger("burrow.boxes")

# A host's name (its id is the name, '~' and a tag): the characters Redis keys and the box
# record's JSON carry as they are (the placement script quotes an id without escaping it).
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,95}$")
HOST_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,95}~[0-9a-f]{8}$")
RENEWALS_PER_LEASE = 3
RETAINED_LEASES = 6  # a lapsed host stays listed this many leases
LOAD_SHARE = 0.2  # of a lease: the longest a renewal waits for the host to measure its load
STALLED_LEASES = 3  # a host whose event loop has not turned for this many leases hangs

# Register a new host: its lease, then its hash (a fresh one), then the index.
# KEYS: lease, registration, index; ARGV: lease ms, retention ms, id, then fields and values.
_REGISTER = """
if not redis.call('set', KEYS[1], '1', 'NX', 'PX', ARGV[1]) then return 0 end
redis.call('del', KEYS[2])
redis.call('hset', KEYS[2], unpack(ARGV, 4))
redis.call('pexpire', KEYS[2], ARGV[2])
redis.call('sadd', KEYS[3], ARGV[3])
return 1
"""
# Renew a lease that still exists, never one that lapsed; record the load; tell whether the
# host is being drained. -1: lapsed. KEYS: lease, registration, layers; ARGV: lease ms,
# retention ms, renewed_at, then the load's fields and values.
_RENEW = """
if redis.call('pexpire', KEYS[1], ARGV[1]) == 0 then return -1 end
redis.call('hset', KEYS[2], 'renewed_at', unpack(ARGV, 3))
redis.call('pexpire', KEYS[2], ARGV[2])
redis.call('pexpire', KEYS[3], ARGV[2])
if redis.call('hget', KEYS[2], 'draining') == '1' then return 1 end
return 0
"""
# Set or clear `draining` of a registered host; 0 if it is not (or no longer) registered.
_DRAIN = """
if redis.call('exists', KEYS[1]) == 0 then return 0 end
redis.call('hset', KEYS[1], 'draining', ARGV[1])
return 1
"""


@dataclass(frozen=True)
class HostSpec:
    """What a host says of itself when it registers."""

    name: str            # the machine (BURROW_HOST_NAME); the id adds a tag per registration
    address: str         # where the other roles reach it ("10.0.0.5:8421")
    max_boxes: int       # boxes it runs at most at once
    memory_mb: int       # memory its boxes may take together

    def validate(self) -> HostSpec:
        if not NAME.match(self.name):
            raise InvalidRequestError(
                f"host name {self.name!r}: use 1-96 letters, digits and . _ : @ - "
                "(BURROW_HOST_NAME), starting with a letter or digit")
        if not 0 < len(self.address) <= 256 or any(c.isspace() for c in self.address):
            raise InvalidRequestError(
                f"host address {self.address!r}: give host:port or a URL the other roles "
                "reach this host at (BURROW_HOST_ADDRESS), without spaces")
        if self.max_boxes < 1 or self.memory_mb < 1:
            raise InvalidRequestError("a host needs room for at least one box and 1 MB "
                                      "(BURROW_HOST_MAX_BOXES, BURROW_HOST_MEMORY_MB)")
        return self


@dataclass(frozen=True)
class HostLoad:
    """What a host runs now, reported with each renewal."""

    boxes: int            # boxes running or being woken here
    memory_used_mb: int   # memory they take


@dataclass(frozen=True)
class HostInfo:
    """A registered host as Redis knows it."""

    id: str
    name: str
    address: str
    max_boxes: int
    memory_mb: int
    boxes: int             # its last report, plus the boxes placed on it since
    memory_used_mb: int    # likewise
    draining: bool         # takes no new boxes
    registered_at: float
    renewed_at: float
    lease_ms: int          # how long its lease lasts unless renewed; 0: lapsed

    @property
    def live(self) -> bool:
        return self.lease_ms > 0

    @property
    def load(self) -> float:
        """The fuller of its two capacities, as a fraction (what placement balances)."""
        if self.max_boxes <= 0 or self.memory_mb <= 0:
            return 1.0
        return max(self.boxes / self.max_boxes, self.memory_used_mb / self.memory_mb)

    @classmethod
    def parse(cls, host_id: str, raw: dict[bytes, bytes], lease_ms: int) -> HostInfo:
        field = {k.decode(): v.decode() for k, v in raw.items()}
        return cls(id=host_id, name=field.get("name", ""), address=field.get("address", ""),
                   max_boxes=int(field.get("max_boxes", 0)),
                   memory_mb=int(field.get("memory_mb", 0)),
                   boxes=int(field.get("boxes", 0)),
                   memory_used_mb=int(field.get("memory_used_mb", 0)),
                   draining=field.get("draining") == "1",
                   registered_at=float(field.get("registered_at", 0)),
                   renewed_at=float(field.get("renewed_at", 0)), lease_ms=max(lease_ms, 0))


class HostLease:
    """This process as a box host: its registration and the lease it renews.

    `load` (optional) is asked every renewal interval for what the host runs now (in the
    host's event loop: the renewals report the load measured last). `on_lapse` is called once,
    in that loop, when a renewal finds the lease gone: from then on every write this host
    makes for its boxes is refused, so it should stop them and `register()` again.
    """

    def __init__(self, redis: Redis, keys: BoxKeys, spec: HostSpec, lease_s: float,
                 load: Callable[[], Awaitable[HostLoad]] | None = None,
                 on_lapse: Callable[[str], Awaitable[None]] | None = None) -> None:
        if lease_s <= 0:
            raise InvalidRequestError("a host lease must last more than 0 s")
        self.redis = redis
        self.keys = keys
        self.spec = spec.validate()
        self.lease_ms = max(int(lease_s * 1000), 1)
        self.retention_ms = self.lease_ms * RETAINED_LEASES
        self.load = load
        self.on_lapse = on_lapse
        self._id: str | None = None
        self._valid_until = 0.0  # monotonic: when the lease lapses at the latest
        self.draining = False    # as of the last renewal
        self.lapsed = False
        self._lapse_lock = threading.Lock()
        self._lapse_task: asyncio.Task[None] | None = None
        self._home: asyncio.AbstractEventLoop | None = None  # the loop the host runs in
        self._renewer: _Renewer | None = None
        self._measuring: asyncio.Task[None] | None = None
        self._measured: list[str] = []  # the load last measured, as a renewal reports it
        self._turned = 0.0  # monotonic: when the host's event loop last turned

    @property
    def host_id(self) -> str:
        if self._id is None:
            raise RuntimeError("this host has not registered: call register() first")
        return self._id

    async def register(self) -> str:
        """Register as a new host (a new id each time) with a fresh lease; return the id."""
        self._home = asyncio.get_running_loop()
        host_id = f"{self.spec.name}~{secrets.token_hex(4)}"
        now = time.time()
        fields = {"name": self.spec.name, "address": self.spec.address,
                  "max_boxes": self.spec.max_boxes, "memory_mb": self.spec.memory_mb,
                  "boxes": 0, "memory_used_mb": 0, "draining": 0,
                  "registered_at": now, "renewed_at": now}
        if self.load is not None:
            load = await self.load()
            fields.update(boxes=load.boxes, memory_used_mb=load.memory_used_mb)
            self._measured = ["boxes", str(load.boxes), "memory_used_mb",
                              str(load.memory_used_mb)]
        sent = time.monotonic()
        done = await self.redis.eval(  # type: ignore[misc]
            _REGISTER, 3, self.keys.host_lease(host_id), self.keys.host(host_id),
            self.keys.hosts(), str(self.lease_ms), str(self.retention_ms), host_id,
            *[x for k, v in fields.items() for x in (k, str(v))])
        if not done:  # 32 random bits: only a registration of this very id could be there
            raise RuntimeError(f"host id {host_id} is taken; register again")
        self._id, self.lapsed, self.draining = host_id, False, False
        self._valid_until = sent + self.lease_ms / 1000
        log.info("registered as box host %s at %s", host_id, self.spec.address)
        return host_id

    async def renew(self) -> bool:
        """Measure the load, then extend the lease if it has not lapsed; False (and lapsed
        from now on) if it has. (The renewal thread reports the load measured last instead.)"""
        await self._measure()
        return await self._renew(self.redis, self.host_id)

    async def _measure(self) -> None:
        if self.load is None:
            return
        try:  # a busy host's threads may be slow to measure: the load waits, not the lease
            now = await asyncio.wait_for(self.load(), self.lease_ms / 1000 * LOAD_SHARE)
        except TimeoutError:
            log.warning("box host %s: measuring its load took longer than %.1f s; its lease is "
                        "renewed with the load measured before", self.host_id,
                        self.lease_ms / 1000 * LOAD_SHARE)
        except (RedisError, OSError) as exc:  # the lease matters more than the load
            log.warning("box host %s could not measure its load: %s", self.host_id, exc)
        except Exception:
            log.exception("box host %s could not measure its load", self.host_id)
        else:
            self._measured = ["boxes", str(now.boxes), "memory_used_mb",
                              str(now.memory_used_mb)]

    async def _renew(self, redis: Redis, host_id: str) -> bool:
        """Extend `host_id`'s lease through `redis` (a connection of the calling loop)."""
        if self.lapsed or host_id != self._id:
            return False
        sent = time.monotonic()
        answer = int(await redis.eval(  # type: ignore[misc]
            _RENEW, 3, self.keys.host_lease(host_id), self.keys.host(host_id),
            self.keys.host_layers(host_id), str(self.lease_ms), str(self.retention_ms),
            str(time.time()), *self._measured))
        if answer < 0:
            self._lapse(host_id)
            return False
        if host_id == self._id:  # counted from before the request: Redis set its TTL after
            self._valid_until = sent + self.lease_ms / 1000
            self.draining = answer == 1
        return True

    def _lapse(self, host_id: str) -> None:
        """`host_id`'s lease is gone (from either thread): say so, once, and tell the host."""
        with self._lapse_lock:
            if self.lapsed or host_id != self._id:
                return
            self.lapsed = True
            self._valid_until = 0.0
        log.error("the lease of box host %s lapsed: its writes for its boxes are refused "
                  "from now on; stop them and register again", host_id)
        if self.on_lapse is not None and self._home is not None:
            # A task of the host's loop: the handler may register again and start() a new
            # renewer, which it could not from inside the one that is ending.
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody to tell
                self._home.call_soon_threadsafe(self._tell, host_id)

    def _tell(self, host_id: str) -> None:
        self._lapse_task = asyncio.create_task(self._lapsed(host_id))

    async def _lapsed(self, host_id: str) -> None:
        assert self.on_lapse is not None
        try:
            await self.on_lapse(host_id)
        except Exception:
            log.exception("box host %s: handling the lapse of its lease failed", host_id)

    def valid(self) -> bool:
        """Whether the lease surely still holds, by this process's own clock: a host stops
        serving its boxes when this turns false, before Redis could have placed them
        elsewhere. (A process stopped right after asking still writes: Redis fences that.)"""
        return not self.lapsed and time.monotonic() < self._valid_until

    def start(self) -> None:
        """Renew in the background until stop() or a lapse: in a thread of its own, while a
        task of this loop measures the load and shows that the loop still turns."""
        self._home = asyncio.get_running_loop()
        self._turned = time.monotonic()
        if self._measuring is None or self._measuring.done():
            self._measuring = asyncio.create_task(self._measure_forever())
        renewer = self._renewer
        if renewer is None or renewer.host_id != self.host_id or not renewer.running():
            if renewer is not None:
                renewer.stop()  # an earlier registration's, ending
            self._renewer = _Renewer(self, self.host_id)

    async def stop(self) -> None:
        """Stop renewing (the lease then lapses on its own unless released)."""
        if self._measuring is not None:
            self._measuring.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._measuring
            self._measuring = None
        renewer, self._renewer = self._renewer, None
        if renewer is not None:
            renewer.stop()
            await asyncio.to_thread(renewer.thread.join)

    async def release(self) -> None:
        """Leave the cluster at once (a clean shutdown, after the host's boxes are frozen):
        the lease and the registration go, so nothing waits for the lease to lapse."""
        await self.stop()
        if self._id is None:
            return
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(self.keys.host_lease(self._id), self.keys.host(self._id),
                        self.keys.host_layers(self._id))
            pipe.srem(self.keys.hosts(), self._id)
            await pipe.execute()
        self.lapsed = True
        self._valid_until = 0.0

    async def _measure_forever(self) -> None:
        interval = self.lease_ms / 1000 / RENEWALS_PER_LEASE
        while True:
            self._turned = time.monotonic()
            await self._measure()
            self._turned = time.monotonic()
            await asyncio.sleep(interval)

    def stalled_s(self) -> float:
        """How long the host's event loop has not turned (as its measuring task saw it)."""
        return time.monotonic() - self._turned

    async def report_layer(self, box_id: str, generation: int) -> None:
        """Say that this host holds `box_id`'s layer as it was at `generation` (after the
        commit of a freeze or a checkpoint at that generation): placement prefers this host
        for the box while no other placement has happened since."""
        key = self.keys.host_layers(self.host_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, box_id, str(generation))
            pipe.pexpire(key, self.retention_ms)
            await pipe.execute()

    async def forget_layer(self, box_id: str) -> None:
        """This host dropped `box_id`'s layer (archived, deleted, evicted)."""
        await self.redis.hdel(self.keys.host_layers(self.host_id), box_id)  # type: ignore[misc]


class _Renewer:
    """The thread that renews one registration's lease, every third of it, with an event
    loop and a Redis connection of its own: the host's loop being busy for a while does not
    delay it. It ends at stop(), at a lapse, or when the host's loop has stalled."""

    def __init__(self, lease: HostLease, host_id: str) -> None:
        self.lease = lease
        self.host_id = host_id
        self._stopping = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self.thread = threading.Thread(target=asyncio.run, args=(self._renew_forever(),),
                                       name=f"lease {host_id}", daemon=True)
        self.thread.start()

    def running(self) -> bool:
        return self.thread.is_alive() and not self._stopping.is_set()

    def stop(self) -> None:
        """Have the thread end (join `thread` to wait for it)."""
        self._stopping.set()
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            with contextlib.suppress(RuntimeError):  # it ended already
                loop.call_soon_threadsafe(wake.set)

    async def _renew_forever(self) -> None:
        lease = self.lease
        pool = lease.redis.connection_pool
        redis = Redis(connection_pool=ConnectionPool(connection_class=pool.connection_class,
                                                     **pool.connection_kwargs))
        self._wake = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        interval = lease.lease_ms / 1000 / RENEWALS_PER_LEASE
        try:
            while not self._stopping.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), interval)
                if self._stopping.is_set():
                    return
                stalled = lease.stalled_s()
                if stalled > STALLED_LEASES * lease.lease_ms / 1000:
                    log.error("box host %s: its event loop has not turned for %.0f s, so it "
                              "stops renewing its lease and lets it lapse", self.host_id,
                              stalled)
                    lease._lapse(self.host_id)  # as the host finds when its loop turns again
                    return
                try:
                    if not await lease._renew(redis, self.host_id):
                        return
                except (RedisError, OSError) as exc:  # the next one may get through in time
                    log.warning("box host %s could not renew its lease: %s", self.host_id, exc)
        finally:
            await redis.aclose(close_connection_pool=True)


class Hosts:
    """The registered hosts, as the gateway, the worker or `burrow host` see them."""

    def __init__(self, redis: Redis, keys: BoxKeys) -> None:
        self.redis = redis
        self.keys = keys

    async def ids(self) -> list[str]:
        """Every registered host's id that is well formed (live or lapsed)."""
        members = await self.redis.smembers(self.keys.hosts())  # type: ignore[misc]
        return sorted(i for m in members if HOST_ID.match(i := m.decode()))

    async def all(self) -> list[HostInfo]:
        """Every registered host, live or lapsed a short while, by id; forgets those whose
        registration has expired."""
        ids = await self.ids()
        async with self.redis.pipeline(transaction=False) as pipe:
            for host_id in ids:
                pipe.hgetall(self.keys.host(host_id))
                pipe.pttl(self.keys.host_lease(host_id))
            answers = await pipe.execute()
        found, gone = [], []
        for n, host_id in enumerate(ids):
            raw, ttl = answers[2 * n], answers[2 * n + 1]
            if raw:
                found.append(HostInfo.parse(host_id, raw, int(ttl)))
            else:
                gone.append(host_id)
        if gone:
            await self.redis.srem(self.keys.hosts(), *gone)  # type: ignore[misc]
        return found

    async def live(self) -> list[HostInfo]:
        return [h for h in await self.all() if h.live]

    async def get(self, host_id: str) -> HostInfo:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(self.keys.host(host_id))
            pipe.pttl(self.keys.host_lease(host_id))
            raw, ttl = await pipe.execute()
        if not raw:
            raise HostNotFoundError(f"no box host {host_id!r}; `burrow host ls` lists them")
        return HostInfo.parse(host_id, raw, int(ttl))

    async def layers(self, host_id: str) -> dict[str, int]:
        """The box layers `host_id` reports cached: box id -> generation."""
        raw = await self.redis.hgetall(self.keys.host_layers(host_id))  # type: ignore[misc]
        return {k.decode(): int(v) for k, v in raw.items()}

    async def drain(self, host_id: str, draining: bool = True) -> HostInfo:
        """Place no new box on `host_id` (or again, with draining=False). The host learns
        it with its next renewal (HostLease.draining) and freezes its boxes."""
        done = await self.redis.eval(  # type: ignore[misc]
            _DRAIN, 1, self.keys.host(host_id), "1" if draining else "0")
        if not done:
            raise HostNotFoundError(f"no box host {host_id!r}; `burrow host ls` lists them")
        return await self.get(host_id)
