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
checks a pack object it fetches against its name (hashed as it arrives) and reads its index
before the object enters its cache, and checks each file's content against the file's hash
before it is written into a layer. A damaged pack object fails the restore, never enters the
cache, and writes nothing into a layer; a crafted one (named by its true hash, its index
lying) writes nothing it does not hold. Which files go in a pack, and which earlier pack
objects a snapshot keeps naming, is boxes/objectpack.py's.
"""

from __future__ import annotations

import hashlib
import io
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

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
# A pack object is sealed (and uploaded, beside the rest of the pack) once it holds this much
# (segments and index): a large layer of small files becomes several objects, fetched in
# parallel.
PART_MAX = 4 << 20
# Bounds a crafted pack object is refused by, before it is used or cached: its size, its
# segments' number and length (a file's blob is at most a little larger than the file).
MAX_SEGMENT = SMALL_MAX + (64 << 10)
MAX_OBJECT = PART_MAX + MAX_SEGMENT + (1 << 20)
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
    members: int  # file contents (segments) it holds


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
        self._pending: list[str] = []  # digests in the object being written

    def __contains__(self, digest: str) -> bool:
        return digest in self.located or digest in self._pending

    def add(self, digest: str, path: str, extents: Extents | None, size: int) -> None:
        """The file's content as a segment; SnapshotError if it is not `digest` any more."""
        if digest in self:
            return
        data = b"".join(read_extents(path, extents))
        if hashlib.sha256(data).hexdigest() != digest:
            raise SnapshotError(f"{path!r} changed while it was packed")
        self.add_content(digest, data, size)

    def add_content(self, digest: str, data: bytes, size: int) -> None:
        """A file content already checked against `digest` (read from an earlier object)."""
        if digest in self:
            return
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
        if self._offset + len(self._index) * _ENTRY.size >= PART_MAX:
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
        sealed = Sealed(self._sha.hexdigest(), self._path, self._logical, len(self._index))
        for digest in self._pending:
            self.located[digest] = sealed.sha
        self._file, self._path = None, None
        self._sha = hashlib.sha256()
        self._index, self._pending, self._offset, self._logical = [], [], 0, 0
        self._sealed(sealed)


Index = dict[str, tuple[int, int]]  # digest -> (offset, length) of its segment


def read_index(data: bytes, sha: str) -> Index:
    """The index of pack object `sha`, whole in `data`; SnapshotError if it is not a
    well-formed pack object."""
    def bad(why: str) -> SnapshotError:
        return SnapshotError(f"snapshot pack {sha} is corrupt in the store: {why}")

    size = len(data)
    if size < _FOOTER.size or size > MAX_OBJECT:
        raise bad("bad size")
    count, magic = _FOOTER.unpack_from(data, size - _FOOTER.size)
    if magic != MAGIC:
        raise bad("no pack footer")
    start = size - _FOOTER.size - count * _ENTRY.size
    if count > MAX_SEGMENTS or start < 0:
        raise bad("bad segment count")
    index: Index = {}
    for n in range(count):
        digest, offset, length = _ENTRY.unpack_from(data, start + n * _ENTRY.size)
        if offset + length > start or length > MAX_SEGMENT:
            raise bad("a segment lies outside the object")
        index.setdefault(digest.hex(), (offset, length))
    return index


def content(data: bytes, index: Index, digest: str, sha: str) -> bytes:
    """The file content `digest` from pack object `sha` (whole in `data`), checked against
    its hash; SnapshotError if the object lacks it or holds something else."""
    where = index.get(digest)
    if where is None:
        raise SnapshotError(f"snapshot pack {sha} lacks the file content {digest}")
    offset, length = where
    plain = b""
    try:
        reader = zstandard.ZstdDecompressor().stream_reader(data[offset:offset + length])
        plain = reader.read(SMALL_MAX + 1)
    except zstandard.ZstdError:
        pass
    if len(plain) > SMALL_MAX or hashlib.sha256(plain).hexdigest() != digest:
        raise SnapshotError(f"snapshot pack {sha} is corrupt in the store: it does not hold "
                            f"the file content {digest}")
    return plain


def check_object(path: Path, sha: str) -> None:
    """SnapshotError unless the file is the pack object `sha` names, whole and well-formed,
    its every segment what its index says."""
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != sha:
        raise SnapshotError(f"snapshot pack {sha} is corrupt in the store")
    index = read_index(data, sha)
    for digest in index:
        content(data, index, digest, sha)
