"""Box hosts of a cluster in Redis: leases that hold while renewed and lapse for good when not,
placement under a box's lock, and fencing — a host whose lease lapsed, or that holds an older
generation of a box, writes nothing of that box (a stopped-then-continued "zombie" host
included, as a real process stopped with SIGSTOP)."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sys
import time
from functools import partial
from pathlib import Path

import pytest
from redis.asyncio import Redis

from boxes import BoxManager, BoxSpec, ExecRequest
from boxes import hosts as hosts_module
from boxes.config import RuntimeConfig
from boxes.errors import (
    BoxNotFoundError,
    FencedError,
    HostNotFoundError,
    InvalidRequestError,
    NoCapacityError,
)
from boxes.hosts import HostLease, HostLoad, Hosts, HostSpec
from boxes.models import BoxRecord, BoxState, Limits
from boxes.placement import PLACED_MB, Placer
from boxes.registry import Registry
from core.embedded_redis import EmbeddedRedis
from core.hosts import host_spec, host_table
from core.keys import Keys
from core.remote import DRAIN_POLL_S, RemoteBoxes
from core.services import host_load
from core.settings import Settings
from tests.conftest import until

KEYS = Keys("t")
ROOT = Path(__file__).parents[2]
LONG = 30.0  # a lease that does not lapse during a test, however loaded the machine


def spec(name: str, max_boxes: int = 10, memory_mb: int = 1000) -> HostSpec:
    return HostSpec(name=name, address=f"{name}.internal:8421", max_boxes=max_boxes,
                    memory_mb=memory_mb)


async def host(redis: Redis, name: str, lease_s: float = LONG, keys: Keys = KEYS,
               **capacity: int) -> HostLease:
    lease = HostLease(redis, keys, spec(name, **capacity), lease_s)
    await lease.register()
    return lease


def registry(redis: Redis, tmp_path: Path, lease: HostLease | None = None,
             keys: Keys = KEYS) -> Registry:
    return Registry(redis, RuntimeConfig(data_dir=tmp_path / "data"), keys, lease)


async def a_box(redis: Redis, tmp_path: Path, box_id: str = "b_1",
                state: BoxState = BoxState.FROZEN, keys: Keys = KEYS) -> BoxRecord:
    """A box as one-machine Burrow leaves it (no host, generation 0), with its mirror dir."""
    now = time.time()
    box = BoxRecord(id=box_id, state=state, runtime="python", network="none",
                    limits=Limits(), uid=8_000_001, created_at=now, last_active_at=now,
                    owner="tenant-a", snapshot_id="s-0")
    reg = registry(redis, tmp_path, keys=keys)
    reg.config.box_dir(box_id).mkdir(parents=True, exist_ok=True)
    await reg.put(box)
    return box


async def lapsed(hosts: Hosts, host_id: str) -> bool:
    return not (await hosts.get(host_id)).live


def telling_lease(redis: Redis) -> tuple[HostLease, list[str]]:
    """A 1 s lease of host h1, and the list of the lapses it is told of."""
    lapses: list[str] = []

    async def on_lapse(host_id: str) -> None:
        lapses.append(host_id)

    return HostLease(redis, KEYS, spec("h1"), 1.0, on_lapse=on_lapse), lapses


async def _told(lapses: list[str], expected: list[str]) -> bool:
    return lapses == expected


# --- leases ----------------------------------------------------------------------------------

async def test_a_renewed_lease_holds_and_one_not_renewed_lapses_for_good(redis: Redis) -> None:
    lease, lapses = telling_lease(redis)
    hosts = Hosts(redis, KEYS)
    host_id = await lease.register()
    assert host_id.startswith("h1~")
    lease.start()
    await asyncio.sleep(2.5)  # two and a half leases, renewed every third of one
    info = await hosts.get(host_id)
    assert info.live and lease.valid() and info.address == "h1.internal:8421"
    assert [h.id for h in await hosts.live()] == [host_id]

    await lease.stop()  # as SIGSTOP would: no renewal any more
    await until(lambda: lapsed(hosts, host_id), 5, "the lease to lapse")
    assert not lease.valid()
    # A renewal after the lapse never revives the lease: the host is done as this id.
    assert await lease.renew() is False
    assert lease.lapsed

    await until(partial(_told, lapses, [host_id]), 5, "the host to be told of its lapse, once")
    assert await redis.exists(KEYS.host_lease(host_id)) == 0
    assert await hosts.live() == []
    listed = await hosts.all()  # still listed a while, as lapsed, for `burrow host ls`
    assert [(h.id, h.live) for h in listed] == [(host_id, False)]

    again = await lease.register()  # a new registration is a new host
    assert again != host_id and (await hosts.get(again)).live
    await lease.release()
    assert [h.id for h in await hosts.all()] == [host_id]


async def test_a_host_that_lapses_registers_again_as_a_new_host_and_renews_that_one(
        redis: Redis) -> None:
    """What `burrow host` does when its lease lapsed (Redis lost it, or the process was
    stopped past it): a new id, renewed from then on; the old one stays lapsed."""
    hosts = Hosts(redis, KEYS)
    loads = 0

    async def load() -> HostLoad:
        nonlocal loads
        loads += 1
        if loads == 2:
            raise OSError("cgroup gone")  # a failed measurement does not stop the renewals
        return HostLoad(boxes=1, memory_used_mb=10)

    async def again(old: str) -> None:
        await lease.register()
        lease.start()

    lease = HostLease(redis, KEYS, spec("h1"), 1.0, load=load, on_lapse=again)
    first = await lease.register()
    lease.start()
    await redis.delete(KEYS.host_lease(first))  # as if it had expired

    async def renewed_anew() -> bool:
        return lease.host_id != first and loads >= 4 and lease.valid()

    await until(renewed_anew, 10, "a new registration, renewed")
    assert (await hosts.get(lease.host_id)).live and not (await hosts.get(first)).live
    await lease.release()


async def test_a_lapsed_host_is_listed_a_few_leases_then_forgotten(redis: Redis) -> None:
    hosts = Hosts(redis, KEYS)
    lease = await host(redis, "h1", lease_s=0.1)
    await until(lambda: lapsed(hosts, lease.host_id), 5, "the lease to lapse")
    await until(lambda: _forgotten(hosts), 5, "the lapsed host to be forgotten")
    assert await redis.smembers(KEYS.hosts()) == set()
    with pytest.raises(HostNotFoundError, match="burrow host ls"):
        await hosts.get(lease.host_id)


async def _forgotten(hosts: Hosts) -> bool:
    return await hosts.all() == []


async def test_a_host_slow_to_measure_its_load_keeps_its_lease(redis: Redis) -> None:
    """Measuring the load waits for the host's threads (cgroup files read in a pool a busy
    host fills with packs and copies): a renewal waits for it a fifth of a lease at most,
    then renews without it, so a busy host never loses its boxes to its own measurement."""
    slow = asyncio.Event()

    async def load() -> HostLoad:
        if slow.is_set():
            await asyncio.sleep(60)
        return HostLoad(boxes=2, memory_used_mb=20)

    lease = HostLease(redis, KEYS, spec("h1"), 1.0, load=load)
    hosts = Hosts(redis, KEYS)
    host_id = await lease.register()
    lease.start()
    slow.set()
    await asyncio.sleep(3.0)  # three leases of measurements that never end
    info = await hosts.get(host_id)
    assert info.live and lease.valid() and not lease.lapsed
    assert (info.boxes, info.memory_used_mb) == (2, 20)  # the last load it measured
    await lease.release()


async def test_a_host_whose_loop_is_busy_a_while_keeps_its_lease_and_one_that_hangs_loses_it(
        redis: Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    """The renewals run in a thread of their own: a burst of work that holds the host's event
    loop for longer than a lease (a loaded machine starting up) does not cost it its boxes;
    a loop that has not turned for STALLED_LEASES leases is a hung host, and its lease
    lapses (its boxes wake elsewhere)."""
    monkeypatch.setattr(hosts_module, "STALLED_LEASES", 3)
    lease, lapses = telling_lease(redis)
    hosts = Hosts(redis, KEYS)
    host_id = await lease.register()
    lease.start()
    await asyncio.sleep(0.5)
    time.sleep(2.0)  # noqa: ASYNC251 (the loop held for two leases)
    assert lease.valid() and (await hosts.get(host_id)).live
    time.sleep(4.5)  # noqa: ASYNC251 (and now past three)
    assert not lease.valid()
    await until(lambda: lapsed(hosts, host_id), 5, "the hung host's lease to lapse")

    await until(partial(_told, lapses, [host_id]), 5, "the host to be told of its lapse, once")
    await lease.release()


async def test_renewals_report_the_load_and_tell_the_host_it_is_draining(redis: Redis) -> None:
    load = HostLoad(boxes=3, memory_used_mb=300)

    async def report() -> HostLoad:
        return load

    lease = HostLease(redis, KEYS, spec("h1"), LONG, load=report)
    hosts = Hosts(redis, KEYS)
    await lease.register()
    info = await hosts.get(lease.host_id)
    assert (info.boxes, info.memory_used_mb, info.draining) == (3, 300, False)
    load = HostLoad(boxes=5, memory_used_mb=700)
    assert await lease.renew() and not lease.draining
    info = await hosts.get(lease.host_id)
    assert (info.boxes, info.memory_used_mb, info.load) == (5, 700, 0.7)

    assert (await hosts.drain(lease.host_id)).draining
    assert await lease.renew() and lease.draining
    await hosts.drain(lease.host_id, draining=False)
    assert await lease.renew() and not lease.draining
    with pytest.raises(HostNotFoundError):
        await hosts.drain("nobody~00000000")


async def test_a_host_spec_that_cannot_be_a_key_or_an_address_is_refused(redis: Redis) -> None:
    for bad in (HostSpec("a b", "x:1", 1, 1), HostSpec("-a", "x:1", 1, 1),
                HostSpec("a", "x 1", 1, 1), HostSpec("a", "x:1", 0, 1)):
        with pytest.raises(InvalidRequestError, match="BURROW_HOST_"):
            HostLease(redis, KEYS, bad, 1.0)


# --- placement -------------------------------------------------------------------------------

async def test_placement_takes_the_last_host_that_cached_the_layer_while_it_has_room(
        redis: Redis, tmp_path: Path) -> None:
    a = await host(redis, "a", max_boxes=10)
    b = await host(redis, "b", max_boxes=10)
    await redis.hset(KEYS.host(a.host_id), "boxes", 5)  # a is busier than b
    await a_box(redis, tmp_path)
    placer = Placer(redis, KEYS)

    first = await placer.place("b_1", 0)  # nobody has its layer: the least loaded
    assert (first.host, first.generation, first.layer_cached) == (b.host_id, 1, False)
    await b.report_layer("b_1", 1)  # b froze it at generation 1 and keeps the layer
    await redis.hset(KEYS.host(b.host_id), "boxes", 8)  # and is busier than a now

    second = await placer.place("b_1", 1)  # b, for its layer, though busier
    assert (second.host, second.generation, second.layer_cached) == (b.host_id, 2, True)
    assert second.box.host == b.host_id and second.box.generation == 2

    # a reports the layer of generation 1, but the box was placed (on b) at 2 since: a's
    # layer is stale, and b's report is of 1 too. The least loaded then: a (5 of 10, b 9).
    await a.report_layer("b_1", 1)
    third = await placer.place("b_1", 2)
    assert (third.host, third.generation, third.layer_cached) == (a.host_id, 3, False)

    # The host that cached it but is full: the least loaded with room instead.
    await a.report_layer("b_1", 3)
    await redis.hset(KEYS.host(a.host_id), "boxes", 10)
    fourth = await placer.place("b_1", 3)
    assert (fourth.host, fourth.generation, fourth.layer_cached) == (b.host_id, 4, False)
    assert await Hosts(redis, KEYS).layers(a.host_id) == {"b_1": 3}
    await a.forget_layer("b_1")
    assert await Hosts(redis, KEYS).layers(a.host_id) == {}


async def test_placement_takes_the_least_loaded_live_host_and_skips_draining_and_lapsed(
        redis: Redis, tmp_path: Path) -> None:
    hosts = Hosts(redis, KEYS)
    busy = await host(redis, "busy", max_boxes=10, memory_mb=1000)
    light = await host(redis, "light", max_boxes=10, memory_mb=1000)
    draining = await host(redis, "draining")
    gone = await host(redis, "gone", lease_s=0.2)
    await redis.hset(KEYS.host(busy.host_id), mapping={"boxes": 1, "memory_used_mb": 600})
    await redis.hset(KEYS.host(light.host_id), mapping={"boxes": 3, "memory_used_mb": 100})
    await hosts.drain(draining.host_id)
    await until(lambda: lapsed(hosts, gone.host_id), 5, "a lease to lapse")
    placer = Placer(redis, KEYS)
    for n in range(3):
        await a_box(redis, tmp_path, f"b_{n}")

    # busy: 60 % of its memory; light: 30 % of its boxes. Neither draining nor gone (both
    # empty) is taken.
    placed = await placer.place("b_0", 0)
    assert placed.host == light.host_id
    info = await hosts.get(light.host_id)
    assert info.boxes == 4  # counted in until its next report
    # Memory the box is expected to take is reserved too, and counts for room.
    placed = await placer.place("b_1", 0, memory_mb=250)
    assert placed.host == light.host_id
    assert (await hosts.get(light.host_id)).memory_used_mb == 350
    with pytest.raises(NoCapacityError):
        await placer.place("b_2", 0, memory_mb=1000)
    # A host excluded (the one being drained of this box) is not taken either.
    assert (await placer.place("b_2", 0, exclude=[light.host_id])).host == busy.host_id


async def test_no_host_with_room_is_a_clear_error_and_changes_nothing(
        redis: Redis, tmp_path: Path) -> None:
    full = await host(redis, "full", max_boxes=2)
    await redis.hset(KEYS.host(full.host_id), "boxes", 2)
    await a_box(redis, tmp_path)
    placer = Placer(redis, KEYS)
    with pytest.raises(NoCapacityError, match="retry in a few seconds") as caught:
        await placer.place("b_1", 0)
    assert caught.value.code == "no_capacity"
    box = await registry(redis, tmp_path).get("b_1")
    assert box is not None and (box.generation, box.host) == (0, None)
    assert (await Hosts(redis, KEYS).get(full.host_id)).boxes == 2
    await redis.delete(KEYS.hosts())
    with pytest.raises(NoCapacityError, match="0 registered"):
        await placer.place("b_1", 0)


async def test_concurrent_placements_never_overfill_a_host(redis: Redis,
                                                           tmp_path: Path) -> None:
    a = await host(redis, "a", max_boxes=3)
    b = await host(redis, "b", max_boxes=3)
    for n in range(10):
        await a_box(redis, tmp_path, f"b_{n}")
    placer = Placer(redis, KEYS)
    results = await asyncio.gather(*(placer.place(f"b_{n}", 0) for n in range(10)),
                                   return_exceptions=True)
    placed = [r.host for r in results if not isinstance(r, BaseException) and r is not None]
    assert sorted(placed) == sorted([a.host_id] * 3 + [b.host_id] * 3)
    assert sum(isinstance(r, NoCapacityError) for r in results) == 4
    hosts = Hosts(redis, KEYS)
    assert [(await hosts.get(h.host_id)).boxes for h in (a, b)] == [3, 3]


async def test_placement_raises_the_generation_and_revoke_takes_the_box_from_its_host(
        redis: Redis, tmp_path: Path) -> None:
    await host(redis, "a")
    await a_box(redis, tmp_path)
    await a_box(redis, tmp_path, "b_gone", state=BoxState.DELETED)
    placer = Placer(redis, KEYS)
    generations = [(await placer.place("b_1", None)).generation for _ in range(3)]
    assert generations == [1, 2, 3]
    # Placed only if still at the generation the caller saw: someone placed it meanwhile.
    assert await placer.place("b_1", 2) is None
    assert (await placer.place("b_1", 3)) is not None
    revoked = await placer.revoke("b_1", 4)
    assert revoked is not None and (revoked.generation, revoked.host) == (5, None)
    assert await placer.revoke("b_1", 4) is None
    with pytest.raises(BoxNotFoundError, match="no box 'b_gone'"):
        await placer.place("b_gone", None)
    with pytest.raises(BoxNotFoundError, match="no box 'b_none'"):
        await placer.revoke("b_none", None)
    picked = await placer.pick()
    assert picked.startswith("a~")


async def test_a_placer_stopped_after_its_look_takes_the_box_from_no_one(
        redis: Redis, tmp_path: Path) -> None:
    """A gateway saw the box without a live host and decided to place it, then stopped past
    its lock; meanwhile another placed it on a, which runs it. Continued, the first one
    places and revokes nothing: a keeps the box, and its writes still land."""
    a, b = await host(redis, "a"), await host(redis, "b")
    await a_box(redis, tmp_path)
    placer = Placer(redis, KEYS)
    seen = 0  # the generation the stopped placer saw
    placed = await placer.place("b_1", seen, exclude=[b.host_id])
    assert placed is not None and placed.host == a.host_id
    box = placed.box
    reg_a = registry(redis, tmp_path, a)
    await reg_a.update(box, state=BoxState.RUNNING)
    assert await placer.place("b_1", seen, exclude=[a.host_id]) is None
    assert await placer.revoke("b_1", seen) is None
    await reg_a.commit_snapshot(box, "s-a")
    stored = await reg_a.get("b_1")
    assert stored is not None
    assert (stored.host, stored.generation, stored.state, stored.snapshot_id) == (
        a.host_id, 1, BoxState.RUNNING, "s-a")
    assert (await Hosts(redis, KEYS).get(b.host_id)).boxes == 0


async def test_a_host_reads_back_no_box_mirror_of_its_disk(redis: Redis,
                                                          tmp_path: Path) -> None:
    """A restarted host's mirrors are what it last wrote of the boxes it held: written back
    unfenced, they would undo what other hosts did since."""
    a = await host(redis, "a")
    box = await a_box(redis, tmp_path)
    reg = registry(redis, tmp_path, a)
    mirror = reg.config.box_dir("b_1") / "box.json"
    stale = {**box.to_dict(), "freezes": 9, "snapshot_id": "s-stale"}
    mirror.write_text(json.dumps(stale))
    assert await reg.adopt_mirrors() == 0 and await reg.rebuild() == 0
    stored = await reg.get("b_1")
    assert stored is not None and stored.snapshot_id == "s-0"
    assert await registry(redis, tmp_path).adopt_mirrors() == 1  # one machine: it does


# --- fencing ---------------------------------------------------------------------------------

async def test_a_host_writes_the_box_it_holds_and_a_snapshot_commit_returns_the_old_one(
        redis: Redis, tmp_path: Path) -> None:
    a = await host(redis, "a")
    await a_box(redis, tmp_path)
    box = (await Placer(redis, KEYS).place("b_1", 0)).box
    reg = registry(redis, tmp_path, a)
    await reg.update(box, state=BoxState.RUNNING, pid=4242)
    assert await reg.commit_snapshot(box, "s-1", state=BoxState.FROZEN, pid=None) == "s-0"
    stored = await reg.get("b_1")
    assert stored is not None
    assert (stored.state, stored.snapshot_id, stored.generation, stored.host) == (
        BoxState.FROZEN, "s-1", 1, a.host_id)
    mirror = json.loads((reg.config.box_dir("b_1") / "box.json").read_text())
    assert (mirror["snapshot_id"], mirror["generation"]) == ("s-1", 1)
    # A host cannot place a box by writing its record; it may only let go of it.
    with pytest.raises(ValueError, match="only placement"):
        await reg.update(box, host="elsewhere~00000000")
    with pytest.raises(ValueError, match="only placement"):
        await reg.update(box, generation=9)
    await reg.update(box, host=None)
    with pytest.raises(FencedError, match="on no host"):
        await reg.update(box, state=BoxState.FAILED)


async def test_a_zombie_host_commits_nothing_once_its_box_is_placed_elsewhere(
        redis: Redis, tmp_path: Path) -> None:
    hosts = Hosts(redis, KEYS)
    placer = Placer(redis, KEYS)
    a = await host(redis, "a", lease_s=1.0)
    a.start()
    await a_box(redis, tmp_path)
    box_a = (await placer.place("b_1", 0)).box  # gen 1 on a
    reg_a = registry(redis, tmp_path, a)
    await reg_a.update(box_a, state=BoxState.RUNNING)
    await reg_a.commit_snapshot(box_a, "s-a1")  # a checkpoint of the running box

    await a.stop()  # a is stopped (SIGSTOP) past its lease
    await until(lambda: lapsed(hosts, a.host_id), 5, "a's lease to lapse")
    # Lapsed, a writes nothing, though the box is still placed on it.
    with pytest.raises(FencedError, match=r"lease of box host a~.* lapsed"):
        await reg_a.update(box_a, state=BoxState.PAUSED)
    b = await host(redis, "b")
    placed = await placer.place("b_1", 1)  # the next request wakes the box on b
    assert (placed.host, placed.generation) == (b.host_id, 2)
    assert placed.box.snapshot_id == "s-a1"  # from a's newest durable state
    reg_b = registry(redis, tmp_path, b)
    box_b = placed.box
    await reg_b.update(box_b, state=BoxState.RUNNING, pid=7)
    assert await reg_b.commit_snapshot(box_b, "s-b") == "s-a1"
    before = await reg_b.get("b_1")
    mirror = (reg_b.config.box_dir("b_1") / "box.json").read_text()

    # a continues where it was stopped: its renewer finds the lease gone and does not revive
    # it; its freeze's commit, a state change and a deletion are all refused.
    a.start()

    async def noticed() -> bool:
        return a.lapsed

    await until(noticed, 5, "a to notice its lapse")
    with pytest.raises(FencedError, match=r"generation 2 on box host b~.*not generation 1"):
        await reg_a.commit_snapshot(box_a, "s-a2", state=BoxState.FROZEN, freezes=1)
    with pytest.raises(FencedError):
        await reg_a.update(box_a, state=BoxState.FAILED, reason="a stopped")
    with pytest.raises(FencedError):
        await reg_a.mark_deleted(box_a)
    assert box_a.snapshot_id == "s-a1" and box_a.state == BoxState.RUNNING  # untouched
    # Nor does re-reading the record help it (a manager re-reads under the lock), nor
    # registering again: the box is b's at generation 2.
    fresh = await reg_a.get("b_1")
    assert fresh is not None
    with pytest.raises(FencedError, match=r"generation 2 on box host b~"):
        await reg_a.update(fresh, state=BoxState.FAILED)
    await a.register()
    with pytest.raises(FencedError, match=r"generation 2 on box host b~"):
        await reg_a.commit_snapshot(fresh, "s-a3")

    after = await reg_b.get("b_1")
    assert after == before and after is not None
    assert (after.state, after.snapshot_id, after.generation, after.host, after.pid) == (
        BoxState.RUNNING, "s-b", 2, b.host_id, 7)
    assert (reg_b.config.box_dir("b_1") / "box.json").read_text() == mirror


async def test_a_host_holding_an_older_generation_is_fenced_though_its_lease_is_live(
        redis: Redis, tmp_path: Path) -> None:
    a = await host(redis, "a")
    await a_box(redis, tmp_path)
    placer = Placer(redis, KEYS)
    reg = registry(redis, tmp_path, a)
    old = (await placer.place("b_1", 0)).box     # generation 1 on a: a task keeps this record
    new = (await placer.place("b_1", 1)).box     # a is placed again (woken again): generation 2
    assert (old.host, new.host, new.generation) == (a.host_id, a.host_id, 2)
    with pytest.raises(FencedError, match=r"at generation 2 on box host a~.*not generation 1"):
        await reg.commit_snapshot(old, "s-old", state=BoxState.FROZEN)
    assert await reg.commit_snapshot(new, "s-new") == "s-0"
    stored = await reg.get("b_1")
    assert stored is not None and stored.snapshot_id == "s-new"


async def test_a_write_racing_a_placement_never_lands_after_it(redis: Redis,
                                                               tmp_path: Path) -> None:
    """a keeps committing checkpoints while b is placed: every commit of a's either lands
    before the placement (which then carries it) or is refused; none lands after."""
    rng = random.Random(26)
    a, b = await host(redis, "a", max_boxes=100), await host(redis, "b", max_boxes=100)
    placer = Placer(redis, KEYS)
    reg_a = registry(redis, tmp_path, a)
    landed_before = 0
    for n in range(30):
        box_id = f"b_race{n}"
        await a_box(redis, tmp_path, box_id, state=BoxState.RUNNING)
        box_a = (await placer.place(box_id, 0, exclude=[b.host_id])).box
        committed: list[str] = []

        async def checkpoints(box: BoxRecord = box_a, log: list[str] = committed) -> None:
            for k in range(1000):
                try:
                    await reg_a.commit_snapshot(box, f"a-{k}")
                except FencedError:
                    return
                log.append(f"a-{k}")

        async def wake_on_b(box_id: str = box_id) -> BoxRecord:
            await asyncio.sleep(rng.uniform(0, 0.004))
            placed = await placer.place(box_id, 1, exclude=[a.host_id])
            assert placed is not None
            return placed.box

        _, seen = await asyncio.gather(checkpoints(), wake_on_b())
        after = await reg_a.get(box_id)
        assert after is not None and (after.generation, after.host) == (2, b.host_id)
        newest = committed[-1] if committed else "s-0"
        assert seen.snapshot_id == after.snapshot_id == newest, (n, committed, seen, after)
        landed_before += bool(committed)
    assert landed_before > 0  # the race was run, not won by b before a started each time


ZOMBIE = """
import asyncio, json, sys
from redis.asyncio import Redis
from boxes.config import RuntimeConfig
from boxes.errors import FencedError
from boxes.hosts import HostLease, HostSpec
from boxes.models import BoxState
from boxes.placement import Placer
from boxes.registry import Registry
from core.keys import Keys

async def main(url, prefix, data_dir):
    redis, keys = Redis.from_url(url), Keys(prefix)
    lease = HostLease(redis, keys, HostSpec("zombie", "zombie:8421", 10, 1000), 1.0)
    await lease.register()
    lease.start()
    box = (await Placer(redis, keys).place("b_1", 0)).box
    registry = Registry(redis, RuntimeConfig(data_dir=data_dir), keys, lease)
    await registry.update(box, state=BoxState.RUNNING)
    print(json.dumps({"host": lease.host_id, "generation": box.generation}), flush=True)
    reader = asyncio.StreamReader()
    await asyncio.get_running_loop().connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    await reader.readline()  # stopped here; continued, it goes on with its freeze
    await asyncio.sleep(0.5)  # its renewer's turn comes first
    writes = {"commit": lambda: registry.commit_snapshot(box, "s-zombie",
                                                          state=BoxState.FROZEN),
              "state": lambda: registry.update(box, state=BoxState.FAILED),
              "delete": lambda: registry.mark_deleted(box)}
    done = {"lapsed": lease.lapsed}
    for name, write in writes.items():
        try:
            await write()
            done[name] = "written"
        except FencedError:
            done[name] = "fenced"
    print(json.dumps(done), flush=True)
    await lease.stop()
    await redis.aclose()

asyncio.run(main(*sys.argv[1:]))
"""


@pytest.mark.timeout(60)
async def test_a_host_process_stopped_past_its_lease_and_continued_writes_nothing_that_wins(
        redis: Redis, redis_server: EmbeddedRedis, tmp_path: Path) -> None:
    keys = Keys("zombie")
    hosts = Hosts(redis, keys)
    await a_box(redis, tmp_path, keys=keys)
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", ZOMBIE, redis_server.url, "zombie", str(tmp_path / "data"),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert child.stdin is not None and child.stdout is not None
    try:
        zombie = json.loads(await asyncio.wait_for(child.stdout.readline(), 30))
        assert zombie["generation"] == 1
        child.send_signal(signal.SIGSTOP)
        await until(lambda: lapsed(hosts, zombie["host"]), 10, "the stopped host's lapse")
        b = await host(redis, "b", keys=keys)
        placed = await Placer(redis, keys).place("b_1", 1)
        reg_b = registry(redis, tmp_path, b, keys=keys)
        box_b = placed.box
        await reg_b.update(box_b, state=BoxState.RUNNING, pid=11)
        await reg_b.commit_snapshot(box_b, "s-b")
        child.send_signal(signal.SIGCONT)
        child.stdin.write(b"go\n")
        await child.stdin.drain()
        result = json.loads(await asyncio.wait_for(child.stdout.readline(), 30))
        assert result == {"lapsed": True, "commit": "fenced", "state": "fenced",
                          "delete": "fenced"}
        assert await asyncio.wait_for(child.wait(), 10) == 0
    finally:
        if child.returncode is None:
            child.send_signal(signal.SIGCONT)
            child.kill()
            await child.wait()
    after = await reg_b.get("b_1")
    assert after is not None
    assert (after.state, after.snapshot_id, after.generation, after.host, after.pid) == (
        BoxState.RUNNING, "s-b", 2, b.host_id, 11)
    assert not (await hosts.get(zombie["host"])).live  # its renewer did not revive it


async def test_a_host_whose_lease_lapsed_cannot_register_a_new_box(redis: Redis,
                                                                   tmp_path: Path) -> None:
    hosts = Hosts(redis, KEYS)
    a = await host(redis, "a", lease_s=0.2)
    reg = registry(redis, tmp_path, a)
    box = await a_box(redis, tmp_path, "b_new")
    await redis.delete(KEYS.box("b_new"), KEYS.boxes())
    await until(lambda: lapsed(hosts, a.host_id), 5, "the lease to lapse")
    with pytest.raises(FencedError, match="lease lapsed"):
        await reg.add(box)
    assert await reg.get("b_new") is None and await redis.smembers(KEYS.boxes()) == set()
    await a.register()
    assert await reg.add(box)
    stored = await reg.get("b_new")
    assert stored is not None and (stored.host, stored.generation) == (a.host_id, 1)


async def test_without_a_lease_the_registry_writes_as_one_machine_always_has(
        redis: Redis, tmp_path: Path) -> None:
    """`burrow serve`: no lease, no fencing; a record from before generations reads as 0."""
    reg = registry(redis, tmp_path)
    box = await a_box(redis, tmp_path)
    await redis.hdel(KEYS.box("b_1"), "generation")
    old = await reg.get("b_1")
    assert old is not None and old.generation == 0
    await reg.update(box, state=BoxState.RUNNING, host="machine:123")
    assert await reg.commit_snapshot(box, "s-1", state=BoxState.FROZEN, host=None) == "s-0"
    await reg.mark_deleted(box)
    assert await reg.state("b_1") == BoxState.DELETED


# --- instances and the operator's view ---------------------------------------------------------

async def test_instances_on_one_redis_see_and_place_on_their_own_hosts_only(
        redis: Redis, tmp_path: Path) -> None:
    alpha, beta = Keys("alpha"), Keys("beta")
    on_alpha = await host(redis, "shared-name", keys=alpha)
    on_beta = await host(redis, "shared-name", keys=beta, max_boxes=100)
    await a_box(redis, tmp_path, keys=alpha)
    assert [h.id for h in await Hosts(redis, alpha).all()] == [on_alpha.host_id]
    assert [h.id for h in await Hosts(redis, beta).all()] == [on_beta.host_id]
    # beta's host is emptier, but alpha's boxes are placed on alpha's hosts alone.
    await redis.hset(alpha.host(on_alpha.host_id), "boxes", 9)
    assert (await Placer(redis, alpha).place("b_1", 0)).host == on_alpha.host_id
    await Hosts(redis, beta).drain(on_beta.host_id)
    assert not (await Hosts(redis, alpha).get(on_alpha.host_id)).draining
    names = [k.decode() for k in await redis.keys("*")]
    assert [k for k in names if alpha.owns(k) == beta.owns(k)] == []


async def test_the_host_table_shows_leases_load_and_the_boxes_placed_on_each(
        redis: Redis, tmp_path: Path) -> None:
    a, b = await host(redis, "a"), await host(redis, "b")
    placer = Placer(redis, KEYS)
    for n in range(3):
        await a_box(redis, tmp_path, f"b_{n}")
        await placer.place(f"b_{n}", 0, exclude=[b.host_id] if n < 2 else [a.host_id])
    await a.report_layer("b_0", 1)
    rows = {r.host.id: r for r in await host_table(Hosts(redis, KEYS),
                                                  registry(redis, tmp_path))}
    assert rows[a.host_id].boxes == ["b_0", "b_1"] and rows[b.host_id].boxes == ["b_2"]
    assert rows[a.host_id].cached_layers == 1 and rows[a.host_id].host.boxes == 2
    assert rows[a.host_id].host.live and 0 < rows[a.host_id].host.lease_ms <= LONG * 1000


def test_the_settings_make_this_machine_a_host(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {"BURROW_HOST_NAME": "node-7", "BURROW_HOST_ADDRESS": "10.0.0.7:8421",
                        "BURROW_HOST_MAX_BOXES": "40", "BURROW_HOST_LEASE_S": "4"}.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    made = host_spec(settings)
    assert (made.name, made.address, made.max_boxes, settings.host_lease_s) == (
        "node-7", "10.0.0.7:8421", 40, 4.0)
    assert made.memory_mb > 0  # this process's memory, unless BURROW_HOST_MEMORY_MB says
    monkeypatch.setenv("BURROW_HOST_NAME", "not a name")
    with pytest.raises(ValueError, match="BURROW_HOST_NAME"):
        Settings()


def test_the_gateway_answers_no_room_and_a_fenced_write_with_503_and_a_retry_hint() -> None:
    from gateway.errors import box_error_response
    for error in (NoCapacityError("no box host has room; retry in a few seconds"),
                  FencedError("box b_1 is at generation 2 on box host b~00000000")):
        response = box_error_response(error)
        assert response.status_code == 503 and response.headers["Retry-After"] == "2"
        assert json.loads(response.body)["error"]["message"] == error.message
    assert box_error_response(HostNotFoundError("no box host 'x'")).status_code == 404


@pytest.mark.boxes
async def test_a_host_reports_the_memory_its_boxes_take_not_their_limits(
        manager: BoxManager) -> None:
    """Placement balances on what boxes take: a box at rest with a 1 GiB limit counts a few
    MB, and what it fills counts as it fills it (a 24 GiB host that counted limits would be
    full at 24 boxes)."""
    box = await manager.create(BoxSpec(limits=Limits(memory_mb=1024)))
    resting = await host_load(manager)
    assert resting.boxes == 1
    assert 0 < resting.memory_used_mb < PLACED_MB
    fill = await manager.exec(box.id, ExecRequest(
        command="head -c 150M /dev/zero > /tmp/fill", timeout_s=60))
    assert fill.exit_code == 0, fill.stderr
    filled = await host_load(manager)
    assert 150 <= filled.memory_used_mb < 1024
    await manager.delete(box.id)
    assert await host_load(manager) == HostLoad(boxes=0, memory_used_mb=0)


async def test_a_request_for_a_box_a_draining_host_holds_waits_for_the_drain(
        redis: Redis, tmp_path: Path) -> None:
    """A box's lock is held by its host's freeze while the host drains (a few boxes at a
    time, on a busy machine possibly for longer than a request waits for a lock): a gateway
    told 'busy' by a draining host asks again, until the drain's bound; by a host that is not
    draining, it says so at once."""
    lease = HostLease(redis, KEYS, spec("h1"), LONG)
    host_id = await lease.register()
    boxes = RemoteBoxes(RuntimeConfig(data_dir=tmp_path), redis, KEYS, b"k" * 32)
    info = await Hosts(redis, KEYS).get(host_id)
    assert await boxes.drained(info, time.monotonic() + 5) is False
    await Hosts(redis, KEYS).drain(host_id)
    started = time.monotonic()
    assert await boxes.drained(info, time.monotonic() + 5) is True
    assert time.monotonic() - started >= DRAIN_POLL_S
    assert await boxes.drained(info, time.monotonic() - 1) is False  # past the bound
    await lease.release()
    assert await boxes.drained(info, time.monotonic() + 5) is True  # gone: ask again


@pytest.mark.boxes
async def test_a_drain_leaves_a_box_woken_elsewhere_meanwhile_where_it_is(
        manager: BoxManager) -> None:
    """A drain lists its boxes, then freezes and gives them up a few at a time: one that a
    request woke on another host meanwhile is not this host's to give up (it used to fail,
    logged as "stays on this host")."""
    box = await manager.create(BoxSpec())
    await manager.freeze(box.id)
    here = HostLease(manager.redis, Keys(), spec("here"), LONG)
    await here.register()
    placer = Placer(manager.redis, Keys())
    placed = await placer.place(box.id, None)
    assert placed is not None and placed.host == here.host_id
    own_host = manager.host
    manager.host, manager.lease, manager.registry.lease = here.host_id, here, here  # a host
    there = HostLease(manager.redis, Keys(), spec("there"), LONG)
    try:
        await there.register()
        await Hosts(manager.redis, Keys()).drain(here.host_id)
        moved = await placer.place(box.id, placed.generation)  # a request woke it there
        assert moved is not None and moved.host == there.host_id
        kept = await manager.release(box.id)
        assert kept.host == there.host_id
        assert (await manager.get(box.id)).host == there.host_id
    finally:
        manager.host, manager.lease, manager.registry.lease = own_host, None, None
        await here.release()
        await there.release()
        await manager.delete(box.id)
