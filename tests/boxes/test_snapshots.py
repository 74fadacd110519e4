"""The snapshot store on its own: dedupe, incremental packing, gc, refusing bad manifests, and
the content of a deleted or rewritten file leaving the store with the older snapshots."""

from __future__ import annotations

import contextlib
import json
import os
import stat
from pathlib import Path

import pytest
import zstandard

from boxes.errors import ManifestFormatError, SnapshotError
from boxes.snapshots import LocalSnapshotStore, SnapshotStore

UID = os.getuid()
ZSTD_FRAME = b"\x28\xb5\x2f\xfd"  # the magic number every zstd frame begins with


def readable(raw: bytes) -> list[bytes]:
    """Everything a store could read out of a stored object or file: its bytes, and every zstd
    frame in it decompressed, wherever one begins (a blob is one frame; a manifest or a
    sweep's flag one; a pack object one per file content, then its index)."""
    out = [raw]
    start = raw.find(ZSTD_FRAME)
    while start != -1:
        with contextlib.suppress(zstandard.ZstdError):
            out.append(zstandard.ZstdDecompressor().decompressobj().decompress(raw[start:]))
        start = raw.find(ZSTD_FRAME, start + 1)
    return out


def holding(stored: dict[str, bytes], secret: bytes) -> list[str]:
    """The names of the stored objects (name -> bytes) from which `secret` can be read."""
    return sorted(name for name, raw in stored.items()
                  if any(secret in text for text in readable(raw)))


def make_layer(root: Path) -> Path:
    root.mkdir(parents=True)
    (root / "workspace/proj").mkdir(parents=True)
    (root / "workspace/proj/a.txt").write_text("alpha")
    (root / "workspace/proj/same1").write_bytes(b"dup" * 1000)
    (root / "workspace/proj/same2").write_bytes(b"dup" * 1000)
    os.symlink("a.txt", root / "workspace/proj/link")
    os.mknod(root / "workspace/gone", stat.S_IFCHR, 0)  # an overlay whiteout
    (root / "srv").mkdir()
    os.setxattr(root / "srv", "user.overlay.opaque", b"y")
    os.chmod(root / "workspace/proj/a.txt", 0o600)
    os.utime(root / "workspace/proj/a.txt", ns=(1_000_000_000_000_000_000,) * 2)
    return root


def describe(root: Path) -> list[tuple[str, ...]]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            p = Path(dirpath, name)
            st = p.lstat()
            kind = stat.S_IFMT(st.st_mode)
            extra = ""
            if stat.S_ISREG(st.st_mode):
                extra = p.read_bytes().hex()[:64] + str(st.st_mtime_ns)
            elif stat.S_ISLNK(st.st_mode):
                extra = os.readlink(p)
            elif stat.S_ISDIR(st.st_mode):
                extra = ",".join(f"{k}={os.getxattr(p, k)!r}" for k in sorted(os.listxattr(p)))
            out.append((str(p.relative_to(root)), str(kind), oct(stat.S_IMODE(st.st_mode)),
                        str(st.st_rdev), extra))
    return sorted(out)


def test_pack_and_restore_roundtrip_keeps_whiteouts_opaque_dirs_modes_and_mtimes(
        tmp_path: Path) -> None:
    store = LocalSnapshotStore(tmp_path / "store")
    layer = make_layer(tmp_path / "layer")
    result = store.pack(layer, box_id="b_x", kind="freeze", name=None, owner=None, index=None)
    target = tmp_path / "restored"
    target.mkdir()
    store.restore(result.record.id, target, UID)
    assert describe(target) == describe(layer)


def test_python_tarfile_loses_the_opaque_flag_so_the_store_keeps_xattrs_itself(
        tmp_path: Path) -> None:
    import tarfile

    layer = make_layer(tmp_path / "layer")
    with tarfile.open(tmp_path / "t.tar", "w") as tar:
        tar.add(layer, arcname=".")
    out = tmp_path / "untarred"
    out.mkdir()
    with tarfile.open(tmp_path / "t.tar") as tar:
        tar.extractall(out, filter="tar")
    assert "user.overlay.opaque" not in os.listxattr(out / "srv")


def test_identical_files_are_stored_once_across_snapshots(tmp_path: Path) -> None:
    store = LocalSnapshotStore(tmp_path / "store")
    for i in range(5):
        layer = make_layer(tmp_path / f"layer{i}")
        store.pack(layer, box_id=f"b_{i}", kind="freeze", name=None, owner=None, index=None)
    stats = store.stats()
    assert stats.snapshots == 5
    assert stats.blobs == 2  # "alpha" and the duplicated "dup…" content


def test_unchanged_files_are_not_reread(tmp_path: Path) -> None:
    store = LocalSnapshotStore(tmp_path / "store")
    layer = make_layer(tmp_path / "layer")
    first = store.pack(layer, box_id="b", kind="freeze", name=None, owner=None, index=None)
    # corrupt the index's hash for a.txt: if the pack re-read the file it would notice
    index = {k: list(v) for k, v in first.index.items()}
    fake = "0" * 64
    index["workspace/proj/a.txt"][1] = fake
    second = store.pack(layer, box_id="b", kind="freeze", name=None, owner=None, index=index)
    assert second.index["workspace/proj/a.txt"][1] == fake  # trusted, as size/mtime/inode match
    (layer / "workspace/proj/a.txt").write_text("changed")
    third = store.pack(layer, box_id="b", kind="freeze", name=None, owner=None, index=index)
    assert third.index["workspace/proj/a.txt"][1] != fake


def test_gc_deletes_only_unreferenced_blobs(tmp_path: Path) -> None:
    store = LocalSnapshotStore(tmp_path / "store")
    layer = make_layer(tmp_path / "layer")
    keep = store.pack(layer, box_id="b", kind="freeze", name=None, owner=None, index=None)
    (layer / "workspace/proj/extra").write_bytes(os.urandom(5000))
    drop = store.pack(layer, box_id="b", kind="freeze", name=None, owner=None, index=None)
    assert store.stats().blobs == 3
    assert store.gc(grace_s=0) == 0  # both snapshots still reference their blobs
    store.delete(drop.record.id)
    assert store.gc(grace_s=3600) == 0  # young blobs are spared
    assert store.gc(grace_s=0) > 0
    assert store.stats().blobs == 2
    out = tmp_path / "out"
    out.mkdir()
    store.restore(keep.record.id, out, UID)
    assert (out / "workspace/proj/a.txt").read_text() == "alpha"


def test_an_unchanged_file_whose_blob_was_collected_is_stored_again(tmp_path: Path) -> None:
    """The index of a named snapshot, deleted and collected since: the next freeze finds its
    files unchanged, and must not name blobs that are gone."""
    store = LocalSnapshotStore(tmp_path / "store")
    layer = make_layer(tmp_path / "layer")
    named = store.pack(layer, box_id="b", kind="named", name="n", owner=None, index=None)
    store.delete(named.record.id)
    assert store.gc(grace_s=0) > 0
    again = store.pack(layer, box_id="b", kind="freeze", name=None, owner=None,
                       index=named.index)
    out = tmp_path / "out"
    out.mkdir()
    store.restore(again.record.id, out, UID)
    assert describe(out) == describe(layer)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("change", ["deleted", "rewritten"])
def test_a_deleted_or_rewritten_files_content_leaves_the_store_with_the_older_snapshots(
        tmp_path: Path, change: str) -> None:
    """A tenant's secret in a small file (a memory database), frozen; the file deleted, or
    rewritten without it (SQLite's secure_delete zeroes it in place), and frozen again; the
    older snapshot deleted and collected: no file of the store holds it any more."""
    store = LocalSnapshotStore(tmp_path / "store")
    layer = make_layer(tmp_path / "layer")
    memory = layer / "workspace/memory.db"
    head, tail = os.urandom(4000), os.urandom(4000)
    secret = b"a tenant's secret " + os.urandom(8).hex().encode()
    memory.write_bytes(head + secret + tail)
    first = store.pack(layer, box_id="b", kind="freeze", name=None, owner=None, index=None)
    assert holding(_files(store.root), secret) != []  # the control: the search finds it
    if change == "deleted":
        memory.unlink()
    else:
        memory.write_bytes(head + bytes(len(secret)) + tail)
    second = store.pack(layer, box_id="b", kind="freeze", name=None, owner=None,
                        index=first.index)
    store.delete(first.record.id)
    assert store.gc(grace_s=0) > 0
    assert holding(_files(store.root), secret) == []
    out = tmp_path / "out"
    out.mkdir()
    store.restore(second.record.id, out, UID)
    assert describe(out) == describe(layer)


@pytest.mark.parametrize("fmt", [3, "2", None])
def test_a_manifest_of_a_format_this_code_does_not_read_is_refused_by_name(
        tmp_path: Path, fmt: object) -> None:
    """Written by a newer Burrow (or no format at all): the restore fails naming it and saying
    to upgrade, writes nothing, and a garbage collection deletes nothing."""
    store = LocalSnapshotStore(tmp_path / "store")
    layer = make_layer(tmp_path / "layer")
    sid = store.pack(layer, box_id="b", kind="freeze", name=None, owner=None,
                     index=None).record.id
    path = store.snapshots / f"{sid}.manifest"
    data = json.loads(zstandard.ZstdDecompressor().decompress(path.read_bytes()))
    data["format"] = fmt
    path.write_bytes(zstandard.ZstdCompressor().compress(json.dumps(data).encode()))
    (layer / "workspace/orphan").write_bytes(b"named by a snapshot deleted since")
    orphan = store.pack(layer, box_id="b", kind="freeze", name=None, owner=None, index=None)
    store.delete(orphan.record.id)
    blobs = _files(store.blobs)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ManifestFormatError, match=f"manifest format {fmt!r}") as refused:
        store.restore(sid, out, UID)
    assert "Upgrade Burrow on this host" in refused.value.message
    assert list(out.iterdir()) == []
    with pytest.raises(ManifestFormatError):
        store.gc(grace_s=0)
    assert _files(store.blobs) == blobs


def _forge(store: LocalSnapshotStore, tmp_path: Path, entries: list[dict[str, object]]) -> str:
    layer = tmp_path / "base"
    if not layer.exists():
        layer.mkdir()
        (layer / "f").write_text("x")
    sid = store.pack(layer, box_id="b", kind="freeze", name=None, owner=None, index=None).record.id
    manifest = json.dumps({"format": 1, "entries": entries}).encode()
    (store.snapshots / f"{sid}.manifest").write_bytes(zstandard.ZstdCompressor().compress(manifest))
    return sid


@pytest.mark.parametrize("entries", [
    [{"p": "../escape", "t": "d", "m": 0o755}],
    [{"p": "/tmp/abs", "t": "d", "m": 0o755}],
    [{"p": "a/../../x", "t": "d", "m": 0o755}],
    [{"p": "link", "t": "l", "l": "/tmp"}, {"p": "link/owned", "t": "p", "m": 0o644}],
    [{"p": "f", "t": "f", "m": 0o644, "h": "../../../../etc/passwd"}],
    [{"p": "dev", "t": "c", "m": 0o644}],
    [{"p": "x", "t": "d", "m": 0o755}, {"p": "x", "t": "d", "m": 0o755}],
    [{"p": "setuid", "t": "d", "m": 0o104755}],
], ids=["dotdot", "absolute", "nested-dotdot", "through-symlink", "hash-path", "device",
        "duplicate", "bad-mode"])
def test_crafted_manifests_are_refused_before_anything_is_written(
        tmp_path: Path, entries: list[dict[str, object]]) -> None:
    store = LocalSnapshotStore(tmp_path / "store")
    assert_refused(store, _forge(store, tmp_path, entries), tmp_path)


def assert_refused(store: SnapshotStore, sid: str, tmp_path: Path) -> None:
    """Restoring `sid` fails and writes nothing, in the layer or beside it."""
    target = tmp_path / "jail" / "layer"
    target.mkdir(parents=True)
    with pytest.raises(SnapshotError):
        store.restore(sid, target, UID)
    assert list(target.iterdir()) == []
    assert list((tmp_path / "jail").iterdir()) == [target]
    assert not Path("/tmp/abs").exists() and not Path("/tmp/owned").exists()


def test_a_tampered_blob_is_detected(tmp_path: Path) -> None:
    store = LocalSnapshotStore(tmp_path / "store")
    layer = make_layer(tmp_path / "layer")
    sid = store.pack(layer, box_id="b", kind="freeze", name=None, owner=None, index=None).record.id
    for blob in store.blobs.rglob("*"):
        if blob.is_file():
            blob.write_bytes(zstandard.ZstdCompressor().compress(b"evil"))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(SnapshotError, match="corrupt"):
        store.restore(sid, out, UID)


def _open_fds() -> int:
    """Descriptors of files and directories (what a restore opens): not sockets, pipes or
    event fds, which other tests' clients (an S3 client's pool) open and close on their own."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except FileNotFoundError:
            continue
        count += target.startswith("/")
    return count


def test_large_files_are_restored_by_a_pool_with_links_holes_and_times_kept(
        tmp_path: Path) -> None:
    """Files of PARALLEL_MIN bytes or more are written by threads: the restored layer is the
    same (a hard link to a large file, a sparse large file, directory times), and a corrupt
    large blob fails the restore without leaking a descriptor."""
    from boxes.snapshots import PARALLEL_MIN

    layer = make_layer(tmp_path / "layer")
    big = layer / "workspace/big"
    big.mkdir()
    for i in range(6):
        (big / f"f{i}").write_bytes(os.urandom(PARALLEL_MIN + i))
    os.link(big / "f0", big / "f0-link")
    with open(big / "sparse", "wb") as f:  # a hole, then data
        f.seek(4 * PARALLEL_MIN)
        f.write(os.urandom(PARALLEL_MIN))
    os.utime(big, ns=(1_500_000_000_000_000_000,) * 2)
    store = LocalSnapshotStore(tmp_path / "store")
    sid = store.pack(layer, box_id="b", kind="freeze", name=None, owner=None,
                     index=None).record.id
    out = tmp_path / "out"
    out.mkdir()
    store.restore(sid, out, UID)
    assert describe(out) == describe(layer)
    assert (out / "workspace/big/f0").stat().st_ino == (out / "workspace/big/f0-link").stat().st_ino
    assert os.stat(out / "workspace/big/sparse").st_blocks * 512 < 2 * PARALLEL_MIN
    victim = next(b for b in store.blobs.rglob("*") if b.is_file()
                  and b.stat().st_size > PARALLEL_MIN // 2)
    victim.write_bytes(zstandard.ZstdCompressor().compress(b"evil"))
    again = tmp_path / "again"
    again.mkdir()
    before = _open_fds()
    with pytest.raises(SnapshotError, match="corrupt"):
        store.restore(sid, again, UID)
    assert _open_fds() == before


def test_a_restore_can_leave_large_files_for_later_and_finish_them_exactly(
        tmp_path: Path) -> None:
    """begin_restore puts every name in place, the deferred files at their size (no content
    yet, so no disk used); finish writes them with their mode, times, holes and links, syncs
    and returns the index. A corrupt deferred blob fails finish, not the beginning; abandoning
    a restore closes what it held."""
    from boxes.snapshots import LAZY_MIN

    layer = make_layer(tmp_path / "layer")
    (layer / "workspace/big").write_bytes(os.urandom(2 * LAZY_MIN))
    os.chmod(layer / "workspace/big", 0o640)
    os.utime(layer / "workspace/big", ns=(1_400_000_000_000_000_000,) * 2)
    os.link(layer / "workspace/big", layer / "workspace/big-link")
    with open(layer / "workspace/sparse", "wb") as f:
        f.seek(3 * LAZY_MIN)
        f.write(os.urandom(LAZY_MIN))
    store = LocalSnapshotStore(tmp_path / "store")
    sid = store.pack(layer, box_id="b", kind="freeze", name=None, owner=None,
                     index=None).record.id
    deferred: list[tuple[str, int]] = []

    def defer(path: str, size: int) -> bool:
        deferred.append((path, size))
        return size >= LAZY_MIN

    out = tmp_path / "out"
    out.mkdir()
    before = _open_fds()
    pending = store.begin_restore(sid, out, UID, defer)
    assert sorted(pending.deferred) == ["workspace/big", "workspace/sparse"]
    assert ("workspace/proj/a.txt", 5) in deferred  # asked about every file, with its size
    big = out / "workspace/big"
    assert big.stat().st_size == 2 * LAZY_MIN and big.stat().st_blocks == 0  # not written yet
    assert (out / "workspace/proj/a.txt").read_text() == "alpha"  # the small ones are
    index = pending.finish()
    assert describe(out) == describe(layer)
    assert big.stat().st_ino == (out / "workspace/big-link").stat().st_ino
    assert os.stat(out / "workspace/sparse").st_blocks * 512 < 2 * LAZY_MIN
    assert set(index) >= {"workspace/big", "workspace/sparse", "workspace/proj/a.txt"}
    assert _open_fds() == before

    replaced = tmp_path / "replaced"  # what the box did to a waiting file is never followed
    replaced.mkdir()
    pending = store.begin_restore(sid, replaced, UID, defer)
    (replaced / "workspace/big").unlink()
    os.symlink("/etc/passwd", replaced / "workspace/big")
    with pytest.raises(SnapshotError, match="workspace/big"):
        pending.finish()
    assert _open_fds() == before

    victim = next(b for b in store.blobs.rglob("*") if b.is_file()
                  and b.stat().st_size > LAZY_MIN)
    victim.write_bytes(zstandard.ZstdCompressor().compress(b"evil"))
    for finish in (True, False):
        again = tmp_path / f"again-{finish}"
        again.mkdir()
        pending = store.begin_restore(sid, again, UID, defer)  # the corrupt one is deferred
        if finish:
            with pytest.raises(SnapshotError, match="corrupt"):
                pending.finish()
        else:
            pending.abandon()
        assert _open_fds() == before


def test_stats_and_gc_walk_a_store_that_changes_under_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file listed and then renamed or deleted (a freeze writing its manifest, an old
    snapshot deleted) before its stat is skipped, not an error (it was a 500 of /v1/stats
    during a 2,000-tenant run)."""
    store = LocalSnapshotStore(tmp_path / "store")
    sid = store.pack(make_layer(tmp_path / "layer"), box_id="b", kind="freeze", name=None,
                     owner=None, index=None).record.id
    (store.tmp / "leftover").write_bytes(b"x")
    real_stat = Path.stat
    vanished = {store.snapshots / f"{sid}.manifest", store.tmp / "leftover",
                next(b for b in store.blobs.rglob("*") if b.is_file())}

    def stat(path: Path, *, follow_symlinks: bool = True) -> os.stat_result:
        if path in vanished:
            raise FileNotFoundError(2, "No such file or directory", str(path))
        return real_stat(path, follow_symlinks=follow_symlinks)

    monkeypatch.setattr(Path, "stat", stat)
    stats = store._count()
    assert stats.snapshots == 1 and stats.blobs >= 2
    assert store.gc(grace_s=0) == 0  # the vanished blob is not counted; the rest is referenced
