"""Garbage collection of an object store (boxes/objectstore.py) while other hosts pack into it.

The local store lets a pack touch a blob it reuses, and its gc spares what was touched lately.
S3 cannot touch: an object's LastModified changes only by writing it again, and a sweep that
lists, then deletes, races a pack that found a blob present in between. So the two sides shake
hands through objects, ordered by S3's strong read-after-write consistency:

The objects collected are blobs and pack objects (boxes/packfiles.py), each by its name: a
blob's is its digest, a pack object's its key, `packs/<sha256>`. "Blob" below means either.

A sweep (`Sweeper.run`, at most one runs at a time: it skips while another one's flag runs)
  1. lists the blobs and every manifest, committed or not (a manifest without its record is a
     pack in flight); the candidates are blobs no manifest names, last written more than
     `grace_s` ago;
  2. writes its flag `gc/sweeps/<id>`, naming the candidates;
  3. lists the manifests again, and deletes the candidates still named by none, for at most
     `max_s / 3` after its flag (a request it started ends before `max_s`);
  4. writes `gc/sweeps/<id>.done`.
A pack (`Sweeps.settle`, after writing its manifest and before committing its record) lists
the flags. For each blob it names that a flag lists as a candidate: if that sweep still runs,
the pack waits until it ends; if the sweep ended after the pack last saw the blob in the store
(with `skew_s` to spare for clocks), the pack checks the blob is there and uploads it again
if not (a copy, which cannot, fails; a pack object that this host no longer caches has its
files packed anew, into a manifest under a new id, and the pack settles again). Then it
commits.

Why no blob a committed manifest names is ever deleted: take a sweep S and a pack P naming
blob d. If P listed the flags after S wrote its flag, P saw it: P waited for S to end, then
either had seen d after S ended or made sure d is there; S deletes nothing after it ends. If
P listed before S wrote its flag, P's manifest (written before that listing) was there when S
listed the manifests again after its flag, so S spared d. Either way d is there when P
commits, and from then on P's committed manifest names it to every later sweep.

A flag is kept `keep_s` after its sweep ended, and a host trusts having seen a blob for half
that; a sweep that died without its `.done` counts as ended `max_s + skew_s` after its flag;
an uncommitted manifest older than `pending_max_s` is a dead pack's, and goes (a pack
commits within half of that or not at all).
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import zstandard

from boxes.errors import StoreUnavailableError
from boxes.objectclient import ObjectInfo, Objects
from boxes.packfiles import PACKS

FLAGS = "gc/sweeps/"
BLOBS = "blobs/"
SNAPSHOTS = "snapshots/"
# The most blobs one sweep deletes (its flag names them all; packs read each flag once).
MAX_CANDIDATES = 100_000


@dataclass(frozen=True)
class SweepTimes:
    skew_s: float = 120.0  # how far the clocks of hosts and the store may disagree
    max_s: float = 900.0  # a sweep's flag is taken as ended this long after it was written
    keep_s: float = 86400.0  # flags are kept this long after their sweep ended
    pending_max_s: float = 3600.0  # an uncommitted manifest older than this is a dead pack's
    poll_s: float = 0.5  # how often a pack waiting for a sweep looks again


@dataclass(frozen=True)
class Flag:
    key: str
    written: float  # the store's clock
    done: float | None  # when its `.done` was written, if it was
    candidates: frozenset[str]

    def ended(self, times: SweepTimes, now: float) -> float | None:
        """When the sweep stopped deleting; None while it may still delete."""
        if self.done is not None:
            return self.done
        expiry = self.written + times.max_s + times.skew_s
        return expiry if now >= expiry else None


def blob_key(digest: str) -> str:
    return BLOBS + digest


def object_key(name: str) -> str:
    """The key of a blob (named by its digest) or a pack object (named by its key)."""
    return name if name.startswith(PACKS) else blob_key(name)


class Sweeps:
    """The flags of the sweeps in a bucket, as packs and sweeps read them."""

    def __init__(self, objects: Objects, times: SweepTimes) -> None:
        self.objects = objects
        self.times = times
        self._candidates: dict[str, frozenset[str]] = {}  # flag key -> its candidates
        self._lock = threading.Lock()

    def flags(self) -> list[Flag]:
        written: dict[str, float] = {}
        done: dict[str, float] = {}
        for info in self.objects.list(FLAGS):
            if info.key.endswith(".done"):
                done[info.key.removesuffix(".done")] = info.modified
            else:
                written[info.key] = info.modified
        flags = []
        for key, at in sorted(written.items()):
            candidates = self._read(key)
            if candidates is not None:
                flags.append(Flag(key, at, done.get(key), candidates))
        return flags

    def _read(self, key: str) -> frozenset[str] | None:
        with self._lock:
            known = self._candidates.get(key)
        if known is not None:
            return known
        try:
            raw = self.objects.read(key)
        except FileNotFoundError:
            return None  # removed since the listing: long over
        candidates = frozenset(json.loads(zstandard.ZstdDecompressor().decompress(raw)))
        with self._lock:
            self._candidates[key] = candidates
        return candidates

    def settle(self, seen: Mapping[str, float], verify: Callable[[set[str]], None]) -> None:
        """Before a commit naming the blobs `seen` (digest -> when this host last saw it in
        the store, its clock): wait for any running sweep that may delete one, then have
        `verify` make sure of each blob a sweep may have deleted since it was seen."""
        deadline = time.monotonic() + self.times.max_s + self.times.skew_s + 60
        while True:
            now = time.time()
            flags = [f for f in self.flags() if not f.candidates.isdisjoint(seen)]
            if all(f.ended(self.times, now) is not None for f in flags):
                break
            if time.monotonic() > deadline:
                raise StoreUnavailableError("a garbage collection of the snapshot store has "
                                            "not ended in time; retry later")
            time.sleep(self.times.poll_s)
        doubtful: set[str] = set()
        for flag in flags:
            ended = flag.ended(self.times, now)
            assert ended is not None
            doubtful.update(d for d in flag.candidates.intersection(seen)
                            if ended + self.times.skew_s >= seen[d])
        if doubtful:
            verify(doubtful)


class Sweeper:
    """One garbage collection of the bucket (see the module's docstring for the protocol).
    `names(snapshot_id)` is the set of objects that snapshot's manifest names
    (FileNotFoundError if it is gone)."""

    def __init__(self, objects: Objects, sweeps: Sweeps,
                 names: Callable[[str], set[str]]) -> None:
        self.objects = objects
        self.sweeps = sweeps
        self.times = sweeps.times
        self.names = names
        # Told each step by name ("flag", "listed", "deleted"): tests stop a sweep there.
        self.on_step: Callable[[str], None] | None = None

    def _step(self, name: str) -> None:
        if self.on_step is not None:
            self.on_step(name)

    def run(self, grace_s: float) -> int:
        """Delete blobs no manifest names, last written over `grace_s` ago; return the bytes
        freed."""
        now = time.time()
        if any(f.ended(self.times, now) is None for f in self._tidy_flags(now)):
            return 0  # another sweep runs
        blobs = {info.key.removeprefix(BLOBS): info for info in self.objects.list(BLOBS)}
        blobs.update((info.key, info) for info in self.objects.list(PACKS))
        listing = list(self.objects.list(SNAPSHOTS))
        read: set[str] = set()
        referenced = self._referenced(listing, read)
        self._drop_dead_packs(listing, now)
        candidates = sorted(d for d, info in blobs.items()
                            if d not in referenced and info.modified < now - grace_s)
        if not candidates:
            return 0
        candidates = candidates[:MAX_CANDIDATES]
        flag = f"{FLAGS}{int(now)}-{secrets.token_hex(4)}"
        self.objects.put(flag, zstandard.ZstdCompressor().compress(
            json.dumps(candidates).encode()))
        started = time.monotonic()
        freed = 0
        try:
            self._step("flag")
            referenced |= self._referenced(self.objects.list(SNAPSHOTS), read)
            doomed = [d for d in candidates if d not in referenced]
            self._step("listed")
            for start in range(0, len(doomed), 1000):
                if time.monotonic() - started > self.times.max_s / 3:
                    break  # the rest waits for the next sweep
                batch = doomed[start:start + 1000]
                self.objects.delete([object_key(d) for d in batch])
                freed += sum(blobs[d].size for d in batch)
            self._step("deleted")
        finally:
            self.objects.put(flag + ".done", b"")
        return freed

    def _referenced(self, listing: Iterable[ObjectInfo], read: set[str]) -> set[str]:
        """The blobs named by the manifests listed that are not in `read` (added to it)."""
        referenced: set[str] = set()
        for info in listing:
            snapshot_id = info.key.removeprefix(SNAPSHOTS).removesuffix(".manifest")
            if not info.key.endswith(".manifest") or snapshot_id in read:
                continue
            read.add(snapshot_id)
            try:
                referenced |= self.names(snapshot_id)
            except FileNotFoundError:
                continue  # deleted since it was listed: it names nothing any more
        return referenced

    def _drop_dead_packs(self, listing: list[ObjectInfo], now: float) -> None:
        records = {info.key.removesuffix(".json") for info in listing
                   if info.key.endswith(".json")}
        dead = [info.key for info in listing if info.key.endswith(".manifest")
                and info.key.removesuffix(".manifest") not in records
                and info.modified < now - self.times.pending_max_s]
        if dead:
            self.objects.delete(dead)

    def _tidy_flags(self, now: float) -> list[Flag]:
        """The flags, less those whose sweep ended over `keep_s` ago (deleted)."""
        flags = self.sweeps.flags()
        old = [f for f in flags if (ended := f.ended(self.times, now)) is not None
               and ended < now - self.times.keep_s]
        if old:
            self.objects.delete([key for f in old for key in (f.key + ".done", f.key)])
        return [f for f in flags if f not in old]
