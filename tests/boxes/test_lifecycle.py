"""Box states: pause/resume, freeze/wake, archive, crash, snapshots, registry recovery."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import signal
import socket
import time
from pathlib import Path

import pytest
from redis.asyncio import Redis

from boxes import (
    BoxManager,
    BoxRecord,
    BoxSpec,
    BoxState,
    BoxStateError,
    ExecRequest,
    Limits,
    RuntimeConfig,
    WakeFailedError,
)
from core.keys import Keys
from tests.conftest import make_config
from tests.wheels import make_wheel

TREE = ("mkdir -p proj/src proj/empty && printf 'print(1)\\n' > proj/src/main.py && "
        "head -c 200000 /dev/urandom > proj/blob.bin && ln -s src/main.py proj/link && "
        "chmod 640 proj/blob.bin && mkfifo proj/pipe && touch -d @1000000000 proj/src/main.py")
FINGERPRINT = ("cd /workspace && find . -path ./.cache -prune -o -printf '%p %y %m %s %l\\n' "
               "| sort && find proj -type f -exec sha256sum {} + | sort && "
               "stat -c '%Y' proj/src/main.py")


async def run(manager: BoxManager, box_id: str, command: str) -> str:
    r = await manager.exec(box_id, ExecRequest(command=command, timeout_s=120))
    assert r.exit_code == 0, (command, r.stdout, r.stderr)
    return r.stdout


async def test_files_packages_and_deletions_survive_freeze_and_wake(manager: BoxManager) -> None:
    box = await manager.create(BoxSpec(runtime="python"))
    name, wheel = make_wheel()
    await manager.write_file(box.id, f"/tmp/{name}", wheel)
    await run(manager, box.id, f"pip install --no-index -q /tmp/{name} && {TREE}")
    # Delete a file of the base image, and replace a base directory with a new one: overlay
    # records these as a whiteout and an opaque directory, which a snapshot must keep.
    await run(manager, box.id, "rm /workspace/.bashrc && rmdir /srv && mkdir /srv && "
                               "echo new > /srv/only-this")
    before = await run(manager, box.id, FINGERPRINT)

    for tier in ("freeze", "archive"):
        box = await getattr(manager, tier)(box.id)
        assert box.state == (BoxState.FROZEN if tier == "freeze" else BoxState.ARCHIVED)
        assert box.snapshot_id is not None
        box = await manager.wake(box.id)
        assert box.state == BoxState.RUNNING
        assert await run(manager, box.id, FINGERPRINT) == before
        out = await run(manager, box.id, "python3 -c 'import burrowdemo; print(burrowdemo.VALUE)'"
                                         "; ls -A /srv; test ! -e /workspace/.bashrc && echo gone")
        assert out == "installed burrowdemo 1.0\nonly-this\ngone\n"


async def test_archived_box_keeps_no_local_layer_and_restores_it_on_wake(
        manager: BoxManager, config: RuntimeConfig) -> None:
    box = await manager.create(BoxSpec())
    await manager.write_file(box.id, "a.txt", b"A" * 1000)
    box = await manager.archive(box.id)
    assert not (config.box_dir(box.id) / "disk.img").exists()
    assert not box.layer_local
    box = await manager.wake(box.id)
    assert await manager.read_file(box.id, "a.txt") == b"A" * 1000


BIG = "head -c 24000000 /dev/urandom > big && head -c 5000 /dev/urandom > small"
SUMS = "sha256sum big small && stat -c '%s %a %Y' big"


async def _archived_with_big_file(manager: BoxManager, box_id: str) -> str:
    await run(manager, box_id, BIG + " && chmod 640 big && touch -d @1500000000 big")
    sums = await run(manager, box_id, SUMS)
    await manager.archive(box_id)
    return sums


async def test_an_archived_box_runs_before_its_large_files_are_written_and_execs_wait(
        manager: BoxManager) -> None:
    """A wake from the snapshot starts the box with its large files still being written (the
    registry says its layer is not whole yet); an exec waits for them; a freeze right after a
    wake packs them whole."""
    box = await manager.create(BoxSpec())
    sums = await _archived_with_big_file(manager, box.id)
    box = await manager.wake(box.id)
    assert box.state == BoxState.RUNNING
    assert not (await manager.get(box.id)).layer_local  # still writing `big`
    assert await run(manager, box.id, SUMS) == sums
    assert (await manager.get(box.id)).layer_local
    await manager.archive(box.id)
    await manager.wake(box.id)
    box = await manager.freeze(box.id)  # waits for the restore, then packs it
    assert box.state == BoxState.FROZEN and box.layer_local
    await manager.wake(box.id)
    assert await run(manager, box.id, SUMS) == sums


async def test_a_layer_an_interrupted_restore_left_is_never_taken_for_the_box(
        manager: BoxManager) -> None:
    """Burrow stopped while a woken box's large files were being written: the partial layer
    is replaced from the snapshot at the next wake, and a freeze meanwhile never packs it."""
    box = await manager.create(BoxSpec())
    sums = await _archived_with_big_file(manager, box.id)
    box = await manager.get(box.id)
    assert box.snapshot_id is not None
    pending = await manager.restores.begin(box, box.snapshot_id)  # as a wake does, then stop
    pending.abandon()
    await manager.backend.close_layer(box)
    box = await manager._update(box, state=BoxState.FAILED, reason="burrow stopped")
    assert manager.backend.has_layer(box) and not box.layer_local
    snapshot = box.snapshot_id
    box = await manager.freeze(box.id)  # nothing to pack: the box is its snapshot
    assert box.state == BoxState.ARCHIVED and box.snapshot_id == snapshot
    assert not manager.backend.has_layer(box)
    await manager.restores.begin(box, snapshot)  # interrupted again, then woken
    await manager.backend.close_layer(box)
    await manager.wake(box.id)
    assert await run(manager, box.id, SUMS) == sums


async def test_a_corrupt_large_file_fails_the_box_after_it_started_and_keeps_its_snapshot(
        manager: BoxManager, config: RuntimeConfig) -> None:
    box = await manager.create(BoxSpec())
    await _archived_with_big_file(manager, box.id)
    for blob in (config.store_dir / "blobs").rglob("*"):
        if blob.is_file() and blob.stat().st_size > 1_000_000:
            blob.write_bytes(blob.read_bytes()[:-100] + b"x" * 100)
    snapshot = (await manager.get(box.id)).snapshot_id
    await manager.wake(box.id)
    with pytest.raises(WakeFailedError, match="could not be restored from its snapshot"):
        await manager.exec(box.id, ExecRequest(command="cat big > /dev/null"))
    box = await manager.get(box.id)
    assert box.state == BoxState.FAILED and "snapshot" in (box.reason or "")
    assert box.snapshot_id == snapshot and not box.layer_local
    assert not manager.backend.has_layer(box)


async def test_a_box_whose_service_may_read_its_files_is_restored_whole_before_it_starts(
        manager: BoxManager) -> None:
    """Its service reads `big` as it starts, and finds it whole."""
    box = await manager.create(BoxSpec(service=[
        "/bin/sh", "-c", "sha256sum big > /tmp/seen.tmp; mv /tmp/seen.tmp /tmp/seen; "
                         "exec sleep 1000"]))
    await run(manager, box.id, "while [ ! -e /tmp/seen ]; do sleep 0.01; done; rm /tmp/seen")
    sums = await _archived_with_big_file(manager, box.id)
    await manager.wake(box.id)
    seen = await run(manager, box.id, "while [ ! -e /tmp/seen ]; do sleep 0.01; done; "
                                      "cat /tmp/seen")
    assert seen == sums.splitlines()[0] + "\n"


async def test_paused_box_uses_no_cpu_and_resumes_where_it_was(manager: BoxManager) -> None:
    box = await manager.create(BoxSpec())
    await run(manager, box.id, "(i=0; while :; do i=$((i+1)); echo $i > /tmp/count; done) "
                               "> /dev/null 2>&1 &")
    await asyncio.sleep(0.3)
    box = await manager.pause(box.id)
    assert box.state == BoxState.PAUSED
    cpu_before = manager.usage(box).cpu_ns
    await asyncio.sleep(1.0)
    assert manager.usage(box).cpu_ns - cpu_before < 5_000_000  # < 5 ms in a second
    box = await manager.resume(box.id)
    # the loop rewrites the file constantly: read until a whole number shows
    count = "until n=$(cat /tmp/count) && [ -n \"$n\" ]; do :; done; echo $n"
    first = int(await run(manager, box.id, count))
    await asyncio.sleep(0.3)
    assert int(await run(manager, box.id, count)) > first  # the same loop goes on
    assert manager.usage(box).cpu_ns - cpu_before > 50_000_000


async def test_exec_on_a_paused_or_frozen_box_wakes_it_first(manager: BoxManager) -> None:
    box = await manager.create(BoxSpec())
    await manager.freeze(box.id)
    assert await run(manager, box.id, "echo hi") == "hi\n"
    await manager.pause(box.id)
    with pytest.raises(BoxStateError, match="paused"):
        await manager.exec(box.id, ExecRequest(command="true"), wake=False)
    assert await run(manager, box.id, "echo again") == "again\n"


async def test_fifty_concurrent_wakes_cause_exactly_one(manager: BoxManager) -> None:
    box = await manager.create(BoxSpec())
    await manager.write_file(box.id, "x", b"state")
    await manager.freeze(box.id)
    results = await asyncio.gather(*(manager.wake(box.id) for _ in range(50)))
    assert {r.state for r in results} == {BoxState.RUNNING}
    assert (await manager.get(box.id)).wakes == 1
    assert await manager.read_file(box.id, "x") == b"state"


async def test_concurrent_wakes_from_two_managers_collapse_into_one(
        manager: BoxManager, config: RuntimeConfig, redis: Redis) -> None:
    other = BoxManager(config, redis, Keys())  # a second gateway process on the same host
    await other.start()
    try:
        box = await manager.create(BoxSpec())
        await manager.freeze(box.id)
        await asyncio.gather(*(m.wake(box.id) for m in [manager, other] * 10))
        assert (await manager.get(box.id)).wakes == 1
    finally:
        await manager.freeze(box.id)
        await other.backend.close()


async def test_freeze_racing_wake_ends_consistent(manager: BoxManager) -> None:
    box = await manager.create(BoxSpec())
    await manager.write_file(box.id, "keep", b"1")
    for _ in range(5):
        await asyncio.gather(manager.freeze(box.id), manager.wake(box.id),
                             manager.freeze(box.id), manager.wake(box.id))
        box = await manager.get(box.id)
        assert box.state in (BoxState.RUNNING, BoxState.FROZEN)
        if box.state == BoxState.RUNNING:
            assert await manager.read_file(box.id, "keep", wake=False) == b"1"
        else:
            assert not manager.backend.layer_is_open(box)
            assert box.snapshot_id is not None
    assert await manager.read_file(box.id, "keep") == b"1"


async def test_crashed_box_is_failed_with_a_reason_and_wakes_again(manager: BoxManager) -> None:
    box = await manager.create(BoxSpec())
    await manager.write_file(box.id, "before-freeze", b"1")
    await manager.freeze(box.id)
    box = await manager.wake(box.id)
    await manager.write_file(box.id, "after-wake", b"2")
    daemon = int((await manager.health(box.id))["pid"])
    # the daemon's pid inside the box is not the host's; find the host pid by uid + command
    host_pid = next(int(p) for p in os.listdir("/proc") if p.isdigit()
                    and _is_daemon_of(int(p), box.uid))
    assert daemon > 0
    os.kill(host_pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while (box := await manager.get(box.id)).state != BoxState.FAILED:
        assert time.monotonic() < deadline, box
        await asyncio.sleep(0.05)
    assert box.reason and "exited unexpectedly" in box.reason
    box = await manager.wake(box.id)
    assert box.state == BoxState.RUNNING
    assert await manager.read_file(box.id, "before-freeze") == b"1"
    assert await manager.read_file(box.id, "after-wake") == b"2"


async def test_crashed_box_whose_layer_is_lost_wakes_from_its_last_snapshot(
        manager: BoxManager) -> None:
    box = await manager.create(BoxSpec())
    await manager.write_file(box.id, "saved", b"in the snapshot")
    await manager.freeze(box.id)
    box = await manager.wake(box.id)
    await manager.write_file(box.id, "unsaved", b"only on the local layer")
    os.kill(next(int(p) for p in os.listdir("/proc") if p.isdigit()
                 and _is_daemon_of(int(p), box.uid)), signal.SIGKILL)
    deadline = time.monotonic() + 10
    while (box := await manager.get(box.id)).state != BoxState.FAILED:
        assert time.monotonic() < deadline, box
        await asyncio.sleep(0.05)
    await manager.backend.drop_layer(box)  # the local disk is gone with the crash
    box = await manager.wake(box.id)
    assert await manager.read_file(box.id, "saved") == b"in the snapshot"
    assert (await manager.exec(box.id, ExecRequest(command="test -e unsaved"))).exit_code == 1


def _is_daemon_of(pid: int, uid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return f"Uid:\t{uid}\t" in status and b"boxd.pyc" in cmdline and b"bwrap" not in cmdline


async def test_pre_freeze_hook_and_sigterm_let_the_box_flush(manager: BoxManager) -> None:
    box = await manager.create(BoxSpec(pre_freeze_hook="echo flushed > /workspace/hook-ran"))
    await run(manager, box.id,
              "nohup sh -c 'trap \"echo bye > /workspace/term-seen; exit 0\" TERM; "
              "while :; do sleep 0.05; done' > /dev/null 2>&1 &")
    await asyncio.sleep(0.2)
    await manager.freeze(box.id)
    await manager.wake(box.id)
    assert await manager.read_file(box.id, "hook-ran") == b"flushed\n"
    assert await manager.read_file(box.id, "term-seen") == b"bye\n"


async def test_transitions_are_idempotent_and_refuse_what_makes_no_sense(
        manager: BoxManager) -> None:
    box = await manager.create(BoxSpec())
    assert (await manager.resume(box.id)).state == BoxState.RUNNING
    assert (await manager.wake(box.id)).state == BoxState.RUNNING
    frozen = await manager.freeze(box.id)
    assert (await manager.freeze(box.id)).snapshot_id == frozen.snapshot_id
    with pytest.raises(BoxStateError, match="call wake"):
        await manager.pause(box.id)
    archived = await manager.archive(box.id)
    assert (await manager.archive(box.id)).state == archived.state == BoxState.ARCHIVED
    deleted = await manager.delete(box.id)
    assert deleted.state == BoxState.DELETED
    assert (await manager.get(box.id)).state == BoxState.DELETED
    assert box.id not in [b.id for b in await manager.list()]


async def test_unchanged_box_refreezes_without_writing_new_blobs(manager: BoxManager) -> None:
    box = await manager.create(BoxSpec())
    await run(manager, box.id, "head -c 3000000 /dev/urandom > big")
    first = await manager.freeze(box.id)
    stored = manager.store.stats().stored_bytes
    await manager.wake(box.id)
    await run(manager, box.id, "echo small > small")
    second = await manager.freeze(box.id)
    assert second.snapshot_id != first.snapshot_id
    growth = manager.store.stats().stored_bytes - stored
    assert growth < 100_000  # the 3 MB file was not stored again
    await manager.gc(grace_s=0)
    box = await manager.wake(box.id)
    assert len(await manager.read_file(box.id, "big")) == 3_000_000


async def test_named_snapshot_seeds_new_boxes(manager: BoxManager) -> None:
    box = await manager.create(BoxSpec(owner="t1"))
    await run(manager, box.id, "mkdir app && echo v1 > app/version")
    snap = await manager.snapshot(box.id, "base")
    assert snap.name == "base" and snap.kind == "named"
    assert [s.id for s in await manager.list_snapshots(owner="t1")] == [snap.id]
    await run(manager, box.id, "echo v2 > app/version")
    twins = await asyncio.gather(*(manager.create(BoxSpec(from_snapshot=snap.id))
                                   for _ in range(3)))
    for twin in twins:
        assert twin.uid != box.uid
        assert await run(manager, twin.id, "cat app/version; id -un") == "v1\nbox\n"
    await manager.delete(box.id)  # the snapshot outlives the box it came from
    assert (await manager.get_snapshot(snap.id)).id == snap.id
    await manager.delete_snapshot(snap.id)
    with pytest.raises(Exception, match="no snapshot"):
        await manager.create(BoxSpec(from_snapshot=snap.id))


async def test_delete_removes_layer_snapshots_and_record(
        manager: BoxManager, config: RuntimeConfig) -> None:
    box = await manager.create(BoxSpec())
    await run(manager, box.id, "head -c 100000 /dev/urandom > r")
    await manager.freeze(box.id)
    await manager.delete(box.id)
    assert not config.box_dir(box.id).exists()
    assert manager.store.list() == []
    await manager.gc(grace_s=0)
    assert manager.store.stats().blobs == 0


async def test_registry_is_rebuilt_from_the_data_dir_when_redis_is_lost(
        manager: BoxManager, config: RuntimeConfig, redis: Redis) -> None:
    running = await manager.create(BoxSpec(labels={"k": "v"}))
    await manager.write_file(running.id, "f", b"running")
    frozen = await manager.create(BoxSpec())
    await manager.write_file(frozen.id, "f", b"frozen")
    await manager.freeze(frozen.id)
    await manager.backend.stop(running)
    await manager.backend.close_layer(running)
    await redis.flushall()

    fresh = BoxManager(config, redis, Keys())
    await fresh.start()  # finds an empty registry and boxes on disk
    try:
        boxes = {b.id: b for b in await fresh.list()}
        assert boxes[running.id].state == BoxState.FAILED
        assert boxes[running.id].labels == {"k": "v"}
        assert boxes[frozen.id].state == BoxState.FROZEN
        for box_id, content in ((running.id, b"running"), (frozen.id, b"frozen")):
            assert await fresh.read_file(box_id, "f") == content
        newer = await fresh.create(BoxSpec())
        assert newer.uid not in (running.uid, frozen.uid)
    finally:
        await fresh.close()


@pytest.mark.boxes
async def test_restart_after_a_crash_reconciles_running_boxes(
        redis: Redis, config: RuntimeConfig) -> None:
    first = BoxManager(config, redis, Keys())
    await first.start()
    box = await first.create(BoxSpec())
    await first.write_file(box.id, "f", b"kept")
    # simulate the process dying: its boxes die with it (--die-with-parent), its records and
    # mounts stay behind, naming a process that no longer exists
    await first.backend.close()
    dead = await asyncio.create_subprocess_exec("true")
    await dead.wait()
    await first.registry.update(await first.get(box.id), host=f"{socket.gethostname()}:{dead.pid}")
    second = await BoxManager.open(make_config(config.data_dir), redis, Keys())
    try:
        record = await second.get(box.id)
        assert record.state == BoxState.FAILED
        assert await second.read_file(box.id, "f") == b"kept"
    finally:
        await second.close()


@pytest.mark.boxes
async def test_boxes_start_without_prestarted_launchers_too(
        tmp_path: Path, redis: Redis) -> None:
    """The direct start (used when the launcher pool is empty) gives the same box."""
    config = dataclasses.replace(make_config(tmp_path / "direct"), launcher_pool=0)
    manager = await BoxManager.open(config, redis, Keys())
    try:
        box = await manager.create(BoxSpec(limits=Limits(pids=50)))
        r = await manager.exec(box.id, ExecRequest(command="id -un; cat /proc/self/cgroup"))
        assert r.stdout.startswith("box\n")
        assert manager.backend.cgroups.open(box.id).pids()  # type: ignore[attr-defined]
        await manager.freeze(box.id)
        assert (await manager.wake(box.id)).state == BoxState.RUNNING
    finally:
        await manager.close()
        shutil.rmtree(config.run_dir, ignore_errors=True)


async def test_which_files_a_wake_leaves_for_later(config: RuntimeConfig, redis: Redis) -> None:
    """Large files, outside the directories a known service reads; nothing at all for a box
    whose service is not known to read only those."""
    from boxes.snapshots import LAZY_MIN

    agent = ("/usr/bin/python3", "-I", "-S", "/opt/burrow/tenant_agent/__main__.py")
    manager = BoxManager(dataclasses.replace(
        config, lazy_restore_services=(agent,),
        eager_restore_dirs=("workspace/.burrow", "workspace/.burrow-agent")), redis, Keys())
    plain = BoxSpec().validate()
    for service, path, size, lazy in (
            (None, "workspace/big", LAZY_MIN, True),
            (None, "workspace/big", LAZY_MIN - 1, False),
            (agent, "workspace/data/big", 50 * LAZY_MIN, True),
            (agent, "workspace/.burrow-agent/memory.db", 50 * LAZY_MIN, False),
            (agent, "workspace/.burrow/service.log", 50 * LAZY_MIN, False),
            (("/usr/bin/python3", "app.py"), "workspace/big", 50 * LAZY_MIN, False)):
        box = BoxRecord(id="b_x", state=BoxState.ARCHIVED, runtime=plain.runtime,
                        network=plain.network, limits=plain.limits, uid=1, created_at=0,
                        last_active_at=0, service=list(service) if service else None)
        assert manager.restores.lazy(box)(path, size) is lazy, (service, path, size)


def test_a_freeze_that_does_not_finish_in_time_thaws_what_stopped(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A box whose processes do not all reach the freezer within FREEZE_WAIT_S is thawed
    again, never left half frozen, and the caller is told to try again."""
    from boxes import cgroups

    monkeypatch.setattr(cgroups, "FREEZE_WAIT_S", 0.05)
    thawed: list[bool] = []
    with pytest.raises(BoxStateError, match="did not pause within"):
        cgroups._until_frozen(lambda: False, lambda: thawed.append(True))
    assert thawed == [True]
    cgroups._until_frozen(iter([False, False, True]).__next__, lambda: thawed.append(False))
    assert thawed == [True]
