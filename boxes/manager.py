"""BoxManager: the async API of the box runtime, and the box state machine.

    creating → running ⇄ paused
    running|paused → freezing → frozen → (archive) → archived
    frozen|archived|failed → waking → running
    any → deleting → deleted;   failed (with a reason) when a box dies or cannot start

Every transition runs under the box's lock (boxes.locks) and is idempotent: freezing a frozen
box, or waking a running one, returns it as it is. In-box operations (exec, files) wake a
frozen box first unless told not to.

Beside it: the in-box operations themselves (boxes/access.py, the half of this API that reaches
into a box), the restores a wake leaves writing after the box starts (boxes/restore.py), and
the index that lets a freeze skip unchanged files (boxes/layerindex.py).
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import os
import secrets
import shutil
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property, partial
from pathlib import Path
from typing import Any, Protocol, TypeVar

from redis.asyncio import Redis

from boxes.access import BoxAccess
from boxes.activity import Activity
from boxes.catalog import BoxCatalog
from boxes.checkpoints import Checkpoints
from boxes.client import DaemonClient
from boxes.config import RuntimeConfig
from boxes.egress import EgressPolicy
from boxes.errors import (
    BoxError,
    BoxNotFoundError,
    BoxStateError,
    FencedError,
    SnapshotNotFoundError,
    StoreUnavailableError,
)
from boxes.hosts import HostLease
from boxes.keys import BoxKeys
from boxes.layerindex import LayerIndexes
from boxes.locks import BoxLocks
from boxes.models import (
    LIVE_STATES,
    TRANSIENT_STATES,
    BoxRecord,
    BoxSpec,
    BoxState,
    SnapshotRecord,
    StartPolicy,
)
from boxes.registry import Registry, read_mirror
from boxes.restore import Restores
from boxes.sandbox import BoxUsage, BubblewrapBackend, SandboxBackend
from boxes.snapshots import PendingRestore, SnapshotStore
from boxes.stores import open_store

log = logging.getLogger("burrow.boxes")

_ID_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"


def new_box_id() -> str:
    return "b_" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(16))


def _host_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _process_alive(host: str | None) -> bool:
    """Whether the manager process named `host` still runs (only knowable on this host)."""
    if not host:
        return False
    name, _, pid = host.rpartition(":")
    if name != socket.gethostname():
        return True  # another machine's box: not ours to judge
    return Path(f"/proc/{pid}").exists()


T = TypeVar("T")


class Durability(Protocol):
    """Told when what a box holds becomes durable, or is lost: a cluster keeps what the
    box's agent was told until a snapshot in the store holds it (core/observations.py)."""

    async def taking(self, box: BoxRecord) -> int:
        """The box is still and its snapshot is about to be taken: a mark of what it holds."""

    async def committed(self, box: BoxRecord, mark: int) -> None:
        """The snapshot taken at `mark` is the box's durable state now."""

    async def restored(self, box: BoxRecord) -> None:
        """The box woke from the store, not from a layer that had all it last held."""


@dataclass(frozen=True)
class StoreFailure:
    message: str
    since: float


class BoxManager(BoxCatalog, BoxAccess):
    """The boxes this process runs. Given a host's `lease` (`burrow host` of a cluster), it
    is that host: its id names the boxes it runs, its writes for them are fenced, it wakes
    only boxes placed on it (the gateway or worker places them: core/remote.py), and it
    trusts its cached layer of a box only if no other host has woken the box since."""

    def __init__(self, config: RuntimeConfig, redis: Redis, keys: BoxKeys,
                 backend: SandboxBackend | None = None,
                 store: SnapshotStore | None = None, lease: HostLease | None = None) -> None:
        self.config = config
        self.redis = redis
        self.lease = lease
        self.registry = Registry(redis, config, keys, lease=lease)
        self.locks = BoxLocks(redis, keys, config.lock_ttl_s, config.lock_wait_s)
        self.backend: SandboxBackend = backend or BubblewrapBackend(config)
        self.store: SnapshotStore = store or open_store(config)
        self.host = lease.host_id if lease is not None else _host_name()
        self.activity = Activity(self.registry)
        # Told how long each wake and freeze took ("wake"/"freeze", seconds): metrics.
        self.on_transition: Callable[[str, float], None] | None = None
        # Told (box id, phase) as a freeze or wake passes each of its steps: timings, and
        # tests that stop the process between steps.
        self.on_phase: Callable[[str, str], None] | None = None
        # The snapshot store's last failure, until it answers again (/readyz names it).
        self.store_failure: StoreFailure | None = None
        self.durability: Durability | None = None
        self.indexes = LayerIndexes(config)
        self._usage_thread = ThreadPoolExecutor(1, thread_name_prefix="usage")
        self.restores = Restores(config, self.backend, self.store, self.locks, self.registry,
                                 self.indexes, update=self._update, phase=self._phase)
        self._process_starts: set[asyncio.Task[None]] = set()  # see _start_processes

    @classmethod
    async def open(cls, config: RuntimeConfig, redis: Redis, keys: BoxKeys,
                   lease: HostLease | None = None) -> BoxManager:
        manager = cls(config, redis, keys, lease=lease)
        await manager.start()
        return manager

    async def start(self) -> None:
        self.config.boxes_dir.mkdir(parents=True, exist_ok=True)
        # Disk images, box.json (which holds the box's env), snapshots, the spool and the
        # knowledge base are root's alone: no box uid needs anything here (what they reach
        # is in the runtime dir), and no other user may read or list any of it.
        os.chmod(self.config.data_dir, 0o700)
        os.chmod(self.config.boxes_dir, 0o700)
        await asyncio.to_thread(self.store.check)  # a store that cannot work stops the start
        await self.backend.prepare()
        self.backend.set_exit_handler(self._on_box_exit)
        if not await self.registry.all() and any(self.config.boxes_dir.glob("*/box.json")):
            count = await self.registry.rebuild()
            log.warning("registry was empty; rebuilt %d boxes from %s", count,
                        self.config.boxes_dir)
        else:
            await self.registry.adopt_mirrors()
        await self.registry.index_owners()
        await self.reconcile()
        self.activity.start()

    async def close(self) -> None:
        """Stop the boxes this process runs. Their layers stay; a later wake resumes them."""
        await self.activity.stop()
        for task in list(self._process_starts):
            task.cancel()
        await self.restores.drain()  # finished first, so that their layers are kept
        for box in await self.registry.all():
            if box.host != self.host:
                continue
            with contextlib.suppress(BoxError):
                async with self.locks.hold(box.id, wait_s=5):
                    box = await self._get(box.id)
                    if box.state in LIVE_STATES | TRANSIENT_STATES:
                        await self._stop_processes(box)
                        await self._update(
                            box, state=BoxState.FAILED, pid=None,
                            reason="burrow stopped while the box was running; wake it to "
                                   "continue from its layer")
                    if self.backend.layer_is_open(box):
                        await self.backend.close_layer(box)
        await self.locks.drain()
        await self.backend.close()
        self._usage_thread.shutdown(wait=False)
        await asyncio.to_thread(self.store.close)

    async def reconcile(self) -> None:
        """Bring boxes whose manager died back to a consistent, wakeable state."""
        for box in await self.registry.all():
            if box.host is None or box.host == self.host or _process_alive(box.host):
                continue
            async with self.locks.hold(box.id):
                fresh = await self._get(box.id)
                if fresh.state == BoxState.DELETING:
                    await self._finish_delete(fresh)
                    continue
                if fresh.state in LIVE_STATES | TRANSIENT_STATES:
                    await self._stop_processes(fresh)
                    fresh = await self._update(
                        fresh, state=BoxState.FAILED, pid=None,
                        reason=f"burrow restarted while the box was {fresh.state.value}; "
                               "wake it to continue from its layer")
                if self.backend.layer_is_open(fresh):
                    await self.backend.close_layer(fresh)
                await self._update(fresh, host=None)

    async def _update(self, box: BoxRecord, **changes: Any) -> BoxRecord:
        """Record a change of the box, keeping this process's running-box cache in step."""
        box = await self.registry.update(box, **changes)
        if box.state == BoxState.RUNNING:
            self.activity.confirm(box.id)
        else:
            self.activity.forget(box.id)
        return box

    # --- queries -------------------------------------------------------------------------

    def usage(self, box: BoxRecord) -> BoxUsage:
        return self.backend.usage(box)

    async def usages(self, boxes: builtins.list[BoxRecord]) -> builtins.list[BoxUsage]:
        """What each box takes now (memory, CPU, its local layer's disk): cgroup files and
        filesystem sizes, read in a thread of their own, so that they never wait behind the
        packs and copies that fill the default pool of a busy host (its lease's renewals
        report them)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._usage_thread,
                                          lambda: [self.backend.usage(b) for b in boxes])

    async def keep(self, box_id: str, name: str, data: bytes) -> None:
        """Keep a secret for the box's host-side services (its git relay's token) beside its
        layer on this host, root's alone (0600): never in Redis, never visible in the box."""
        box = await self._get(box_id)
        if "/" in name or name.startswith("."):
            raise ValueError(f"not a name for a kept file: {name!r}")
        fd = os.open(self.config.box_dir(box.id) / name,
                     os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)

    # --- lifecycle -----------------------------------------------------------------------

    async def create(self, spec: BoxSpec) -> BoxRecord:
        spec = spec.validate()
        if spec.from_snapshot is not None:
            await asyncio.to_thread(self.store.get, spec.from_snapshot)
        now = time.time()
        box = BoxRecord(
            id=new_box_id(), state=BoxState.CREATING, runtime=spec.runtime,
            network=spec.network, limits=spec.limits, uid=await self.registry.next_uid(),
            created_at=now, last_active_at=now, owner=spec.owner, name=spec.name,
            env=dict(spec.env), labels=dict(spec.labels), pre_freeze_hook=spec.pre_freeze_hook,
            service=list(spec.service) if spec.service else None, meta=dict(spec.meta),
            host=self.host, egress_allow=list(spec.egress_allow),
            egress_deny=list(spec.egress_deny))
        self.config.box_dir(box.id).mkdir(mode=0o700, parents=True)
        if not await self.registry.add(box):
            shutil.rmtree(self.config.box_dir(box.id), ignore_errors=True)
            raise BoxStateError(f"{spec.owner} takes no new boxes: it is being deleted")
        try:
            async with self.locks.hold(box.id):
                if await self.registry.state(box.id) != BoxState.CREATING:
                    # deleted before this creation got its lock (its owner's deletion)
                    raise BoxNotFoundError(f"box {box.id} was deleted as it was being made")
                await self.backend.create_layer(box)
                upper = await self.backend.open_layer(box)
                if spec.from_snapshot is not None:
                    index = await asyncio.to_thread(self.store.restore, spec.from_snapshot,
                                                    upper, box.uid)
                    self.indexes.save(box.id, index)
                box, egress = await self._start_policy(box)
                pid = await self.backend.start(box, egress)
                return await self._update(box, state=BoxState.RUNNING, pid=pid)
        except BaseException:
            with contextlib.suppress(Exception):
                await self._finish_delete(box)
            raise

    async def pause(self, box_id: str) -> BoxRecord:
        async with self.locks.hold(box_id):
            box = await self._adopt(await self._get(box_id))
            if box.state == BoxState.PAUSED:
                return box
            self._require(box, {BoxState.RUNNING}, "pause")
            await self.backend.pause(box)
            return await self._update(box, state=BoxState.PAUSED)

    async def resume(self, box_id: str) -> BoxRecord:
        async with self.locks.hold(box_id):
            box = await self._adopt(await self._get(box_id))
            if box.state == BoxState.RUNNING:
                return box
            self._require(box, {BoxState.PAUSED}, "resume")
            await self.backend.resume(box)
            return await self._update(box, state=BoxState.RUNNING,
                                              last_active_at=time.time())

    async def freeze(self, box_id: str) -> BoxRecord:
        async with self.locks.hold(box_id):
            box = await self._adopt(await self._get(box_id))
            if box.state in (BoxState.FROZEN, BoxState.ARCHIVED):
                return box
            self._require(box, {BoxState.RUNNING, BoxState.PAUSED, BoxState.FAILED}, "freeze")
            return await self._freeze_locked(box)

    async def archive(self, box_id: str) -> BoxRecord:
        async with self.locks.hold(box_id):
            box = await self._adopt(await self._get(box_id))
            if box.state == BoxState.ARCHIVED:
                return box
            self._require(box, {BoxState.RUNNING, BoxState.PAUSED, BoxState.FAILED,
                                BoxState.FROZEN}, "archive")
            if box.state != BoxState.FROZEN:
                box = await self._freeze_locked(box)
            return await self._archive_locked(box)

    async def _archive_locked(self, box: BoxRecord) -> BoxRecord:
        await self.backend.drop_layer(box)
        self.indexes.drop(box.id)
        return await self._update(box, state=BoxState.ARCHIVED, layer_local=False)

    async def wake(self, box_id: str) -> BoxRecord:
        box = await self._get(box_id)
        if box.state == BoxState.RUNNING and (  # the common case needs no lock
                self.lease is None or (box.host == self.host and self.backend.runs(box))):
            return box
        return await self._wake(box_id)

    async def _wake(self, box_id: str) -> BoxRecord:
        """wake, for a box just seen not running."""
        async with self.locks.hold(box_id):
            box = await self._adopt(await self._get(box_id))
            if box.state == BoxState.RUNNING:
                return box
            if self.lease is not None and self.lease.draining and box.state in (
                    BoxState.FROZEN, BoxState.ARCHIVED, BoxState.FAILED):
                await self._update(box, host=None)  # woken elsewhere: this host is leaving
                raise FencedError(f"box host {self.host} is draining: box {box_id} is to "
                                  "wake on another host")
            if box.state == BoxState.PAUSED:
                await self.backend.resume(box)
                return await self._update(box, state=BoxState.RUNNING,
                                                  last_active_at=time.time())
            self._require(box, {BoxState.FROZEN, BoxState.ARCHIVED, BoxState.FAILED}, "wake")
            return await self._wake_locked(box)

    async def release(self, box_id: str) -> BoxRecord:
        """Give up a frozen box this host of a cluster holds (a drain): its next request
        places it on any host, which wakes it from the store. A box placed elsewhere since
        (a request woke it on another host while the drain came to it) is not this host's to
        give up: it is left where it is."""
        async with self.locks.hold(box_id):
            box = await self._get(box_id)
            if self.lease is not None and box.host != self.host:
                return box
            self._require(box, {BoxState.FROZEN, BoxState.ARCHIVED}, "release")
            box = await self._update(box, host=None)
        if self.lease is not None:
            await self.lease.forget_layer(box_id)
        return box

    async def _adopt(self, box: BoxRecord) -> BoxRecord:
        """A box placed on this host of a cluster whose record still says what its last host
        was doing with it (that host was lost, or let it go): this host does not run it, so
        it is failed here, to be woken from its newest durable state. FencedError for a box
        that is not placed on this host."""
        if self.lease is None:
            return box
        if box.host != self.host:
            raise FencedError(f"box {box.id} is not placed on box host {self.host} (it is on "
                              f"{box.host or 'no host'}); place it first")
        if box.state in LIVE_STATES | TRANSIENT_STATES and not self.backend.runs(box):
            return await self._update(box, state=BoxState.FAILED, pid=None,
                                      reason="its box host was lost; woken from its newest "
                                             "checkpoint or freeze")
        return box

    def _layer_trusted(self, box: BoxRecord) -> bool:
        """Whether this machine's layer of the box is its newest state. In a cluster, only if
        this machine last wrote the box's record at the generation before this placement or
        at this one, with the snapshot the record names: no other host has woken it since."""
        if not (self.backend.has_layer(box) and box.layer_local):
            return False
        if self.lease is None:
            return True
        mine = read_mirror(self.config.box_dir(box.id))
        return (mine is not None and mine.snapshot_id == box.snapshot_id
                and box.generation - 1 <= mine.generation <= box.generation)

    async def cool(self, box_id: str, to: BoxState, idle_since: float) -> BoxRecord | None:
        """Pause, freeze or archive a box for being idle, unless it was active after
        `idle_since` or runs an exec: None when it is left as it is.

        A request may touch the box between the caller's look and this lock. So the state is
        claimed first (a request from then on sees a box that is not running and waits for the
        lock to wake it), then the activity is read again: if a request got in before the
        claim, the claim is undone."""
        if to not in (BoxState.PAUSED, BoxState.FROZEN, BoxState.ARCHIVED):
            raise ValueError(f"cannot cool a box to {to.value}")
        async with self.locks.hold(box_id):
            box = await self._adopt(await self._get(box_id))
            allowed = {BoxState.PAUSED: {BoxState.RUNNING},
                       BoxState.FROZEN: {BoxState.RUNNING, BoxState.PAUSED},
                       BoxState.ARCHIVED: {BoxState.FROZEN}}[to]
            if box.state not in allowed or box.last_active_at > idle_since:
                return None
            if self.restores.busy(box):
                return None  # still being restored: not idle for long
            if to == BoxState.ARCHIVED:  # no processes: nothing can be using it
                return await self._archive_locked(box)
            if box.state == BoxState.RUNNING and await self._runs_exec(box):
                return None
            previous, seen = box.state, box.last_active_at
            await self._update(box, state=BoxState.FREEZING if to == BoxState.FROZEN else to)
            fresh = await self._get(box_id)
            if fresh.last_active_at != seen:
                await self._update(box, state=previous)
                return None
            if to == BoxState.PAUSED:
                await self.backend.pause(box)
                return box
            box.state = previous
            return await self._freeze_locked(box)

    async def _runs_exec(self, box: BoxRecord) -> bool:
        try:
            health = await DaemonClient(self.backend.socket_path(box.id)).health()
        except (BoxError, OSError, ValueError):
            return False  # not answering: nothing of it can be in use
        return bool(health.get("execs"))

    async def delete(self, box_id: str) -> BoxRecord:
        async with self.locks.hold(box_id):
            box = await self._get(box_id)
            if box.state == BoxState.DELETED:
                return box
            with contextlib.suppress(BoxError):  # its layer goes either way
                box = await self.restores.settle(box)
            await self._update(box, state=BoxState.DELETING)
            await self._finish_delete(box)
            return box

    async def snapshot(self, box_id: str, name: str) -> SnapshotRecord:
        """A named snapshot of the box as it is now; new boxes can start from it."""
        if not isinstance(name, str) or not 0 < len(name) <= 128:
            raise BoxStateError("a snapshot needs a name of 1 to 128 characters")
        async with self.locks.hold(box_id):
            box = await self._adopt(await self._get(box_id))
            self._require(box, {BoxState.RUNNING, BoxState.PAUSED, BoxState.FROZEN,
                                BoxState.ARCHIVED}, "snapshot")
            if box.state == BoxState.ARCHIVED or (box.state not in LIVE_STATES
                                                  and not box.layer_local):
                # its latest freeze is exactly its state (a layer that is not its own is
                # what an interrupted restore left)
                assert box.snapshot_id is not None
                return await asyncio.to_thread(self._copy_snapshot, box, name)
            box = await self.restores.settle(box)
            was_running = box.state == BoxState.RUNNING
            if was_running:  # hold the box still while its layer is read
                await self.backend.pause(box)
            opened_here = not self.backend.layer_is_open(box)
            try:
                upper = await self.backend.open_layer(box)
                result = await asyncio.to_thread(
                    self.store.pack, upper, box_id=box.id, kind="named", name=name,
                    owner=box.owner, index=self.indexes.load(box.id))
                self.indexes.save(box.id, result.index)
            finally:
                if opened_here:
                    await self.backend.close_layer(box)
                if was_running:
                    await self.backend.resume(box)
            return result.record

    def _copy_snapshot(self, box: BoxRecord, name: str) -> SnapshotRecord:
        """Name an archived box's state: a copy of its freeze's manifest (blobs shared), so
        nothing is restored anywhere (restoring wrote dense data to an unbounded dir)."""
        assert box.snapshot_id is not None
        return self.store.copy(box.snapshot_id, box_id=box.id, kind="named", name=name,
                               owner=box.owner)

    # --- checkpoints: a running box's newest durable state (boxes/checkpoints.py) -------

    @cached_property
    def checkpoints(self) -> Checkpoints:
        return Checkpoints(self.config, self.backend, self.store, self.locks, self.registry,
                           self.indexes, self.restores, ask_store=self._ask_store,
                           phase=self._phase, taking=self._taking,
                           committed=self._committed)

    async def checkpoint(self, box_id: str) -> SnapshotRecord | None:
        """Pack what changed in a running (or paused) box's layer as its newest durable state,
        the box frozen only while the changed files are copied; None if nothing changed since
        its last snapshot, or it does not run on this process."""
        return await self.checkpoints.take(box_id, self.host)

    # --- transitions (caller holds the lock) ---------------------------------------------

    @staticmethod
    def _require(box: BoxRecord, allowed: set[BoxState], action: str) -> None:
        if box.state in allowed:
            return
        hints = {
            BoxState.FROZEN: "call wake() or send a request to wake it",
            BoxState.ARCHIVED: "call wake() or send a request to wake it",
            BoxState.PAUSED: "call resume() first",
            BoxState.FAILED: f"wake it to restart it ({box.reason or 'no reason recorded'})",
            BoxState.DELETED: "it was deleted; create a new box",
        }
        hint = hints.get(box.state, "wait for the current operation to finish and retry")
        raise BoxStateError(f"cannot {action} box {box.id}: it is {box.state.value}; {hint}")

    async def _stop_processes(self, box: BoxRecord) -> None:
        await self.backend.stop(box)

    async def _freeze_locked(self, box: BoxRecord) -> BoxRecord:
        box = await self.restores.settle(box)
        started = time.perf_counter()
        previous = box.state
        if previous in LIVE_STATES:
            await self._ask_store(self.store.ping)  # an outage leaves the box as it is
        await self._update(box, state=BoxState.FREEZING)
        self._phase(box, "freezing")
        try:
            if previous in LIVE_STATES:
                if previous == BoxState.PAUSED:
                    await self.backend.resume(box)
                await self._prefreeze(box)
                self._phase(box, "prefreeze")
            await self.backend.stop(box)
            self._phase(box, "stopped")
            mark = await self._taking(box)
            if not box.layer_local and box.snapshot_id is not None:
                # what is on disk is an interrupted restore's: the box is its snapshot
                await self.backend.drop_layer(box)
                self.indexes.drop(box.id)
                return await self._update(box, state=BoxState.ARCHIVED, pid=None, host=None,
                                          reason=None)
            if not self.backend.has_layer(box):
                raise BoxStateError(f"box {box.id} has no layer to freeze")
            upper = await self.backend.open_layer(box)
            old_snapshot = box.snapshot_id
            if box.layer_dirty or old_snapshot is None:
                result = await self._ask_store(partial(
                    self.store.pack, upper, box_id=box.id, kind="freeze", name=None,
                    owner=box.owner, index=self.indexes.load(box.id)))
                self.indexes.save(box.id, result.index)
                new_snapshot: str | None = result.record.id
            else:
                new_snapshot = old_snapshot
            self._phase(box, "packed")
            await self.backend.close_layer(box)
        except StoreUnavailableError as exc:
            await self._start_again(box, previous, exc)
            raise
        except BoxError as exc:
            await self._update(box, state=BoxState.FAILED, pid=None,
                                       reason=f"freeze failed: {exc.message}")
            raise
        # The registry (and the fsynced mirror in the box's dir) point at the new snapshot
        # before the old one is deleted: whatever stops the process, one of them is whole.
        # A host of a cluster keeps the box it froze (and its layer): the box wakes here
        # again while this host lives and has room (core/remote.py).
        await self._update(box, state=BoxState.FROZEN, pid=None,
                           host=None if self.lease is None else self.host,
                           snapshot_id=new_snapshot, layer_dirty=False, reason=None,
                           freezes=box.freezes + 1)
        self._phase(box, "recorded")
        await self._committed(box, mark)
        if old_snapshot and old_snapshot != new_snapshot:
            with contextlib.suppress(SnapshotNotFoundError):
                await asyncio.to_thread(self.store.delete, old_snapshot)
        self._timed("freeze", started)
        return box

    async def _ask_store(self, call: Callable[[], T]) -> T:
        """A call of the snapshot store, in a thread, remembered as the store's health (what
        /readyz says of it)."""
        try:
            answer = await asyncio.to_thread(call)
        except StoreUnavailableError as exc:
            if self.store_failure is None:
                log.error("the snapshot store fails: %s", exc.message)
            self.store_failure = StoreFailure(exc.message, time.time())
            raise
        if self.store_failure is not None:
            log.info("the snapshot store answers again")
            self.store_failure = None
        return answer

    async def _start_again(self, box: BoxRecord, previous: BoxState,
                           exc: StoreUnavailableError) -> None:
        """The store failed after the box was stopped for its freeze: its layer is whole on
        this disk, so a box that was running starts again from it, as a wake would (its
        processes restarted), rather than wait failed for its next request."""
        with contextlib.suppress(BoxError, OSError):
            await self.backend.close_layer(box)
        await self._update(box, state=BoxState.FAILED, pid=None,
                           reason=f"freeze failed: {exc.message}")
        if previous not in LIVE_STATES:
            return
        try:
            await self._wake_locked(box)
        except BoxError as again:
            log.error("box %s stays failed after the store failed its freeze: %s", box.id,
                      again.message)

    async def _start_policy(self, box: BoxRecord) -> tuple[BoxRecord, EgressPolicy | None]:
        """Apply the operator's current say before a start: limits lowered since the box was
        made are clamped (and recorded); egress boxes get their filter's rules."""
        hook = self.config.start_policy
        policy = await hook(box) if hook is not None else StartPolicy(box.limits)
        if policy.limits != box.limits:
            log.info("box %s: limits clamped to the ceilings in force: %s", box.id,
                     policy.limits)
            box = await self._update(box, limits=policy.limits)
        if box.network != "egress":
            return box, None
        return box, EgressPolicy(allow=policy.egress_allow, deny=policy.egress_deny,
                                 box_allow=tuple(box.egress_allow),
                                 box_deny=tuple(box.egress_deny))

    def _timed(self, transition: str, started: float) -> None:
        if self.on_transition is not None:
            self.on_transition(transition, time.perf_counter() - started)

    async def _prefreeze(self, box: BoxRecord) -> None:
        """Let the box flush: its hook, then SIGTERM to every process, with a grace period."""
        client = DaemonClient(self.backend.socket_path(box.id))
        try:
            await asyncio.wait_for(
                client.prefreeze(box.pre_freeze_hook, self.config.hook_timeout_s,
                                 self.config.prefreeze_grace_s),
                self.config.hook_timeout_s + self.config.prefreeze_grace_s + 5)
        except (BoxError, TimeoutError, OSError, ValueError) as exc:
            log.warning("pre-freeze of %s did not complete: %s", box.id, exc)

    async def _wake_locked(self, box: BoxRecord) -> BoxRecord:
        box = await self.restores.settle(box)  # its daemon died while its files were written
        started = time.perf_counter()
        previous = box.state
        self._phase(box, "waking")
        await self._update(box, state=BoxState.WAKING, host=self.host)
        self._phase(box, "registry")
        pending: PendingRestore | None = None
        try:
            if previous == BoxState.FAILED:
                await self.backend.stop(box)  # whatever is left of the crashed sandbox
            trusted = self._layer_trusted(box)
            if trusted:
                await self.backend.open_layer(box)
            elif box.snapshot_id is not None:
                if self.backend.has_layer(box):  # another host's newer state is in the store
                    await self.backend.drop_layer(box)
                    self.indexes.drop(box.id)
                pending = await self.restores.begin(box, box.snapshot_id)
            elif self.lease is not None:
                # Lost with its host before its first checkpoint: all that was durable of it
                # is that it exists. It starts again empty rather than not at all.
                log.warning("box %s: its host was lost before its first checkpoint; it starts "
                            "again from an empty layer", box.id)
                if self.backend.has_layer(box):
                    await self.backend.drop_layer(box)
                    self.indexes.drop(box.id)
                await self.backend.create_layer(box)
                await self.backend.open_layer(box)
            else:
                raise BoxStateError(f"box {box.id} has neither a local layer nor a snapshot "
                                    "to wake from")
            self._phase(box, "layer")
            if not trusted:
                await self._restored(box)
            box, egress = await self._start_policy(box)
            pid = await self.backend.start(box, egress)
            self._phase(box, "daemon")
        except BoxError as exc:
            if pending is not None:
                pending.abandon()
            await self._update(box, state=BoxState.FAILED, pid=None,
                                       reason=f"wake failed: {exc.message}")
            raise
        box = await self._update(
            box, state=BoxState.RUNNING, pid=pid, reason=None, layer_dirty=True,
            last_active_at=time.time(), wakes=box.wakes + 1)
        if pending is not None:
            self.restores.finish_later(box.id, pending)
        self._start_processes(box.id)
        self._timed("wake", started)
        return box

    def _start_processes(self, box_id: str) -> None:
        """Have the box's daemon start again the background processes its freeze ended
        (restart "on-wake" or "on-failure"), once its files are all there: not on the wake's
        path, which it would slow."""
        async def start() -> None:
            try:
                await self.restores.wait(box_id)
                started = await DaemonClient(self.backend.socket_path(box_id)).proc_wake()
                if started:
                    log.info("box %s: %d background processes started again", box_id, started)
            except (BoxError, OSError) as exc:
                log.warning("box %s: its background processes were not started again: %s",
                            box_id, exc)

        task = asyncio.create_task(start())
        self._process_starts.add(task)
        task.add_done_callback(self._process_starts.discard)

    async def _taking(self, box: BoxRecord) -> int:
        if self.durability is None:
            return 0
        try:
            return await self.durability.taking(box)
        except Exception:  # what it keeps stays kept: given again after an older wake
            log.exception("box %s: could not mark what its snapshot holds", box.id)
            return 0

    async def _committed(self, box: BoxRecord, mark: int) -> None:
        if self.durability is not None:
            try:
                await self.durability.committed(box, mark)
            except Exception:
                log.exception("box %s: could not record what its snapshot holds", box.id)

    async def _restored(self, box: BoxRecord) -> None:
        if self.durability is not None:
            await self.durability.restored(box)  # fails the wake: what it lacks is not lost

    def _phase(self, box: BoxRecord, phase: str) -> None:
        if self.on_phase is not None:
            self.on_phase(box.id, phase)

    async def _finish_delete(self, box: BoxRecord) -> None:
        await self.backend.stop(box)
        await self.backend.drop_layer(box)
        if box.snapshot_id:
            with contextlib.suppress(SnapshotNotFoundError):
                await asyncio.to_thread(self.store.delete, box.snapshot_id)
        shutil.rmtree(self.config.box_dir(box.id), ignore_errors=True)
        await self.registry.mark_deleted(box)

    async def _on_box_exit(self, box_id: str, reason: str) -> None:
        """The sandbox died on its own (daemon killed, OOM, …): record it as failed."""
        try:
            async with self.locks.hold(box_id, wait_s=self.config.lock_wait_s):
                box = await self.registry.get(box_id)
                if box is None or box.state not in LIVE_STATES:
                    return
                await self.backend.stop(box)
                await self._update(box, state=BoxState.FAILED, pid=None, reason=reason)
        except BoxError as exc:
            log.error("could not record the exit of box %s: %s", box_id, exc)

    # --- in-box operations ---------------------------------------------------------------

    async def _ensure(self, box_id: str, wake: bool) -> bool:
        """Make sure the box runs; True if it had to be woken (or resumed) for that."""
        if self.activity.running(box_id):  # the hot path: no round trip at all
            return False
        running = await self.registry.touch_running(box_id) if isinstance(box_id, str) else None
        if running is None:
            raise BoxNotFoundError(f"no box {box_id!r}")
        if running and self.lease is not None and not await self._runs_here(box_id):
            running = False  # its record says running: on a host that was lost
        if running:
            self.activity.confirm(box_id)
            return False
        if not wake:
            self._require(await self._get(box_id), {BoxState.RUNNING}, "reach")
        await self._wake(box_id)
        return True

    async def _runs_here(self, box_id: str) -> bool:
        box = await self._get(box_id)
        return box.host == self.host and self.backend.runs(box)

    async def _daemon(self, box_id: str, wake: bool) -> DaemonClient:
        """The box's daemon, once the box runs with all its files (its service may answer
        before: ensure_running)."""
        await self._ensure(box_id, wake)
        await self.restores.wait(box_id)
        return DaemonClient(self.backend.socket_path(box_id))

    async def daemon_path(self, box_id: str, wake: bool = True) -> str:
        """The box's daemon socket on this machine, once the box runs with all its files."""
        await self._daemon(box_id, wake)
        return self.backend.socket_path(box_id)

    async def ensure_running(self, box_id: str) -> bool:
        """Wake or resume the box if it is not running (no round trip when this process saw it
        running a moment ago); True if it was not running."""
        return await self._ensure(box_id, wake=True)

    async def recover(self, box_id: str) -> None:
        """Call when the box's sockets stop answering: if its sandbox is gone, record it as
        failed (the next ensure_running or in-box call wakes it again)."""
        self.activity.forget(box_id)
        async with self.locks.hold(box_id):
            box = await self._get(box_id)
            if box.state in LIVE_STATES and not self.backend.is_alive(box):
                await self.backend.stop(box)
                await self._update(box, state=BoxState.FAILED, pid=None,
                                           reason="the box's daemon stopped answering")
