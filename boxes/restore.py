"""Restores in flight: a box woken from its snapshot starts as soon as every name of its layer
is in place, while its large files are still being written (boxes/snapshots.py's
`begin_restore` and `PendingRestore`). `Restores` keeps the books of those writes on this
host until each layer is whole, for the state machine (boxes/manager.py), which holds the
box's lock around every call here.

Invariants:
- A layer is the box's own (its record's `layer_local`) only once its restore is written and
  synced. A layer found without that is what an interrupted restore left: it is replaced at
  the next wake and never packed (the box is its snapshot).
- Nothing reads a file before it is written: a transition that needs the layer (freeze,
  snapshot, delete) `settle`s it first, in-box calls `wait` for it, and the idle sweep leaves
  a box being restored alone (`busy`). Another process's restore is not waited for here:
  BoxBusyError says to retry.
- A restore that fails drops its partial layer and its index, records the box failed (its
  daemon stopped), and keeps its snapshot: WakeFailedError says so.
- Which files may wait (`lazy`): large ones, unless the box runs a service not known to read
  only its own directories, or they are in one of those directories.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Protocol

from boxes.config import RuntimeConfig
from boxes.errors import BoxBusyError, BoxError, BoxNotFoundError, WakeFailedError
from boxes.layerindex import LayerIndexes
from boxes.locks import BoxLocks
from boxes.models import LIVE_STATES, BoxRecord, BoxState
from boxes.registry import Registry
from boxes.sandbox import SandboxBackend
from boxes.snapshots import LAZY_MIN, LayerIndex, PendingRestore, SnapshotStore

log = logging.getLogger("burrow.boxes")


class Recorder(Protocol):
    """How a change of a box is recorded (the manager's: it keeps its caches in step)."""

    async def __call__(self, box: BoxRecord, **changes: Any) -> BoxRecord: ...


def restore_error(box_id: str, exc: BaseException) -> WakeFailedError:
    """What a wake or an exec says when the files written after a box's start could not be."""
    why = exc.message if isinstance(exc, BoxError) else str(exc)
    return WakeFailedError(f"box {box_id} could not be restored from its snapshot: {why}; its "
                           "last snapshot is kept")


class Restores:
    def __init__(self, config: RuntimeConfig, backend: SandboxBackend, store: SnapshotStore,
                 locks: BoxLocks, registry: Registry, indexes: LayerIndexes,
                 update: Recorder, phase: Callable[[BoxRecord, str], None]) -> None:
        self.config = config
        self.backend = backend
        self.store = store
        self.locks = locks
        self.registry = registry
        self.indexes = indexes
        self._update = update
        self._phase = phase
        # Boxes woken from their snapshot whose large files are still being written: (the
        # writing, which ends with the index; what records its outcome once it is done).
        self._filling: dict[str, tuple[asyncio.Future[LayerIndex], asyncio.Task[None]]] = {}

    def lazy(self, box: BoxRecord) -> Callable[[str, int], bool]:
        """Which files of the box a wake may write after the box starts."""
        if box.service and tuple(box.service) not in self.config.lazy_restore_services:
            return lambda path, size: False
        eager = self.config.eager_restore_dirs
        return lambda path, size: size >= LAZY_MIN and not any(
            path.startswith(prefix + "/") for prefix in eager)

    async def begin(self, box: BoxRecord, snapshot_id: str) -> PendingRestore:
        """Unpack the box's snapshot into a new layer, but for the large files `lazy` picks,
        which the returned PendingRestore writes (hand it to `finish_later` once the box
        runs, or `abandon` it). A layer already there is what an interrupted restore left,
        and is replaced. If the restore fails the partial layer goes (a later wake or freeze
        must never take it for the box's files); the snapshot stays."""
        if self.backend.has_layer(box):
            await self.backend.drop_layer(box)
        await self.backend.create_layer(box)
        try:
            upper = await self.backend.open_layer(box)
            self._phase(box, "restore")
            return await asyncio.to_thread(self.store.begin_restore, snapshot_id, upper,
                                           box.uid, self.lazy(box))
        except BoxError as exc:
            await self.discard(box)
            raise WakeFailedError(
                f"box {box.id} could not be restored from its snapshot: {exc.message}; its "
                "last snapshot is kept and nothing of the partial restore was") from exc

    async def discard(self, box: BoxRecord, **changes: Any) -> BoxRecord:
        """Drop what a failed restore left; record that (and `changes`) in one update."""
        await self.backend.drop_layer(box)
        self.indexes.drop(box.id)
        return await self._update(box, layer_local=False, **changes)

    def finish_later(self, box_id: str, pending: PendingRestore) -> None:
        """Write the deferred files of a woken box beside it; then record its layer as whole
        (under its lock, unless a transition that needed the layer did so first)."""
        writing = asyncio.ensure_future(asyncio.to_thread(pending.finish))

        async def record() -> None:
            await asyncio.wait([writing])
            try:
                async with self.locks.hold(box_id):
                    if box_id in self._filling:  # else a transition recorded it already
                        await self.settle(await self._get(box_id))
            except WakeFailedError as exc:  # recorded: the box failed, its snapshot stays
                log.warning("%s", exc.message)
            except BoxError as exc:
                log.error("box %s: its restore could not be recorded: %s", box_id, exc)

        self._filling[box_id] = (writing, asyncio.create_task(record()))

    async def settle(self, box: BoxRecord) -> BoxRecord:
        """The box with its layer whole (caller holds the lock): a restore still writing its
        files is waited for and recorded. If it failed, the box is stopped, the partial
        layer dropped and the box recorded as failed (its snapshot stays); WakeFailedError.
        Another process's restore: BoxBusyError (the box's layer is not whole yet)."""
        entry = self._filling.get(box.id)
        if entry is None:
            if box.state in LIVE_STATES and not box.layer_local:
                raise BoxBusyError(f"box {box.id} is still being restored from its "
                                   "snapshot; retry in a moment")
            return box
        try:
            index = await asyncio.shield(entry[0])
        except Exception as exc:
            del self._filling[box.id]
            await self.backend.stop(box)
            error = restore_error(box.id, exc)
            await self.discard(box, state=BoxState.FAILED, pid=None, reason=error.message)
            raise error from exc
        del self._filling[box.id]
        self.indexes.save(box.id, index)
        return await self._update(box, layer_local=True)

    async def wait(self, box_id: str) -> None:
        """Wait until the box's layer is whole (its restore written and recorded)."""
        entry = self._filling.get(box_id)
        if entry is None:
            return
        await asyncio.shield(entry[1])
        failure = entry[0].exception()
        if failure is not None:
            raise restore_error(box_id, failure) from failure

    def busy(self, box: BoxRecord) -> bool:
        """Whether the box's layer is still being restored, here or by another process."""
        return box.id in self._filling or (box.state in LIVE_STATES and not box.layer_local)

    async def drain(self) -> None:
        """Finish the restores in flight (a layer is kept only once it is whole)."""
        await asyncio.gather(*(task for _, task in self._filling.values()),
                             return_exceptions=True)

    async def _get(self, box_id: str) -> BoxRecord:
        box = await self.registry.get(box_id)
        if box is None:
            raise BoxNotFoundError(f"no box {box_id!r}")
        return box
