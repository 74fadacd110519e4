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
file a blob) restore as they always did, and BURROW_STORE_FORMAT=1 still writes them, for a
rolling upgrade (docs/boxes.md, "Upgrading hosts"); a manifest of a format this code does not
read fails its restore, copy or garbage collection by name (boxes/manifests.py).

A host remembers for half a day which blobs and pack objects it saw in the bucket (uploaded,
found, fetched, or named by a manifest it committed), in a log beside its cache (boxes/seen.py),
so a freeze of an unchanged file asks nothing, after a restart too.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import zstandard

from boxes import manifests
from boxes.blobcache import BlobCache
from boxes.errors import BoxError, SnapshotError, SnapshotNotFoundError, StoreUnavailableError
from boxes.manifests import Entries
from boxes.models import SnapshotRecord
from boxes.objectclient import Objects
from boxes.objectfetch import Fetcher, RestoreSource
from boxes.objectpack import PackSink
from boxes.packfiles import PACKS, SMALL_MAX
from boxes.packing import Extents, LayerIndex, Scan, pack_layer, read_extents
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

# How often a pack writes its manifest again because a pack object it named was taken.
_REPACKS = 3


_PING_KEY = "ping"


def _manifest_key(snapshot_id: str) -> str:
    return f"{SNAPSHOTS}{snapshot_id}.manifest"


def _record_key(snapshot_id: str) -> str:
    return f"{SNAPSHOTS}{snapshot_id}.json"


class ObjectSnapshotStore:
    """`small_max`: files below it go into pack objects; 0 writes every file as a blob of its
    own, in format 1, as snapshots were written before pack objects (BURROW_STORE_FORMAT=1;
    bench/store.py compares the two)."""

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
        self.fetcher = Fetcher(objects, cache, self.seen, self.pool)
        self._stats: tuple[float, StoreStats] | None = None
        # Told (step) as a pack passes "uploaded", "manifest", "settled": tests stop it there.
        self.on_step: Callable[[str], None] | None = None

    def check(self) -> None:
        self.objects.check()

    def ping(self) -> None:
        self.objects.exists(_PING_KEY)  # a HEAD: found or not, the store answered

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)

    def _step(self, name: str) -> None:
        if self.on_step is not None:
            self.on_step(name)

    # --- pack ----------------------------------------------------------------------------

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

    def pack(self, layer: Path | Scan, *, box_id: str, kind: str, name: str | None,
             owner: str | None, index: LayerIndex | None) -> PackResult:
        sink = PackSink(self.objects, self.cache, self.seen, self.pool, self.fetcher,
                        index or {}, self.small_max, self._upload)
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
        """A committed snapshot's entries (SnapshotNotFoundError if there is none)."""
        entries, committed = self._manifest_soon(snapshot_id)
        committed()
        return entries

    def _manifest_soon(self, snapshot_id: str) -> tuple[Entries, Callable[[], None]]:
        """A snapshot's entries, and what raises SnapshotNotFoundError unless it is committed:
        a cold host asks for the record and the manifest at once, and a restore fetches the
        objects the manifest names before it waits for the record."""
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

        def check() -> None:
            if committed is not None:
                committed.result()
                # committed and there: so is everything it names (boxes/sweeps.py), as it was
                # when its record was read
                self.seen.saw(manifests.references(entries), asked)

        return entries, check

    def restore(self, snapshot_id: str, layer: Path, uid: int) -> LayerIndex:
        """The snapshot written whole into `layer` (an empty one) and synced to disk."""
        return self.begin_restore(snapshot_id, layer, uid, lambda path, size: False).finish()

    def begin_restore(self, snapshot_id: str, layer: Path, uid: int,
                      defer: Callable[[str, int], bool]) -> PendingRestore:
        """As LocalSnapshotStore's: the pack objects and blobs of the files written now are
        fetched first (those missing from the cache, in parallel); the deferred files' start
        fetching meanwhile."""
        entries, committed = self._manifest_soon(snapshot_id)
        manifests.validate(entries)
        source = RestoreSource(self.fetcher, entries)
        later: dict[str, bool] = {}
        now: set[str] = set()
        for entry in entries:
            if entry["t"] == "f":
                later[entry["p"]] = late = defer(entry["p"], int(entry.get("s", 0)))
                if not late:
                    now.add(source.name(entry))
        fetches = [self.fetcher.fetch(name) for name in now]
        committed()  # before anything is written
        for fetch in fetches:
            fetch.result()  # the first that failed fails the restore
        for entry in entries:
            if entry["t"] == "f" and later[entry["p"]]:
                self.fetcher.fetch(source.name(entry))  # its failure is finish()'s
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
