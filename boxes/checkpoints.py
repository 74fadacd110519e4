"""Checkpoints: what changed in a running box's layer packed while it runs, as its newest
durable state (a wake on another host restores from it), so that losing the host loses at most
the changes since.

`Checkpoints.take` runs one: under the box's lock, a consistent copy of the layer
(boxes/layercopy.py: the box frozen only while the files it changed last are copied); then,
with the box running and the lock left (a paused box's requests wait for the lock to resume
it, not for a pack), the copy packed as a "freeze" snapshot; then, under the lock again,
committed with the registry's commit_snapshot (fenced on a host of a cluster) unless the box
was frozen, snapshotted, moved or deleted meanwhile; the previous snapshot deleted; the index
saved. A box whose layer gives the signature its index holds (one walk of stats:
boxes/packing.py) has nothing to checkpoint: nothing is frozen and nothing written. Each
checkpoint's manifest names every entry of the layer, so a file deleted since the last one (or
a base file: an overlay whiteout) is absent from it too. `Checkpointer` takes them every
BURROW_CHECKPOINT_S.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Protocol

from redis.exceptions import RedisError

from boxes.config import RuntimeConfig
from boxes.errors import BoxError, FencedError, SnapshotError
from boxes.layercopy import BELOW, LayerCopy, copy_layer, reniced
from boxes.layerindex import LayerIndexes
from boxes.locks import BoxLocks
from boxes.models import LIVE_STATES, BoxRecord, SnapshotRecord
from boxes.registry import Registry
from boxes.restore import Restores
from boxes.sandbox import SandboxBackend
from boxes.snapshots import PackResult, SnapshotStore

log = logging.getLogger("burrow.boxes")

STAGING = "checkpoint"  # in the box's directory (root's alone), removed after each checkpoint


class Checkpoints:
    """The checkpoints of the boxes one process runs: BoxManager.checkpoint."""

    def __init__(self, config: RuntimeConfig, backend: SandboxBackend, store: SnapshotStore,
                 locks: BoxLocks, registry: Registry, indexes: LayerIndexes,
                 restores: Restores,
                 ask_store: Callable[[Callable[[], PackResult]], Awaitable[PackResult]],
                 phase: Callable[[BoxRecord, str], None],
                 taking: Callable[[BoxRecord], Awaitable[int]] | None = None,
                 committed: Callable[[BoxRecord, int], Awaitable[None]] | None = None) -> None:
        self.config = config
        self.backend = backend
        self.store = store
        self.locks = locks
        self.registry = registry
        self.indexes = indexes
        self.restores = restores
        self.ask_store = ask_store  # the manager's: a failing store shows in /readyz
        self.phase = phase
        # The manager's Durability hooks (what the box's agent was told is held once
        # committed): a mark taken before the copy is of what the copy holds at least.
        self.taking = taking
        self.committed = committed
        self._taking: set[str] = set()

    async def take(self, box_id: str, host: str) -> SnapshotRecord | None:
        """A checkpoint of the box; None if nothing changed since its last snapshot, or it
        is not running (or paused) on `host` (this process), or a checkpoint of it is under
        way."""
        if box_id in self._taking:
            return None
        self._taking.add(box_id)
        staging = self.config.box_dir(box_id) / STAGING
        try:
            copied = await self._copy(box_id, host, staging)
            if copied is None:
                return None
            box, layer, mark = copied
            try:
                result = await self.ask_store(partial(self._pack, box, layer))
            except FileNotFoundError as exc:
                if not staging.is_dir():  # the box was deleted meanwhile, its directory too
                    return None
                self.indexes.drop(box_id)
                raise SnapshotError(f"box {box_id}: the store lacks the blob of a file its "
                                    "index says it holds; the next checkpoint copies every "
                                    "file") from exc
            return await self._commit(box, host, result, mark)
        finally:
            self._taking.discard(box_id)
            await asyncio.to_thread(shutil.rmtree, staging, True)

    async def _copy(self, box_id: str, host: str,
                    staging: Path) -> tuple[BoxRecord, LayerCopy, int] | None:
        async with self.locks.hold(box_id):
            box = await self.registry.get(box_id)
            if (box is None or box.state not in LIVE_STATES or box.host != host
                    or self.restores.busy(box)):
                return None
            mark = await self.taking(box) if self.taking is not None else 0
            await asyncio.to_thread(_empty_dir, staging)
            layer = await copy_layer(self.backend, box, self.backend.upper_dir(box),
                                     self.indexes.load(box_id) or {}, staging,
                                     lambda step: self.phase(box, f"checkpoint-{step}"))
            return None if layer is None else (box, layer, mark)

    def _pack(self, box: BoxRecord, layer: LayerCopy) -> PackResult:
        with reniced(BELOW):
            return self.store.pack(layer.scan, box_id=box.id, kind="freeze", name=None,
                                   owner=box.owner, index=layer.index)

    async def _commit(self, seen: BoxRecord, host: str, result: PackResult,
                      mark: int) -> SnapshotRecord | None:
        """Make the snapshot the box's, unless what the box holds now is newer than the copy
        (it was frozen, snapshotted, woken elsewhere or deleted meanwhile)."""
        snapshot = result.record
        async with self.locks.hold(seen.id):
            box = await self.registry.get(seen.id)
            if (box is None or box.state not in LIVE_STATES or box.host != host
                    or (box.snapshot_id, box.generation) != (seen.snapshot_id, seen.generation)):
                await self._delete(snapshot.id)
                return None
            try:
                # freezes counts it: a box.json that knows of it wins over a Redis that lost
                # the end of its log (Registry.adopt_mirrors), as a freeze's does
                previous = await self.registry.commit_snapshot(box, snapshot.id,
                                                               freezes=box.freezes + 1)
            except FencedError:
                await self._delete(snapshot.id)  # never committed: ours to delete
                raise
            # in a thread: a rename on the disk the box writes may wait for its journal
            await asyncio.to_thread(self.indexes.save, box.id, result.index)
            self.phase(box, "checkpointed")
        if self.committed is not None:
            await self.committed(box, mark)
        if previous is not None and previous != snapshot.id:
            await self._delete(previous)
        return snapshot

    async def _delete(self, snapshot_id: str) -> None:
        try:
            await asyncio.to_thread(self.store.delete, snapshot_id)
        except BoxError as exc:  # gone, or the store fails: gc drops what no box points at
            log.warning("could not delete snapshot %s: %s", snapshot_id, exc.message)


def _empty_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)  # what a checkpoint cut short left
    path.mkdir(mode=0o700)


class Checkpointing(Protocol):
    """What the Checkpointer needs of a BoxManager."""

    config: RuntimeConfig
    host: str

    async def get(self, box_id: str) -> BoxRecord: ...

    async def checkpoint(self, box_id: str) -> SnapshotRecord | None: ...


class Checkpointer:
    """Every `interval_s` (0: never), a checkpoint of each box this process runs, one box at a
    time; those that did not change since their last snapshot cost one walk of stats."""

    def __init__(self, manager: Checkpointing, interval_s: float) -> None:
        self.manager = manager
        self.interval_s = interval_s
        self._task: asyncio.Task[None] | None = None
        self._stopped = asyncio.Event()

    async def run_once(self) -> list[SnapshotRecord]:
        """Checkpoint every box that changed, now; the snapshots taken."""
        taken = []
        for box_id in await asyncio.to_thread(self._here):
            if self._stopped.is_set():  # a stop whose cancellation was lost: no next box
                break
            try:
                box = await self.manager.get(box_id)
                if box.host != self.manager.host or box.state not in LIVE_STATES:
                    continue
                snapshot = await self.manager.checkpoint(box_id)
            except (BoxError, OSError) as exc:
                log.warning("checkpoint of box %s failed: %s", box_id, exc)
                continue
            if snapshot is not None:
                taken.append(snapshot)
        return taken

    def _here(self) -> list[str]:
        """The boxes with a layer on this machine (not every box of the cluster's registry)."""
        try:
            return sorted(os.listdir(self.manager.config.run_dir / "boxes"))
        except FileNotFoundError:
            return []

    def start(self) -> None:
        if self.interval_s > 0 and self._task is None:
            self._stopped.clear()
            self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        """Stop the loop: at once, or at the end of the checkpoint under way if the
        cancellation is lost on the way (Python 3.11's asyncio.wait_for, which the box lock
        uses, can swallow one)."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stopped.set()
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # the caller's own cancellation, not the loop's

    async def _loop(self) -> None:
        while not self._stopped.is_set():
            started = time.monotonic()
            try:
                await self.run_once()
            except (RedisError, OSError) as exc:  # Redis away a moment: the next pass tries
                log.warning("a checkpoint pass failed (the next one tries again): %s", exc)
            except Exception:
                log.exception("checkpoint pass failed")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval_s - (time.monotonic() - started)):
                    await self._stopped.wait()
