"""The snapshot store: content-addressed (sha256 per file), zstd-compressed, shared by all boxes.

A snapshot is a manifest of one box's upper layer (every file, directory, symlink, overlay
whiteout and opaque-directory xattr, with modes and mtimes) plus the blobs it names. Identical
files, across boxes and across freezes, are stored once. Packing skips files whose inode,
size, mtime and ctime match the box's last index, so a freeze writes only what changed.
Hard links stay links (one blob, and one copy on restore), and sparse files keep their holes:
their blob holds the data extents only, so a restore takes no more disk than the box had
(databases and package caches have both; writing them out densely overflowed box disks).

Durability: blobs are written to temp files and renamed; one syncfs covers them all; then the
manifest and its metadata are written, fsynced and renamed. A snapshot exists only once its
metadata file does. Restoring never follows a link and refuses manifests that would write
outside the layer.

A restore can leave its large files for later (`begin_restore`): every name is in the layer,
the large files at their size, and `PendingRestore.finish` writes their content from threads
of low priority and syncs the layer, so a box can start (and its agent answer) while a 50 MB
layer is still being written. The caller keeps everything that could read those files waiting
until `finish` returns, and never packs the layer before.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import errno
import hashlib
import json
import os
import re
import secrets
import stat
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import zstandard

from boxes.errors import SnapshotError, SnapshotNotFoundError
from boxes.models import SnapshotRecord

_HASH_RE = re.compile(r"^[0-9a-f]{64}$")
_ID_RE = re.compile(r"^s_[0-9a-z]{16}$")
_CHUNK = 1 << 20
# Restoring: files this large or larger are written by a pool of threads, beside the others.
PARALLEL_MIN = 256 << 10
RESTORE_THREADS = min(4, os.cpu_count() or 1)
# begin_restore: files this large or larger are written after it returns (PendingRestore).
LAZY_MIN = PARALLEL_MIN
# The nice value of the threads that write them: a box starting beside them comes first.
LAZY_NICE = 10
_FORMAT = 1
STATS_TTL_S = 60.0
_libc = ctypes.CDLL(None, use_errno=True)

# path -> [stat key, sha256, extents (sparse files only)]: what the last pack or restore saw,
# so the next pack can skip files that did not change.
LayerIndex = dict[str, list[Any]]
Extents = list[list[int]]  # [[offset, length], ...] of a sparse file's data


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
    def pack(self, layer: Path, *, box_id: str, kind: str, name: str | None,
             owner: str | None, index: LayerIndex | None) -> PackResult: ...
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


def new_snapshot_id() -> str:
    alphabet = "0123456789abcdefghijklmnopqrstuvwxyz"
    return "s_" + "".join(secrets.choice(alphabet) for _ in range(16))


def _stat_key(st: os.stat_result) -> str:
    return f"{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}"


def _user_xattrs(path: str) -> dict[str, str]:
    """user.* xattrs (overlay keeps opaque dirs and redirects there in a user namespace)."""
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return {}
    out: dict[str, str] = {}
    for name in names:
        if name.startswith("user."):
            try:
                value = os.getxattr(path, name, follow_symlinks=False)
            except OSError:
                continue
            out[name] = base64.b64encode(value).decode()
    return out


def _extents(fd: int, size: int) -> Extents:
    """The data regions of a file (SEEK_DATA/SEEK_HOLE), merged where they touch."""
    extents: Extents = []
    offset = 0
    while offset < size:
        try:
            start = os.lseek(fd, offset, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # only a hole is left
                break
            raise
        end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
        if extents and extents[-1][0] + extents[-1][1] == start:
            extents[-1][1] += end - start
        else:
            extents.append([start, end - start])
        offset = end
    return extents


def _read_extents(path: str, extents: Extents | None) -> Iterator[bytes]:
    """The file's bytes, or only its data extents in order, in pieces."""
    with open(path, "rb", buffering=0) as f:
        if extents is None:
            while chunk := f.read(_CHUNK):
                yield chunk
            return
        for offset, length in extents:
            while length > 0:
                chunk = os.pread(f.fileno(), min(length, _CHUNK), offset)
                if not chunk:
                    return
                offset += len(chunk)
                length -= len(chunk)
                yield chunk


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _syncfs(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if _libc.syncfs(fd) != 0:
            os.sync()
    finally:
        os.close(fd)


def _write_durably(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


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

    # --- blobs ---------------------------------------------------------------------------

    def _blob_path(self, digest: str) -> Path:
        return self.blobs / digest[:2] / digest

    @staticmethod
    def _hash_file(path: str, extents: Extents | None = None) -> str:
        h = hashlib.sha256()
        for chunk in _read_extents(path, extents):
            h.update(chunk)
        return h.hexdigest()

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
            for chunk in _read_extents(path, extents):
                writer.write(chunk)
        written = tmp.stat().st_size
        os.replace(tmp, target)
        return written

    # --- pack ----------------------------------------------------------------------------

    def _walk(self, layer: Path) -> Iterator[tuple[str, str, os.stat_result]]:
        """(relative path, absolute path, lstat) for everything in the layer, parents first."""
        stack = [""]
        while stack:
            rel_dir = stack.pop()
            abs_dir = os.path.join(layer, rel_dir) if rel_dir else str(layer)
            with os.scandir(abs_dir) as it:
                entries = sorted(it, key=lambda e: e.name)
            for entry in entries:
                rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
                st = entry.stat(follow_symlinks=False)
                yield rel, entry.path, st
                if stat.S_ISDIR(st.st_mode):
                    stack.append(rel)

    def _file(self, rel: str, path: str, st: os.stat_result, index: LayerIndex,
              new_index: LayerIndex, counters: dict[str, int]) -> dict[str, Any]:
        key = _stat_key(st)
        previous = index.get(rel)
        if previous is not None and previous[0] == key:
            digest = previous[1]
            extents = previous[2] if len(previous) > 2 else None
        else:
            extents = None
            if st.st_blocks * 512 < st.st_size:  # holes: keep them
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
                try:
                    extents = _extents(fd, st.st_size)
                finally:
                    os.close(fd)
            digest = self._hash_file(path, extents)
            counters["new_bytes"] += self._put_blob(path, digest, extents)
        new_index[rel] = [key, digest] if extents is None else [key, digest, extents]
        counters["logical_bytes"] += st.st_size
        entry: dict[str, Any] = {"t": "f", "s": st.st_size, "h": digest}
        if extents is not None:
            entry["e"] = extents
        return entry

    def _entry(self, rel: str, path: str, st: os.stat_result, index: LayerIndex,
               new_index: LayerIndex, counters: dict[str, int],
               links: dict[tuple[int, int], str]) -> dict[str, Any] | None:
        mode = st.st_mode
        entry: dict[str, Any] = {"p": rel, "m": stat.S_IMODE(mode), "mt": st.st_mtime_ns}
        if stat.S_ISREG(mode):
            first = links.get((st.st_dev, st.st_ino)) if st.st_nlink > 1 else None
            if first is not None:  # another name of a file already packed: a hard link
                counters["files"] += 1
                return {"p": rel, "t": "h", "l": first}
            if st.st_nlink > 1:
                links[(st.st_dev, st.st_ino)] = rel
            entry.update(self._file(rel, path, st, index, new_index, counters))
        elif stat.S_ISDIR(mode):
            entry["t"] = "d"
        elif stat.S_ISLNK(mode):
            entry.update(t="l", l=os.readlink(path))
        elif stat.S_ISCHR(mode) and st.st_rdev == 0:
            entry["t"] = "w"  # an overlay whiteout: a base file this box deleted
        elif stat.S_ISFIFO(mode):
            entry["t"] = "p"
        else:
            return None  # sockets and devices are not part of a box's state
        xattrs = _user_xattrs(path)
        if xattrs:
            entry["x"] = xattrs
        counters["files"] += 1
        return entry

    def pack(self, layer: Path, *, box_id: str, kind: str, name: str | None,
             owner: str | None, index: LayerIndex | None) -> PackResult:
        index = index or {}
        new_index: LayerIndex = {}
        counters = {"files": 0, "logical_bytes": 0, "new_bytes": 0}
        links: dict[tuple[int, int], str] = {}
        entries = [e for rel, path, st in self._walk(layer)
                   if (e := self._entry(rel, path, st, index, new_index, counters, links))
                   is not None]
        _syncfs(self.root)  # every blob of this snapshot is on disk before the manifest
        snapshot_id = new_snapshot_id()
        manifest = json.dumps({"format": _FORMAT, "entries": entries},
                              separators=(",", ":")).encode()
        compressed = zstandard.ZstdCompressor(level=3).compress(manifest)
        _write_durably(self.snapshots / f"{snapshot_id}.manifest", compressed)
        record = SnapshotRecord(
            id=snapshot_id, box_id=box_id, kind="named" if kind == "named" else "freeze",
            created_at=time.time(), files=counters["files"],
            logical_bytes=counters["logical_bytes"],
            new_bytes=counters["new_bytes"] + len(compressed), owner=owner, name=name)
        _write_durably(self.snapshots / f"{snapshot_id}.json",
                       json.dumps(record.to_dict()).encode())
        _fsync_dir(self.snapshots)
        return PackResult(record, new_index)

    # --- restore -------------------------------------------------------------------------

    def _manifest(self, snapshot_id: str) -> list[dict[str, Any]]:
        self.get(snapshot_id)
        try:
            raw = zstandard.ZstdDecompressor().decompress(
                (self.snapshots / f"{snapshot_id}.manifest").read_bytes())
            data = json.loads(raw)
            entries: list[dict[str, Any]] = data["entries"]
            if data.get("format") != _FORMAT or not isinstance(entries, list):
                raise ValueError("unknown manifest format")
        except (OSError, ValueError, KeyError, zstandard.ZstdError) as exc:
            raise SnapshotError(f"snapshot {snapshot_id} is unreadable: {exc}") from exc
        return entries

    @staticmethod
    def validate(entries: list[dict[str, Any]]) -> None:
        """Refuse, before anything is written, a manifest that could reach outside its layer."""
        links: set[str] = set()
        seen: set[str] = set()
        files: set[str] = set()
        for entry in entries:
            path = _check_path(entry.get("p"), links)
            if path in seen:
                raise SnapshotError(f"manifest entry {path!r} appears twice")
            seen.add(path)
            _check_entry(path, entry)
            if entry["t"] == "l":
                links.add(path)
            elif entry["t"] == "f":
                files.add(path)
            elif entry["t"] == "h" and entry.get("l") not in files:
                raise SnapshotError(f"manifest entry {path!r} links to {entry.get('l')!r}, "
                                    "which is no earlier file of the snapshot")

    def restore(self, snapshot_id: str, layer: Path, uid: int) -> LayerIndex:
        """The snapshot written whole into `layer` (an empty one) and synced to disk."""
        return self.begin_restore(snapshot_id, layer, uid, lambda path, size: False).finish()

    def begin_restore(self, snapshot_id: str, layer: Path, uid: int,
                      defer: Callable[[str, int], bool]) -> PendingRestore:
        """Every entry of the snapshot in `layer`, except the content of the files for which
        `defer(path, size)` is true (and of their hard links): those are created at their size,
        owned by `uid`, and written by the returned PendingRestore's `finish`."""
        entries = self._manifest(snapshot_id)
        self.validate(entries)
        restorer = _Restorer(self, layer, uid, defer)
        try:
            for entry in entries:
                restorer.apply(entry)
            restorer.finish()
        except BaseException:
            restorer.close()
            raise
        return PendingRestore(restorer, layer)

    def copy(self, snapshot_id: str, *, box_id: str, kind: str, name: str | None,
             owner: str | None) -> SnapshotRecord:
        """A new snapshot with the same content: the manifest copied, the blobs shared
        (nothing is restored or written out)."""
        source = self.get(snapshot_id)
        manifest = (self.snapshots / f"{snapshot_id}.manifest").read_bytes()
        new_id = new_snapshot_id()
        _write_durably(self.snapshots / f"{new_id}.manifest", manifest)
        record = SnapshotRecord(
            id=new_id, box_id=box_id, kind="named" if kind == "named" else "freeze",
            created_at=time.time(), files=source.files, logical_bytes=source.logical_bytes,
            new_bytes=len(manifest), owner=owner, name=name)
        _write_durably(self.snapshots / f"{new_id}.json", json.dumps(record.to_dict()).encode())
        _fsync_dir(self.snapshots)
        return record

    # --- bookkeeping ---------------------------------------------------------------------

    def get(self, snapshot_id: str) -> SnapshotRecord:
        if not isinstance(snapshot_id, str) or not _ID_RE.match(snapshot_id):
            raise SnapshotNotFoundError(f"no snapshot {snapshot_id!r}")
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
            for entry in self._manifest(record.id):
                if entry.get("t") == "f":
                    referenced.add(entry["h"])
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


def _check_path(path: object, links: set[str]) -> str:
    if not isinstance(path, str) or not path or "\0" in path or path.startswith("/"):
        raise SnapshotError(f"manifest entry {path!r}: paths must be relative")
    parts = path.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise SnapshotError(f"manifest entry {path!r}: '..', '.' and empty parts are not allowed")
    for depth in range(1, len(parts)):
        if "/".join(parts[:depth]) in links:
            raise SnapshotError(f"manifest entry {path!r} would be written through a symlink")
    return path


def _check_entry(path: str, entry: dict[str, Any]) -> None:
    kind = entry.get("t")
    if kind == "l":
        if not isinstance(entry.get("l"), str) or "\0" in entry["l"]:
            raise SnapshotError(f"manifest entry {path!r}: bad link target")
    elif kind == "f":
        if not isinstance(entry.get("h"), str) or not _HASH_RE.match(entry["h"]):
            raise SnapshotError(f"manifest entry {path!r}: bad content hash")
        _check_extents(path, entry)
    elif kind == "h":
        if not isinstance(entry.get("l"), str):
            raise SnapshotError(f"manifest entry {path!r}: bad link target")
        return
    elif kind not in ("d", "w", "p"):
        raise SnapshotError(f"manifest entry {path!r}: unknown type {kind!r}")
    mode = entry.get("m", 0)
    if isinstance(mode, bool) or not isinstance(mode, int) or not 0 <= mode <= 0o7777:
        raise SnapshotError(f"manifest entry {path!r}: bad mode")


def _check_extents(path: str, entry: dict[str, Any]) -> None:
    size, extents = entry.get("s", 0), entry.get("e")
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise SnapshotError(f"manifest entry {path!r}: bad size")
    if extents is None:
        return
    end = 0
    if not isinstance(extents, list):
        raise SnapshotError(f"manifest entry {path!r}: bad extents")
    for extent in extents:
        if (not isinstance(extent, list) or len(extent) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in extent)
                or extent[0] < end or extent[1] <= 0 or extent[0] + extent[1] > size):
            raise SnapshotError(f"manifest entry {path!r}: bad extents")
        end = extent[0] + extent[1]


class PendingRestore:
    """A restore with every name in place and the deferred files still to be written."""

    def __init__(self, restorer: _Restorer, layer: Path) -> None:
        self._restorer = restorer
        self._layer = layer
        self.deferred = [item.path for item in restorer.deferred]

    def finish(self) -> LayerIndex:
        """Write the deferred files (RESTORE_THREADS threads at nice LAZY_NICE), sync the
        layer, and return its index; SnapshotError if a blob is missing or corrupt. Blocks:
        call it from a thread. The restore is over either way."""
        restorer = self._restorer
        try:
            if restorer.deferred:
                with ThreadPoolExecutor(RESTORE_THREADS, thread_name_prefix="restore-lazy",
                                        initializer=_lower_priority) as pool:
                    fills = [pool.submit(restorer.fill_deferred, item)
                             for item in restorer.deferred]
                    restorer.deferred = []
                    for fill in fills:
                        fill.result()
        finally:
            restorer.close()
        _syncfs(self._layer)
        return restorer.index

    def abandon(self) -> None:
        """Give up on the deferred files (their content is not written; the directories'
        descriptors are closed): for a restore whose layer is dropped."""
        self._restorer.close()


def _lower_priority() -> None:
    with contextlib.suppress(OSError):  # this thread only (Linux nice values are per thread)
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), LAZY_NICE)


@dataclass(frozen=True)
class _Deferred:
    dir_fd: int  # its directory's, open until the restore is over
    name: str
    inode: int
    path: str
    mode: int
    mtime: int
    entry: dict[str, Any]


class _Restorer:
    """Writes manifest entries into a layer through directory fds, never following a link.

    Entries are applied in manifest order (parents first, a hard link after its target);
    the content of files of PARALLEL_MIN bytes or more is written by RESTORE_THREADS threads
    (decompression, hashing and writing release the GIL), each file created first in order,
    so links and directory times see every name. `finish` waits for them all. Files `defer`
    picks are only created (at their size); `fill_deferred` writes them later."""

    def __init__(self, store: LocalSnapshotStore, layer: Path, uid: int,
                 defer: Callable[[str, int], bool]) -> None:
        self.store = store
        self.uid = uid
        self.defer = defer
        self.deferred: list[_Deferred] = []  # created files whose content waits
        self.root_fd = os.open(layer, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        self.dir_fds: dict[str, int] = {"": self.root_fd}
        self.dir_times: list[tuple[str, int]] = []
        self.index: LayerIndex = {}
        self.pool: ThreadPoolExecutor | None = None
        self.filling: list[tuple[Future[None], int]] = []  # (the fill, its file's fd)

    def _parent_fd(self, path: str) -> tuple[int, str]:
        parent, _, name = path.rpartition("/")
        fd = self.dir_fds.get(parent)
        if fd is None:
            grand_fd, base = self._parent_fd(parent)
            try:
                fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=grand_fd)
            except OSError as exc:
                raise SnapshotError(f"cannot restore {path!r}: {parent!r} is not a directory "
                                    "of the layer") from exc
            self.dir_fds[parent] = fd
        return fd, name

    def apply(self, entry: dict[str, Any]) -> None:
        path: str = entry["p"]
        dir_fd, name = self._parent_fd(path)
        kind = entry["t"]
        mode = int(entry.get("m", 0o644))
        mtime = int(entry.get("mt", 0))
        try:
            if kind == "d":
                self._apply_dir(dir_fd, name, path, mode, mtime, entry)
            elif kind == "f":
                self._apply_file(dir_fd, name, path, mode, mtime, entry)
            elif kind == "h":
                target_fd, target = self._parent_fd(entry["l"])
                os.link(target, name, src_dir_fd=target_fd, dst_dir_fd=dir_fd,
                        follow_symlinks=False)
            elif kind == "l":
                os.symlink(entry["l"], name, dir_fd=dir_fd)
                os.chown(name, self.uid, self.uid, dir_fd=dir_fd, follow_symlinks=False)
                os.utime(name, ns=(mtime, mtime), dir_fd=dir_fd, follow_symlinks=False)
            elif kind == "w":
                os.mknod(name, stat.S_IFCHR, 0, dir_fd=dir_fd)
                os.chown(name, self.uid, self.uid, dir_fd=dir_fd, follow_symlinks=False)
            elif kind == "p":
                os.mkfifo(name, mode, dir_fd=dir_fd)
                os.chown(name, self.uid, self.uid, dir_fd=dir_fd, follow_symlinks=False)
        except SnapshotError:
            raise
        except OSError as exc:
            raise SnapshotError(f"cannot restore {path!r}: {exc.strerror}") from exc

    def _apply_dir(self, dir_fd: int, name: str, path: str, mode: int, mtime: int,
                   entry: dict[str, Any]) -> None:
        with contextlib.suppress(FileExistsError):  # e.g. workspace/ and tmp/ of a new layer
            os.mkdir(name, 0o700, dir_fd=dir_fd)
        fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dir_fd)
        self.dir_fds[path] = fd
        os.fchown(fd, self.uid, self.uid)
        os.fchmod(fd, mode)
        for key, value in entry.get("x", {}).items():
            os.setxattr(fd, key, base64.b64decode(value))
        self.dir_times.append((path, mtime))

    def _apply_file(self, dir_fd: int, name: str, path: str, mode: int, mtime: int,
                    entry: dict[str, Any]) -> None:
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600,
                     dir_fd=dir_fd)
        size = int(entry.get("s", 0))
        if self.defer(path, size):
            try:  # its name, size and owner now; content, mode and times when it is written
                os.ftruncate(fd, size)
                os.fchown(fd, self.uid, self.uid)
                inode = os.fstat(fd).st_ino
            finally:  # reopened then: a descriptor per waiting file could run out of them
                os.close(fd)
            self.deferred.append(_Deferred(dir_fd, name, inode, path, mode, mtime, entry))
        elif RESTORE_THREADS > 1 and size >= PARALLEL_MIN:
            if self.pool is None:
                self.pool = ThreadPoolExecutor(RESTORE_THREADS, thread_name_prefix="restore")
            self.filling.append((self.pool.submit(self._fill, fd, path, mode, mtime, entry), fd))
        else:
            self._fill(fd, path, mode, mtime, entry)

    def _fill(self, fd: int, path: str, mode: int, mtime: int, entry: dict[str, Any]) -> None:
        """Write a created file's content and metadata from its blob; closes `fd`."""
        try:
            self._write(fd, path, mode, mtime, entry)
        except SnapshotError:
            raise
        except OSError as exc:
            raise SnapshotError(f"cannot restore {path!r}: {exc.strerror}") from exc
        finally:
            os.close(fd)

    def fill_deferred(self, item: _Deferred) -> None:
        """Write a deferred file, found again by name in its directory (never through a
        link) and only if it is still the file created for it."""
        try:
            fd = os.open(item.name, os.O_WRONLY | os.O_NOFOLLOW, dir_fd=item.dir_fd)
        except OSError as exc:
            raise SnapshotError(f"cannot restore {item.path!r}: {exc.strerror}") from exc
        if os.fstat(fd).st_ino != item.inode:
            os.close(fd)
            raise SnapshotError(f"cannot restore {item.path!r}: it was replaced meanwhile")
        self._fill(fd, item.path, item.mode, item.mtime, item.entry)

    def _write(self, fd: int, path: str, mode: int, mtime: int, entry: dict[str, Any]) -> None:
        digest = entry["h"]
        blob = self.store._blob_path(digest)
        h = hashlib.sha256()
        extents = entry.get("e")
        regions = iter(extents) if extents is not None else iter([[0, entry.get("s", 0)]])
        offset, left = 0, 0
        try:
            with open(blob, "rb") as fin:
                reader = zstandard.ZstdDecompressor().stream_reader(fin)
                while chunk := reader.read(_CHUNK):
                    h.update(chunk)
                    view = memoryview(chunk)
                    while view:  # each piece lands at its extent's offset: holes stay
                        if left == 0:
                            offset, left = next(regions, (offset, len(view)))
                        n = os.pwrite(fd, view[:left], offset)
                        view, offset, left = view[n:], offset + n, left - n
        except (FileNotFoundError, zstandard.ZstdError) as exc:
            raise SnapshotError(f"snapshot blob {digest} for {path!r} is missing or "
                                "corrupt") from exc
        if h.hexdigest() != digest:
            raise SnapshotError(f"snapshot blob {digest} for {path!r} is corrupt")
        os.ftruncate(fd, int(entry.get("s", 0)))
        os.fchown(fd, self.uid, self.uid)
        os.fchmod(fd, mode)
        for key, value in entry.get("x", {}).items():
            os.setxattr(fd, key, base64.b64decode(value))
        os.utime(fd, ns=(mtime, mtime))
        self.index[path] = ([_stat_key(os.fstat(fd)), digest] if extents is None
                            else [_stat_key(os.fstat(fd)), digest, extents])

    def finish(self) -> None:
        for fill, _ in self.filling:
            fill.result()  # the first file that failed fails the restore
        if self.pool is not None:
            self.pool.shutdown()
            self.pool, self.filling = None, []
        for path, mtime in reversed(self.dir_times):  # children first: they touch parents
            os.utime(self.dir_fds[path], ns=(mtime, mtime))

    def close(self) -> None:
        """Close every descriptor left (idempotent): a failed or abandoned restore's too."""
        if self.pool is not None:  # a failed restore: fills not started never close their fd
            self.pool.shutdown(wait=True, cancel_futures=True)
            for fill, fd in self.filling:
                if fill.cancelled():
                    os.close(fd)
            self.pool, self.filling = None, []
        self.deferred = []
        for fd in self.dir_fds.values():
            os.close(fd)
        self.dir_fds = {}
