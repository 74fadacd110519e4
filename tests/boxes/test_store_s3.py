"""The snapshot store in S3-compatible object storage, against a real SeaweedFS: round trips,
another host with an empty cache, cache hits that ask nothing, refusals of crafted manifests
and damaged blobs, an outage, wrong credentials, garbage collection racing packs; pack objects
(a cold restore's few requests, damage, snapshots of the format before them, what a freeze
names again, no box keeping another's, no deleted or rewritten file's content left in the
bucket), a restarted host asking nothing it knew, and a rolling upgrade (a manifest of a
newer format refused by name, format 1 written on demand)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import secrets
import shutil
import stat
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import cast

import httpx
import pytest
import zstandard
from redis.asyncio import Redis

from boxes import BoxManager, BoxSpec, BoxState, ExecRequest, manifests, objectpack, seen
from boxes.blobcache import BlobCache
from boxes.config import RuntimeConfig
from boxes.errors import (
    ManifestFormatError,
    SnapshotError,
    SnapshotNotFoundError,
    StoreUnavailableError,
    WakeFailedError,
)
from boxes.manifests import Entries
from boxes.objectclient import ObjectClient
from boxes.objectstore import ObjectSnapshotStore
from boxes.packfiles import MAX_OBJECT, SMALL_MAX, pack_key
from boxes.packing import LayerIndex
from boxes.snapshots import LAZY_MIN, LocalSnapshotStore, PackResult
from boxes.stores import open_store, parse_store_url
from boxes.sweeps import SweepTimes, blob_key, object_key
from core.keys import Keys
from core.settings import Settings
from tests.boxes.test_lifecycle import FINGERPRINT, TREE, run
from tests.boxes.test_snapshots import assert_refused, describe, holding, make_layer
from tests.conftest import make_config
from tests.seaweed import S3Place, SeaweedFS

UID = os.getuid()
FAST = SweepTimes(skew_s=1.0, max_s=30.0, poll_s=0.05)


def make_store(s3: S3Place, cache: Path, *, max_bytes: int = 1 << 30,
               retry_timeout_s: float = 15.0, small_max: int = SMALL_MAX) -> ObjectSnapshotStore:
    """One host's store on the test's bucket and prefix, its cache in `cache` (`small_max`
    0: it writes snapshots as they were before pack objects)."""
    client = ObjectClient(s3.bucket, s3.prefix, endpoint=s3.seaweed.endpoint,
                          retry_timeout_s=retry_timeout_s, connect_timeout_s=1.0)
    return ObjectSnapshotStore(client, BlobCache(cache, max_bytes), fetch_parallel=4,
                               times=FAST, small_max=small_max)


def rich_layer(root: Path) -> Path:
    """make_layer's (whiteout, opaque dir, symlink, modes, times) and a 50 MB file, a sparse
    one, a hard link, a fifo and a file with an xattr."""
    make_layer(root)
    big = root / "workspace/big.bin"
    with open(big, "wb") as f:
        for _ in range(50):
            f.write(os.urandom(1 << 20))
    os.link(big, root / "workspace/big-link")
    with open(root / "workspace/sparse.db", "wb") as f:
        f.seek(8 << 20)
        f.write(b"data after a hole")
        f.seek(16 << 20)
        f.write(b"and the end")
    os.mkfifo(root / "workspace/pipe")
    (root / "workspace/tagged").write_text("x")
    os.setxattr(root / "workspace/tagged", "user.burrow.test", b"kept")
    with open(root / "workspace/small-sparse", "wb") as f:  # packed, holes and all
        f.write(b"head")
        f.seek(200 << 10)
        f.write(b"tail")
    os.link(root / "workspace/tagged", root / "workspace/tagged-link")
    return root


def small_files(root: Path, total: int = 1 << 20) -> Path:
    """A layer of about `total` bytes in files of 4 to 32 KB, half random and half text
    (bench/store.py's 1 MB layer: 69 files)."""
    (root / "workspace").mkdir(parents=True)
    left, n = total, 0
    while left > 0:
        size = min(left, 4096 << (n % 4))
        body = os.urandom(size // 2) + (b"line of text %d\n" % n) * (size // 32)
        (root / "workspace" / f"f{n:04}.txt").write_bytes(body[:size])
        left -= size
        n += 1
    return root


def pack(store: ObjectSnapshotStore, layer: Path, box: str = "b_x") -> str:
    return store.pack(layer, box_id=box, kind="freeze", name=None, owner=None,
                      index=None).record.id


def freeze(store: ObjectSnapshotStore, layer: Path, index: LayerIndex | None) -> PackResult:
    return store.pack(layer, box_id="b_x", kind="freeze", name=None, owner=None, index=index)


def names(store: ObjectSnapshotStore, snapshot_id: str) -> set[str]:
    """The objects a snapshot's manifest names (from `store`'s cache if it is there)."""
    return manifests.references(store._entries(snapshot_id))


def committed_objects_missing(store: ObjectSnapshotStore) -> set[str]:
    """Blobs and pack objects some committed manifest names that the bucket lacks (must be
    none)."""
    present = {i.key.removeprefix("blobs/") for i in store.objects.list("blobs/")}
    present |= {i.key for i in store.objects.list("packs/")}
    named: set[str] = set()
    for record in store.list():
        named |= names(store, record.id)
    return named - present


def restored(s3: S3Place, snapshot_id: str, tmp_path: Path) -> tuple[Path, ObjectSnapshotStore]:
    """The snapshot restored by another host with an empty cache (and that host)."""
    host = make_store(s3, tmp_path / f"cold-{secrets.token_hex(4)}")
    out = tmp_path / f"out-{secrets.token_hex(4)}"
    out.mkdir()
    host.restore(snapshot_id, out, UID)
    return out, host


def test_a_layer_round_trips_byte_identical_to_another_host_with_an_empty_cache(
        s3: S3Place, tmp_path: Path) -> None:
    layer = rich_layer(tmp_path / "layer")
    here = make_store(s3, tmp_path / "cache-a")
    sid = pack(here, layer)
    there = make_store(s3, tmp_path / "cache-b")  # another host, cold
    out = tmp_path / "out"
    out.mkdir()
    there.restore(sid, out, UID)
    assert describe(out) == describe(layer)
    assert (out / "workspace/big.bin").read_bytes() == (layer / "workspace/big.bin").read_bytes()
    assert (out / "workspace/big.bin").stat().st_ino == (out / "workspace/big-link").stat().st_ino
    assert os.stat(out / "workspace/sparse.db").st_blocks * 512 < 1 << 20  # holes stay holes
    sparse = "workspace/sparse.db"
    assert (out / sparse).read_bytes() == (layer / sparse).read_bytes()
    assert stat.S_ISFIFO((out / "workspace/pipe").lstat().st_mode)
    assert os.getxattr(out / "workspace/tagged", "user.burrow.test") == b"kept"
    assert (out / "workspace/tagged").stat().st_ino == (out / "workspace/tagged-link").stat().st_ino
    assert os.stat(out / "workspace/small-sparse").st_blocks * 512 < 200 << 10
    assert (out / "workspace/small-sparse").read_bytes() == (
        layer / "workspace/small-sparse").read_bytes()
    # the small files came in one pack object; the 50 MB file and the sparse one are blobs
    named = names(there, sid)
    assert len([n for n in named if n.startswith("packs/")]) == 1
    assert len(named) == 3
    assert there.objects.requests == Counter(get=2 + 3)


def test_a_warm_cache_restores_without_asking_the_store(
        s3: S3Place, tmp_path: Path) -> None:
    layer = make_layer(tmp_path / "layer")
    large = os.urandom(2 * LAZY_MIN)
    (layer / "workspace/large").write_bytes(large)
    host = make_store(s3, tmp_path / "cache")
    sid = pack(host, layer)
    before = sum(host.objects.requests.values())
    for n in range(2):  # the packing host, then again
        out = tmp_path / f"out{n}"
        out.mkdir()
        pending = host.begin_restore(sid, out, UID, lambda path, size: size >= LAZY_MIN)
        pending.finish()
        assert describe(out) == describe(layer)
    assert sum(host.objects.requests.values()) == before

    cold = make_store(s3, tmp_path / "cold")  # another host
    (tmp_path / "c1").mkdir()
    cold.restore(sid, tmp_path / "c1", UID)
    assert len(names(cold, sid)) == 2  # the small files' pack object, the large file's blob
    assert cold.objects.requests["get"] == 2 + 2  # record, manifest, each object once
    cold.cache.forget(BlobCache.blob_name(hashlib.sha256(large).hexdigest()))
    (tmp_path / "c2").mkdir()
    cold.restore(sid, tmp_path / "c2", UID)
    assert cold.objects.requests["get"] == 2 + 2 + 1  # only the blob it lacked


def _forge(store: ObjectSnapshotStore, entries: list[dict[str, object]]) -> str:
    """A committed snapshot with a manifest of our own making, written straight to the bucket
    (what a hostile writer with the bucket's credentials could leave there)."""
    sid = "s_" + secrets.token_hex(8)
    store.objects.put(f"snapshots/{sid}.manifest", manifests.encode(cast(Entries, entries)))
    record = {"id": sid, "box_id": "b_x", "kind": "freeze", "created_at": time.time(),
              "files": 1, "logical_bytes": 1, "new_bytes": 1, "owner": None, "name": None}
    store.objects.put(f"snapshots/{sid}.json", json.dumps(record).encode())
    return sid


@pytest.mark.parametrize("entries", [
    [{"p": "../escape", "t": "d", "m": 0o755}],
    [{"p": "/tmp/abs", "t": "d", "m": 0o755}],
    [{"p": "link", "t": "l", "l": "/tmp"}, {"p": "link/owned", "t": "p", "m": 0o644}],
    [{"p": "f", "t": "f", "m": 0o644, "s": 1, "h": "../../../../etc/passwd"}],
    [{"p": "x", "t": "f", "m": 0o644, "s": 1, "h": "0" * 64},
     {"p": "y", "t": "h", "l": "../x"}],
], ids=["dotdot", "absolute", "through-symlink", "hash-path", "link-outside"])
def test_a_crafted_manifest_is_refused_before_anything_is_fetched_or_written(
        s3: S3Place, tmp_path: Path,
        entries: list[dict[str, object]]) -> None:
    store = make_store(s3, tmp_path / "cache")
    assert_refused(store, _forge(store, entries), tmp_path)
    assert store.objects.requests["get"] == 2  # its record and manifest; no blob


@pytest.mark.parametrize("damage", ["corrupt", "truncated", "missing"])
@pytest.mark.parametrize("lazy", [False, True], ids=["eager", "deferred"])
def test_a_damaged_blob_in_the_store_fails_the_restore_and_never_enters_the_cache(
        s3: S3Place, tmp_path: Path, damage: str, lazy: bool) -> None:
    layer = make_layer(tmp_path / "layer")
    content = os.urandom(2 * LAZY_MIN)
    (layer / "workspace/large").write_bytes(content)
    sid = pack(make_store(s3, tmp_path / "packer"), layer)
    store = make_store(s3, tmp_path / "cache")
    digest = hashlib.sha256(content).hexdigest()
    good = store.objects.read(blob_key(digest))
    if damage == "corrupt":
        store.objects.put(blob_key(digest), zstandard.ZstdCompressor().compress(
            b"evil" + content[4:]))
    elif damage == "truncated":
        store.objects.put(blob_key(digest), good[: len(good) // 2])
    else:
        store.objects.delete([blob_key(digest)])
    out = tmp_path / "out"
    out.mkdir()
    if lazy:
        pending = store.begin_restore(sid, out, UID, lambda path, size: size >= LAZY_MIN)
        with pytest.raises(SnapshotError, match=digest):
            pending.finish()
    else:
        with pytest.raises(SnapshotError, match=digest):
            store.restore(sid, out, UID)
    assert not store.cache.has(BlobCache.blob_name(digest))
    assert not any(p.name == digest for p in store.cache.root.rglob("*"))
    store.objects.put(blob_key(digest), good)  # repaired: the same store restores it now
    again = tmp_path / "again"
    again.mkdir()
    store.restore(sid, again, UID)
    assert (again / "workspace/large").read_bytes() == content


def test_an_outage_fails_the_pack_by_name_keeps_the_last_snapshot_and_passes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    own = SeaweedFS(tmp_path / "seaweed").start()  # this one is stopped: not the session's
    try:
        for name, value in own.env().items():
            monkeypatch.setenv(name, value)
        place = S3Place(own, own.make_bucket("outage"), "burrow")
        store = make_store(place, tmp_path / "cache", retry_timeout_s=1.0)
        layer = make_layer(tmp_path / "layer")
        first = pack(store, layer)
        (layer / "workspace/new").write_bytes(os.urandom(4096))
        own.stop()
        started = time.monotonic()
        with pytest.raises(StoreUnavailableError, match="did not answer"):
            pack(store, layer)
        assert time.monotonic() - started < 10
        own.start()
        assert [r.id for r in store.list()] == [first]  # nothing half-written committed
        second = pack(store, layer)
        assert {r.id for r in store.list()} == {first, second}
        for sid, name in ((first, "a"), (second, "b")):
            out = tmp_path / name
            out.mkdir()
            make_store(place, tmp_path / f"cold-{name}").restore(sid, out, UID)
        assert not (tmp_path / "a/workspace/new").exists()
        assert describe(tmp_path / "b") == describe(layer)
    finally:
        own.stop()


def test_wrong_or_missing_credentials_and_a_missing_bucket_are_refused_at_start(
        s3: S3Place, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert httpx.get(f"{s3.seaweed.endpoint}/{s3.bucket}/").status_code == 403  # unsigned
    make_store(s3, tmp_path / "ok").check()
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    with pytest.raises(StoreUnavailableError, match="refused this host's credentials"):
        make_store(s3, tmp_path / "bad").check()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "nobody")
    with pytest.raises(StoreUnavailableError, match="AWS_ACCESS_KEY_ID"):
        make_store(s3, tmp_path / "bad").check()
    for name, value in s3.seaweed.env().items():
        monkeypatch.setenv(name, value)
    with pytest.raises(StoreUnavailableError, match=r"does not exist.*create it"):
        make_store(S3Place(s3.seaweed, "no-such-bucket", ""), tmp_path / "nb").check()
    closed = ObjectClient(s3.bucket, "", endpoint="http://127.0.0.1:9", retry_timeout_s=0.5)
    with pytest.raises(StoreUnavailableError, match="BURROW_S3_ENDPOINT"):
        closed.check()


def test_store_urls_are_checked_and_pick_their_engine(tmp_path: Path) -> None:
    for bad, says in [("ftp://x/y", "file:///path"), ("s3://", "bucket name"),
                      ("s3://Bad_Bucket/p", "bucket name"), ("file://relative", "absolute"),
                      ("s3://bucket/a/../b", "'..'")]:
        with pytest.raises(ValueError, match=says):
            parse_store_url(bad)
        with pytest.raises(ValueError, match="BURROW_STORE_URL"):
            Settings(redis_url="redis://x", dev=True, store_url=bad)
    with pytest.raises(ValueError, match="BURROW_S3_ENDPOINT"):
        Settings(redis_url="redis://x", dev=True, s3_endpoint="localhost:8333")
    config = RuntimeConfig(data_dir=tmp_path / "d")
    assert isinstance(open_store(config), LocalSnapshotStore)
    elsewhere = open_store(RuntimeConfig(data_dir=tmp_path / "d",
                                         store_url=f"file://{tmp_path}/snaps"))
    assert isinstance(elsewhere, LocalSnapshotStore) and elsewhere.root == tmp_path / "snaps"
    s3 = open_store(RuntimeConfig(data_dir=tmp_path / "d", store_url="s3://bkt/pre/fix",
                                  s3_endpoint="http://127.0.0.1:9"))
    assert isinstance(s3, ObjectSnapshotStore)
    assert s3.cache.root == config.store_cache_dir
    s3.close()


def test_the_cache_is_bounded_and_evicts_the_least_recently_used(
        s3: S3Place, tmp_path: Path) -> None:
    layer = tmp_path / "layer"
    layer.mkdir()
    for n in range(8):
        (layer / f"f{n}").write_bytes(os.urandom(SMALL_MAX + n))  # blobs of their own
    host = make_store(s3, tmp_path / "cache", max_bytes=1_000_000)
    sid = pack(host, layer)
    assert host.cache.size <= 1_000_000
    out = tmp_path / "out"
    out.mkdir()
    host.restore(sid, out, UID)  # what was evicted is fetched again
    assert describe(out) == describe(layer)
    assert host.cache.size <= 1_000_000
    reopened = BlobCache(tmp_path / "cache", 1_000_000)  # a restart counts what is there
    assert reopened.size == host.cache.size


# --- pack objects ----------------------------------------------------------------------------

def test_a_cold_restore_of_a_layer_of_small_files_asks_three_requests(
        s3: S3Place, tmp_path: Path) -> None:
    """The 1 MB layer of 69 files: one pack object; a host with an empty cache asks for the
    record, the manifest and that object. The format before pack objects asked 69 more."""
    layer = small_files(tmp_path / "layer")
    packer = make_store(s3, tmp_path / "packer")
    sid = pack(packer, layer)
    # the pack object, the manifest, the sweeps' flags, the record
    assert packer.objects.requests == Counter(put=3, list=1)
    assert list(packer.objects.list("blobs/")) == []
    assert len(list(packer.objects.list("packs/"))) == 1
    out, cold = restored(s3, sid, tmp_path)
    assert describe(out) == describe(layer)
    assert cold.objects.requests == Counter(get=3)

    old = make_store(s3, tmp_path / "old", small_max=0)
    old_sid = pack(old, layer)
    out, cold = restored(s3, old_sid, tmp_path)
    assert describe(out) == describe(layer)
    assert cold.objects.requests == Counter(get=2 + 69)


def _pack_of(store: ObjectSnapshotStore, snapshot_id: str) -> str:
    (name,) = {n for n in names(store, snapshot_id) if n.startswith("packs/")}
    return name


@pytest.mark.parametrize("damage", ["corrupt", "truncated", "missing", "no-footer"])
def test_a_damaged_pack_object_fails_the_restore_and_never_enters_the_cache(
        s3: S3Place, tmp_path: Path, damage: str) -> None:
    layer = small_files(tmp_path / "layer", 100_000)
    sid = pack(make_store(s3, tmp_path / "packer"), layer)
    store = make_store(s3, tmp_path / "cache")
    key = _pack_of(store, sid)
    good = store.objects.read(key)
    middle = len(good) // 2
    if damage == "corrupt":  # one bit
        store.objects.put(key, good[:middle] + bytes([good[middle] ^ 1]) + good[middle + 1:])
    elif damage == "truncated":
        store.objects.put(key, good[:middle])
    elif damage == "no-footer":
        store.objects.put(key, good[:-16])
    else:
        store.objects.delete([key])
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(SnapshotError, match=key.removeprefix("packs/")):
        store.restore(sid, out, UID)
    assert not store.cache.has(BlobCache.pack_name(key.removeprefix("packs/")))
    assert not any(p.name == key.removeprefix("packs/") for p in store.cache.root.rglob("*"))
    assert not any(p.is_file() for p in (store.cache.root / "tmp").iterdir())
    store.objects.put(key, good)  # repaired: the same store restores it now
    again = tmp_path / "again"
    again.mkdir()
    store.restore(sid, again, UID)
    assert describe(again) == describe(layer)


def _crafted_pack(segments: list[tuple[bytes, bytes]], shift: int = 0) -> tuple[str, bytes]:
    """A pack object whose index names each (claimed content, stored content) pair's claimed
    content's hash for the stored content's blob; `shift` moves every offset."""
    body, index = b"", b""
    for claimed, stored in segments:
        blob = zstandard.ZstdCompressor().compress(stored)
        index += struct.pack("<32sQI", hashlib.sha256(claimed).digest(), len(body) + shift,
                             len(blob))
        body += blob
    data = body + index + struct.pack("<Q8s", len(segments), b"BURROWP1")
    return hashlib.sha256(data).hexdigest(), data


@pytest.mark.parametrize("lie", ["other-content", "outside", "not-in-it", "too-large"])
def test_a_crafted_pack_object_writes_nothing_it_does_not_hold(
        s3: S3Place, tmp_path: Path, lie: str) -> None:
    """What a hostile writer with the bucket's credentials could leave: a pack object whose
    index lies (its name is its hash, so only the segments' own hashes catch it)."""
    store = make_store(s3, tmp_path / "cache")
    claimed = b"what the manifest says"
    if lie == "other-content":
        sha, data = _crafted_pack([(claimed, b"something else")])
    elif lie == "outside":
        sha, data = _crafted_pack([(claimed, claimed)], shift=1 << 20)
    elif lie == "not-in-it":
        sha, data = _crafted_pack([(b"another file", b"another file")])
    else:  # a segment after MAX_OBJECT bytes of nothing: refused before it is all fetched
        sha, data = _crafted_pack([(claimed, claimed)], shift=MAX_OBJECT)
        data = bytes(MAX_OBJECT) + data
        sha = hashlib.sha256(data).hexdigest()
    store.objects.put(pack_key(sha), data)
    sid = _forge(store, [{"p": "f", "t": "f", "m": 0o644, "s": len(claimed),
                          "h": hashlib.sha256(claimed).hexdigest(), "k": [sha, len(claimed), 1]}])
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(SnapshotError, match=sha):
        store.restore(sid, out, UID)
    assert not (out / "f").exists() or (out / "f").read_bytes() == b""
    # one that is what its name says may be cached (its lies fail each restore before it
    # writes): not one that is no pack object
    assert store.cache.has(BlobCache.pack_name(sha)) == (lie in ("other-content", "not-in-it"))


def test_a_snapshot_of_the_format_before_pack_objects_restores_and_its_next_freeze_packs(
        s3: S3Place, tmp_path: Path) -> None:
    layer = make_layer(tmp_path / "layer")
    (layer / "workspace/large").write_bytes(os.urandom(SMALL_MAX))
    old = make_store(s3, tmp_path / "old", small_max=0)  # as Burrow wrote them before
    sid = pack(old, layer)
    raw = json.loads(zstandard.ZstdDecompressor().decompress(
        old.objects.read(f"snapshots/{sid}.manifest")))
    assert raw["format"] == 1 and not any("k" in e for e in raw["entries"])
    assert list(old.objects.list("packs/")) == []
    blobs = names(old, sid)
    assert len(blobs) == 3  # a.txt, same1 and same2 (one), large: every file a blob
    host = make_store(s3, tmp_path / "host")
    out = tmp_path / "out"
    out.mkdir()
    index = host.restore(sid, out, UID)
    assert describe(out) == describe(layer)
    assert host.objects.requests == Counter(get=2 + 3)
    again = host.pack(out, box_id="b_x", kind="freeze", name=None, owner=None, index=index)
    named = names(host, again.record.id)
    assert len(named) == 2 and any(n.startswith("packs/") for n in named)
    assert host.objects.requests["head"] == 0  # the large blob: seen when the record was read
    out, cold = restored(s3, again.record.id, tmp_path)
    assert describe(out) == describe(layer)
    assert cold.objects.requests == Counter(get=2 + 2)


def _size(store: ObjectSnapshotStore, key: str) -> int:
    return next(i.size for i in store.objects.list("packs/") if i.key == key)


def test_a_small_file_that_keeps_changing_ends_up_alone_and_its_next_freezes_upload_only_it(
        s3: S3Place, tmp_path: Path) -> None:
    """The first change of a small file rewrites the rest of its pack object (which held the
    old content: no snapshot may name it again), the rest apart from the new content; every
    later change of that file uploads only the file."""
    layer = small_files(tmp_path / "layer")
    store = make_store(s3, tmp_path / "cache")
    first = freeze(store, layer, None)
    (old,) = names(store, first.record.id)
    (layer / "workspace/f0005.txt").write_bytes(b"changed")
    store.objects.requests.clear()
    second = freeze(store, layer, first.index)
    # the new content's pack object, the rest's, the manifest, the record; the flags
    assert store.objects.requests == Counter(put=4, list=1)
    named = names(store, second.record.id)
    assert old not in named and len(named) == 2
    assert sorted(_size(store, key) for key in named)[0] < 100  # "changed" alone
    for n in range(3):
        (layer / "workspace/f0005.txt").write_bytes(b"changed again %d" % n)
        store.objects.requests.clear()
        again = freeze(store, layer, second.index)
        assert store.objects.requests == Counter(put=3, list=1)
        (new,) = names(store, again.record.id) - names(store, second.record.id)
        assert _size(store, new) < 100
        second = again
    unchanged = freeze(store, layer, second.index)
    assert names(store, unchanged.record.id) == names(store, second.record.id)
    out, cold = restored(s3, unchanged.record.id, tmp_path)
    assert describe(out) == describe(layer)
    assert cold.objects.requests == Counter(get=2 + 2)


def test_a_box_frozen_over_and_over_names_few_pack_objects(
        s3: S3Place, tmp_path: Path) -> None:
    """Each freeze changes another small file: a snapshot names the pack object of the rest,
    the new one, and at most MAX_OLD_PACKS of the earlier small ones."""
    layer = small_files(tmp_path / "layer")
    store = make_store(s3, tmp_path / "cache")
    result = freeze(store, layer, None)
    most = 0
    for n in range(12):
        (layer / f"workspace/f{n:04}.txt").write_bytes(b"changed %d" % n)
        result = freeze(store, layer, result.index)
        most = max(most, len(names(store, result.record.id)))
    assert most == objectpack.MAX_OLD_PACKS + 2
    out, cold = restored(s3, result.record.id, tmp_path)
    assert describe(out) == describe(layer)
    assert cold.objects.requests["get"] <= 2 + objectpack.MAX_OLD_PACKS + 2


# --- what a deleted or rewritten small file leaves in the bucket -----------------------------

def _bucket(store: ObjectSnapshotStore) -> dict[str, bytes]:
    """Every object under the store's prefix, as stored."""
    return {info.key: store.objects.read(info.key) for info in store.objects.list("")}


def _drop_all_but(store: ObjectSnapshotStore, keep: str) -> None:
    """Delete every snapshot but `keep` (as the hourly collection does to a box's older
    freezes) and collect."""
    for record in store.list():
        if record.id != keep:
            store.delete(record.id)
    store.gc(grace_s=0)


@pytest.mark.parametrize("change", ["deleted", "rewritten"])
@pytest.mark.parametrize("where", ["first", "later"])
def test_a_deleted_or_rewritten_small_files_content_leaves_the_bucket_with_the_older_snapshots(
        s3: S3Place, tmp_path: Path, change: str, where: str) -> None:
    """The attack: a tenant's secret in a small file (its memory database) beside other small
    files in a pack object, "delete all memories" (the file deleted, or rewritten with the
    secret zeroed, as SQLite's secure_delete does), the next freeze, the older snapshots
    deleted and collected: no object in the bucket holds the secret, read back raw and
    decompressed as the store reads it. The secret is in the box's first pack object, or in
    a later one that further freezes kept naming."""
    store = make_store(s3, tmp_path / "cache")
    layer = small_files(tmp_path / "layer", 200_000)
    memory = layer / "workspace/.burrow/memory.db"
    memory.parent.mkdir()
    head, tail = os.urandom(6000), os.urandom(6000)
    secret = b"a tenant's secret " + secrets.token_hex(12).encode()
    if where == "first":
        memory.write_bytes(head + secret + tail)
        result = freeze(store, layer, None)
    else:
        result = freeze(store, layer, None)
        memory.write_bytes(head + secret + tail)
        for n in range(3):  # new beside it: its pack object is mostly other files
            (layer / f"workspace/notes{n}").write_bytes(os.urandom(20_000))
        result = freeze(store, layer, result.index)
        (layer / "workspace/later").write_bytes(b"a file of the next freeze")
        result = freeze(store, layer, result.index)  # names the secret's object again
    (held,) = holding(_bucket(store), secret)  # the control: the search finds it
    assert held in names(store, result.record.id)
    if change == "deleted":
        memory.unlink()
    else:
        memory.write_bytes(head + bytes(len(secret)) + tail)
    last = freeze(store, layer, result.index)
    assert held not in names(store, last.record.id)
    _drop_all_but(store, last.record.id)
    assert holding(_bucket(store), secret) == []
    out, _ = restored(s3, last.record.id, tmp_path)
    assert describe(out) == describe(layer)


def test_a_pack_object_a_box_keeps_whole_is_named_again_and_outlives_its_snapshot(
        s3: S3Place, tmp_path: Path) -> None:
    """The other side of the rule: a freeze that only added a file names the earlier pack
    object again (every file in it is still the box's), so deleting the snapshot that wrote
    it does not collect it."""
    store = make_store(s3, tmp_path / "cache")
    layer = small_files(tmp_path / "layer", 200_000)
    first = freeze(store, layer, None)
    (layer / "workspace/new").write_bytes(b"added")
    store.objects.requests.clear()
    second = freeze(store, layer, first.index)
    assert store.objects.requests == Counter(put=3, list=1)  # "added"'s object, and so on
    (old_pack,) = names(store, first.record.id)
    assert old_pack in names(store, second.record.id)
    _drop_all_but(store, second.record.id)
    assert store.objects.exists(old_pack)
    out, _ = restored(s3, second.record.id, tmp_path)
    assert describe(out) == describe(layer)
    store.delete(second.record.id)
    assert store.gc(grace_s=0) > 0
    assert list(store.objects.list("packs/")) == []


def test_no_box_names_another_boxs_pack_object(s3: S3Place, tmp_path: Path) -> None:
    """Small files are shared only along a box's own snapshots: box B, with a file the same as
    one of box A's, names no pack object of A's, so A's deletion leaves none of A's files."""
    a = tmp_path / "a"
    (a / "workspace").mkdir(parents=True)
    (a / "workspace/common").write_bytes(b"the same in both boxes" * 100)
    (a / "workspace/secret").write_bytes(b"only box A has this")
    b = tmp_path / "b"
    (b / "workspace").mkdir(parents=True)
    (b / "workspace/common").write_bytes(b"the same in both boxes" * 100)
    host = make_store(s3, tmp_path / "cache")  # both boxes on one host
    a_snap = host.pack(a, box_id="b_a", kind="freeze", name=None, owner=None, index=None)
    b_first = host.pack(b, box_id="b_b", kind="freeze", name=None, owner=None, index=None)
    (b / "workspace/more").write_bytes(b"B's own")
    b_snap = host.pack(b, box_id="b_b", kind="freeze", name=None, owner=None,
                       index=b_first.index)
    assert names(host, b_snap.record.id).isdisjoint(names(host, a_snap.record.id))
    assert holding(_bucket(host), b"only box A has this") != []  # the control
    host.delete(a_snap.record.id)
    host.gc(grace_s=0)
    assert holding(_bucket(host), b"only box A has this") == []
    assert holding(_bucket(host), hashlib.sha256(b"only box A has this").digest()) == []
    out, _ = restored(s3, b_snap.record.id, tmp_path)
    assert describe(out) == describe(b)


# --- what a host has seen in the bucket --------------------------------------------------------

def test_a_restarted_host_asks_nothing_about_the_objects_it_saw_before(
        s3: S3Place, tmp_path: Path) -> None:
    layer = make_layer(tmp_path / "layer")
    for n in range(5):
        (layer / f"workspace/large{n}").write_bytes(os.urandom(SMALL_MAX + n))
    first = make_store(s3, tmp_path / "cache")
    result = freeze(first, layer, None)
    first.close()
    (layer / "workspace/proj/new").write_text("added")  # a freeze that has to happen
    restarted = make_store(s3, tmp_path / "cache")
    again = freeze(restarted, layer, result.index)
    assert restarted.objects.requests["head"] == 0
    assert names(restarted, again.record.id) - names(restarted, result.record.id) != set()
    restarted.close()
    (tmp_path / "cache/seen.log").unlink()  # the control: a host that remembers nothing
    forgetful = make_store(s3, tmp_path / "cache")
    freeze(forgetful, layer, result.index)
    assert forgetful.objects.requests["head"] == 5 + 1  # each large blob, the pack object
    out, _ = restored(s3, again.record.id, tmp_path)
    assert describe(out) == describe(layer)


def test_the_log_of_what_a_host_saw_is_bounded_and_survives_damage(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(seen, "MAX_NAMES", 100)
    monkeypatch.setattr(seen, "REWRITE_SLACK", 10)
    log = tmp_path / "seen.log"
    memory = seen.Seen(3600.0, log)
    now = time.time()
    digests = [hashlib.sha256(b"%d" % n).hexdigest() for n in range(1000)]
    for n, digest in enumerate(digests):
        memory.saw([digest], now - 1000 + n)
        assert len(memory) <= 100
        assert len(log.read_text().splitlines()) <= 2 * 100 + 10 + 1
    with open(log, "a") as f:
        f.write("garbage\n12 ../../etc/passwd\n" + str(int(now)) + " packs/" + "0" * 64 + "\n")
        f.write(f"{int(now - 7200)} {'1' * 64}\n")  # too old to trust
        f.write(f"{int(now)} {'2' * 30}")  # cut short by a crash
    again = seen.Seen(3600.0, log)
    assert again.when(digests[-1]) is not None
    assert again.when(digests[0]) is None  # forgotten: the oldest go first
    assert again.when("packs/" + "0" * 64) is not None
    assert again.when("1" * 64) is None and again.when("../../etc/passwd") is None
    assert (again.when(digests[-1]) or 0) <= now - 1000 + 999  # never later than seen


# --- garbage collection while other hosts pack ---------------------------------------------

KINDS = ["blob", "pack", "pack-uncached"]


def _orphan(store: ObjectSnapshotStore, tmp_path: Path,
            kind: str = "blob") -> tuple[Path, str, LayerIndex]:
    """A layer of one file whose object is in the bucket, named by no snapshot any more (the
    box's named snapshot, deleted): a blob of its own, or a pack object (which this host's
    cache holds, unless `pack-uncached`); its name; and the box's index from that snapshot."""
    layer = tmp_path / "reuse"
    layer.mkdir(parents=True)
    content = os.urandom(SMALL_MAX + 1 if kind == "blob" else 50_000)
    (layer / "shared").write_bytes(content)
    result = store.pack(layer, box_id="b_x", kind="named", name="n", owner=None, index=None)
    store.delete(result.record.id)
    digest = hashlib.sha256(content).hexdigest()
    if kind == "blob":
        return layer, digest, result.index
    name = pack_key(result.index["shared"][3][0])
    if kind == "pack-uncached":
        store.cache.forget(BlobCache.pack_name(name.removeprefix("packs/")))
    return layer, name, result.index


def _in_thread(fn: Callable[[], object]) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            fn()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, errors


def test_gc_deletes_only_unnamed_blobs_and_pack_objects_past_their_grace(
        s3: S3Place, tmp_path: Path) -> None:
    store = make_store(s3, tmp_path / "cache")
    keep = pack(store, make_layer(tmp_path / "layer"))
    _, blob, _ = _orphan(store, tmp_path / "b", "blob")
    _, packed, _ = _orphan(store, tmp_path / "p", "pack")
    assert store.stats().blobs == 3  # keep's pack object, the two orphans
    assert store.gc(grace_s=3600) == 0  # young: spared
    assert store.gc(grace_s=0) > 0
    assert not store.objects.exists(object_key(blob))
    assert not store.objects.exists(packed)
    assert committed_objects_missing(store) == set()
    assert store.stats().blobs == 1
    restored(s3, keep, tmp_path)


@pytest.mark.parametrize("kind", KINDS)
def test_a_sweep_that_ran_after_a_pack_found_an_object_does_not_lose_it(
        s3: S3Place, tmp_path: Path, kind: str) -> None:
    """Host A finds the orphan present; host B's whole sweep deletes it before A writes its
    manifest. A sees B's flag, checks, uploads the object again (a pack object from its
    cache), or packs its files anew and writes its manifest again, then commits."""
    packer = make_store(s3, tmp_path / "a")
    sweeper = make_store(s3, tmp_path / "b")
    layer, orphan, index = _orphan(packer, tmp_path, kind)
    packer.seen = type(packer.seen)(packer.seen.trust_s)  # a host that must ask (its log lost)
    before = packer.objects.requests["put"]
    freed: list[int] = []

    def sweep_now(step: str) -> None:
        if step == "uploaded" and not freed:
            freed.append(sweeper.gc(grace_s=0))

    packer.on_step = sweep_now
    sid = freeze(packer, layer, index).record.id
    assert freed[0] > 0  # the sweep did delete it meanwhile
    assert committed_objects_missing(packer) == set()
    assert names(packer, sid) == {orphan}
    # the object again, the manifest, the record; or the manifest, the file packed anew (the
    # same object: named by its hash), the manifest again, the record
    assert packer.objects.requests["put"] - before == (4 if kind == "pack-uncached" else 3)
    out, _ = restored(s3, sid, tmp_path)
    assert (out / "shared").read_bytes() == (layer / "shared").read_bytes()


@pytest.mark.parametrize("kind", KINDS)
def test_a_pack_waits_for_a_sweep_under_way_that_may_delete_its_object(
        s3: S3Place, tmp_path: Path, kind: str) -> None:
    """B's sweep has written its flag and listed the manifests (A's is not there yet); A
    packs, reusing the orphan, and must not commit until B ends and the object is back (or
    its file is in a new pack object)."""
    packer = make_store(s3, tmp_path / "a")
    sweeper = make_store(s3, tmp_path / "b")
    layer, orphan, index = _orphan(packer, tmp_path, kind)
    listed, go, settling = threading.Event(), threading.Event(), threading.Event()
    freed: list[int] = []

    def hold(step: str) -> None:
        if step == "listed":
            listed.set()
            assert go.wait(30)

    sweeper.sweeper.on_step = hold
    sweeping, sweep_errors = _in_thread(lambda: freed.append(sweeper.gc(grace_s=0)))
    assert listed.wait(30)
    packer.on_step = lambda step: settling.set() if step == "manifest" else None
    result: list[str] = []
    packing, pack_errors = _in_thread(
        lambda: result.append(freeze(packer, layer, index).record.id))
    assert settling.wait(30)
    time.sleep(0.5)
    assert not result  # it waits for the sweep
    go.set()
    sweeping.join(30)
    packing.join(30)
    assert not sweep_errors and not pack_errors, (sweep_errors, pack_errors)
    assert freed[0] > 0 and result
    assert committed_objects_missing(packer) == set()
    assert packer.objects.exists(object_key(orphan))
    out, _ = restored(s3, result[0], tmp_path)
    assert (out / "shared").read_bytes() == (layer / "shared").read_bytes()


@pytest.mark.parametrize("kind", KINDS)
def test_a_sweep_spares_an_object_whose_pack_wrote_its_manifest_before_the_second_listing(
        s3: S3Place, tmp_path: Path, kind: str) -> None:
    packer = make_store(s3, tmp_path / "a")
    sweeper = make_store(s3, tmp_path / "b")
    layer, orphan, index = _orphan(packer, tmp_path, kind)
    manifest_written = threading.Event()
    result: list[str] = []
    errors: list[BaseException] = []

    def pack_between(step: str) -> None:
        if step == "flag":  # B's flag is written; A writes its manifest before B lists again
            packer.on_step = lambda s: manifest_written.set() if s == "manifest" else None
            thread, found = _in_thread(
                lambda: result.append(freeze(packer, layer, index).record.id))
            errors.extend(found)
            threads.append(thread)
            assert manifest_written.wait(30)

    threads: list[threading.Thread] = []
    sweeper.sweeper.on_step = pack_between
    freed = sweeper.gc(grace_s=0)
    threads[0].join(30)
    assert not errors and result
    assert freed == 0  # the orphan was named again: spared
    assert packer.objects.exists(object_key(orphan))
    assert committed_objects_missing(packer) == set()


@pytest.mark.parametrize("cached", [True, False], ids=["cached", "uncached"])
def test_an_unchanged_file_whose_object_a_sweep_took_is_uploaded_again(
        s3: S3Place, tmp_path: Path, cached: bool) -> None:
    """As the local store's: a freeze trusting the index of a named snapshot that was deleted
    and collected (by another host's sweep) since: its large file's blob is uploaded again;
    its small files' pack object is put back from this host's cache, or they are packed
    anew."""
    store = make_store(s3, tmp_path / "a")
    layer = make_layer(tmp_path / "layer")
    (layer / "workspace/large").write_bytes(os.urandom(SMALL_MAX))
    named = store.pack(layer, box_id="b", kind="named", name="n", owner=None, index=None)
    store.delete(named.record.id)
    if not cached:
        shutil.rmtree(tmp_path / "a/packs")
        store = make_store(s3, tmp_path / "a")  # (a restart that counts what is cached)
    assert make_store(s3, tmp_path / "b").gc(grace_s=0) > 0
    puts = store.objects.requests["put"]
    again = store.pack(layer, box_id="b", kind="freeze", name=None, owner=None,
                       index=named.index)
    assert committed_objects_missing(store) == set()
    assert store.objects.requests["put"] - puts == (4 if cached else 5)
    assert pack_key(named.index["workspace/proj/a.txt"][3][0]) in names(store, again.record.id)
    out, _ = restored(s3, again.record.id, tmp_path)
    assert describe(out) == describe(layer)


def test_a_named_copy_survives_the_deletion_of_its_source_and_a_sweep(
        s3: S3Place, tmp_path: Path) -> None:
    store = make_store(s3, tmp_path / "cache")
    layer = make_layer(tmp_path / "layer")
    source = pack(store, layer)
    named = store.copy(source, box_id="b_x", kind="named", name="base", owner="t")
    store.delete(source)
    with pytest.raises(SnapshotNotFoundError):
        store.get(source)
    store.gc(grace_s=0)
    assert committed_objects_missing(store) == set()
    out, _ = restored(s3, named.id, tmp_path)
    assert describe(out) == describe(layer)
    assert [r.name for r in store.list()] == ["base"]


# --- a rolling upgrade: manifests of a format a host does not read --------------------------

def reformatted(raw: bytes, fmt: object) -> bytes:
    """A stored manifest as a Burrow writing format `fmt` might have written it."""
    data = json.loads(zstandard.ZstdDecompressor().decompress(raw))
    data["format"] = fmt
    return zstandard.ZstdCompressor().compress(json.dumps(data).encode())


def test_a_manifest_of_a_newer_format_fails_by_name_and_its_objects_are_kept(
        s3: S3Place, tmp_path: Path) -> None:
    """What a host meets when a newer Burrow froze the box: the restore and a copy fail by the
    format's name, saying to upgrade, before anything is fetched or written; a garbage
    collection deletes nothing (the manifest may name any object); an upgraded host (here:
    the manifest as this code writes it) restores it whole."""
    from gateway.errors import box_error_response

    layer = make_layer(tmp_path / "layer")
    (layer / "workspace/large").write_bytes(os.urandom(SMALL_MAX))
    packer = make_store(s3, tmp_path / "packer")
    sid = pack(packer, layer)
    key = f"snapshots/{sid}.manifest"
    good = packer.objects.read(key)
    packer.objects.put(key, reformatted(good, 3))
    _, orphan, _ = _orphan(packer, tmp_path / "o", "pack")
    host = make_store(s3, tmp_path / "host")
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ManifestFormatError, match="manifest format 3") as refused:
        host.restore(sid, out, UID)
    assert "Upgrade Burrow on this host" in refused.value.message
    assert list(out.iterdir()) == []
    assert host.objects.requests["get"] == 2  # the record and the manifest; no object
    with pytest.raises(ManifestFormatError, match="manifest format 3"):
        host.copy(sid, box_id="b_y", kind="named", name="n", owner=None)
    with pytest.raises(ManifestFormatError):
        host.gc(grace_s=0)
    assert host.objects.exists(object_key(orphan))
    assert committed_objects_missing(packer) == set()
    response = box_error_response(refused.value)
    assert response.status_code == 503
    assert json.loads(response.body)["error"]["code"] == "host_unsupported"
    packer.objects.put(key, good)
    out, _ = restored(s3, sid, tmp_path)
    assert describe(out) == describe(layer)


def test_store_format_1_writes_what_burrow_before_pack_objects_reads_and_reads_format_2(
        s3: S3Place, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """BURROW_STORE_FORMAT=1, for a rolling upgrade: a freeze writes every file a blob of its
    own, in a manifest of format 1 (all a Burrow before pack objects reads), and a snapshot
    of format 2 still restores."""
    monkeypatch.setenv("BURROW_STORE_FORMAT", "1")
    settings = Settings(redis_url="redis://x", dev=True)
    assert settings.store_format == 1
    config = RuntimeConfig(data_dir=tmp_path / "d", store_url=s3.url,
                           s3_endpoint=s3.seaweed.endpoint, store_format=settings.store_format)
    store = open_store(config)
    assert isinstance(store, ObjectSnapshotStore)
    layer = small_files(tmp_path / "layer", 100_000)
    sid = pack(store, layer)
    raw = json.loads(zstandard.ZstdDecompressor().decompress(
        store.objects.read(f"snapshots/{sid}.manifest")))
    assert raw["format"] == 1 and not any("k" in e for e in raw["entries"])
    assert list(store.objects.list("packs/")) == []
    packed = pack(make_store(s3, tmp_path / "other"), layer)  # a host writing format 2
    out = tmp_path / "out"
    out.mkdir()
    store.restore(packed, out, UID)
    assert describe(out) == describe(layer)
    store.close()
    monkeypatch.setenv("BURROW_STORE_FORMAT", "3")
    with pytest.raises(ValueError, match="BURROW_STORE_FORMAT"):
        Settings(redis_url="redis://x", dev=True)


# --- through the box runtime -----------------------------------------------------------------

@pytest.mark.boxes
async def test_a_box_frozen_to_s3_wakes_on_a_host_with_an_empty_cache_with_its_files_identical(
        s3: S3Place, redis: Redis, tmp_path: Path) -> None:
    """BURROW_STORE_URL=s3://… as `burrow serve` builds it: the runtime freezes to the bucket;
    with the local layer archived and the cache deleted, the wake fetches it all back."""
    config = dataclasses.replace(make_config(tmp_path / "data"), store_url=s3.url,
                                 s3_endpoint=s3.seaweed.endpoint)
    first = await BoxManager.open(config, redis, Keys())
    try:
        assert isinstance(first.store, ObjectSnapshotStore)
        box = await first.create(BoxSpec())
        await run(first, box.id, TREE + " && head -c 3000000 /dev/urandom > proj/large.bin")
        before = await run(first, box.id, FINGERPRINT)
        await first.archive(box.id)  # frozen to the bucket, the local layer dropped
        assert first.store.objects.requests["put"] > 0
    finally:
        await first.close()
    shutil.rmtree(config.store_cache_dir)
    second = await BoxManager.open(config, redis, Keys())  # this host, its cache empty
    try:
        assert await run(second, box.id, FINGERPRINT) == before
        assert isinstance(second.store, ObjectSnapshotStore)
        assert second.store.objects.requests["get"] > 2  # record, manifest and the blobs
        assert (await second.get(box.id)).wakes == 1
        await second.delete(box.id)
    finally:
        await second.close()
        shutil.rmtree(config.run_dir, ignore_errors=True)
    assert second.backend.leftovers() == {"processes": [], "mounts": [], "cgroups": []}


@pytest.mark.boxes
async def test_a_store_outage_fails_a_freeze_safe_and_the_box_keeps_running(
        tmp_path: Path, redis: Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    """Down before the freeze: the box is not even stopped. Down once the box is stopped for
    it: the box starts again from its layer on this disk. Either way nothing is lost, the
    freeze fails by name (503 store_unavailable), the manager remembers the failure for
    /readyz, and once the store is back the freeze goes through and the box wakes from it."""
    own = SeaweedFS(tmp_path / "seaweed").start()
    manager: BoxManager | None = None
    try:
        for name, value in own.env().items():
            monkeypatch.setenv(name, value)
        place = S3Place(own, own.make_bucket("down"), "burrow")
        manager = BoxManager(make_config(tmp_path / "data"), redis, Keys(),
                             store=make_store(place, tmp_path / "cache", retry_timeout_s=1.0))
        await manager.start()
        box = await manager.create(BoxSpec())
        assert (await manager.exec(box.id, ExecRequest(command="echo v1 > f"))).exit_code == 0
        own.stop()
        with pytest.raises(StoreUnavailableError):
            await manager.freeze(box.id)
        record = await manager.get(box.id)
        assert (record.state, record.wakes, record.pid) == (BoxState.RUNNING, 0, box.pid)
        assert manager.store_failure is not None

        own.start()

        def down_after_the_stop(_box: str, phase: str) -> None:
            if phase == "stopped":
                own.stop()

        manager.on_phase = down_after_the_stop
        with pytest.raises(StoreUnavailableError):
            await manager.freeze(box.id)
        manager.on_phase = None
        record = await manager.get(box.id)
        assert (record.state, record.wakes) == (BoxState.RUNNING, 1)  # started again
        assert (await manager.exec(box.id, ExecRequest(command="cat f"))).stdout == "v1\n"

        own.start()
        frozen = await manager.freeze(box.id)
        assert frozen.state == BoxState.FROZEN and manager.store_failure is None
        await manager.archive(box.id)  # the bucket holds it alone now
        assert (await manager.exec(box.id, ExecRequest(command="cat f"))).stdout == "v1\n"
        await manager.delete(box.id)
    finally:
        if manager is not None:
            await manager.close()
            shutil.rmtree(manager.config.run_dir, ignore_errors=True)
        own.stop()


@pytest.mark.boxes
async def test_a_wake_from_a_manifest_of_a_newer_format_fails_by_name_and_keeps_the_box(
        s3: S3Place, redis: Redis, tmp_path: Path) -> None:
    """A host older than the Burrow that froze the box (a rolling upgrade done in the wrong
    order): the wake fails with 503 wake_failed naming the format and saying to upgrade; the
    box keeps its snapshot, nothing of a partial restore; a host that reads the format wakes
    it with its files identical."""
    config = dataclasses.replace(make_config(tmp_path / "data"), store_url=s3.url,
                                 s3_endpoint=s3.seaweed.endpoint)
    first = await BoxManager.open(config, redis, Keys())
    try:
        box = await first.create(BoxSpec())
        await run(first, box.id, TREE)
        before = await run(first, box.id, FINGERPRINT)
        archived = await first.archive(box.id)
        assert isinstance(first.store, ObjectSnapshotStore)
        key = f"snapshots/{archived.snapshot_id}.manifest"
        good = first.store.objects.read(key)
        first.store.objects.put(key, reformatted(good, 3))
    finally:
        await first.close()
    shutil.rmtree(config.store_cache_dir)
    older = await BoxManager.open(config, redis, Keys())
    try:
        with pytest.raises(WakeFailedError, match="manifest format 3") as failed:
            await older.wake(box.id)
        assert "Upgrade Burrow on this host" in failed.value.message
        record = await older.get(box.id)
        assert record.snapshot_id == archived.snapshot_id and not record.layer_local
        assert record.reason is not None and "manifest format 3" in record.reason
        assert not older.backend.has_layer(record)
    finally:
        await older.close()
    make_store(s3, tmp_path / "fix").objects.put(key, good)  # what an upgraded host reads
    shutil.rmtree(config.store_cache_dir)
    upgraded = await BoxManager.open(config, redis, Keys())
    try:
        assert await run(upgraded, box.id, FINGERPRINT) == before
        await upgraded.delete(box.id)
    finally:
        await upgraded.close()
        shutil.rmtree(config.run_dir, ignore_errors=True)
    assert upgraded.backend.leftovers() == {"processes": [], "mounts": [], "cgroups": []}
