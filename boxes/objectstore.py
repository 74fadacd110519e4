"""The snapshot store in an S3-compatible bucket (`BURROW_STORE_URL=s3://bucket/prefix`), shared
by every host, with this host's cache of it (boxes/blobcache.py).

Under the prefix:
    blobs/<sha256>                 a file of 256 KiB or more, zstd-compressed (as the local
                                   store's blobs), shared by every snapshot that has it
    packs/<sha256>                 the smaller files of a snapshot, end to end (packfiles.py)
    snapshots/<id>.manifest        the snapshot's entries (boxes/manifests.py)
    snapshots/<id>.json            its record, written LAST: its existence is the commit
    gc/sweeps/<id>[.done]          garbage collections, and what each may delete (sweeps.py)

A pack (boxes/objectpack.py) writes the small files into new pack objects (or names the earlier
pack objects of the box that still hold them), uploads the large files' blobs the bucket lacks
(in parallel, after one HEAD each), writes the manifest, settles with any garbage collection
under way (boxes/sweeps.py says how an object it reuses is kept from a sweep), then writes the
record. A restore reads the record and the manifest (at once), then the pack objects and the
blobs from the cache; a cold host fetches the missing ones, `fetch_parallel` at a time, each
checked against its hash as it arrives (a damaged or truncated one never enters the cache: the
restore fails), and the large files a wake leaves for later are fetched while the box starts.
A cold wake of a layer of small files is then three requests, not one per file. Packing and
restoring are the local store's own code (packing.py, unpacking.py), so a restore keeps all
its safety: no link followed, no write outside the layer, every file hashed as it is written,
holes, hard links, xattrs, whiteouts. Snapshots written before pack objects (format 1, every
file a blob) restore as they always did.

A host remembers for half a day which blobs and pack objects it saw in the bucket (uploaded,
found, fetched, or named by a manifest it committed), in a log beside its cache (boxes/seen.py),
so a freeze of an unchanged file asks nothing, after a restart too.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import IO, BinaryIO, cast

import zstandard

from boxes import manifests
from boxes.blobcache import BlobCache
from boxes.errors import BoxError, SnapshotError, SnapshotNotFoundError, StoreUnavailableError
from boxes.manifests import Entries
from boxes.models import SnapshotRecord
from boxes.objectclient import Objects
from boxes.objectpack import PackSink
from boxes.packfiles import PACKS, SMALL_MAX, check_segments, pack_key, read_index
from boxes.packing import Extents, LayerIndex, pack_layer, read_extents
from boxes.seen import Seen
from boxes.snapshots import (
    STATS_TTL_S,
    PackResult,
    PendingRestore,
    StoreStats,
    check_id,
    new_record,
    new_snapshot_id,
)
from boxes.sweeps import BLOBS, SNAPSHOTS, Sweeper, Sweeps, SweepTimes, blob_key, object_key
from boxes.unpacking import begin

# Pack objects a restore holds in memory at once while it writes their files out.
_PACKS_HELD = 4
# How often a pack writes its manifest again because a pack object it named was taken.
_REPACKS = 3


def _manifest_key(snapshot_id: str) -> str:
    return f"{SNAPSHOTS}{snapshot_id}.manifest"


def _record_key(snapshot_id: str) -> str:
    return f"{SNAPSHOTS}{snapshot_id}.json"


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


class ObjectSnapshotStore:
    """`small_max`: files below it go into pack objects; 0 writes every file as a blob of its
    own, as snapshots were written before pack objects (bench/store.py compares the two)."""

    def __init__(self, objects: Objects, cache: BlobCache, *, fetch_parallel: int = 8,
                 times: SweepTimes | None = None, small_max: int = SMALL_MAX) -> None:
        self.objects = objects
        self.cache = cache
        self.times = times or SweepTimes()
        self.small_max = small_max
        self.pool = ThreadPoolExecutor(fetch_parallel, thread_name_prefix="store")
        self.seen = Seen(self.times.keep_s / 2, cache.root / "seen.log")
        self.sweeps = Sweeps(objects, self.times)
        self.sweeper = Sweeper(objects, self.sweeps,
                               lambda snapshot_id: manifests.references(self._entries(snapshot_id)))
        self._fetching: dict[str, Future[None]] = {}
        self._lock = threading.Lock()
        self._stats: tuple[float, StoreStats] | None = None
        # Told (step) as a pack passes "uploaded", "manifest", "settled": tests stop it there.
        self.on_step: Callable[[str], None] | None = None

    def check(self) -> None:
        self.objects.check()

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)

    def _step(self, name: str) -> None:
        if self.on_step is not None:
            self.on_step(name)

    # --- blobs and pack objects ----------------------------------------------------------

    def _upload(self, digest: str, path: str, extents: Extents | None) -> int:
        """Compress the file into the cache and upload it as blob `digest`; bytes sent."""
        temp = self.cache.temp()
        try:
            sha = hashlib.sha256()
            compressor = zstandard.ZstdCompressor(level=3)
            with open(temp, "wb") as f, compressor.stream_writer(f, closefd=False) as out:
                for chunk in read_extents(path, extents):
                    sha.update(chunk)
                    out.write(chunk)
            if sha.hexdigest() != digest:
                raise SnapshotError(f"{path!r} changed while it was packed")
            size = temp.stat().st_size
            self.objects.put(blob_key(digest), temp)
            self.cache.add(BlobCache.blob_name(digest), temp)
            return size
        finally:
            temp.unlink(missing_ok=True)

    def _download(self, name: str) -> None:
        """Fetch a blob or a pack object into the cache, checked against its hash."""
        temp = self.cache.temp()
        seen = time.time()
        try:
            if name.startswith(PACKS):
                self._download_pack(name.removeprefix(PACKS), temp)
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

    def _download_pack(self, sha: str, temp: Path) -> None:
        """Pack object `sha` into `temp`, hashed as it arrives, then its every segment."""
        hasher = hashlib.sha256()
        with open(temp, "w+b") as f:
            def write(chunk: bytes) -> None:
                f.write(chunk)
                hasher.update(chunk)

            try:
                self.objects.get(pack_key(sha), write)
            except FileNotFoundError:
                raise SnapshotError(f"snapshot pack {sha} is missing from the store") from None
            if hasher.hexdigest() != sha:
                raise SnapshotError(f"snapshot pack {sha} is corrupt in the store")
            f.flush()
            check_segments(f, read_index(f, f.tell(), sha), sha)

    def _fetch(self, name: str) -> Future[None]:
        """The object's fetch into the cache (done at once if it is cached): one per object."""
        with self._lock:
            fetching = self._fetching.get(name)
            if fetching is not None:
                return fetching
            if self.cache.has(_cache_name(name)):
                done: Future[None] = Future()
                done.set_result(None)
                return done
            fetching = self.pool.submit(self._download, name)
            self._fetching[name] = fetching

        def finished(_: Future[None]) -> None:
            with self._lock:
                self._fetching.pop(name, None)

        fetching.add_done_callback(finished)
        return fetching

    def _open(self, name: str) -> BinaryIO:
        """A cached object, fetched first if needed."""
        cached = _cache_name(name)
        with contextlib.suppress(FileNotFoundError):
            return self.cache.open(cached)  # a warm host's every object
        self._fetch(name).result()
        try:
            return self.cache.open(cached)
        except FileNotFoundError:  # evicted since: fetch it again
            self._download(name)
            return self.cache.open(cached)

    def open(self, digest: str) -> BinaryIO:
        """Blob `digest` from the cache, fetched first if needed (unpacking's source)."""
        return self._open(digest)

    # --- pack ----------------------------------------------------------------------------

    def pack(self, layer: Path, *, box_id: str, kind: str, name: str | None,
             owner: str | None, index: LayerIndex | None) -> PackResult:
        sink = PackSink(self.objects, self.cache, self.seen, self.pool, index or {},
                        self.small_max, self._upload)
        try:
            packed = pack_layer(layer, index or {}, sink)
            entries = sink.finish(packed)
        except BaseException:
            sink.cancel()
            raise
        self._step("uploaded")
        manifest = manifests.encode(entries)

        def record(snapshot_id: str, manifest_bytes: int) -> SnapshotRecord:
            return new_record(snapshot_id, box_id=box_id, kind=kind, name=name, owner=owner,
                              files=packed.files, logical_bytes=packed.logical_bytes,
                              new_bytes=sink.written + manifest_bytes)

        def repack(gone: set[str]) -> bytes:
            return manifests.encode(sink.repack(gone, packed))

        snapshot_id = self._commit(manifest, record, sink.seen, sink.verify, repack)
        return PackResult(self.get_cached(snapshot_id), packed.index)

    def _commit(self, manifest: bytes | None, record: Callable[[str, int], SnapshotRecord],
                seen: dict[str, float], verify: Callable[[set[str]], set[str]],
                repack: Callable[[set[str]], bytes] | None = None,
                copied_from: str | None = None) -> str:
        """Write the manifest (or copy `copied_from`'s) under a new snapshot id, settle with
        the sweeps, write the record; on any failure the manifest goes again and nothing is
        committed. `verify` makes sure of the objects a sweep may have taken and returns those
        it could not put back; `repack` then packs their files anew for a new manifest, which
        goes under another id (a manifest, once written, never changes: hosts cache them).
        Returns the snapshot's id."""
        signalled = time.monotonic()
        snapshot_id = new_snapshot_id()
        if manifest is not None:
            self.objects.put(_manifest_key(snapshot_id), manifest)
        else:
            assert copied_from is not None
            self.objects.copy(_manifest_key(copied_from), _manifest_key(snapshot_id))
            manifest = self.cache.read(_manifest_key(copied_from))  # the same bytes
        try:
            self._step("manifest")
            for _ in range(_REPACKS):
                gone = self._settle(seen, verify)
                if not gone:
                    break
                assert repack is not None  # a copy's verify raises instead
                manifest, written = repack(gone), snapshot_id
                snapshot_id = new_snapshot_id()
                self.objects.put(_manifest_key(snapshot_id), manifest)
                self.objects.delete([_manifest_key(written)])
            else:
                raise StoreUnavailableError("the snapshot's objects kept being collected while "
                                            "it was committed; retry")
            self._step("settled")
            if time.monotonic() - signalled > self.times.pending_max_s / 2:
                raise StoreUnavailableError("the snapshot took too long to commit; retry")
            data = json.dumps(record(snapshot_id, len(manifest or b"")).to_dict()).encode()
            self.objects.put(_record_key(snapshot_id), data)
        except BaseException:
            with contextlib.suppress(BoxError):
                self.objects.delete([_manifest_key(snapshot_id)])
            raise
        if manifest is not None:
            self.cache.write(_manifest_key(snapshot_id), manifest)
        self.cache.write(_record_key(snapshot_id), data)
        self.seen.saw(list(seen), time.time() - (time.monotonic() - signalled))
        return snapshot_id

    def _settle(self, seen: dict[str, float],
                verify: Callable[[set[str]], set[str]]) -> set[str]:
        """Settle with the sweeps (boxes/sweeps.py): the pack objects a sweep took that could
        not be put back."""
        gone: set[str] = set()
        self.sweeps.settle(seen, lambda doubtful: gone.update(verify(doubtful)))
        return gone

    # --- restore -------------------------------------------------------------------------

    def _entries(self, snapshot_id: str) -> Entries:
        """A manifest's entries, from the cache or the bucket (FileNotFoundError if gone)."""
        key = _manifest_key(snapshot_id)
        raw = self.cache.read(key)
        if raw is None:
            raw = self.objects.read(key)
            self.cache.write(key, raw)
        return manifests.decode(raw, snapshot_id)

    def _manifest(self, snapshot_id: str) -> Entries:
        """A committed snapshot's entries: a cold host asks for its record (committed?) and its
        manifest at once."""
        check_id(snapshot_id)
        committed: Future[SnapshotRecord] | None = None
        asked = time.time()
        if not self.cache.has(_record_key(snapshot_id)):
            committed = self.pool.submit(self.get, snapshot_id)
        try:
            entries = self._entries(snapshot_id)
        except FileNotFoundError:
            if committed is not None:
                committed.result()  # SnapshotNotFoundError if it is not committed either
            raise SnapshotNotFoundError(f"no snapshot {snapshot_id!r}") from None
        if committed is not None:
            committed.result()
            # committed and there: so is everything it names (boxes/sweeps.py), as it was
            # when its record was read
            self.seen.saw(manifests.references(entries), asked)
        return entries

    def restore(self, snapshot_id: str, layer: Path, uid: int) -> LayerIndex:
        """The snapshot written whole into `layer` (an empty one) and synced to disk."""
        return self.begin_restore(snapshot_id, layer, uid, lambda path, size: False).finish()

    def begin_restore(self, snapshot_id: str, layer: Path, uid: int,
                      defer: Callable[[str, int], bool]) -> PendingRestore:
        """As LocalSnapshotStore's: the pack objects and blobs of the files written now are
        fetched first (those missing from the cache, in parallel); the deferred files' start
        fetching meanwhile."""
        entries = self._manifest(snapshot_id)
        manifests.validate(entries)
        source = _Source(self, entries)
        later: dict[str, bool] = {}
        now: set[str] = set()
        for entry in entries:
            if entry["t"] == "f":
                later[entry["p"]] = late = defer(entry["p"], int(entry.get("s", 0)))
                if not late:
                    now.add(source.name(entry))
        for fetch in [self._fetch(name) for name in now]:
            fetch.result()  # the first that failed fails the restore
        for entry in entries:
            if entry["t"] == "f" and later[entry["p"]]:
                self._fetch(source.name(entry))  # its failure is finish()'s
        return begin(entries, layer, uid, lambda path, size: later[path], source)

    # --- copy ----------------------------------------------------------------------------

    def copy(self, snapshot_id: str, *, box_id: str, kind: str, name: str | None,
             owner: str | None) -> SnapshotRecord:
        """A new snapshot with the same content: the manifest copied in the bucket."""
        seen_at = time.time()
        source = self.get(snapshot_id)  # its objects are there: it is committed
        names = manifests.references(self._manifest(snapshot_id))

        def verify(doubtful: set[str]) -> set[str]:
            for name in doubtful:
                if not self.objects.exists(object_key(name)):
                    raise SnapshotError(f"snapshot {snapshot_id} changed while it was copied; "
                                        "retry")
            return set()

        def record(new_id: str, manifest_bytes: int) -> SnapshotRecord:
            return new_record(new_id, box_id=box_id, kind=kind, name=name, owner=owner,
                              files=source.files, logical_bytes=source.logical_bytes,
                              new_bytes=0)

        new_id = self._commit(None, record, dict.fromkeys(names, seen_at), verify,
                              copied_from=snapshot_id)
        return self.get_cached(new_id)

    # --- bookkeeping ---------------------------------------------------------------------

    def get_cached(self, snapshot_id: str) -> SnapshotRecord:
        """The record, from the cache if it is there (a record never changes)."""
        raw = self.cache.read(_record_key(snapshot_id))
        return SnapshotRecord(**json.loads(raw)) if raw is not None else self.get(snapshot_id)

    def get(self, snapshot_id: str) -> SnapshotRecord:
        """The record, from the bucket: a snapshot deleted by another host is gone here too."""
        key = _record_key(check_id(snapshot_id))
        try:
            raw = self.objects.read(key)
        except FileNotFoundError:
            self.cache.forget(key)
            self.cache.forget(_manifest_key(snapshot_id))
            raise SnapshotNotFoundError(f"no snapshot {snapshot_id!r}") from None
        if not self.cache.has(key):
            self.cache.write(key, raw)
        return SnapshotRecord(**json.loads(raw))

    def _record(self, snapshot_id: str) -> SnapshotRecord | None:
        key = _record_key(snapshot_id)
        raw = self.cache.read(key)
        if raw is None:
            try:
                raw = self.objects.read(key)
            except FileNotFoundError:
                return None  # deleted since it was listed
            self.cache.write(key, raw)
        try:
            return SnapshotRecord(**json.loads(raw))
        except (ValueError, TypeError):
            return None

    def list(self) -> list[SnapshotRecord]:
        ids = [info.key.removeprefix(SNAPSHOTS).removesuffix(".json")
               for info in self.objects.list(SNAPSHOTS) if info.key.endswith(".json")]
        records = [r for r in self.pool.map(self._record, ids) if r is not None]
        return sorted(records, key=lambda r: r.created_at)

    def delete(self, snapshot_id: str) -> None:
        self.get(snapshot_id)
        # the record first: without it the snapshot no longer exists, even if we stop here
        self.objects.delete([_record_key(snapshot_id)])
        self.objects.delete([_manifest_key(snapshot_id)])
        self.cache.forget(_record_key(snapshot_id))
        self.cache.forget(_manifest_key(snapshot_id))

    def gc(self, grace_s: float = 600.0) -> int:
        """Delete blobs and pack objects no snapshot names (while other hosts pack:
        boxes/sweeps.py)."""
        freed = self.sweeper.run(grace_s)
        self._stats = None
        return freed

    def stats(self) -> StoreStats:
        """Counted by listing the bucket, so the answer is kept for STATS_TTL_S."""
        cached = self._stats
        if cached is not None and time.monotonic() - cached[0] < STATS_TTL_S:
            return cached[1]
        blobs = list(self.objects.list(BLOBS)) + list(self.objects.list(PACKS))
        stored = sum(b.size for b in blobs) + sum(s.size for s in self.objects.list(SNAPSHOTS))
        records = self.list()
        stats = StoreStats(len(records), len(blobs), stored,
                           sum(r.logical_bytes for r in records))
        self._stats = (time.monotonic(), stats)
        return stats


class _Source:
    """One restore's unpacking source: a file's blob of its own from the store, or its
    segment of a pack object, read from the cached object (the last few read held in
    memory: a pack object's files come in the order the manifest lists them)."""

    def __init__(self, store: ObjectSnapshotStore, entries: Entries) -> None:
        self.store = store
        self.packs: dict[str, str] = {}  # digest -> the pack object holding it
        for entry in entries:
            if entry.get("t") == "f" and "k" in entry:
                self.packs.setdefault(entry["h"], entry["k"][0])
        self._held: OrderedDict[str, tuple[bytes, dict[str, tuple[int, int]]]] = OrderedDict()
        self._lock = threading.Lock()

    def name(self, entry: dict[str, object]) -> str:
        """The object holding a manifest entry's content (by the name sweeps use)."""
        ref = entry.get("k")
        return pack_key(cast(list[str], ref)[0]) if ref is not None else cast(str, entry["h"])

    def open(self, digest: str) -> BinaryIO:
        sha = self.packs.get(digest)
        if sha is None:
            return self.store.open(digest)
        data, index = self._pack(sha)
        where = index.get(digest)
        if where is None:
            raise SnapshotError(f"snapshot pack {sha} lacks the file content {digest}")
        offset, length = where
        return io.BytesIO(data[offset:offset + length])

    def _pack(self, sha: str) -> tuple[bytes, dict[str, tuple[int, int]]]:
        with self._lock:
            held = self._held.get(sha)
            if held is not None:
                self._held.move_to_end(sha)
                return held
        with self.store._open(pack_key(sha)) as f:
            data = f.read()
            index = read_index(cast(io.BufferedReader, f), len(data), sha)
        with self._lock:
            self._held[sha] = (data, index)
            while len(self._held) > _PACKS_HELD:
                self._held.popitem(last=False)
        return data, index
