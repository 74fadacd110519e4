"""Unpacking: manifest entries (boxes/manifests.py, validated first) written into an empty
layer, the files' content read from a `BlobSource` (where a store engine keeps its blobs).

Entries are written through directory descriptors and never follow a link. Every blob is
hashed as it is written out, so a damaged one fails the restore (a source that hands over a
small file's content in memory has checked it before). A restore can leave its large files
for later: every name is in the layer, those files at their size, and `PendingRestore.finish`
writes their content from threads of low priority and syncs the layer, so a box can start
(and its agent answer) while a 50 MB layer is still being written.
The caller keeps everything that could read those files waiting until `finish` returns, and
never packs the layer before.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import hashlib
import os
import stat
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import zstandard

from boxes.errors import SnapshotError
from boxes.manifests import Entries
from boxes.packing import CHUNK, LayerIndex, stat_key

# Files this large or larger are written by a pool of threads, beside the others.
PARALLEL_MIN = 256 << 10
RESTORE_THREADS = min(4, os.cpu_count() or 1)
# begin_restore: files this large or larger are written after it returns (PendingRestore).
LAZY_MIN = PARALLEL_MIN
# The nice value of the threads that write them: a box starting beside them comes first.
LAZY_NICE = 10
_libc = ctypes.CDLL(None, use_errno=True)


class BlobSource(Protocol):
    def open(self, digest: str) -> BinaryIO:
        """The blob's bytes as stored (zstd); FileNotFoundError if the store lacks it."""

    def plain(self, digest: str) -> bytes | None:
        """The content itself, already checked against `digest`, where the source holds it
        in memory (a small file of an object store's pack); else None: `open` it."""


def syncfs(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if _libc.syncfs(fd) != 0:
            os.sync()
    finally:
        os.close(fd)


def begin(entries: Entries, layer: Path, uid: int, defer: Callable[[str, int], bool],
          source: BlobSource) -> PendingRestore:
    """Every entry in `layer` (owned by `uid`), except the content of the files for which
    `defer(path, size)` is true (and of their hard links): those are created at their size
    and written by the returned PendingRestore's `finish`. `entries` must be validated."""
    restorer = _Restorer(source, layer, uid, defer)
    try:
        for entry in entries:
            restorer.apply(entry)
        restorer.finish()
    except BaseException:
        restorer.close()
        raise
    return PendingRestore(restorer, layer)


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
        syncfs(self._layer)
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

    def __init__(self, source: BlobSource, layer: Path, uid: int,
                 defer: Callable[[str, int], bool]) -> None:
        self.source = source
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
        extents = entry.get("e")
        regions = iter(extents) if extents is not None else iter([[0, entry.get("s", 0)]])
        offset, left = 0, 0

        def put(chunk: bytes) -> None:
            nonlocal offset, left
            view = memoryview(chunk)
            while view:  # each piece lands at its extent's offset: holes stay
                if left == 0:
                    offset, left = next(regions, (offset, len(view)))
                n = os.pwrite(fd, view[:left], offset)
                view, offset, left = view[n:], offset + n, left - n

        checked = self.source.plain(digest)
        if checked is not None:
            put(checked)
        else:
            h = hashlib.sha256()
            try:
                with self.source.open(digest) as fin:
                    reader = zstandard.ZstdDecompressor().stream_reader(fin)
                    while chunk := reader.read(CHUNK):
                        h.update(chunk)
                        put(chunk)
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
        key = stat_key(os.fstat(fd))
        if "k" in entry:  # in a pack object: the next pack may name it again
            self.index[path] = [key, digest, extents, entry["k"]]
        else:
            self.index[path] = [key, digest] if extents is None else [key, digest, extents]

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
