"""What any role of a cluster can do with boxes from Redis and the snapshot store alone, with
no host: read the registry, close an owner to new boxes, list and delete named snapshots,
collect the store's garbage. BoxManager (the boxes this process runs) and RemoteBoxes (a
cluster's boxes, reached through their hosts: core/remote.py) both are one."""

from __future__ import annotations

import asyncio
import builtins
import time

from boxes.errors import BoxNotFoundError, SnapshotNotFoundError
from boxes.models import BoxRecord, SnapshotRecord
from boxes.registry import Registry
from boxes.snapshots import SnapshotStore


class BoxCatalog:
    registry: Registry
    store: SnapshotStore

    # --- queries -------------------------------------------------------------------------

    async def _get(self, box_id: str) -> BoxRecord:
        box = await self.registry.get(box_id) if isinstance(box_id, str) else None
        if box is None:
            raise BoxNotFoundError(f"no box {box_id!r}")
        return box

    async def get(self, box_id: str) -> BoxRecord:
        return await self._get(box_id)

    async def list(self, owner: str | None = None,
                   labels: dict[str, str] | None = None) -> builtins.list[BoxRecord]:
        boxes = await self.registry.all(owner=owner)
        return [b for b in boxes
                if (owner is None or b.owner == owner)
                and all(b.labels.get(k) == v for k, v in (labels or {}).items())]

    async def close_owner(self, owner: str) -> None:
        """Make no new box for `owner` from now on (its boxes are being removed): from when
        this returns, a creation for it either fails or its box is in list(owner=...)."""
        await self.registry.close_owner(owner)

    async def reopen_owner(self, owner: str) -> bool:
        """Make boxes for `owner` again; True if it was closed."""
        return await self.registry.reopen_owner(owner)

    async def list_snapshots(self, owner: str | None = None) -> builtins.list[SnapshotRecord]:
        records = await asyncio.to_thread(self.store.list)
        return [r for r in records if r.kind == "named" and (owner is None or r.owner == owner)]

    async def get_snapshot(self, snapshot_id: str) -> SnapshotRecord:
        record = await asyncio.to_thread(self.store.get, snapshot_id)
        if record.kind != "named":
            raise SnapshotNotFoundError(f"no snapshot {snapshot_id!r}")
        return record

    async def delete_snapshot(self, snapshot_id: str) -> None:
        await self.get_snapshot(snapshot_id)
        await asyncio.to_thread(self.store.delete, snapshot_id)

    async def gc(self, grace_s: float = 600.0) -> int:
        """Drop freeze snapshots no box points at, then blobs nothing references."""
        current = {b.snapshot_id for b in await self.registry.all()}
        for record in await asyncio.to_thread(self.store.list):
            if (record.kind == "freeze" and record.id not in current
                    and time.time() - record.created_at > grace_s):
                await asyncio.to_thread(self.store.delete, record.id)
        return await asyncio.to_thread(self.store.gc, grace_s)
