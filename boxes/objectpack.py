"""One pack of a box's layer into an object store (boxes/objectstore.py): packing's sink, which
decides where each file's content goes.

- A file of SMALL_MAX bytes or more is a blob of its own, `blobs/<sha256>`, shared by every
  box and snapshot that has it: looked up once (HEAD, unless this host saw it lately) and
  uploaded if the bucket lacks it.
- A smaller file is a segment of a pack object (boxes/packfiles.py). If the box's last pack
  or restore found its content in a pack object (the layer index says which), the new
  snapshot names that object again instead of uploading it, when the object is CLEAN and
  worth keeping. Everything else small is packed anew.

Clean: every file content the object holds is one of the new snapshot's files (a manifest's
reference counts them: `[sha256, logical bytes, contents]`). So no pack object holds content
that the snapshots naming it do not hold: the old content of a small file deleted or
rewritten (a memory database a tenant emptied) is in no object the next snapshot names, and
leaves the bucket with the older snapshots (the garbage collection deletes what only they
named). A dirty object left some of its contents dead and is named again by no new snapshot;
the rule is that simple so that it can be checked (tests/boxes/test_store_s3.py searches
every object of the bucket for a deleted secret).

What it costs: a freeze that changed or deleted a small file writes, besides the new
content, the rest of the object that held the old one (at most PART_MAX; bench/store.py
measures it). That rest (files that sat beside the changed one) goes into pack objects of its
own ("carry"), apart from the new content, so a file that keeps changing ends up in a small
object of its own and its next change rewrites only that; the contents of clean objects not
worth keeping (small ones beyond MAX_OLD_PACKS) go in with the new content.

Worth keeping: among the MAX_OLD_PACKS clean objects that hold the most of the box's bytes,
or holding OLD_PACK_BIG bytes of them (a large layer of small files spans several objects),
so a cold restore fetches a few objects however many freezes the box went through.

Where the content of a small file packed anew comes from: the file, if it changed since the
last pack; if it did not, and the pack reads a copy of a running box's layer (a checkpoint:
boxes/layercopy.py), the file is not in the copy (only what changed is) and the running box
may have changed it since the copy's instant, so its content comes from the object that held
it (this host's cache, else the bucket), checked against its hash. A freeze reads the file (the
box is stopped).

Small files are deduplicated within a box's lineage (its snapshots, and the snapshot it was
made from), never across boxes: a snapshot names only pack objects its box's own index led
it to, so no box keeps another box's pack object (with that box's other files) alive.
Identical pack objects are one object, being named by their hash.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from boxes.blobcache import BlobCache
from boxes.errors import SnapshotError
from boxes.manifests import Entries
from boxes.objectclient import Objects
from boxes.objectfetch import Fetcher
from boxes.packfiles import (
    PACKS,
    Index,
    PackWriter,
    Sealed,
    check_object,
    content,
    pack_key,
    read_index,
)
from boxes.packing import SIGNATURE, Extents, LayerIndex, Packed
from boxes.seen import Seen
from boxes.sweeps import blob_key

# How many earlier pack objects a snapshot names at most, besides those it keeps at least
# OLD_PACK_BIG bytes of (a large layer of small files spans several objects).
MAX_OLD_PACKS = 3
OLD_PACK_BIG = 1 << 20

# A manifest entry's "k": [pack object's sha256, its files' logical bytes, its file contents]
Ref = list[Any]


@dataclass
class _File:
    path: str
    extents: Extents | None
    size: int


class PackSink:
    """Packing's sink for one pack. `small_max` 0 writes every file as a blob (the format
    before pack objects). Blobs are looked up and uploaded, and sealed pack objects uploaded,
    by `pool` while the pack reads on."""

    def __init__(self, objects: Objects, cache: BlobCache, seen: Seen, pool: ThreadPoolExecutor,
                 fetcher: Fetcher, index: LayerIndex, small_max: int,
                 upload: Callable[[str, str, Extents | None], int]) -> None:
        self.objects = objects
        self.cache = cache
        self.fetcher = fetcher
        self.memory = seen
        self.pool = pool
        self.small_max = small_max
        self._upload_blob = upload
        self.sources: dict[str, _File] = {}
        self.seen: dict[str, float] = {}  # name -> when this pack saw it in the bucket
        self.written = 0
        self.located: dict[str, Ref] = {}  # digest -> the pack object holding it
        self._old = _old_refs(index)
        self._reused: dict[str, Ref] = {}  # small digests found in earlier pack objects
        self._held: tuple[str, bytes, Index] | None = None  # the earlier object read last
        self._futures: list[Future[None]] = []
        self._lock = threading.Lock()
        self._sealed: dict[str, Sealed] = {}  # uploaded
        self._parts: list[Sealed] = []  # every one sealed
        self.writer = PackWriter(cache.temp, self._upload_pack)  # new content
        self.carry = PackWriter(cache.temp, self._upload_pack)  # dirty objects' live rest

    # --- packing's sink ------------------------------------------------------------------

    def put(self, digest: str, path: str, extents: Extents | None, size: int) -> None:
        if digest in self.sources:
            return
        self.sources[digest] = _File(path, extents, size)
        if size >= self.small_max:
            self._blob(digest)
        elif digest in self._old:
            self._reused[digest] = self._old[digest]  # decided once every file is known
        else:
            self.writer.add(digest, path, extents, size)

    keep = put  # an unchanged file: where its content was is in the index either way

    def _blob(self, digest: str) -> None:
        seen = self.memory.when(digest)
        if seen is not None:
            self.seen[digest] = seen
        else:
            self._futures.append(self.pool.submit(self._check_blob, digest))

    def _check_blob(self, digest: str) -> None:
        at = time.time()
        if not self.objects.exists(blob_key(digest)):
            source = self.sources[digest]
            written = self._upload_blob(digest, source.path, source.extents)
            with self._lock:
                self.written += written
        with self._lock:
            self.seen[digest] = at

    def _upload_pack(self, sealed: Sealed) -> None:
        self._parts.append(sealed)
        self._futures.append(self.pool.submit(self._put_pack, sealed))

    def _put_pack(self, sealed: Sealed) -> None:
        at = time.time()
        try:
            self.objects.put(pack_key(sealed.sha), sealed.path)
            size = sealed.path.stat().st_size
            self.cache.add(BlobCache.pack_name(sealed.sha), sealed.path)
        finally:
            sealed.path.unlink(missing_ok=True)
        with self._lock:
            self.written += size
            self.seen[pack_key(sealed.sha)] = at
            self._sealed[sealed.sha] = sealed

    # --- after the walk --------------------------------------------------------------------

    def finish(self, packed: Packed) -> Entries:
        """Decide which earlier pack objects to name again, pack the rest, wait for every
        upload, and write where each file's content is into `packed`'s entries and index."""
        clean = self._clean()
        keep = self._still_there(self._worth_keeping(clean))
        # by object: each earlier one an unchanged file's content is read from, read once
        for digest, ref in sorted(self._reused.items(), key=lambda item: item[1][0]):
            if ref[0] in keep:
                self.located[digest] = ref
            else:
                self._add(self.writer if ref[0] in clean else self.carry, digest)
        self._held = None
        self._close()
        return self.apply(packed)

    def _add(self, writer: PackWriter, digest: str) -> None:
        """Pack file content `digest` anew: from its file, or, when the file is not there to
        read (a checkpoint's unchanged file), from the earlier object that held it."""
        source = self.sources[digest]
        ref = self._old.get(digest)
        if ref is None or os.path.lexists(source.path):
            writer.add(digest, source.path, source.extents, source.size)
            return
        sha = ref[0]
        if self._held is None or self._held[0] != sha:
            data = self.fetcher.read(pack_key(sha))
            self._held = (sha, data, read_index(data, sha))
        _, data, index = self._held
        writer.add_content(digest, content(data, index, digest, sha), source.size)

    def _close(self) -> None:
        """Seal both writers' last objects, wait for every upload, and locate what they hold."""
        self.writer.close()
        self.carry.close()
        self.wait()
        for writer in (self.writer, self.carry):
            for digest, sha in writer.located.items():
                sealed = self._sealed[sha]
                self.located[digest] = [sha, sealed.logical_bytes, sealed.members]

    def _clean(self) -> dict[str, int]:
        """The earlier pack objects whose every file content is one of this snapshot's, with
        the bytes of them kept. `_reused` has only contents the index placed in an object,
        so as many of them as the object holds are all of them."""
        kept: dict[str, int] = {}
        live: dict[str, int] = {}
        members: dict[str, int] = {}
        for digest, (sha, _, count) in self._reused.items():
            kept[sha] = kept.get(sha, 0) + self.sources[digest].size
            live[sha] = live.get(sha, 0) + 1
            members[sha] = count
        return {sha: kept[sha] for sha in kept if live[sha] == members[sha]}

    @staticmethod
    def _worth_keeping(clean: dict[str, int]) -> list[str]:
        """The clean objects worth naming again, by the bytes of them kept."""
        ranked = sorted(clean, key=lambda sha: clean[sha], reverse=True)
        return [sha for n, sha in enumerate(ranked)
                if n < MAX_OLD_PACKS or clean[sha] >= OLD_PACK_BIG]

    def _still_there(self, shas: list[str]) -> set[str]:
        """Those of the pack objects the bucket has (asked only of those not seen lately)."""
        there: set[str] = set()
        asks: dict[str, Future[bool]] = {}
        for sha in shas:
            seen = self.memory.when(pack_key(sha))
            if seen is not None:
                self.seen[pack_key(sha)] = seen
                there.add(sha)
            else:
                asks[sha] = self.pool.submit(self.objects.exists, pack_key(sha))
        at = time.time()
        for sha, ask in asks.items():
            if ask.result():
                self.seen[pack_key(sha)] = at
                there.add(sha)
        return there

    def apply(self, packed: Packed) -> Entries:
        """`packed`'s entries and index, each small file's with its pack object."""
        for entry in packed.entries:
            if entry.get("t") == "f":
                ref = self.located.get(entry["h"])
                if ref is not None:
                    entry["k"] = ref
                else:
                    entry.pop("k", None)
        for path, item in packed.index.items():
            if path == SIGNATURE:  # the layer's signature, not a file
                continue
            ref = self.located.get(item[1])
            if ref is not None:
                packed.index[path] = [item[0], item[1], item[2] if len(item) > 2 else None, ref]
        return packed.entries

    def wait(self) -> int:
        """Bytes uploaded, once every blob and pack object is in the bucket (the first
        failure raised)."""
        while self._futures:
            futures, self._futures = self._futures, []
            for future in futures:
                future.result()
        return self.written

    def cancel(self) -> None:
        """Stop what has not started; wait for what has (it reads the layer)."""
        self.writer.abort()
        self.carry.abort()
        for future in self._futures:
            future.cancel()
        wait(self._futures)
        for sealed in self._parts:
            sealed.path.unlink(missing_ok=True)

    # --- settling with the sweeps ----------------------------------------------------------

    def verify(self, doubtful: set[str]) -> set[str]:
        """Upload again each of these objects a sweep took: a blob from its file, a pack
        object from this host's cache. Returns the pack objects it could not (not cached)."""
        def again(name: str) -> str | None:
            if name.startswith(PACKS):
                if self.objects.exists(name) or self._reupload_pack(name.removeprefix(PACKS)):
                    return None
                return name
            if not self.objects.exists(blob_key(name)):
                source = self.sources[name]
                self._upload_blob(name, source.path, source.extents)
            return None

        gone = [self.pool.submit(again, name) for name in doubtful]
        return {name for future in gone if (name := future.result()) is not None}

    def _reupload_pack(self, sha: str) -> bool:
        """Put this host's cached copy of pack object `sha` back, checked first (the same
        bytes: its name is their hash); False if there is none."""
        path = self.cache.root / BlobCache.pack_name(sha)
        try:
            check_object(path, sha)
        except (FileNotFoundError, SnapshotError):
            return False
        self.objects.put(pack_key(sha), path)
        return True

    def repack(self, gone: set[str], packed: Packed) -> Entries:
        """Pack anew the files whose pack objects are `gone`; the entries to write again."""
        for name in gone:
            self.seen.pop(name, None)
        shas = {name.removeprefix(PACKS) for name in gone}
        moved = [digest for digest, ref in self.located.items() if ref[0] in shas]
        for writer in (self.writer, self.carry):
            writer.forget(moved)
        for digest in sorted(moved, key=lambda d: self._old.get(d, [""])[0]):
            del self.located[digest]
            self._add(self.carry, digest)
        self._held = None
        self._close()
        return self.apply(packed)


def _old_refs(index: LayerIndex) -> dict[str, Ref]:
    """digest -> pack object, for the layer index's small files found in one."""
    refs: dict[str, Ref] = {}
    for path, item in index.items():
        if path == SIGNATURE:
            continue
        ref = item[3] if len(item) > 3 else None
        if (isinstance(ref, list) and len(ref) == 3 and isinstance(ref[0], str)
                and all(isinstance(n, int) and not isinstance(n, bool) for n in ref[1:])):
            refs[item[1]] = ref
    return refs
