"""Fetching an object store's blobs and pack objects into this host's cache (boxes/blobcache.py),
one fetch per object however many restores want it, each checked against its hash as it
arrives, so a damaged or truncated one never enters the cache; and a restore's source of file
content (boxes/unpacking.py's BlobSource) over them.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any, BinaryIO, cast

import zstandard

from boxes.blobcache import BlobCache
from boxes.errors import SnapshotError
from boxes.manifests import Entries
from boxes.objectclient import Objects
from boxes.packfiles import MAX_OBJECT, PACKS, Index, content, pack_key, read_index
from boxes.seen import Seen
from boxes.sweeps import blob_key

# Pack objects a restore holds in memory at once while it writes their files out.
_PACKS_HELD = 4


def _cache_name(name: str) -> str:
    """Where a blob (named by its digest) or a pack object (by its key) is in the cache."""
    if name.startswith(PACKS):
        return BlobCache.pack_name(name.removeprefix(PACKS))
    return BlobCache.blob_name(name)


class _Hasher:
    """Where a download's decompressed bytes go (zstandard's stream_writer writes them in
    pieces, so a blob that inflates hugely takes no memory): only into its hash."""

    def __init__(self) -> None:
        self.sha = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        return len(data)

    def flush(self) -> None:
        pass


class Fetcher:
    """Objects fetched into the cache by `pool`, `fetch_parallel` at a time. A blob or pack
    object is named as sweeps name them: a digest, or `packs/<sha256>`."""

    def __init__(self, objects: Objects, cache: BlobCache, seen: Seen,
                 pool: ThreadPoolExecutor) -> None:
        self.objects = objects
        self.cache = cache
        self.seen = seen
        self.pool = pool
        self._fetching: dict[str, Future[None]] = {}
        self._lock = threading.Lock()

    def download(self, name: str) -> None:
        """Fetch a blob or a pack object into the cache, checked against its hash."""
        temp = self.cache.temp()
        seen = time.time()
        try:
            if name.startswith(PACKS):
                temp.write_bytes(self._download_pack(name.removeprefix(PACKS)))
            else:
                self._download_blob(name, temp)
            self.cache.add(_cache_name(name), temp)
        finally:
            temp.unlink(missing_ok=True)
        self.seen.saw([name], seen)

    def _download_blob(self, digest: str, temp: Path) -> None:
        """Blob `digest` into `temp`, its content hashed as it arrives."""
        try:
            hasher = _Hasher()
            with open(temp, "wb") as f, zstandard.ZstdDecompressor().stream_writer(
                    cast(IO[bytes], hasher), closefd=False) as plain:
                def write(chunk: bytes) -> None:
                    f.write(chunk)
                    plain.write(chunk)

                try:
                    self.objects.get(blob_key(digest), write)
                except FileNotFoundError:
                    raise SnapshotError(f"snapshot blob {digest} is missing from the "
                                        "store") from None
        except zstandard.ZstdError as exc:
            raise SnapshotError(f"snapshot blob {digest} is corrupt in the store") from exc
        if hasher.sha.hexdigest() != digest:
            raise SnapshotError(f"snapshot blob {digest} is corrupt in the store")

    def _download_pack(self, sha: str) -> bytes:
        """Pack object `sha`, hashed as it arrives (never more than MAX_OBJECT bytes), its
        index read."""
        hasher = hashlib.sha256()
        chunks: list[bytes] = []
        size = 0

        def write(chunk: bytes) -> None:
            nonlocal size
            size += len(chunk)
            if size > MAX_OBJECT:
                raise SnapshotError(f"snapshot pack {sha} is corrupt in the store: too large")
            chunks.append(chunk)
            hasher.update(chunk)

        try:
            self.objects.get(pack_key(sha), write)
        except FileNotFoundError:
            raise SnapshotError(f"snapshot pack {sha} is missing from the store") from None
        if hasher.hexdigest() != sha:
            raise SnapshotError(f"snapshot pack {sha} is corrupt in the store")
        data = b"".join(chunks)
        read_index(data, sha)
        return data

    def fetch(self, name: str) -> Future[None]:
        """The object's fetch into the cache (done at once if it is cached): one per object."""
        with self._lock:
            fetching = self._fetching.get(name)
            if fetching is not None:
                return fetching
            if self.cache.has(_cache_name(name)):
                done: Future[None] = Future()
                done.set_result(None)
                return done
            fetching = self.pool.submit(self.download, name)
            self._fetching[name] = fetching

        def finished(_: Future[None]) -> None:
            with self._lock:
                self._fetching.pop(name, None)

        fetching.add_done_callback(finished)
        return fetching

    def read(self, name: str) -> bytes:
        """A pack object's bytes, from the cache (fetched first if needed)."""
        with self.open(name) as f:
            return f.read()

    def open(self, name: str) -> BinaryIO:
        """A cached object, fetched first if needed."""
        cached = _cache_name(name)
        with contextlib.suppress(FileNotFoundError):
            return self.cache.open(cached)  # a warm host's every object
        self.fetch(name).result()
        try:
            return self.cache.open(cached)
        except FileNotFoundError:  # evicted since: fetch it again
            self.download(name)
            return self.cache.open(cached)


class RestoreSource:
    """One restore's unpacking source: a file's blob of its own from the store, or its
    content from a pack object (checked against its hash before unpacking writes it), the
    last few pack objects read held in memory (a pack object's files come in the order the
    manifest lists them)."""

    def __init__(self, fetcher: Fetcher, entries: Entries) -> None:
        self.fetcher = fetcher
        self.packs: dict[str, str] = {}  # digest -> the pack object holding it
        for entry in entries:
            if entry.get("t") == "f" and "k" in entry:
                self.packs.setdefault(entry["h"], entry["k"][0])
        self._held: OrderedDict[str, tuple[bytes, Index]] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def name(entry: dict[str, Any]) -> str:
        """The object holding a manifest entry's content (by the name sweeps use)."""
        ref = entry.get("k")
        return pack_key(ref[0]) if ref is not None else str(entry["h"])

    def plain(self, digest: str) -> bytes | None:
        sha = self.packs.get(digest)
        if sha is None:
            return None
        data, index = self._pack(sha)
        return content(data, index, digest, sha)

    def open(self, digest: str) -> BinaryIO:
        return self.fetcher.open(digest)

    def _pack(self, sha: str) -> tuple[bytes, Index]:
        with self._lock:
            held = self._held.get(sha)
            if held is not None:
                self._held.move_to_end(sha)
                return held
        data = self.fetcher.read(pack_key(sha))
        held = (data, read_index(data, sha))
        with self._lock:
            self._held[sha] = held
            while len(self._held) > _PACKS_HELD:
                self._held.popitem(last=False)
        return held
