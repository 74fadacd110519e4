"""Packing: a box's upper layer read into manifest entries (boxes/manifests.py), its files'
content handed to a `BlobSink` (where each store engine keeps blobs).

Files whose inode, size, mtime and ctime match the layer's last index are not read again:
their digest comes from the index and the sink is told to `keep` the blob it already has.
Hard links stay links (one blob), and sparse files keep their holes: their blob holds the data
extents only, so a restore takes no more disk than the box had.

A pack reads the layer as it walks it, or packs a `Scan` taken earlier (of a running box,
while it was frozen, with the changed files' content copied aside: boxes/layercopy.py).
The index it makes also holds the layer's `signature`, under the key SIGNATURE, so that a
checkpoint can tell from one walk of stats that nothing changed since.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import os
import stat
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from boxes.manifests import Entries

CHUNK = 1 << 20

# path -> [stat key, sha256, extents (sparse files only, else absent or None), where the store
# keeps the content (the object store's pack object; absent for a blob of its own)]: what the
# last pack or restore saw, so the next pack can skip files that did not change; and
# SIGNATURE -> [the layer's signature] where the last pack could tell it.
LayerIndex = dict[str, list[Any]]
Extents = list[list[int]]  # [[offset, length], ...] of a sparse file's data
SIGNATURE = "/"  # no path of a layer: manifests hold relative paths only


def _tick_ns() -> int:
    """The resolution of the clock file times are taken from (a kernel tick: 1-10 ms)."""
    try:
        return int(time.clock_getres(5) * 1e9)  # CLOCK_REALTIME_COARSE (Linux)
    except OSError:
        return 10_000_000


# In a Scan of a box that runs on after it, a file changed this recently (ctime) may change
# again within the same tick and keep its stat key: it is not trusted to be unchanged next
# time (as git's "racy" index entries). A layer packed in place is of a box stopped or paused
# until the pack is over: its next change is ticks later.
RACY_NS = 2 * max(_tick_ns(), 1_000_000)


class BlobSink(Protocol):
    """Where a pack's blobs go. A blob is the zstd-compressed content of a file (of its data
    extents, for a sparse one), named by the sha256 of that content."""

    def put(self, digest: str, path: str, extents: Extents | None, size: int) -> None:
        """`path` (just hashed to `digest`; `size` bytes long) as a blob, unless the store has
        that blob."""

    def keep(self, digest: str, path: str, extents: Extents | None, size: int) -> None:
        """`path` did not change since the index named `digest` for it: the store had it."""


@dataclass
class Packed:
    entries: Entries = field(default_factory=list)
    index: LayerIndex = field(default_factory=dict)
    files: int = 0
    logical_bytes: int = 0


@dataclass(frozen=True)
class Found:
    """One entry of a layer as a walk saw it; its content is read from `path`."""

    rel: str
    path: str
    st: os.stat_result
    link: str | None = None  # a symlink's target
    xattrs: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Scan:
    """A layer as one walk saw it at `at_ns` (time.time_ns()), packed in place of the layer."""

    found: list[Found]
    at_ns: int


def stat_key(st: os.stat_result) -> str:
    return f"{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}"


def racy(st: os.stat_result, at_ns: int | None) -> bool:
    """Whether the entry changed too shortly before a scan at `at_ns` for its stat key to be
    trusted (never, for a layer packed in place: None)."""
    return at_ns is not None and st.st_ctime_ns >= at_ns - RACY_NS


def signature(entries: Iterable[tuple[str, os.stat_result]],
              at_ns: int | None) -> str | None:
    """A digest of every entry's name, mode and stat key, seen at `at_ns`: another walk finds
    the same only if nothing was written, made, removed, renamed, linked, chmod'ed or given an
    xattr since (each changes a name or a ctime, which no box can set). None if an entry
    changed too recently to tell."""
    lines = []
    for rel, st in entries:
        if racy(st, at_ns):
            return None
        lines.append(f"{rel}\0{st.st_mode}:{stat_key(st)}")
    return hashlib.sha256("\n".join(sorted(lines)).encode()).hexdigest()


def read_extents(path: str, extents: Extents | None) -> Iterator[bytes]:
    """The file's bytes, or only its data extents in order, in pieces."""
    with open(path, "rb", buffering=0) as f:
        if extents is None:
            while chunk := f.read(CHUNK):
                yield chunk
            return
        for offset, length in extents:
            while length > 0:
                chunk = os.pread(f.fileno(), min(length, CHUNK), offset)
                if not chunk:
                    return
                offset += len(chunk)
                length -= len(chunk)
                yield chunk


def hash_file(path: str, extents: Extents | None = None) -> str:
    h = hashlib.sha256()
    for chunk in read_extents(path, extents):
        h.update(chunk)
    return h.hexdigest()


def pack_layer(layer: Path | Scan, index: LayerIndex, sink: BlobSink) -> Packed:
    """Every entry of `layer` (parents first), its new index, and its blobs handed to `sink`."""
    packed = Packed()
    links: dict[tuple[int, int], str] = {}
    found: Iterable[Found] = _walk(layer) if isinstance(layer, Path) else layer.found
    at_ns = None if isinstance(layer, Path) else layer.at_ns
    seen = []
    for item in found:
        seen.append((item.rel, item.st))
        entry = _entry(item, index, packed, sink, links, at_ns)
        if entry is not None:
            packed.entries.append(entry)
    layer_signature = signature(seen, at_ns)
    if layer_signature is not None:
        packed.index[SIGNATURE] = [layer_signature]
    return packed


def _walk(layer: Path) -> Iterator[Found]:
    """Everything in the layer, parents first."""
    stack = [""]
    while stack:
        rel_dir = stack.pop()
        abs_dir = os.path.join(layer, rel_dir) if rel_dir else str(layer)
        with os.scandir(abs_dir) as it:
            entries = sorted(it, key=lambda e: e.name)
        for entry in entries:
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            st = entry.stat(follow_symlinks=False)
            link = os.readlink(entry.path) if stat.S_ISLNK(st.st_mode) else None
            yield Found(rel, entry.path, st, link, user_xattrs(entry.path))
            if stat.S_ISDIR(st.st_mode):
                stack.append(rel)


def _entry(found: Found, index: LayerIndex, packed: Packed, sink: BlobSink,
           links: dict[tuple[int, int], str], at_ns: int | None) -> dict[str, Any] | None:
    rel, path, st = found.rel, found.path, found.st
    mode = st.st_mode
    entry: dict[str, Any] = {"p": rel, "m": stat.S_IMODE(mode), "mt": st.st_mtime_ns}
    if stat.S_ISREG(mode):
        first = links.get((st.st_dev, st.st_ino)) if st.st_nlink > 1 else None
        if first is not None:  # another name of a file already packed: a hard link
            packed.files += 1
            return {"p": rel, "t": "h", "l": first}
        if st.st_nlink > 1:
            links[(st.st_dev, st.st_ino)] = rel
        entry.update(_file(rel, path, st, index, packed, sink, at_ns))
    elif stat.S_ISDIR(mode):
        entry["t"] = "d"
    elif stat.S_ISLNK(mode):
        entry.update(t="l", l=found.link)
    elif stat.S_ISCHR(mode) and st.st_rdev == 0:
        entry["t"] = "w"  # an overlay whiteout: a base file this box deleted
    elif stat.S_ISFIFO(mode):
        entry["t"] = "p"
    else:
        return None  # sockets and devices are not part of a box's state
    if found.xattrs:
        entry["x"] = found.xattrs
    packed.files += 1
    return entry


def _file(rel: str, path: str, st: os.stat_result, index: LayerIndex, packed: Packed,
          sink: BlobSink, at_ns: int | None) -> dict[str, Any]:
    key = stat_key(st)
    previous = index.get(rel)
    if previous is not None and previous[0] == key:
        digest = previous[1]
        extents = previous[2] if len(previous) > 2 else None
        sink.keep(digest, path, extents, st.st_size)
    else:
        extents = None
        if st.st_blocks * 512 < st.st_size:  # holes: keep them
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
            try:
                extents = _extents(fd, st.st_size)
            finally:
                os.close(fd)
        digest = hash_file(path, extents)
        sink.put(digest, path, extents, st.st_size)
    if racy(st, at_ns):
        key = ""  # read again next time
    packed.index[rel] = [key, digest] if extents is None else [key, digest, extents]
    packed.logical_bytes += st.st_size
    entry: dict[str, Any] = {"t": "f", "s": st.st_size, "h": digest}
    if extents is not None:
        entry["e"] = extents
    return entry


def user_xattrs(path: str) -> dict[str, str]:
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
