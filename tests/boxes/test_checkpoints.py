"""Checkpoints of running boxes (boxes/checkpoints.py): what a box wrote before a checkpoint
survives the loss of its host (its processes killed, its local layer gone, a wake from the
store), deletions included, a SQLite database in WAL mode written through the checkpoint comes
back consistent, an unchanged box is neither frozen nor written, a fenced host's checkpoint
is refused, and a running box cannot steer the host's copy of its layer out of it."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import shutil
import signal
import time
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path

import pytest
import zstandard
from redis.asyncio import Redis

from boxes import BoxManager, BoxSpec, BoxState, ExecRequest
from boxes.checkpoints import Checkpointer
from boxes.config import RuntimeConfig
from boxes.errors import FencedError
from boxes.hosts import HostLease, Hosts, HostSpec
from boxes.models import BoxRecord
from boxes.placement import Placer
from core.keys import Keys
from tests.conftest import make_config, until
from tests.seaweed import S3Place

QUIET_S = 0.1  # past packing.RACY_NS: what was written before is trusted unchanged after


async def run(manager: BoxManager, box_id: str, command: str) -> str:
    r = await manager.exec(box_id, ExecRequest(command=command, timeout_s=60))
    assert r.exit_code == 0, (command, r.stdout, r.stderr)
    return r.stdout


def processes_of(uid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        try:
            status = Path(f"/proc/{entry}/status").read_text() if entry.isdigit() else ""
        except OSError:
            continue
        if f"\nUid:\t{uid}\t" in status and "\nState:\tZ" not in status:
            found.append(int(entry))
    return found


async def lose_host(manager: BoxManager, box_id: str) -> BoxRecord:
    """What losing its machine leaves of a box: every process of it SIGKILLed, its local layer
    (and its index) gone, its record failed. Then the next wake, from the store."""
    box = await manager.get(box_id)
    for pid in processes_of(box.uid):
        with contextlib.suppress(ProcessLookupError):  # gone with the one killed before
            os.kill(pid, signal.SIGKILL)

    async def failed() -> bool:
        return (await manager.get(box_id)).state == BoxState.FAILED

    await until(failed, 30, "the box to be recorded failed")
    box = await manager.get(box_id)
    await manager.backend.drop_layer(box)
    manager.indexes.drop(box_id)
    woken = await manager.wake(box_id)
    assert woken.state == BoxState.RUNNING
    return woken


def store_files(manager: BoxManager) -> dict[str, tuple[int, int]]:
    root = manager.config.store_dir
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in root.rglob("*") if p.is_file()}


async def test_an_acknowledged_write_followed_by_a_checkpoint_survives_a_lost_host(
        manager: BoxManager) -> None:
    box = await manager.create(BoxSpec())
    await manager.write_file(box.id, "saved", b"before the freeze")
    frozen = await manager.freeze(box.id)
    await manager.wake(box.id)
    data = os.urandom(300_000)
    await manager.write_file(box.id, "work/data.bin", data)  # acknowledged
    await run(manager, box.id, "printf 'exec' > small && ln -s small link")

    snapshot = await manager.checkpoint(box.id)
    assert snapshot is not None and snapshot.kind == "freeze"
    box = await manager.get(box.id)
    assert box.state == BoxState.RUNNING and box.snapshot_id == snapshot.id
    ids = [s.id for s in await asyncio.to_thread(manager.store.list)]
    assert snapshot.id in ids and frozen.snapshot_id not in ids  # the previous one is gone
    await manager.write_file(box.id, "later", b"after the checkpoint")

    box = await lose_host(manager, box.id)
    assert box.snapshot_id == snapshot.id
    assert await manager.read_file(box.id, "work/data.bin") == data
    assert await manager.read_file(box.id, "saved") == b"before the freeze"
    assert await run(manager, box.id, "cat small; readlink link") == "execsmall\n"
    # what it wrote after its last checkpoint is what the loss of its host costs it
    assert (await manager.exec(box.id, ExecRequest(command="test -e later"))).exit_code == 1


async def test_files_deleted_before_a_checkpoint_stay_deleted_after_a_lost_host(
        manager: BoxManager) -> None:
    box = await manager.create(BoxSpec())
    await run(manager, box.id, "mkdir -p d/e && echo 1 > d/e/f && echo 2 > gone && echo 3 > kept"
                               " && test -e /workspace/.bashrc")
    assert await manager.checkpoint(box.id) is not None
    # an upper-layer file and directory deleted, and a base file (an overlay whiteout)
    await run(manager, box.id, "rm gone /workspace/.bashrc && rm -r d")
    assert await manager.checkpoint(box.id) is not None

    box = await lose_host(manager, box.id)
    out = await run(manager, box.id, "ls -A /workspace | grep -v '^\\.cache$'; cat kept")
    assert out.split() == [".bash_logout", ".profile", "kept", "3"]


WRITER = """
import os, sqlite3
db = sqlite3.connect("/workspace/db.sqlite", isolation_level=None)
db.execute("pragma journal_mode=wal")
db.execute("create table t (i integer primary key, pad blob)")
i = 0
while True:
    i += 1
    db.execute("insert into t values (?, randomblob(3000))", (i,))  # one transaction each
    with open("/workspace/committed.tmp", "w") as f:
        f.write(str(i))
    os.replace("/workspace/committed.tmp", "/workspace/committed")
"""
CHECK = """
import sqlite3
db = sqlite3.connect("/workspace/db.sqlite")
print(db.execute("pragma integrity_check").fetchone()[0])
print(*db.execute("select count(*), min(i), max(i) from t").fetchone())
"""


async def test_a_sqlite_database_written_in_wal_mode_through_a_checkpoint_restores_consistent(
        manager: BoxManager) -> None:
    box = await manager.create(BoxSpec())
    await manager.write_file(box.id, "writer.py", WRITER.encode())
    await run(manager, box.id, "nohup python3 writer.py > /dev/null 2>&1 &")
    upper = manager.backend.upper_dir(box)

    async def committed(least: int) -> bool:
        try:
            return int((upper / "workspace/committed").read_text()) >= least
        except (OSError, ValueError):
            return False

    await until(lambda: committed(1000), 60, "the writer to commit 1000 rows")
    at_freeze: list[int] = []

    def phase(box_id: str, step: str) -> None:
        if step == "checkpoint-frozen":  # the box is frozen: nothing of it moves
            at_freeze.append(int((upper / "workspace/committed").read_text()))

    manager.on_phase = phase
    snapshot = await manager.checkpoint(box.id)
    manager.on_phase = None
    assert snapshot is not None and len(at_freeze) == 1
    await until(lambda: committed(at_freeze[0] + 200), 60, "the writer to go on")

    box = await lose_host(manager, box.id)
    integrity, rows = (await run(manager, box.id, f"python3 -c '{CHECK}'")).splitlines()
    count, first, last = map(int, rows.split())
    assert integrity == "ok"
    # every row committed before the freeze, in order, and none of those written after
    assert first == 1 and count == last and at_freeze[0] <= last < at_freeze[0] + 200


async def test_a_checkpoint_of_an_unchanged_box_freezes_nothing_and_writes_nothing(
        manager: BoxManager) -> None:
    box = await manager.create(BoxSpec())
    await run(manager, box.id, "head -c 100000 /dev/urandom > data && mkdir empty")
    await asyncio.sleep(QUIET_S)
    first = await manager.checkpoint(box.id)
    assert first is not None
    before = store_files(manager)
    steps: list[str] = []
    manager.on_phase = lambda box_id, step: steps.append(step)
    assert await manager.checkpoint(box.id) is None
    assert await manager.checkpoint(box.id) is None
    assert steps == [] and store_files(manager) == before
    assert (await manager.get(box.id)).snapshot_id == first.id

    await run(manager, box.id, "chmod 700 empty")  # a change of nothing but a directory's mode
    second = await manager.checkpoint(box.id)
    assert second is not None and second.id != first.id
    assert steps == ["checkpoint-freezing", "checkpoint-frozen", "checkpoint-thawed",
                     "checkpointed"]
    manager.on_phase = None


REWRITER = """
import os
f = os.open("/workspace/big", os.O_RDWR | os.O_CREAT)
block = os.urandom(1 << 20)
while True:  # 10 MB rewritten in place, without a pause: never still long enough to copy ahead
    for k in range(10):
        os.pwrite(f, block, k << 20)
"""


async def test_a_box_that_never_stops_writing_much_is_checkpointed_in_a_few_freezes(
        manager: BoxManager, tmp_path: Path) -> None:
    """A freeze that finds more than a few MB left to copy thaws the box at once and lets the
    copying ahead catch up; the last of three copies whatever is left."""
    box = await manager.create(BoxSpec())
    await manager.write_file(box.id, "rewriter.py", REWRITER.encode())
    await run(manager, box.id, "nohup python3 rewriter.py > /dev/null 2>&1 &")
    big = manager.backend.upper_dir(box) / "workspace/big"

    async def written() -> bool:
        return big.exists() and big.stat().st_size == 10 << 20

    await until(written, 30, "the rewriter to write 10 MB")
    steps: list[str] = []
    manager.on_phase = lambda box_id, step: steps.append(step)
    snapshot = await manager.checkpoint(box.id)
    manager.on_phase = None
    assert snapshot is not None
    assert 1 <= steps.count("checkpoint-freezing") <= 3
    assert steps.count("checkpoint-freezing") == steps.count("checkpoint-thawed")
    restored = tmp_path / "restored"
    restored.mkdir()
    await asyncio.to_thread(manager.store.restore, snapshot.id, restored, box.uid)
    assert (restored / "workspace/big").stat().st_size == 10 << 20


COUNTER = ("nohup sh -c 'i=0; while :; do i=$((i+1)); echo $i > /workspace/count; "
           "sleep 0.01; done' > /dev/null 2>&1 &")


async def test_a_paused_box_is_checkpointed_without_being_thawed(
        manager: BoxManager, tmp_path: Path) -> None:
    box = await manager.create(BoxSpec())
    await run(manager, box.id, COUNTER)
    upper = manager.backend.upper_dir(box)

    async def counting() -> bool:
        return (upper / "workspace/count").exists()

    await until(counting, 30, "the counter to start")
    await manager.pause(box.id)
    paused_at = (upper / "workspace/count").read_text()
    await asyncio.sleep(0.2)
    snapshot = await manager.checkpoint(box.id)
    assert snapshot is not None
    await asyncio.sleep(0.2)
    assert (await manager.get(box.id)).state == BoxState.PAUSED
    assert (upper / "workspace/count").read_text() == paused_at  # it never ran meanwhile
    restored = tmp_path / "restored"
    restored.mkdir()
    await asyncio.to_thread(manager.store.restore, snapshot.id, restored, box.uid)
    assert (restored / "workspace/count").read_text() == paused_at
    await manager.resume(box.id)


async def _counts_on(counter: Path, count: str) -> bool:
    """The box's counter moved past `count` (a box left frozen never counts again; a read
    between the shell's truncation and its write finds nothing)."""
    return counter.read_text().strip() not in ("", count.strip())


async def test_a_checkpoint_cancelled_while_its_box_is_frozen_leaves_the_box_running(
        manager: BoxManager) -> None:
    box = await manager.create(BoxSpec())
    await run(manager, box.id, COUNTER)
    taking: list[asyncio.Task[object]] = []
    cancel_at = ""

    def phase(box_id: str, step: str) -> None:
        if step == cancel_at:
            taking[0].cancel()

    counter = manager.backend.upper_dir(box) / "workspace/count"

    async def counting() -> bool:
        return counter.exists()

    await until(counting, 30, "the counter to start")
    manager.on_phase = phase
    for cancel_at in ("checkpoint-freezing", "checkpoint-frozen"):  # noqa: RUF100, B007
        taking[:] = [asyncio.create_task(manager.checkpoint(box.id))]
        with pytest.raises(asyncio.CancelledError):
            await taking[0]
        await until(partial(_counts_on, counter, counter.read_text()), 10,
                    f"the box to run on after a cancel at {cancel_at}")
    manager.on_phase = None
    assert await manager.checkpoint(box.id) is not None  # and its lock was let go


async def test_a_checkpoint_overtaken_by_a_freeze_is_dropped(manager: BoxManager) -> None:
    box = await manager.create(BoxSpec())
    await manager.write_file(box.id, "f", b"1")
    freezing: list[asyncio.Task[BoxRecord]] = []

    def phase(box_id: str, step: str) -> None:
        if step == "checkpoint-thawed":  # waits for the lock the copy holds
            freezing.append(asyncio.get_running_loop().create_task(manager.freeze(box_id)))

    manager.on_phase = phase
    assert await manager.checkpoint(box.id) is None
    manager.on_phase = None
    frozen = await freezing[0]
    assert frozen.state == BoxState.FROZEN
    ids = [s.id for s in await asyncio.to_thread(manager.store.list)]
    assert ids == [frozen.snapshot_id]  # the checkpoint's snapshot was deleted, not committed


async def test_a_host_whose_lease_lapsed_commits_no_checkpoint(manager: BoxManager) -> None:
    box = await manager.create(BoxSpec())
    lease = HostLease(manager.redis, Keys(), HostSpec(name="a", address="a:8430", max_boxes=9,
                                                      memory_mb=100_000), lease_s=1.0)
    await lease.register()
    placed = await Placer(manager.redis, Keys()).place(box.id, box.generation)
    assert placed is not None and placed.host == lease.host_id
    own_host = manager.host
    manager.host, manager.registry.lease = lease.host_id, lease  # a box host of a cluster
    try:
        await manager.write_file(box.id, "one", b"1")
        kept = await manager.checkpoint(box.id)  # while its lease is live
        assert kept is not None and (await manager.get(box.id)).snapshot_id == kept.id
        await manager.write_file(box.id, "two", b"2")
        hosts = Hosts(manager.redis, Keys())

        async def lapsed() -> bool:
            return not (await hosts.get(lease.host_id)).live

        await until(lapsed, 10, "the lease to lapse")  # never renewed: as a stopped host's
        with pytest.raises(FencedError, match="lapsed"):
            await manager.checkpoint(box.id)
        assert (await manager.get(box.id)).snapshot_id == kept.id
        ids = [s.id for s in await asyncio.to_thread(manager.store.list)]
        assert ids == [kept.id]  # the refused snapshot is not left in the store
    finally:
        manager.host, manager.registry.lease = own_host, None
        await manager.delete(box.id)


async def test_the_checkpointer_takes_only_running_boxes_that_changed(
        manager: BoxManager) -> None:
    changed, still, frozen = [await manager.create(BoxSpec()) for _ in range(3)]
    for box in (changed, still, frozen):
        await manager.write_file(box.id, "f", b"1")
    await manager.freeze(frozen.id)
    await asyncio.sleep(QUIET_S)
    checkpointer = Checkpointer(manager, 60)
    assert {s.box_id for s in await checkpointer.run_once()} == {changed.id, still.id}
    await manager.write_file(changed.id, "f", b"2")
    assert [s.box_id for s in await checkpointer.run_once()] == [changed.id]
    Checkpointer(manager, 0).start()  # 0: never
    assert (await manager.get(frozen.id)).state == BoxState.FROZEN


FLIPPER = """
import os, time
os.chdir("/workspace")
os.mkdir("d")
n = 0
while True:
    # a file the host sees changed and then still for a while: copied ahead of the freeze
    n += 1
    with open("d/x", "w") as f:
        f.write(f"box's own {n}")
    end = time.monotonic() + 0.15
    while time.monotonic() < end:
        os.rename("d", "d.real")
        os.symlink("%s", "d")  # the host's directory, as the host would resolve it
        time.sleep(0.0005)
        os.unlink("d")
        os.rename("d.real", "d")
        time.sleep(0.0005)
"""


async def test_a_running_box_cannot_steer_the_copy_of_its_layer_to_host_files(
        manager: BoxManager, tmp_path: Path) -> None:
    """While the box runs, the host copies its changed files ahead of the freeze: a box that
    swaps a directory for a link to a host directory must get nothing of the host's."""
    secret = tmp_path / "host"
    secret.mkdir()
    (secret / "x").write_bytes(b"HOST-SECRET")
    box = await manager.create(BoxSpec())
    await manager.write_file(box.id, "flipper.py", (FLIPPER % secret).encode())
    await run(manager, box.id, "nohup python3 flipper.py > /dev/null 2>&1 &")
    deadline = time.monotonic() + 4
    taken = 0
    while time.monotonic() < deadline:
        taken += await manager.checkpoint(box.id) is not None
    assert taken > 5
    blobs = (manager.config.store_dir / "blobs").rglob("*")
    contents = [zstandard.ZstdDecompressor().decompressobj().decompress(p.read_bytes())
                for p in blobs if p.is_file()]
    assert any(c.startswith(b"box's own") for c in contents)
    assert not any(b"HOST-SECRET" in c for c in contents)


@contextlib.asynccontextmanager
async def host_after(config: RuntimeConfig, redis: Redis,
                     box_id: str) -> AsyncIterator[BoxManager]:
    """Another host with an empty cache, after the first went with its disk: the box woken
    there from the store."""
    shutil.rmtree(config.store_cache_dir)
    second = await BoxManager.open(config, redis, Keys())
    try:
        box = await second.get(box_id)
        await second.backend.drop_layer(box)
        second.indexes.drop(box_id)
        await second.wake(box_id)
        yield second
        await second.delete(box_id)
    finally:
        await second.close()
        shutil.rmtree(config.run_dir, ignore_errors=True)
    assert second.backend.leftovers() == {"processes": [], "mounts": [], "cgroups": []}


def s3_config(s3: S3Place, tmp_path: Path) -> RuntimeConfig:
    config = dataclasses.replace(make_config(tmp_path / "data"), store_url=s3.url,
                                 s3_endpoint=s3.seaweed.endpoint)
    assert config.store_format == 2  # small files in pack objects, as a cluster writes them
    return config


@pytest.mark.boxes
async def test_checkpoints_to_s3_wake_on_a_host_with_an_empty_cache(
        s3: S3Place, redis: Redis, tmp_path: Path) -> None:
    """In a cluster the store is a bucket: a box checkpointed twice (its first file unchanged
    the second time) wakes from its last checkpoint where nothing of it is cached."""
    config = s3_config(s3, tmp_path)
    first = await BoxManager.open(config, redis, Keys())
    try:
        box = await first.create(BoxSpec())
        kept, later = os.urandom(400_000), os.urandom(300_000)
        await first.write_file(box.id, "kept.bin", kept)
        assert await first.checkpoint(box.id) is not None
        await first.write_file(box.id, "later.bin", later)
        await asyncio.sleep(QUIET_S)
        snapshot = await first.checkpoint(box.id)
        assert snapshot is not None
        await first.write_file(box.id, "lost", b"after the last checkpoint")
    finally:
        await first.close()  # the host goes: its processes with it
    record = await first.registry.get(box.id)
    assert record is not None and record.snapshot_id == snapshot.id
    async with host_after(config, redis, box.id) as second:
        assert await second.read_file(box.id, "kept.bin") == kept
        assert await second.read_file(box.id, "later.bin") == later
        assert (await second.exec(box.id, ExecRequest(command="test -e lost"))).exit_code == 1


@pytest.mark.boxes
async def test_a_checkpoint_packs_unchanged_small_files_anew_from_the_object_that_held_them(
        s3: S3Place, redis: Redis, tmp_path: Path) -> None:
    """A checkpoint copies only what changed: when one small file of a pack object changes,
    its unchanged neighbours go into a new object (the old one holds dead content now), and
    their content comes from the old object, not from the running box, which may have
    written them since the copy's instant. Woken elsewhere, every file is as at the copy."""
    config = s3_config(s3, tmp_path)
    small = {f"notes/{n}.txt": os.urandom(2_000) for n in range(20)}
    first = await BoxManager.open(config, redis, Keys())
    try:
        box = await first.create(BoxSpec())
        for path, data in small.items():
            await first.write_file(box.id, path, data)
        await asyncio.sleep(QUIET_S)
        assert await first.checkpoint(box.id) is not None
        shutil.rmtree(config.store_cache_dir / "packs")  # read back from the bucket
        small["notes/0.txt"] = b"changed"
        await first.write_file(box.id, "notes/0.txt", small["notes/0.txt"])
        await asyncio.sleep(QUIET_S)
        snapshot = await first.checkpoint(box.id)
        assert snapshot is not None
    finally:
        await first.close()
    async with host_after(config, redis, box.id) as second:
        for path, data in small.items():
            assert await second.read_file(box.id, path) == data, path


class _SwallowingManager:
    """What the Checkpointer reads of a BoxManager, for boxes whose checkpoint swallows a
    cancellation (as Python 3.11's asyncio.wait_for in the box lock can) and ends only when
    let go."""

    def __init__(self, run_dir: Path, box_ids: list[str]) -> None:
        self.host = "h1"
        self.config = dataclasses.make_dataclass("Config", ["run_dir"])(run_dir)
        for box_id in box_ids:
            (run_dir / "boxes" / box_id).mkdir(parents=True)
        self.started: list[str] = []
        self.let_go = asyncio.Event()

    async def get(self, box_id: str) -> object:
        return dataclasses.make_dataclass("Box", ["host", "state"])(self.host, BoxState.RUNNING)

    async def checkpoint(self, box_id: str) -> None:
        self.started.append(box_id)
        while not self.let_go.is_set():
            with contextlib.suppress(asyncio.CancelledError):
                await self.let_go.wait()


async def test_a_stop_whose_cancellation_is_lost_ends_with_the_checkpoint_under_way(
        tmp_path: Path) -> None:
    manager = _SwallowingManager(tmp_path, ["b_1", "b_2", "b_3"])
    checkpointer = Checkpointer(manager, 60)  # type: ignore[arg-type]
    checkpointer.start()

    async def checkpointing() -> bool:
        return manager.started == ["b_1"]

    await until(checkpointing, 10, "the first box's checkpoint")
    stopping = asyncio.create_task(checkpointer.stop())
    await asyncio.sleep(0.1)
    assert not stopping.done()  # b_1's checkpoint swallowed the cancellation
    manager.let_go.set()
    await asyncio.wait_for(stopping, 5)
    assert manager.started == ["b_1"]  # no next box after the stop
