"""Box runtime benchmark: every timing is printed with its ratio to a floor measured in the
same run (a bare sandbox running `true`, and `python3 -c pass`, started exactly like a box).

    .venv/bin/python bench/boxes.py              # all of it (downloads numpy+networkx wheels)
    .venv/bin/python bench/boxes.py --runs 20 --skip-storage

Run as root on a quiet machine. Nothing here is asserted: the output is the result.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

# This file is bench/boxes.py: without this, `import boxes` would import the script itself.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from redis.asyncio import Redis

from boxes import BoxManager, BoxSpec, ExecRequest, RuntimeConfig
from boxes.client import DaemonClient
from boxes.models import BoxRecord, BoxState
from boxes.sandbox import BubblewrapBackend
from core.embedded_redis import EmbeddedRedis
from core.keys import Keys

UID_BASE = 4_000_000  # apart from servers and tests on the same machine


class Table:
    def __init__(self, floor_ms: float, floor_name: str) -> None:
        self.floor_ms = floor_ms
        self.floor_name = floor_name
        print(f"\n{'measure':<44}{'n':>4}{'median ms':>11}{'p90 ms':>10}{'x floor':>9}")
        print("-" * 78)

    def row(self, name: str, samples: list[float]) -> None:
        med = statistics.median(samples)
        p90 = sorted(samples)[max(0, int(len(samples) * 0.9) - 1)]
        print(f"{name:<44}{len(samples):>4}{med:>11.2f}{p90:>10.2f}{med / self.floor_ms:>9.2f}")


async def timed(fn: Callable[[], Awaitable[object]]) -> float:
    start = time.perf_counter()
    await fn()
    return (time.perf_counter() - start) * 1000


async def run_bare(argv: list[str], uid: int) -> None:
    proc = await asyncio.create_subprocess_exec(*argv, user=uid, group=uid, extra_groups=[])
    if await proc.wait() != 0:
        raise RuntimeError(f"floor command failed: {argv[-3:]}")


async def floors(manager: BoxManager, runs: int) -> tuple[list[float], list[float]]:
    backend = manager.backend
    assert isinstance(backend, BubblewrapBackend)
    box = await manager.create(BoxSpec())
    record = await manager.get(box.id)
    true_argv = backend.bare_argv(record, ["/usr/bin/true"])
    py_argv = backend.bare_argv(record, ["/usr/bin/python3", "-I", "-S", "-c", "pass"])
    for argv in (true_argv, py_argv):  # warm caches
        await run_bare(argv, record.uid)
    bare_true = [await timed(lambda: run_bare(true_argv, record.uid)) for _ in range(runs)]
    bare_py = [await timed(lambda: run_bare(py_argv, record.uid)) for _ in range(runs)]
    await manager.delete(box.id)
    return bare_true, bare_py


async def lifecycle(manager: BoxManager, table: Table, runs: int) -> None:
    created: list[str] = []

    async def create() -> None:
        created.append((await manager.create(BoxSpec())).id)

    await create()  # warm
    table.row("create → exec-ready", [await timed(create) for _ in range(runs)])
    box_id = created[0]
    for other in created[1:]:
        await manager.delete(other)
    true = ExecRequest(command=["true"])
    await manager.exec(box_id, true)
    table.row("exec `true` round trip (manager)",
              [await timed(lambda: manager.exec(box_id, true)) for _ in range(runs)])
    client = DaemonClient(manager.backend.socket_path(box_id))
    table.row("  of which: daemon socket round trip",
              [await timed(lambda: client.exec(true)) for _ in range(runs)])
    pauses, resumes = [], []
    for _ in range(runs):
        pauses.append(await timed(lambda: manager.pause(box_id)))
        resumes.append(await timed(lambda: manager.resume(box_id)))
    table.row("pause", pauses)
    table.row("resume", resumes)
    await manager.delete(box_id)


async def fill(manager: BoxManager, box_id: str, megabytes: int) -> None:
    # incompressible files of 1 MB (or 100 KB for the small case)
    size_kb = 1024 if megabytes >= 10 else 100
    count = megabytes * 1024 // size_kb
    r = await manager.exec(box_id, ExecRequest(
        command=f"mkdir -p state && for i in $(seq {count}); do "
                f"head -c {size_kb}K /dev/urandom > state/f$i; done", timeout_s=300))
    assert r.exit_code == 0, r.stderr


async def tiers(manager: BoxManager, table: Table, runs: int, megabytes: int) -> None:
    box = await manager.create(BoxSpec())
    await fill(manager, box.id, megabytes)
    first = await timed(lambda: manager.freeze(box.id))
    print(f"{f'  (first freeze, {megabytes} MB all new)':<44}{1:>4}{first:>11.2f}")
    touch = ExecRequest(command="date +%s%N > state/changed")
    freezes, wakes, archives, archived_wakes, runtime_wakes = [], [], [], [], []
    backend = manager.backend
    for _ in range(runs):
        wakes.append(await timed(lambda: manager.wake(box.id)))
        await manager.exec(box.id, touch)
        freezes.append(await timed(lambda: manager.freeze(box.id)))
        archives.append(await timed(lambda: manager.archive(box.id)))
        archived_wakes.append(await timed(lambda: manager.wake(box.id)))
        await manager.exec(box.id, touch)
        await manager.freeze(box.id)
        # the runtime alone (mount + sandbox + daemon), without registry and locks
        record = await manager.get(box.id)

        async def runtime_wake(rec: BoxRecord = record) -> None:
            await backend.open_layer(rec)
            await backend.start(rec)

        runtime_wakes.append(await timed(runtime_wake))
        await backend.stop(record)
        await backend.close_layer(record)
    table.row(f"freeze, {megabytes} MB state (one file changed)", freezes)
    table.row(f"wake from frozen, {megabytes} MB", wakes)
    table.row("  of which: mount + sandbox + daemon", runtime_wakes)
    table.row(f"archive (frozen → archived), {megabytes} MB", archives)
    table.row(f"wake from archived, {megabytes} MB", archived_wakes)
    await manager.delete(box.id)


def download_packages(cache: Path) -> list[Path]:
    cache.mkdir(parents=True, exist_ok=True)
    wheels = sorted(cache.glob("*.whl"))
    if not wheels:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                        "--only-binary=:all:", "--python-version", "3.11", "-d", str(cache),
                        "numpy==2.2.6", "networkx==3.4.2"], check=True)
        wheels = sorted(cache.glob("*.whl"))
    return wheels


async def storage(manager: BoxManager, boxes: int, cache: Path) -> None:
    wheels = await asyncio.to_thread(download_packages, cache)
    backend = manager.backend
    assert isinstance(backend, BubblewrapBackend)
    before = manager.store.stats().stored_bytes
    tar_bytes = 0
    installed = 0
    tar_dir = Path(tempfile.mkdtemp(prefix="burrow-bench-tar-"))
    for i in range(boxes):
        box = await manager.create(BoxSpec())
        for wheel in wheels:
            await manager.write_file(box.id, f"/tmp/{wheel.name}", wheel.read_bytes())
        names = " ".join(f"/tmp/{w.name}" for w in wheels)
        r = await manager.exec(box.id, ExecRequest(
            command=f"pip install -q --no-index {names} && rm {names} && "
                    "du -sb /workspace/.local | cut -f1", timeout_s=600))
        assert r.exit_code == 0, r.stderr
        installed = int(r.stdout.split()[-1])
        record = await manager.freeze(box.id)
        upper = await backend.open_layer(record)
        archive = tar_dir / f"{i}.tar.zst"
        await asyncio.to_thread(
            subprocess.run, ["tar", "--zstd", "--xattrs", "--xattrs-include=user.*", "-cf",
                             str(archive), "-C", str(upper), "."], check=True)
        tar_bytes += archive.stat().st_size
        await backend.close_layer(record)
    stored = manager.store.stats().stored_bytes - before
    shutil.rmtree(tar_dir, ignore_errors=True)
    print(f"\nstorage: {boxes} boxes, each with {installed / 1e6:.1f} MB installed by pip "
          f"({', '.join(w.name.split('-')[0] for w in wheels)})")
    print(f"  snapshot store (content-addressed, zstd): {stored / 1e6:10.1f} MB")
    print(f"  {boxes} separate `tar --zstd` archives:     {tar_bytes / 1e6:10.1f} MB")
    print(f"  ratio store / tar: {stored / tar_bytes:.3f}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--boxes", type=int, default=20, help="boxes in the storage test")
    parser.add_argument("--skip-storage", action="store_true")
    parser.add_argument("--only-storage", action="store_true")
    parser.add_argument("--skip-50mb", action="store_true")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/burrow-bench-wheels"))
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="burrow-bench-"))
    redis_server = EmbeddedRedis(work / "redis", appendonly=True)
    redis_server.start()
    redis = Redis.from_url(redis_server.url)
    config = RuntimeConfig(data_dir=work / "data", uid_base=UID_BASE)
    manager = await BoxManager.open(config, redis, Keys())
    try:
        if args.only_storage:
            await storage(manager, args.boxes, args.cache)
            return
        bare_true, bare_py = await floors(manager, args.runs)
        floor = statistics.median(bare_py)
        print(f"floor: bare sandbox `true` median {statistics.median(bare_true):.2f} ms; "
              f"`python3 -I -S -c pass` in the sandbox median {floor:.2f} ms "
              f"(ratios below are against the latter)")
        table = Table(floor, "python in a bare sandbox")
        table.row("floor: bare sandbox running `true`", bare_true)
        table.row("floor: bare sandbox running python3 -c pass", bare_py)
        await lifecycle(manager, table, args.runs)
        await tiers(manager, table, args.runs, 1)
        if not args.skip_50mb:
            await tiers(manager, table, args.runs, 50)
        if not args.skip_storage:
            await storage(manager, args.boxes, args.cache)
    finally:
        for box in await manager.list():
            if box.state != BoxState.DELETED:
                await manager.delete(box.id)
        await manager.close()
        await redis.aclose()
        redis_server.stop()
        shutil.rmtree(config.run_dir, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    if os.geteuid() != 0:
        sys.exit("bench/boxes.py needs root (boxes get their own uids and disk images)")
    asyncio.run(main())
