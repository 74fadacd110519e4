"""The boxes of a cluster as a gateway or the worker sees them: no box runs in this process;
each runs on a box host (`burrow host`), reached through its channel (core/channel.py).

RemoteBoxes answers what it can from Redis and the snapshot store itself (records, lists,
named snapshots, garbage: boxes/catalog.py) and asks a box's host for the rest. A box to be
woken with no live host is placed first (boxes/placement.py): a live host is chosen and the
box's generation raised in one script, conditioned on the generation this process read, so
two gateways that both find a box without a host place it once, and the one that lost the
race follows the winner's placement. The host then wakes it (its cached layer only if no
other host has woken the box since: boxes/manager.py).

A box whose host is lost (its lease lapsed) is woken on another host by the next request
for it, from its newest checkpoint or freeze. While a host's lease is live its boxes are
its: this process never places a box away from a live host.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from redis.asyncio import Redis

from boxes import BoxManager
from boxes.access import BoxAccess
from boxes.activity import Activity
from boxes.catalog import BoxCatalog
from boxes.client import DaemonClient
from boxes.config import RuntimeConfig
from boxes.errors import (
    BoxBusyError,
    BoxNotFoundError,
    BoxStateError,
    BoxUnavailableError,
    DaemonUnreachableError,
    FencedError,
    SnapshotNotFoundError,
)
from boxes.hosts import HostInfo, Hosts
from boxes.keys import BoxKeys
from boxes.locks import BoxLocks
from boxes.models import BoxRecord, BoxSpec, BoxState, SnapshotRecord
from boxes.placement import Placer, expected_mb
from boxes.registry import Registry
from boxes.sandbox import BoxUsage
from boxes.stores import open_store
from core.channel import HostClient, encode_bytes
from core.roles import DRAIN_S

HOSTS_FRESH_S = 1.0  # the live hosts, as last read, are trusted this long
PLACE_ATTEMPTS = 5   # placements that lost a race, in a row, before giving up
LAPSE_POLL_S = 0.1   # how often a request waiting for a lost host's lease to lapse looks
DRAIN_POLL_S = 0.2   # how often a request for a box a draining host is freezing asks again


@dataclass(frozen=True)
class Channel:
    """A box's daemon or service socket, through whatever host runs it when dialled
    (boxes/client.py's Dialer: connection pools are kept per channel)."""

    boxes: RemoteBoxes
    box_id: str
    op: str  # "daemon", "port" (the daemon, not counted as activity while open) or "service"

    async def dial(self, limit: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        deadline = time.monotonic() + DRAIN_S
        while True:
            host = await self.boxes.host_of(self.box_id)
            if host is None:
                raise ConnectionRefusedError(f"box {self.box_id} runs on no live host")
            try:
                return await self.boxes.client.connect(host.id, host.address, self.op,
                                                       self.box_id, {}, limit)
            except ConnectionRefusedError as exc:
                if not (isinstance(exc.__cause__, BoxBusyError)
                        and await self.boxes.drained(host, deadline)):
                    raise


def spec_to_dict(spec: BoxSpec) -> dict[str, Any]:
    return asdict(spec)


class RemoteBoxes(BoxCatalog, BoxAccess):
    def __init__(self, config: RuntimeConfig, redis: Redis, keys: BoxKeys,
                 transport_key: bytes) -> None:
        self.config = config
        self.redis = redis
        self.lease = None
        self.registry = Registry(redis, config, keys)
        self.locks = BoxLocks(redis, keys, config.lock_ttl_s, config.lock_wait_s)
        self.store = open_store(config)
        self.hosts = Hosts(redis, keys)
        self.placer = Placer(redis, keys, self.hosts)
        self.client = HostClient(transport_key)
        self.activity = Activity(self.registry)
        self.host = ""  # it runs no box
        self.on_transition: Callable[[str, float], None] | None = None
        self.on_phase: Callable[[str, str], None] | None = None
        self.store_failure = None  # the hosts' stores answer in their own /readyz
        self._live: dict[str, HostInfo] = {}
        self._live_at = 0.0

    async def start(self) -> None:
        await asyncio.to_thread(self.store.check)
        self.activity.start()

    async def close(self) -> None:
        await self.activity.stop()
        await asyncio.to_thread(self.store.close)

    # --- hosts -----------------------------------------------------------------------------

    async def live_hosts(self) -> dict[str, HostInfo]:
        if time.monotonic() - self._live_at > HOSTS_FRESH_S:
            self._live = {h.id: h for h in await self.hosts.live()}
            self._live_at = time.monotonic()
        return self._live

    async def host_of(self, box_id: str, box: BoxRecord | None = None) -> HostInfo | None:
        """The live host the box is placed on, if any."""
        box = box or await self._get(box_id)
        if box.host is None:
            return None
        live = await self.live_hosts()
        if box.host not in live:  # lapsed, or registered since the last look
            self._live_at = 0.0
            live = await self.live_hosts()
        return live.get(box.host)

    async def _placed(self, box_id: str) -> tuple[HostInfo, BoxRecord]:
        """The box's live host, placing the box on one first if it has none."""
        for _ in range(PLACE_ATTEMPTS):
            box = await self._get(box_id)
            host = await self.host_of(box_id, box)
            if host is not None:
                return host, box
            if box.state in (BoxState.DELETING, BoxState.DELETED):
                raise BoxNotFoundError(f"no box {box_id!r}")
            placement = await self.placer.place(box_id, box.generation,
                                                memory_mb=expected_mb(box.limits.memory_mb))
            if placement is None:
                continue  # placed by another process meanwhile: follow it
            self._live_at = 0.0
            host = (await self.live_hosts()).get(placement.host)
            if host is not None:
                return host, placement.box
        raise BoxUnavailableError(f"box {box_id} could not be placed on a box host; retry")

    async def _ask(self, host: HostInfo, op: str, box_id: str = "",
                   args: dict[str, Any] | None = None) -> Any:
        return await self.client.call(host.id, host.address, op, box_id, args)

    async def _on_host(self, box_id: str, op: str, args: dict[str, Any] | None = None,
                       place: bool = True) -> Any:
        """`op` on the box's host (placed on one first when `place`); a host lost on the
        way is looked past once."""
        deadline = time.monotonic() + DRAIN_S
        attempt = 0
        while True:
            if place:
                host, _ = await self._placed(box_id)
            else:
                found = await self.host_of(box_id)
                if found is None:
                    box = await self._get(box_id)
                    raise BoxStateError(f"box {box_id} is {box.state.value} on no live host")
                host = found
            try:
                return await self._ask(host, op, box_id, args)
            except DaemonUnreachableError:
                if attempt or not await self.await_lapse(host.id):
                    raise
            except FencedError:
                if attempt:  # it let go of the box meanwhile (a drain): look again
                    raise
            except BoxBusyError:
                if not await self.drained(host, deadline):
                    raise
                continue
            attempt += 1

    async def drained(self, host: HostInfo, deadline: float) -> bool:
        """A host said a box is busy: if the host is draining (it holds the box's lock while
        it freezes it, a few boxes at a time), wait a moment and say to ask again, until
        `deadline`; a drain ends with the box on no host, woken elsewhere by the next ask."""
        if time.monotonic() >= deadline:
            return False
        try:
            draining = (await self.hosts.get(host.id)).draining
        except BoxNotFoundError:  # forgotten meanwhile: its boxes are on no host
            draining = True
        if not draining:
            return False
        self._live_at = 0.0
        await asyncio.sleep(DRAIN_POLL_S)
        return True

    async def await_lapse(self, host_id: str) -> bool:
        """A host that does not answer is lost, or briefly cut off: wait (bounded by what is
        left of its lease, twice over) for its lease to lapse, so that the request that found
        it gone is served by another host rather than refused. True if it lapsed."""
        self._live_at = 0.0
        try:
            info = await self.hosts.get(host_id)
        except BoxNotFoundError:
            return True
        deadline = time.monotonic() + 2 * info.lease_ms / 1000 + 0.5
        while time.monotonic() < deadline:
            try:
                if not (await self.hosts.get(host_id)).live:
                    self._live_at = 0.0
                    return True
            except BoxNotFoundError:
                return True
            await asyncio.sleep(LAPSE_POLL_S)
        return False

    # --- lifecycle -------------------------------------------------------------------------

    async def usages(self, boxes: builtins.list[BoxRecord]) -> builtins.list[BoxUsage]:
        """Each box's usage from its host; a box on no live host takes nothing anywhere."""
        live = await self.live_hosts()
        by_host: dict[str, builtins.list[str]] = {}
        for box in boxes:
            if box.host in live:
                by_host.setdefault(box.host, []).append(box.id)
        found: dict[str, BoxUsage] = {}

        async def ask(host_id: str, ids: builtins.list[str]) -> None:
            with contextlib.suppress(BoxUnavailableError, BoxNotFoundError):
                answer = await self._ask(live[host_id], "usages", "", {"boxes": ids})
                for box_id, usage in answer.items():
                    found[box_id] = BoxUsage(**usage)

        await asyncio.gather(*(ask(h, ids) for h, ids in by_host.items()))
        return [found.get(b.id, BoxUsage(0, 0, 0)) for b in boxes]

    async def create(self, spec: BoxSpec) -> BoxRecord:
        spec = spec.validate()
        if spec.from_snapshot is not None:
            await asyncio.to_thread(self.store.get, spec.from_snapshot)
        host_id = await self.placer.pick(memory_mb=expected_mb(spec.limits.memory_mb))
        self._live_at = 0.0
        host = (await self.live_hosts()).get(host_id)
        if host is None:
            raise BoxUnavailableError(f"box host {host_id} lapsed as a box was placed on it; "
                                      "retry")
        return BoxRecord.from_dict(await self._ask(host, "create", "",
                                                   {"spec": spec_to_dict(spec)}))

    async def _record(self, box_id: str, op: str, args: dict[str, Any] | None = None
                      ) -> BoxRecord:
        return BoxRecord.from_dict(await self._on_host(box_id, op, args))

    async def wake(self, box_id: str) -> BoxRecord:
        box = await self._get(box_id)
        if box.state == BoxState.RUNNING and await self.host_of(box_id, box) is not None:
            return box
        return await self._record(box_id, "wake")

    async def pause(self, box_id: str) -> BoxRecord:
        return await self._record(box_id, "pause")

    async def resume(self, box_id: str) -> BoxRecord:
        return await self._record(box_id, "resume")

    async def freeze(self, box_id: str) -> BoxRecord:
        box = await self._get(box_id)
        if await self.host_of(box_id, box) is None:
            return await self._settle_lost(box)
        return await self._record(box_id, "freeze")

    async def archive(self, box_id: str) -> BoxRecord:
        box = await self._get(box_id)
        if await self.host_of(box_id, box) is None:
            return await self._settle_lost(box)
        return await self._record(box_id, "archive")

    async def _settle_lost(self, box: BoxRecord) -> BoxRecord:
        """A box on no live host is, as far as anyone can reach, its newest durable state:
        frozen at its snapshot (failed if it never had one)."""
        if box.state in (BoxState.FROZEN, BoxState.ARCHIVED):
            return box
        async with self.locks.hold(box.id):
            taken = await self.placer.revoke(box.id, box.generation)
            if taken is None:  # placed meanwhile: ask wherever it went
                return await self._record(box.id, "freeze")
            if taken.snapshot_id is None:
                return await self.registry.update(
                    taken, state=BoxState.FAILED, pid=None,
                    reason="its box host was lost before it was ever checkpointed")
            return await self.registry.update(
                taken, state=BoxState.FROZEN, pid=None, layer_local=False,
                reason="its box host was lost; frozen at its newest checkpoint")

    async def cool(self, box_id: str, to: BoxState, idle_since: float) -> BoxRecord | None:
        try:
            answer = await self._on_host(box_id, "cool", {"to": to.value,
                                                          "idle_since": idle_since},
                                         place=False)
        except BoxStateError:
            return None  # on no live host: nothing of it runs to be cooled
        return None if answer is None else BoxRecord.from_dict(answer)

    async def delete(self, box_id: str) -> BoxRecord:
        box = await self._get(box_id)
        if box.state == BoxState.DELETED:
            return box
        if await self.host_of(box_id, box) is not None:
            return await self._record(box_id, "delete")
        async with self.locks.hold(box_id):  # its host is lost: nothing of it runs
            taken = await self.placer.revoke(box_id, box.generation)
            if taken is None:
                return await self._record(box_id, "delete")
            if taken.snapshot_id:
                with contextlib.suppress(SnapshotNotFoundError):
                    await asyncio.to_thread(self.store.delete, taken.snapshot_id)
            await self.registry.mark_deleted(taken)
            return taken

    async def snapshot(self, box_id: str, name: str) -> SnapshotRecord:
        return SnapshotRecord(**await self._on_host(box_id, "snapshot", {"name": name}))

    async def checkpoint(self, box_id: str) -> SnapshotRecord | None:
        """A checkpoint of the box on its host (None: nothing changed, or it runs nowhere)."""
        try:
            answer = await self._on_host(box_id, "checkpoint", place=False)
        except BoxStateError:
            return None  # on no live host: its newest durable state is what it has
        return None if answer is None else SnapshotRecord(**answer)

    async def keep(self, box_id: str, name: str, data: bytes) -> None:
        await self._on_host(box_id, "keep", {"name": name, "data": encode_bytes(data)})

    async def recover(self, box_id: str) -> None:
        """The box's sockets stopped answering: its host records it failed if its sandbox is
        gone; if the host itself is gone, wait for its lease to lapse (the next
        ensure_running places the box elsewhere)."""
        self.activity.forget(box_id)
        self._live_at = 0.0
        with contextlib.suppress(BoxStateError, DaemonUnreachableError):
            await self._on_host(box_id, "recover", place=False)

    # --- in-box operations -----------------------------------------------------------------

    async def _ensure(self, box_id: str, wake: bool) -> bool:
        if self.activity.running(box_id):
            return False
        running = await self.registry.touch_running(box_id)
        if running is None:
            raise BoxNotFoundError(f"no box {box_id!r}")
        if running and await self.host_of(box_id) is not None:
            self.activity.confirm(box_id)
            return False
        if not wake:
            raise BoxStateError(f"cannot reach box {box_id}: it is not running; wake it first")
        answer = await self._on_host(box_id, "ensure")
        self.activity.confirm(box_id)
        return bool(answer)

    async def ensure_running(self, box_id: str) -> bool:
        return await self._ensure(box_id, wake=True)

    async def _daemon(self, box_id: str, wake: bool) -> DaemonClient:
        await self._ensure(box_id, wake)
        return DaemonClient(Channel(self, box_id, "daemon"))

    async def connect_port(self, box_id: str, port: int, wait_s: float, wake: bool = True
                           ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """As on one machine, through the box's host on a `port` channel: the host does not
        count it as the box's activity while it is open, as it does a daemon call (this
        gateway counts the requests on it)."""
        async def through_host(_: DaemonClient) -> tuple[asyncio.StreamReader,
                                                         asyncio.StreamWriter]:
            return await DaemonClient(Channel(self, box_id, "port")).connect_port(port, wait_s)
        return await self._call(box_id, wake, through_host)

    def service_path(self, box_id: str) -> Channel:
        return Channel(self, box_id, "service")

    async def health(self, box_id: str) -> dict[str, object]:
        answer: dict[str, object] = await self._on_host(box_id, "health", place=False)
        return answer


Boxes = BoxManager | RemoteBoxes  # this process's boxes, or a cluster's through their hosts
