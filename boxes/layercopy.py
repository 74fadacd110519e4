"""A consistent copy of a running box's layer (`copy_layer`), for a snapshot taken while the box
runs: a checkpoint (boxes/checkpoints.py), a fork.

Every entry of the layer as it was at one instant, with the content of the files changed since
the layer's index copied aside. The box's cgroup is frozen (the freezer, as a pause) only
while the layer is listed and the files changed since the walk before are copied: every write
the box made is wholly before that instant or after it, as in a crash of the whole box, which
SQLite and its WAL survive. Before the freeze, the files that changed and have been still for a
moment are copied while the box runs, so that the freeze copies only what the box wrote in the
last moments; a freeze that finds more than a few MB left thaws the box at once and lets the
copying ahead catch up (three freezes at most: the last copies whatever is left). The copies
are real copies (a reflink where the filesystems allow one), never hard links: the box writes
the same inodes once it thaws.

While the box runs it may rename, replace and link anything in its layer: the layer is read
beneath directory descriptors, never through a link, and a copy counts only if the file's stat
key is the same before and after it and at the freeze.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import stat
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from boxes.disk import copy_sparse
from boxes.errors import SnapshotError
from boxes.models import BoxRecord, BoxState
from boxes.packing import (
    SIGNATURE,
    Found,
    LayerIndex,
    Scan,
    racy,
    signature,
    stat_key,
    user_xattrs,
)
from boxes.sandbox import SandboxBackend

_FICLONE = 0x40049409  # ioctl: share the source's blocks (btrfs, XFS; not ext4)
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# Nice values relative to the process's: the copying ahead and the pack below it (its boxes'
# requests first), the copying under the freeze above it (the frozen box waits for nothing else).
BELOW = 10
_ABOVE = -5
# Walks that copy ahead of the freeze: another one while the last copied this much, so that
# the freeze copies only what the box wrote in the last moments.
_AHEAD_PASSES = 3
_AHEAD_AGAIN = 256 << 10
# A freeze that finds more than this left to copy thaws the box at once and copies ahead again
# (what it did copy counts), up to _FREEZES times; the last copies whatever is left.
_FROZEN_BYTES = 4 << 20
_FREEZES = 3


@dataclass(frozen=True)
class LayerCopy:
    """A running box's layer as it was at one instant (`scan`: the changed files' content in
    the staging directory), the index it was compared with, and what taking it cost."""

    scan: Scan
    index: LayerIndex
    frozen_s: float
    copied_bytes: int


async def copy_layer(backend: SandboxBackend, box: BoxRecord, upper: Path, index: LayerIndex,
                     staging: Path, phase: Callable[[str], None] | None = None,
                     ) -> LayerCopy | None:
    """A consistent copy of a running or paused box's layer (`upper`), the files changed since
    `index` copied into `staging` (an empty directory of root's); None if nothing changed
    since the pack that made `index`. A paused box stays paused. The caller holds the box's
    lock: nothing may stop, pause or unmount it meanwhile. `phase` is told "freezing",
    "frozen" and "thawed".

    It runs to its end even if its caller is cancelled meanwhile (then the cancellation waits
    for it): a box is never left frozen by a freeze that lands after its thaw, and its layer
    is not read once the caller has let its lock go."""
    task = asyncio.ensure_future(_copy_layer(backend, box, upper, index, staging, phase))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait([task])
        if not task.cancelled():
            task.exception()  # seen: what goes on is the caller's cancellation
        raise


async def _copy_layer(backend: SandboxBackend, box: BoxRecord, upper: Path, index: LayerIndex,
                      staging: Path, phase: Callable[[str], None] | None) -> LayerCopy | None:
    copier = _Copier(upper, index, staging)
    before = index.get(SIGNATURE, [None])[0]
    paused = box.state == BoxState.PAUSED  # then it is copied as it is, in one go
    copied = 0
    if not paused:  # copy what changed while it runs: under the freeze, what changes again
        now, copied = await asyncio.to_thread(copier.ahead)
        if now is not None and now == before:
            return None
    frozen_s = 0.0
    scan: Scan | None = None
    for attempt in range(1, _FREEZES + 1):
        for _ in range(_AHEAD_PASSES - 1):
            if paused or copied < _AHEAD_AGAIN:
                break
            _, copied = await asyncio.to_thread(copier.ahead)
        budget = None if paused or attempt == _FREEZES else _FROZEN_BYTES
        started = time.perf_counter()
        scan = await _frozen_copy(backend, box, copier, paused, budget, phase)
        frozen_s += time.perf_counter() - started
        if scan is not None:
            break
        copied = _AHEAD_AGAIN  # too much was left: copy ahead again first
    assert scan is not None  # the last attempt has no budget
    after = signature(((f.rel, f.st) for f in scan.found), scan.at_ns)
    if after is not None and after == before:
        return None
    return LayerCopy(scan, index, frozen_s, copier.copied_bytes)


async def _frozen_copy(backend: SandboxBackend, box: BoxRecord, copier: _Copier, paused: bool,
                       budget: int | None, phase: Callable[[str], None] | None) -> Scan | None:
    """The layer copied with the box frozen (a paused one as it is); None if more than
    `budget` bytes were left to copy."""
    if phase is not None:
        phase("freezing")
    try:
        if not paused:
            await backend.pause(box)
        if phase is not None:
            phase("frozen")
        return await asyncio.to_thread(copier.copy, budget)
    finally:
        if not paused:
            await backend.resume(box)
        if phase is not None:
            phase("thawed")


class _Copier:
    """Copies the files of a layer that changed since its index into a staging directory:
    while the box runs (`ahead`), those that have been still for a moment; then under the
    freeze (`copy`), those that changed since, listing every entry."""

    def __init__(self, upper: Path, index: LayerIndex, staging: Path) -> None:
        self.upper = upper
        self.index = index
        self.staging = staging
        # What the pack of an unchanged file is given as its path: nothing is there, so a
        # store that lacks its blob fails the pack rather than read the running layer.
        self.absent = str(staging / "absent")
        self.copied_bytes = 0
        self._ahead: dict[str, tuple[str, str]] = {}  # rel -> (stat key, its copy)
        # rel -> (mode and stat key, link target, xattrs) as the walk ahead saw them
        self._seen: dict[str, tuple[str, str | None, dict[str, str]]] = {}
        self._copies = 0
        self._clone = True

    def _changed(self, rel: str, st: os.stat_result) -> bool:
        previous = self.index.get(rel)
        return previous is None or previous[0] != stat_key(st)

    def ahead(self) -> tuple[str | None, int]:
        """One walk while the box runs: the layer's signature now (None: too recent to tell),
        and the bytes copied of the changed files that have been still for a moment; every
        entry's link and xattrs noted."""
        at_ns = time.time_ns()
        before = self.copied_bytes
        seen = []
        with reniced(BELOW):
            for rel, dir_fd, name, st in _walk_beneath(self.upper, running=True):
                seen.append((rel, st))
                with contextlib.suppress(OSError):  # changed under the walk: taken frozen
                    self._note(rel, dir_fd, name, st)
        return signature(seen, at_ns), self.copied_bytes - before

    def _note(self, rel: str, dir_fd: int, name: str, st: os.stat_result) -> None:
        seen = self._seen.get(rel)
        if seen is None or seen[0] != _key(st):
            self._seen[rel] = (_key(st), *_details(dir_fd, name, st))
        ahead = self._ahead.get(rel)
        if (not stat.S_ISREG(st.st_mode) or not self._changed(rel, st)
                or (ahead is not None and ahead[0] == stat_key(st))
                or racy(st, time.time_ns())):  # a write now might keep its stat key
            return
        copied = self._copy(dir_fd, name, st)
        if copied is not None:
            self._keep(rel, st, copied)

    def _keep(self, rel: str, st: os.stat_result, copied: str) -> None:
        """`copied` is the content of `rel` while its stat is `st`."""
        older = self._ahead.get(rel)
        if older is not None:
            os.unlink(older[1])
        self._ahead[rel] = (stat_key(st), copied)

    def copy(self, budget: int | None) -> Scan | None:
        """Every entry of the layer, the changed files' content staged (the box is frozen);
        None if more than `budget` bytes were left to copy (what was copied counts later)."""
        with reniced(_ABOVE):
            return self._copy_frozen(budget)

    def _copy_frozen(self, budget: int | None) -> Scan | None:
        at_ns = time.time_ns()
        found = []
        linked: set[tuple[int, int]] = set()
        for rel, dir_fd, name, st in _walk_beneath(self.upper, running=False):
            seen = self._seen.get(rel)
            link, xattrs = seen[1:] if seen and seen[0] == _key(st) else _details(
                dir_fd, name, st)
            path = self.absent
            if stat.S_ISREG(st.st_mode) and _first_name(st, linked) and self._changed(rel, st):
                ahead = self._ahead.get(rel)
                if ahead is None or ahead[0] != stat_key(st):
                    if budget is not None and (budget := budget - st.st_size) < 0:
                        return None
                    copied = self._copy(dir_fd, name, st)
                    if copied is None:
                        raise SnapshotError(f"{rel!r} changed while its box was frozen")
                    self._keep(rel, st, copied)
                path = self._ahead[rel][1]
            found.append(Found(rel, path, st, link, xattrs))
        return Scan(found, at_ns)

    def _copy(self, dir_fd: int, name: str, st: os.stat_result) -> str | None:
        """A copy of the file in staging, or None if it is not the file `st` describes (it
        changed before or while it was copied: only a running box's can)."""
        # No link followed, and a FIFO put in its place opens without waiting for a writer.
        src = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                      dir_fd=dir_fd)
        try:
            if stat_key(os.fstat(src)) != stat_key(st):
                return None
            self._copies += 1
            target = self.staging / str(self._copies)
            dst = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                self._clone_or_copy(src, dst, st.st_size)
            finally:
                os.close(dst)
            if stat_key(os.fstat(src)) != stat_key(st):
                os.unlink(target)
                return None
        finally:
            os.close(src)
        self.copied_bytes += st.st_size
        return str(target)

    def _clone_or_copy(self, src: int, dst: int, size: int) -> None:
        if self._clone:
            try:
                fcntl.ioctl(dst, _FICLONE, src)
                return
            except OSError:
                self._clone = False  # these filesystems cannot share blocks: copy from now on
        copy_sparse(src, dst, size)


def _key(st: os.stat_result) -> str:
    return f"{st.st_mode}:{stat_key(st)}"


def _details(dir_fd: int, name: str, st: os.stat_result) -> tuple[str | None, dict[str, str]]:
    """The entry's link target (a symlink's) and user xattrs, read beneath its directory's
    descriptor without following it."""
    link = os.readlink(name, dir_fd=dir_fd) if stat.S_ISLNK(st.st_mode) else None
    return link, user_xattrs(f"/proc/self/fd/{dir_fd}/{name}")


def _first_name(st: os.stat_result, linked: set[tuple[int, int]]) -> bool:
    """False for a hard link's later names: the pack reads the content of the first only."""
    if st.st_nlink < 2:
        return True
    inode = (st.st_dev, st.st_ino)
    if inode in linked:
        return False
    linked.add(inode)
    return True


def _walk_beneath(root: Path, running: bool) -> Iterator[tuple[str, int, str, os.stat_result]]:
    """(relative path, its directory's descriptor, its name, its lstat) for everything under
    `root`, parents first. Each directory is opened by name beneath its parent's descriptor
    and never through a link, so a running box that swaps a directory for a link sends the
    walk nowhere else. An entry gone or replaced meanwhile is left out while the box is
    `running`; in a frozen box nothing can be, and an entry not read fails the walk."""
    stack: list[tuple[str, int, list[os.DirEntry[str]]]] = []
    try:
        _enter(stack, "", os.open(root, _DIR))
        while stack:
            rel_dir, dir_fd, listing = stack[-1]
            if not listing:
                os.close(dir_fd)
                stack.pop()
                continue
            entry = listing.pop()
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                if not running:
                    raise
                continue
            yield rel, dir_fd, entry.name, st
            if stat.S_ISDIR(st.st_mode):
                try:
                    child = os.open(entry.name, _DIR, dir_fd=dir_fd)
                except OSError:  # replaced by something else meanwhile
                    if not running:
                        raise
                    continue
                _enter(stack, rel, child)
    finally:
        for _, dir_fd, _ in stack:
            os.close(dir_fd)


def _enter(stack: list[tuple[str, int, list[os.DirEntry[str]]]], rel: str, dir_fd: int) -> None:
    """Push the directory open at `dir_fd` with its entries, the first by name last."""
    try:
        with os.scandir(dir_fd) as it:
            listing = sorted(it, key=lambda e: e.name, reverse=True)
    except BaseException:
        os.close(dir_fd)
        raise
    stack.append((rel, dir_fd, listing))


@contextlib.contextmanager
def reniced(by: int) -> Iterator[None]:
    """This thread's nice value `by` higher (lower priority) meanwhile (Linux nice values are
    per thread), its own again after (it is a pool's). Raising a priority needs root."""
    tid = threading.get_native_id()
    before = os.getpriority(os.PRIO_PROCESS, tid)
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, tid, min(max(before + by, -20), 19))
    try:
        yield
    finally:
        with contextlib.suppress(OSError):  # lowering it again needs CAP_SYS_NICE (root)
            os.setpriority(os.PRIO_PROCESS, tid, before)
