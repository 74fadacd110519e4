"""Pack objects: the small files of a snapshot in an object store (boxes/objectstore.py), their
blobs laid end to end in one object (or a few), so that a host with a cold cache fetches them
in one request per pack object instead of one per file.

    packs/<sha256 of the whole object>
        segment*   one file's content as a blob is stored: zstd-compressed (its data extents, for
                   a sparse file), in the order the pack read the files
        index      per segment: its content's sha256 (32 bytes), offset (u64), length (u32)
        footer     the number of segments (u64), then b"BURROWP1"          (little-endian)

Named by its own hash, a pack object is immutable, and every upload of a name is the same
bytes (re-uploading one a sweep took cannot change what another manifest reads there). A host
checks the whole object against its name, and every segment against the hash its index gives,
before the object enters its cache; a file's content is hashed again as it is written out
(boxes/unpacking.py). A damaged pack object fails the restore, never enters the cache, and
writes nothing into a layer. Which files go in a pack, and which earlier pack objects a
snapshot keeps naming, is boxes/objectpack.py's.
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, cast

import zstandard

from boxes.errors import SnapshotError
from boxes.packing import Extents, read_extents

PACKS = "packs/"
MAGIC = b"BURROWP1"
_ENTRY = struct.Struct("<32sQI")
_FOOTER = struct.Struct("<Q8s")
# Files smaller than this go into pack objects; larger ones stay blobs of their own (shared by
# every box that has them). It is unpacking's LAZY_MIN: a pack holds what a wake writes before
# the box starts, and a blob of this size costs a request no more than its own transfer does
# (bench/store.py measures a GET by size).
SMALL_MAX = 256 << 10
# A pack object is sealed (and uploaded, beside the rest of the pack) once it holds this much:
# a large layer of small files becomes several objects, fetched in parallel.
PART_MAX = 4 << 20
# The most segments one pack object may name (a crafted index is refused before it is used).
MAX_SEGMENTS = PART_MAX // 16


def pack_key(sha: str) -> str:
    """The pack object's key under the store's prefix, which is also its name where the names
    of blobs (their digests) and pack objects mix: sweeps' flags, what a host has seen."""
    return PACKS + sha


@dataclass
class Sealed:
    """A finished pack object, in a temp file, ready to upload."""
    sha: str
    path: Path
    logical_bytes: int  # of the files whose content it holds
    digests: list[str] = field(default_factory=list)


class PackWriter:
    """Builds pack objects from files, in temp files from `temp()`; each one sealed (at
    PART_MAX, and by `close`) is handed to `sealed`, which owns its temp file from then on."""

    def __init__(self, temp: Callable[[], Path], sealed: Callable[[Sealed], None]) -> None:
        self._temp = temp
        self._sealed = sealed
        self._compressor = zstandard.ZstdCompressor(level=3)
        self._file: io.BufferedWriter | None = None
        self._path: Path | None = None
        self._sha = hashlib.sha256()
        self._index: list[tuple[str, int, int]] = []
        self._offset = 0
        self._logical = 0
        self.located: dict[str, str] = {}  # digest -> the pack object holding it (once sealed)
        self._pending: list[str] = []  # digests in the part being written
        self.written = 0  # bytes of every sealed pack object

    def __contains__(self, digest: str) -> bool:
        return digest in self.located or digest in self._pending

    def add(self, digest: str, path: str, extents: Extents | None, size: int) -> None:
        """The file's content as a segment; SnapshotError if it is not `digest` any more."""
        if digest in self:
            return
        data = b"".join(read_extents(path, extents))
        if hashlib.sha256(data).hexdigest() != digest:
            raise SnapshotError(f"{path!r} changed while it was packed")
        blob = self._compressor.compress(data)
        if self._file is None:
            self._path = self._temp()
            self._file = open(self._path, "wb")  # noqa: SIM115 (closed by _seal or abort)
        self._file.write(blob)
        self._sha.update(blob)
        self._index.append((digest, self._offset, len(blob)))
        self._pending.append(digest)
        self._offset += len(blob)
        self._logical += size
        if self._offset >= PART_MAX:
            self._seal()

    def forget(self, digests: list[str]) -> None:
        """These are in no sealed object any more (it was lost): `add` them again."""
        for digest in digests:
            self.located.pop(digest, None)

    def close(self) -> None:
        """Seal the object being written, if any."""
        if self._file is not None:
            self._seal()

    def abort(self) -> None:
        """Drop the object being written (a pack that failed)."""
        if self._file is not None and self._path is not None:
            self._file.close()
            self._path.unlink(missing_ok=True)
        self._file = None

    def _seal(self) -> None:
        assert self._file is not None and self._path is not None
        tail = b"".join(_ENTRY.pack(bytes.fromhex(d), off, n) for d, off, n in self._index)
        tail += _FOOTER.pack(len(self._index), MAGIC)
        self._file.write(tail)
        self._sha.update(tail)
        self._file.close()
        sealed = Sealed(self._sha.hexdigest(), self._path, self._logical, self._pending)
        self.written += self._offset + len(tail)
        for digest in self._pending:
            self.located[digest] = sealed.sha
        self._file, self._path = None, None
        self._sha = hashlib.sha256()
        self._index, self._pending, self._offset, self._logical = [], [], 0, 0
        self._sealed(sealed)


Index = dict[str, tuple[int, int]]  # digest -> (offset, length) of its segment


def read_index(f: io.BufferedReader | io.BufferedRandom, size: int, sha: str) -> Index:
    """A pack object's index, from its open file of `size` bytes; SnapshotError if it is not
    a well-formed pack object."""
    def bad(why: str) -> SnapshotError:
        return SnapshotError(f"snapshot pack {sha} is corrupt in the store: {why}")

    if size < _FOOTER.size:
        raise bad("too short")
    count, magic = _FOOTER.unpack(os.pread(f.fileno(), _FOOTER.size, size - _FOOTER.size))
    if magic != MAGIC:
        raise bad("no pack footer")
    start = size - _FOOTER.size - count * _ENTRY.size
    if count > MAX_SEGMENTS or start < 0:
        raise bad("bad segment count")
    raw = os.pread(f.fileno(), count * _ENTRY.size, start)
    index: Index = {}
    for n in range(count):
        digest, offset, length = _ENTRY.unpack_from(raw, n * _ENTRY.size)
        if offset + length > start or length > SMALL_MAX + (64 << 10):
            raise bad("a segment lies outside the object")
        index.setdefault(digest.hex(), (offset, length))
    return index


def check_segments(f: io.BufferedReader | io.BufferedRandom, index: Index, sha: str) -> None:
    """SnapshotError unless every segment of the pack object is the content its index says
    (each decompressed into its hash alone, never past SMALL_MAX bytes)."""
    for digest, (offset, length) in index.items():
        hasher = _Hasher(SMALL_MAX)
        try:
            with zstandard.ZstdDecompressor().stream_writer(
                    cast(IO[bytes], hasher), closefd=False) as plain:
                plain.write(os.pread(f.fileno(), length, offset))
        except (zstandard.ZstdError, _TooLarge) as exc:
            raise SnapshotError(f"snapshot pack {sha} is corrupt in the store") from exc
        if hasher.sha.hexdigest() != digest:
            raise SnapshotError(f"snapshot pack {sha} is corrupt in the store")


def check_object(path: Path, sha: str) -> None:
    """SnapshotError unless the file is the pack object `sha` names, whole and well-formed,
    its every segment what its index says."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
        if h.hexdigest() != sha:
            raise SnapshotError(f"snapshot pack {sha} is corrupt in the store")
        check_segments(f, read_index(f, os.fstat(f.fileno()).st_size, sha), sha)


class _TooLarge(Exception):
    pass


class _Hasher:
    """Where a segment's decompressed bytes go: only into its hash, at most `limit` of them."""

    def __init__(self, limit: int) -> None:
        self.sha = hashlib.sha256()
        self.left = limit

    def write(self, data: bytes) -> int:
        self.left -= len(data)
        if self.left < 0:
            raise _TooLarge
        self.sha.update(data)
        return len(data)

    def flush(self) -> None:
        pass
