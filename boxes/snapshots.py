"""The snapshot store: its contract (`SnapshotStore`), shared by all boxes, and the engine that
keeps it on this machine's disk (`LocalSnapshotStore`, the default; boxes/objectstore.py keeps
it in an S3-compatible bucket, boxes/stores.py picks one from BURROW_STORE_URL).

A snapshot is a manifest of one box's upper layer (boxes/manifests.py: every file, directory,
symlink, overlay whiteout and opaque-directory xattr, with modes and mtimes) plus the blobs it
names: content-addressed (sha256 per file) and zstd-compressed, so identical files, across
boxes and across freezes, are stored once. Packing (boxes/packing.py) skips files whose inode,
size, mtime and ctime match the box's last index, so a freeze writes only what changed.
Restoring (boxes/unpacking.py) never follows a link, refuses manifests that would write
outside the layer, and may leave large files for later (`begin_restore`).

Durability here: blobs are written to temp files and renamed; one syncfs covers them all; then
the manifest and its metadata are written, fsynced and renamed. A snapshot exists only once its
metadata file does. Garbage collection spares blobs younger than its grace period, and a pack
that finds a blob present touches it, so a sweep under way spares what a pack reuses.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

import zstandard

from boxes import manifests
from boxes.errors import SnapshotError, SnapshotNotFoundError
from boxes.manifests import Entries
from boxes.models import SnapshotRecord
from boxes.packing import Extents, LayerIndex, Scan, pack_layer, read_extents
from boxes.unpacking import (
    LAZY_MIN,
    PARALLEL_MIN,
    RESTORE_THREADS,
    PendingRestore,
    begin,
    syncfs,
)

__all__ = ["LAZY_MIN", "PARALLEL_MIN", "RESTORE_THREADS", "LayerIndex", "LocalSnapshotStore",
           "PackResult", "PendingRestore", "SnapshotStore", "StoreStats", "new_snapshot_id"]

STATS_TTL_S = 60.0


@dataclass(frozen=True)
class PackResult:
    record: SnapshotRecord
    index: LayerIndex


@dataclass(frozen=True)
class StoreStats:
    snapshots: int
    blobs: int
    stored_bytes: int
    logical_bytes: int


class SnapshotStore(Protocol):
    def check(self) -> None:
        """Refuse to start, with what to fix, if the store cannot work (called once)."""
    def ping(self) -> None:
        """StoreUnavailableError unless the store answers now (one cheap request): a freeze
        asks before it stops a box, so an outage leaves the box running."""
    def pack(self, layer: Path | Scan, *, box_id: str, kind: str, name: str | None,
             owner: str | None, index: LayerIndex | None) -> PackResult:
        """A new snapshot of `layer` (a box's upper layer, or a Scan of one taken earlier);
        files whose stat key `index` names are not read again."""
    def restore(self, snapshot_id: str, layer: Path, uid: int) -> LayerIndex: ...
    def begin_restore(self, snapshot_id: str, layer: Path, uid: int,
                      defer: Callable[[str, int], bool]) -> PendingRestore: ...
    def copy(self, snapshot_id: str, *, box_id: str, kind: str, name: str | None,
             owner: str | None) -> SnapshotRecord: ...
    def get(self, snapshot_id: str) -> SnapshotRecord: ...
    def list(self) -> list[SnapshotRecord]: ...
    def delete(self, snapshot_id: str) -> None: ...
    def gc(self, grace_s: float = 600.0) -> int: ...
    def stats(self) -> StoreStats: ...
    def close(self) -> None: ...


def new_snapshot_id() -> str:
    alphabet = "0123456789abcdefghijklmnopqrstuvwxyz"
    return "s_" + "".join(secrets.choice(alphabet) for _ in range(16))


def check_id(snapshot_id: object) -> str:
    if not isinstance(snapshot_id, str) or not manifests.ID_RE.match(snapshot_id):
        raise SnapshotNotFoundError(f"no snapshot {snapshot_id!r}")
    return snapshot_id


def new_record(snapshot_id: str, *, box_id: str, kind: str, name: str | None,
               owner: str | None, files: int, logical_bytes: int,
               new_bytes: int) -> SnapshotRecord:
    return SnapshotRecord(
        id=snapshot_id, box_id=box_id, kind="named" if kind == "named" else "freeze",
        created_at=time.time(), files=files, logical_bytes=logical_bytes, new_bytes=new_bytes,
        owner=owner, name=name)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_durably(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class _Blobs:
    """The local store's blob directory, as packing's sink and unpacking's source."""

    def __init__(self, store: LocalSnapshotStore) -> None:
        self.store = store
        self.written = 0

    def put(self, digest: str, path: str, extents: Extents | None, size: int) -> None:
        self.written += self.store._put_blob(path, digest, extents)

    def keep(self, digest: str, path: str, extents: Extents | None, size: int) -> None:
        """Touch the blob (gc spares it), or store it again if gc took it: the snapshot the
        index came from may be gone (a named one, deleted)."""
        try:
            os.utime(self.store._blob_path(digest))
        except FileNotFoundError:
            self.put(digest, path, extents, size)

    def open(self, digest: str) -> BinaryIO:
        return open(self.store._blob_path(digest), "rb")

    def plain(self, digest: str) -> bytes | None:
        return None  # every blob is a file: unpacking hashes it as it writes it out


class LocalSnapshotStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs = root / "blobs"
        self.snapshots = root / "snapshots"
        self.tmp = root / "tmp"
        self._stats: tuple[int, float, StoreStats] | None = None
        for path in (self.blobs, self.snapshots, self.tmp):
            path.mkdir(parents=True, exist_ok=True)
            os.chmod(path, 0o700)

    def check(self) -> None:
        pass  # the directories exist (made above)

    def ping(self) -> None:
        pass  # this machine's disk: a failure there is the pack's own error

    def close(self) -> None:
        pass

    # --- blobs ---------------------------------------------------------------------------

    def _blob_path(self, digest: str) -> Path:
        return self.blobs / digest[:2] / digest

    def _put_blob(self, path: str, digest: str, extents: Extents | None = None) -> int:
        """Store the file (or its data extents) as blob `digest` unless the store has it;
        return bytes written."""
        target = self._blob_path(digest)
        if target.exists():
            os.utime(target)  # "recently used": gc spares it while our manifest is unwritten
            return 0
        target.parent.mkdir(exist_ok=True)
        tmp = self.tmp / f"{digest}.{os.getpid()}.{secrets.token_hex(4)}"
        compressor = zstandard.ZstdCompressor(level=3)
        with open(tmp, "wb") as fout, compressor.stream_writer(fout, closefd=False) as writer:
            for chunk in read_extents(path, extents):
                writer.write(chunk)
        written = tmp.stat().st_size
        os.replace(tmp, target)
        return written

    # --- pack ----------------------------------------------------------------------------

    def pack(self, layer: Path | Scan, *, box_id: str, kind: str, name: str | None,
             owner: str | None, index: LayerIndex | None) -> PackResult:
        sink = _Blobs(self)
        packed = pack_layer(layer, index or {}, sink)
        syncfs(self.root)  # every blob of this snapshot is on disk before the manifest
        snapshot_id = new_snapshot_id()
        compressed = manifests.encode(packed.entries)
        _write_durably(self.snapshots / f"{snapshot_id}.manifest", compressed)
        record = new_record(snapshot_id, box_id=box_id, kind=kind, name=name, owner=owner,
                            files=packed.files, logical_bytes=packed.logical_bytes,
                            new_bytes=sink.written + len(compressed))
        _write_durably(self.snapshots / f"{snapshot_id}.json",
                       json.dumps(record.to_dict()).encode())
        _fsync_dir(self.snapshots)
        return PackResult(record, packed.index)

    # --- restore -------------------------------------------------------------------------

    def _manifest(self, snapshot_id: str) -> Entries:
        self.get(snapshot_id)
        try:
            raw = (self.snapshots / f"{snapshot_id}.manifest").read_bytes()
        except OSError as exc:
            raise SnapshotError(f"snapshot {snapshot_id} is unreadable: {exc}") from exc
        return manifests.decode(raw, snapshot_id)

    def restore(self, snapshot_id: str, layer: Path, uid: int) -> LayerIndex:
        """The snapshot written whole into `layer` (an empty one) and synced to disk."""
        return self.begin_restore(snapshot_id, layer, uid, lambda path, size: False).finish()

    def begin_restore(self, snapshot_id: str, layer: Path, uid: int,
                      defer: Callable[[str, int], bool]) -> PendingRestore:
        """Every entry of the snapshot in `layer`, except the content of the files for which
        `defer(path, size)` is true (and of their hard links): those are created at their size,
        owned by `uid`, and written by the returned PendingRestore's `finish`."""
        entries = self._manifest(snapshot_id)
        manifests.validate(entries)
        return begin(entries, layer, uid, defer, _Blobs(self))

    # --- copy ----------------------------------------------------------------------------

    def copy(self, snapshot_id: str, *, box_id: str, kind: str, name: str | None,
             owner: str | None) -> SnapshotRecord:
        """A new snapshot with the same content: the manifest copied, the blobs shared
        (nothing is restored or written out)."""
        source = self.get(snapshot_id)
        manifest = (self.snapshots / f"{snapshot_id}.manifest").read_bytes()
        new_id = new_snapshot_id()
        _write_durably(self.snapshots / f"{new_id}.manifest", manifest)
        record = new_record(new_id, box_id=box_id, kind=kind, name=name, owner=owner,
                            files=source.files, logical_bytes=source.logical_bytes,
                            new_bytes=len(manifest))
        _write_durably(self.snapshots / f"{new_id}.json", json.dumps(record.to_dict()).encode())
        _fsync_dir(self.snapshots)
        return record

    # --- bookkeeping ---------------------------------------------------------------------

    def get(self, snapshot_id: str) -> SnapshotRecord:
        check_id(snapshot_id)
        try:
            data = json.loads((self.snapshots / f"{snapshot_id}.json").read_bytes())
        except FileNotFoundError:
            raise SnapshotNotFoundError(f"no snapshot {snapshot_id!r}") from None
        return SnapshotRecord(**data)

    def list(self) -> list[SnapshotRecord]:
        records = []
        for path in self.snapshots.glob("s_*.json"):
            try:
                records.append(SnapshotRecord(**json.loads(path.read_bytes())))
            except (OSError, ValueError, TypeError):
                continue
        return sorted(records, key=lambda r: r.created_at)

    def delete(self, snapshot_id: str) -> None:
        self.get(snapshot_id)
        # metadata first: without it the snapshot no longer exists, even if we stop here
        (self.snapshots / f"{snapshot_id}.json").unlink(missing_ok=True)
        (self.snapshots / f"{snapshot_id}.manifest").unlink(missing_ok=True)

    def _referenced(self) -> set[str]:
        referenced: set[str] = set()
        for record in self.list():
            referenced |= manifests.digests(self._manifest(record.id))
        return referenced

    def gc(self, grace_s: float = 600.0) -> int:
        """Delete blobs no snapshot references; return how many bytes that freed.

        Blobs younger than `grace_s` stay: a pack that is still running may have written
        them (or found them present) before its manifest exists.
        """
        referenced = self._referenced()
        cutoff = time.time() - grace_s
        freed = 0
        for shard in self.blobs.iterdir():
            for blob in shard.iterdir():
                if blob.name in referenced:
                    continue
                st = _stat(blob)
                if st is not None and st.st_mtime < cutoff:
                    blob.unlink(missing_ok=True)
                    freed += st.st_size
        for leftover in self.tmp.iterdir():  # a pack's: renamed into place meanwhile, or dead
            if (st := _stat(leftover)) is not None and st.st_mtime < cutoff:
                leftover.unlink(missing_ok=True)
        for orphan in self.snapshots.glob("s_*.manifest"):  # a pack that died before its .json
            if (not orphan.with_suffix(".json").exists()
                    and (st := _stat(orphan)) is not None and st.st_mtime < cutoff):
                orphan.unlink(missing_ok=True)
        return freed

    def stats(self) -> StoreStats:
        """Counted by walking the store (a stat per blob), so the answer is kept until a
        snapshot is added or removed, or STATS_TTL_S pass (gc frees blobs quietly)."""
        key = self.snapshots.stat().st_mtime_ns
        cached = self._stats
        if cached is not None and cached[0] == key and time.monotonic() - cached[1] < STATS_TTL_S:
            return cached[2]
        stats = self._count()
        self._stats = (key, time.monotonic(), stats)
        return stats

    def _count(self) -> StoreStats:
        """Walks the store while freezes, deletes and gc change it: a file listed and gone
        before its stat counts as nothing."""
        blobs = stored = 0
        for shard in self.blobs.iterdir():
            for blob in shard.iterdir():
                blobs += 1
                stored += _size(blob)
        records = self.list()
        stored += sum(_size(p) for p in self.snapshots.iterdir())
        return StoreStats(len(records), blobs, stored, sum(r.logical_bytes for r in records))


def _stat(path: Path) -> os.stat_result | None:
    """None for a file listed a moment ago and gone since (freezes, deletes and gc change
    the store while it is walked)."""
    try:
        return path.stat()
    except FileNotFoundError:
        return None


def _size(path: Path) -> int:
    st = _stat(path)
    return 0 if st is None else st.st_size
