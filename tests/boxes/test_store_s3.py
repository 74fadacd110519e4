"""The snapshot store in S3-compatible object storage, against a real SeaweedFS: round trips,
another host with an empty cache, cache hits that ask nothing, refusals of crafted manifests
and damaged blobs, an outage, wrong credentials, and garbage collection racing packs."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import secrets
import shutil
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import cast

import httpx
import pytest
import zstandard
from redis.asyncio import Redis

from boxes import BoxManager, BoxSpec, BoxState, ExecRequest, manifests
from boxes.blobcache import BlobCache
from boxes.config import RuntimeConfig
from boxes.errors import SnapshotError, SnapshotNotFoundError, StoreUnavailableError
from boxes.manifests import Entries
from boxes.objectclient import ObjectClient
from boxes.objectstore import ObjectSnapshotStore
from boxes.snapshots import LAZY_MIN, LocalSnapshotStore
from boxes.stores import open_store, parse_store_url
from boxes.sweeps import SweepTimes, blob_key
from core.keys import Keys
from core.settings import Settings
from tests.boxes.test_lifecycle import FINGERPRINT, TREE, run
from tests.boxes.test_snapshots import assert_refused, describe, make_layer
from tests.conftest import make_config
from tests.seaweed import S3Place, SeaweedFS

UID = os.getuid()
FAST = SweepTimes(skew_s=1.0, max_s=30.0, poll_s=0.05)


def make_store(s3: S3Place, cache: Path, *, max_bytes: int = 1 << 30,
               retry_timeout_s: float = 15.0) -> ObjectSnapshotStore:
    """One host's store on the test's bucket and prefix, its cache in `cache`."""
    client = ObjectClient(s3.bucket, s3.prefix, endpoint=s3.seaweed.endpoint,
                          retry_timeout_s=retry_timeout_s, connect_timeout_s=1.0)
    return ObjectSnapshotStore(client, BlobCache(cache, max_bytes), fetch_parallel=4,
                               times=FAST)


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
    return root


def pack(store: ObjectSnapshotStore, layer: Path, box: str = "b_x") -> str:
    return store.pack(layer, box_id=box, kind="freeze", name=None, owner=None,
                      index=None).record.id


def committed_blobs_missing(store: ObjectSnapshotStore) -> set[str]:
    """Blobs some committed manifest names that the bucket lacks (must be none)."""
    present = {i.key.removeprefix("blobs/") for i in store.objects.list("blobs/")}
    named: set[str] = set()
    for record in store.list():
        named |= manifests.digests(manifests.decode(
            store.objects.read(f"snapshots/{record.id}.manifest"), record.id))
    return named - present


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
    assert there.objects.requests["get"] > 0


def test_a_warm_cache_restores_without_asking_the_store(
        s3: S3Place, tmp_path: Path) -> None:
    layer = make_layer(tmp_path / "layer")
    (layer / "workspace/large").write_bytes(os.urandom(2 * LAZY_MIN))
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
    blobs = sorted(manifests.digests(cold._entries(sid)))
    assert cold.objects.requests["get"] == 2 + len(blobs)  # record, manifest, each blob once
    cold.cache.forget(BlobCache.blob_name(blobs[0]))
    (tmp_path / "c2").mkdir()
    cold.restore(sid, tmp_path / "c2", UID)
    assert cold.objects.requests["get"] == 2 + len(blobs) + 1  # only the blob it lacked


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
        (layer / f"f{n}").write_bytes(os.urandom(100_000))
    host = make_store(s3, tmp_path / "cache", max_bytes=500_000)
    sid = pack(host, layer)
    assert host.cache.size <= 500_000
    out = tmp_path / "out"
    out.mkdir()
    host.restore(sid, out, UID)  # what was evicted is fetched again
    assert describe(out) == describe(layer)
    assert host.cache.size <= 500_000
    reopened = BlobCache(tmp_path / "cache", 500_000)  # a restart counts what is there
    assert reopened.size == host.cache.size


# --- garbage collection while other hosts pack ---------------------------------------------

def _orphan(store: ObjectSnapshotStore, tmp_path: Path) -> tuple[Path, str]:
    """A layer whose one file's blob is in the bucket, named by no snapshot any more."""
    layer = tmp_path / "reuse"
    layer.mkdir()
    content = os.urandom(50_000)
    (layer / "shared").write_bytes(content)
    store.delete(pack(store, layer))
    return layer, hashlib.sha256(content).hexdigest()


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


def test_gc_deletes_only_unnamed_blobs_past_their_grace(
        s3: S3Place, tmp_path: Path) -> None:
    store = make_store(s3, tmp_path / "cache")
    keep = pack(store, make_layer(tmp_path / "layer"))
    _, orphan = _orphan(store, tmp_path)
    assert store.stats().blobs == 3
    assert store.gc(grace_s=3600) == 0  # young: spared
    assert store.gc(grace_s=0) > 0
    assert not store.objects.exists(blob_key(orphan))
    assert committed_blobs_missing(store) == set()
    out = tmp_path / "out"
    out.mkdir()
    make_store(s3, tmp_path / "cold").restore(keep, out, UID)


def test_a_sweep_that_ran_after_a_pack_found_a_blob_does_not_lose_it(
        s3: S3Place, tmp_path: Path) -> None:
    """Host A finds the orphan present; host B's whole sweep deletes it before A writes its
    manifest. A sees B's flag, checks, uploads the blob again, then commits."""
    packer = make_store(s3, tmp_path / "a")
    sweeper = make_store(s3, tmp_path / "b")
    layer, orphan = _orphan(packer, tmp_path)
    packer.seen = type(packer.seen)(packer.seen.trust_s)  # a host that must ask (a restart)
    freed: list[int] = []

    def sweep_now(step: str) -> None:
        if step == "uploaded" and not freed:
            freed.append(sweeper.gc(grace_s=0))

    packer.on_step = sweep_now
    sid = pack(packer, layer)
    assert freed[0] > 0  # the sweep did delete it meanwhile
    assert committed_blobs_missing(packer) == set()
    assert orphan in manifests.digests(packer._entries(sid))
    out = tmp_path / "out"
    out.mkdir()
    make_store(s3, tmp_path / "cold").restore(sid, out, UID)
    assert (out / "shared").read_bytes() == (layer / "shared").read_bytes()


def test_a_pack_waits_for_a_sweep_under_way_that_may_delete_its_blob(
        s3: S3Place, tmp_path: Path) -> None:
    """B's sweep has written its flag and listed the manifests (A's is not there yet); A
    packs, reusing the orphan, and must not commit until B ends and the blob is back."""
    packer = make_store(s3, tmp_path / "a")
    sweeper = make_store(s3, tmp_path / "b")
    layer, orphan = _orphan(packer, tmp_path)
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
    packing, pack_errors = _in_thread(lambda: result.append(pack(packer, layer)))
    assert settling.wait(30)
    time.sleep(0.5)
    assert not result  # it waits for the sweep
    go.set()
    sweeping.join(30)
    packing.join(30)
    assert not sweep_errors and not pack_errors, (sweep_errors, pack_errors)
    assert freed[0] > 0 and result
    assert committed_blobs_missing(packer) == set()
    assert packer.objects.exists(blob_key(orphan))


def test_a_sweep_spares_a_blob_whose_pack_wrote_its_manifest_before_the_second_listing(
        s3: S3Place, tmp_path: Path) -> None:
    packer = make_store(s3, tmp_path / "a")
    sweeper = make_store(s3, tmp_path / "b")
    layer, orphan = _orphan(packer, tmp_path)
    manifest_written = threading.Event()
    result: list[str] = []
    errors: list[BaseException] = []

    def pack_between(step: str) -> None:
        if step == "flag":  # B's flag is written; A writes its manifest before B lists again
            packer.on_step = lambda s: manifest_written.set() if s == "manifest" else None
            thread, found = _in_thread(lambda: result.append(pack(packer, layer)))
            errors.extend(found)
            threads.append(thread)
            assert manifest_written.wait(30)

    threads: list[threading.Thread] = []
    sweeper.sweeper.on_step = pack_between
    freed = sweeper.gc(grace_s=0)
    threads[0].join(30)
    assert not errors and result
    assert freed == 0  # the orphan was named again: spared
    assert packer.objects.exists(blob_key(orphan))
    assert committed_blobs_missing(packer) == set()


def test_an_unchanged_file_whose_blob_a_sweep_took_is_uploaded_again(
        s3: S3Place, tmp_path: Path) -> None:
    """As the local store's: a freeze trusting the index of a named snapshot that was deleted
    and collected (by another host's sweep) since."""
    store = make_store(s3, tmp_path / "a")
    layer = make_layer(tmp_path / "layer")
    named = store.pack(layer, box_id="b", kind="named", name="n", owner=None, index=None)
    store.delete(named.record.id)
    assert make_store(s3, tmp_path / "b").gc(grace_s=0) > 0
    again = store.pack(layer, box_id="b", kind="freeze", name=None, owner=None,
                       index=named.index)
    assert committed_blobs_missing(store) == set()
    out = tmp_path / "out"
    out.mkdir()
    make_store(s3, tmp_path / "cold").restore(again.record.id, out, UID)
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
    assert committed_blobs_missing(store) == set()
    out = tmp_path / "out"
    out.mkdir()
    make_store(s3, tmp_path / "cold").restore(named.id, out, UID)
    assert describe(out) == describe(layer)
    assert [r.name for r in store.list()] == ["base"]


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
