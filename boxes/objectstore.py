"""The snapshot store in an S3-compatible bucket (`BURROW_STORE_URL=s3://bucket/prefix`), shared
by every host, with this host's cache of it (boxes/blobcache.py).

Under the prefix:
    blobs/<sha256>                 a file's content, zstd-compressed (as the local store's)
    snapshots/<id>.manifest        the snapshot's entries (boxes/manifests.py)
    snapshots/<id>.json            its record, written LAST: its existence is the commit
    gc/sweeps/<id>[.done]          garbage collections, and what each may delete (sweeps.py)

A pack uploads the blobs the bucket lacks (in parallel, after one HEAD each), writes the
manifest, settles with any garbage collection under way (boxes/sweeps.py says how a blob it
reuses is kept from a sweep), then writes the record. A restore reads the manifest and the
blobs from the cache; a cold host fetches the missing ones, `fetch_parallel` at a time, each
hashed as it arrives (a damaged or truncated blob never enters the cache: the restore fails),
and the large files a wake leaves for later are fetched while the box starts. Packing and
restoring are the local store's own code (packing.py, unpacking.py), so a restore keeps all
its safety: no link followed, no write outside the layer, holes, hard links, xattrs,
whiteouts.

A host remembers, for half a day, which blobs it saw in the bucket (uploaded, found, fetched,
or named by a manifest it committed), so a freeze of an unchanged file asks nothing; after a
restart, its first freeze of each box asks once per blob.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import IO, BinaryIO, cast

import zstandard

from boxes import manifests
from boxes.blobcache import BlobCache
from boxes.errors import BoxError, SnapshotError, SnapshotNotFoundError, StoreUnavailableError
from boxes.manifests import Entries
from boxes.models import SnapshotRecord
from boxes.objectclient import Objects
from boxes.packing import Extents, LayerIndex, Scan, pack_layer, read_extents
from boxes.snapshots import (
    STATS_TTL_S,
    PackResult,
    PendingRestore,
    StoreStats,
    check_id,
    new_record,
    new_snapshot_id,
)
from boxes.sweeps import BLOBS, SNAPSHOTS, Sweeper, Sweeps, SweepTimes, blob_key
from boxes.unpacking import begin

# Blobs a host remembers having seen in the bucket (~100 bytes each).
_SEEN_MAX = 1_000_000


_PING_KEY = "ping"


def _manifest_key(snapshot_id: str) -> str:
    return f"{SNAPSHOTS}{snapshot_id}.manifest"


def _record_key(snapshot_id: str) -> str:
    return f"{SNAPSHOTS}{snapshot_id}.json"


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


class _Seen:
    """When this host last saw each blob in the bucket (its clock)."""

    def __init__(self, trust_s: float) -> None:
        self.trust_s = trust_s
        self._at: dict[str, float] = {}
        self._lock = threading.Lock()

    def when(self, digest: str) -> float | None:
        with self._lock:
            at = self._at.get(digest)
        return at if at is not None and time.time() - at < self.trust_s else None

    def saw(self, digests: set[str] | list[str], at: float) -> None:
        with self._lock:
            for digest in digests:
                if self._at.get(digest, 0.0) < at:
                    self._at[digest] = at
            if len(self._at) > _SEEN_MAX:  # forgetting costs a HEAD at the next freeze only
                cutoff = time.time() - self.trust_s / 4
                self._at = {d: t for d, t in self._at.items() if t > cutoff}
                if len(self._at) > _SEEN_MAX:
                    self._at = {}


class ObjectSnapshotStore:
    def __init__(self, objects: Objects, cache: BlobCache, *, fetch_parallel: int = 8,
                 times: SweepTimes | None = None) -> None:
        self.objects = objects
        self.cache = cache
        self.times = times or SweepTimes()
        self.pool = ThreadPoolExecutor(fetch_parallel, thread_name_prefix="store")
        self.seen = _Seen(self.times.keep_s / 2)
        self.sweeps = Sweeps(objects, self.times)
        self.sweeper = Sweeper(objects, self.sweeps,
                               lambda snapshot_id: manifests.digests(self._entries(snapshot_id)))
        self._fetching: dict[str, Future[None]] = {}
        self._lock = threading.Lock()
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

    # --- blobs ---------------------------------------------------------------------------

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

    def _download(self, digest: str) -> None:
        """Fetch blob `digest` into the cache, hashed as it arrives."""
        temp = self.cache.temp()
        seen = time.time()
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
            if hasher.sha.hexdigest() != digest:
                raise SnapshotError(f"snapshot blob {digest} is corrupt in the store")
            self.cache.add(BlobCache.blob_name(digest), temp)
        except zstandard.ZstdError as exc:
            raise SnapshotError(f"snapshot blob {digest} is corrupt in the store") from exc
        finally:
            temp.unlink(missing_ok=True)
        self.seen.saw([digest], seen)

    def _fetch(self, digest: str) -> Future[None]:
        """The blob's fetch into the cache (done at once if it is cached): one per blob."""
        with self._lock:
            fetching = self._fetching.get(digest)
            if fetching is not None:
                return fetching
            if self.cache.has(BlobCache.blob_name(digest)):
                done: Future[None] = Future()
                done.set_result(None)
                return done
            fetching = self.pool.submit(self._download, digest)
            self._fetching[digest] = fetching

        def finished(_: Future[None]) -> None:
            with self._lock:
                self._fetching.pop(digest, None)

        fetching.add_done_callback(finished)
        return fetching

    def open(self, digest: str) -> BinaryIO:
        """The blob from the cache, fetched first if needed (unpacking's source)."""
        name = BlobCache.blob_name(digest)
        with contextlib.suppress(FileNotFoundError):
            return self.cache.open(name)  # a warm host's every blob
        self._fetch(digest).result()
        try:
            return self.cache.open(name)
        except FileNotFoundError:  # evicted since: fetch it again
            self._download(digest)
            return self.cache.open(name)

    # --- pack ----------------------------------------------------------------------------

    def pack(self, layer: Path | Scan, *, box_id: str, kind: str, name: str | None,
             owner: str | None, index: LayerIndex | None) -> PackResult:
        uploads = _Uploads(self)
        try:
            packed = pack_layer(layer, index or {}, uploads)
            written = uploads.wait()
        except BaseException:
            uploads.cancel()
            raise
        self._step("uploaded")
        snapshot_id = new_snapshot_id()
        manifest = manifests.encode(packed.entries)

        def record() -> SnapshotRecord:
            return new_record(snapshot_id, box_id=box_id, kind=kind, name=name, owner=owner,
                              files=packed.files, logical_bytes=packed.logical_bytes,
                              new_bytes=written + len(manifest))

        self._commit(snapshot_id, manifest, record, uploads.seen, uploads.verify)
        return PackResult(self.get_cached(snapshot_id), packed.index)

    def _commit(self, snapshot_id: str, manifest: bytes | None,
                record: Callable[[], SnapshotRecord], seen: dict[str, float],
                verify: Callable[[set[str]], None], copied_from: str | None = None) -> None:
        """Write the manifest (or copy `copied_from`'s), settle with the sweeps, write the
        record; on any failure the manifest goes again and nothing is committed."""
        signalled = time.monotonic()
        if manifest is not None:
            self.objects.put(_manifest_key(snapshot_id), manifest)
        else:
            assert copied_from is not None
            self.objects.copy(_manifest_key(copied_from), _manifest_key(snapshot_id))
        try:
            self._step("manifest")
            self.sweeps.settle(seen, verify)
            self._step("settled")
            if time.monotonic() - signalled > self.times.pending_max_s / 2:
                raise StoreUnavailableError("the snapshot took too long to commit; retry")
            data = json.dumps(record().to_dict()).encode()
            self.objects.put(_record_key(snapshot_id), data)
        except BaseException:
            with contextlib.suppress(BoxError):
                self.objects.delete([_manifest_key(snapshot_id)])
            raise
        if manifest is not None:
            self.cache.write(_manifest_key(snapshot_id), manifest)
        self.cache.write(_record_key(snapshot_id), data)
        self.seen.saw(list(seen), time.time() - (time.monotonic() - signalled))

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
        check_id(snapshot_id)
        if not self.cache.has(_record_key(snapshot_id)):
            self.get(snapshot_id)  # committed? (a warm host knows)
        try:
            return self._entries(snapshot_id)
        except FileNotFoundError:
            raise SnapshotNotFoundError(f"no snapshot {snapshot_id!r}") from None

    def restore(self, snapshot_id: str, layer: Path, uid: int) -> LayerIndex:
        """The snapshot written whole into `layer` (an empty one) and synced to disk."""
        return self.begin_restore(snapshot_id, layer, uid, lambda path, size: False).finish()

    def begin_restore(self, snapshot_id: str, layer: Path, uid: int,
                      defer: Callable[[str, int], bool]) -> PendingRestore:
        """As LocalSnapshotStore's: the blobs of the files written now are fetched first (those
        missing from the cache, in parallel); the deferred files' start fetching meanwhile."""
        entries = self._manifest(snapshot_id)
        manifests.validate(entries)
        later: dict[str, bool] = {}
        now: set[str] = set()
        for entry in entries:
            if entry["t"] == "f":
                later[entry["p"]] = late = defer(entry["p"], int(entry.get("s", 0)))
                if not late:
                    now.add(entry["h"])
        for fetch in [self._fetch(digest) for digest in now]:
            fetch.result()  # the first that failed fails the restore
        for entry in entries:
            if entry["t"] == "f" and later[entry["p"]]:
                self._fetch(entry["h"])  # its failure is finish()'s
        return begin(entries, layer, uid, lambda path, size: later[path], self)

    # --- copy ----------------------------------------------------------------------------

    def copy(self, snapshot_id: str, *, box_id: str, kind: str, name: str | None,
             owner: str | None) -> SnapshotRecord:
        """A new snapshot with the same content: the manifest copied in the bucket."""
        seen_at = time.time()
        source = self.get(snapshot_id)  # its blobs are there: it is committed
        digests = manifests.digests(self._manifest(snapshot_id))
        new_id = new_snapshot_id()

        def verify(doubtful: set[str]) -> None:
            for digest in doubtful:
                if not self.objects.exists(blob_key(digest)):
                    raise SnapshotError(f"snapshot {snapshot_id} changed while it was copied; "
                                        "retry")

        def record() -> SnapshotRecord:
            return new_record(new_id, box_id=box_id, kind=kind, name=name, owner=owner,
                              files=source.files, logical_bytes=source.logical_bytes,
                              new_bytes=0)

        self._commit(new_id, None, record, dict.fromkeys(digests, seen_at), verify,
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
        """Delete blobs no snapshot names (while other hosts pack: boxes/sweeps.py)."""
        freed = self.sweeper.run(grace_s)
        self._stats = None
        return freed

    def stats(self) -> StoreStats:
        """Counted by listing the bucket, so the answer is kept for STATS_TTL_S."""
        cached = self._stats
        if cached is not None and time.monotonic() - cached[0] < STATS_TTL_S:
            return cached[1]
        blobs = list(self.objects.list(BLOBS))
        stored = sum(b.size for b in blobs) + sum(s.size for s in self.objects.list(SNAPSHOTS))
        records = self.list()
        stats = StoreStats(len(records), len(blobs), stored,
                           sum(r.logical_bytes for r in records))
        self._stats = (time.monotonic(), stats)
        return stats


class _Uploads:
    """One pack's blobs: packing's sink. Each blob the bucket may lack is looked up (and
    uploaded if it is missing) by the store's pool while the pack reads on."""

    def __init__(self, store: ObjectSnapshotStore) -> None:
        self.store = store
        self.sources: dict[str, tuple[str, Extents | None]] = {}
        self.seen: dict[str, float] = {}  # digest -> when this pack saw it in the bucket
        self.written = 0
        self._checks: list[Future[None]] = []
        self._lock = threading.Lock()

    def put(self, digest: str, path: str, extents: Extents | None) -> None:
        if digest in self.sources:
            return
        self.sources[digest] = (path, extents)
        seen = self.store.seen.when(digest)
        if seen is not None:
            self.seen[digest] = seen
        else:
            self._checks.append(self.store.pool.submit(self._check, digest))

    keep = put  # an unchanged file's blob: in the bucket, unless a sweep took it since

    def _check(self, digest: str) -> None:
        at = time.time()
        if not self.store.objects.exists(blob_key(digest)):
            written = self.store._upload(digest, *self.sources[digest])
            with self._lock:
                self.written += written
        with self._lock:
            self.seen[digest] = at

    def wait(self) -> int:
        """Bytes uploaded, once every blob is in the bucket (the first failure raised)."""
        for check in self._checks:
            check.result()
        return self.written

    def cancel(self) -> None:
        """Stop what has not started; wait for what has (it reads the layer)."""
        for check in self._checks:
            check.cancel()
        wait(self._checks)

    def verify(self, doubtful: set[str]) -> None:
        """Upload again each of these blobs a sweep took."""
        def again(digest: str) -> None:
            if not self.store.objects.exists(blob_key(digest)):
                self.store._upload(digest, *self.sources[digest])

        for done in [self.store.pool.submit(again, digest) for digest in doubtful]:
            done.result()
