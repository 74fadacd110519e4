"""What checkpoints cost a running box's requests (boxes/checkpoints.py), against the same box
without them in the same run.

A box runs Burrow's tenant agent (its service) and a writer that rewrites files of 1 MB
(incompressible, each one new content) at a steady pace, WRITES MB of them a second. Requests
to the agent (POST /health on its service socket, the in-box half of the agent route) arrive
at a fixed rate, open loop: each one's latency counts from when it was due, so a request held
up by a frozen box counts in full, as would each of its queued successors. Windows without
checkpoints alternate with windows where the box host's Checkpointer runs every --interval
seconds (1 by default; a host runs BURROW_CHECKPOINT_S, 60), so that the machine's own drift
falls on both alike. It prints p50/p99 of both, the p99 the checkpoints add (the target: at
most 5 ms), and how long each checkpoint froze the box.

    sudo .venv/bin/python bench/checkpoint.py [--seconds 30] [--rounds 6] [--rate 200]

Needs root. Nothing is asserted: the output is the result.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from redis.asyncio import Redis

from bench.httpload import Conn, pct
from boxes import BoxManager, BoxSpec, ExecRequest, RuntimeConfig
from boxes.checkpoints import Checkpointer
from core.embedded_redis import EmbeddedRedis
from core.inbox import DEFAULT_AGENT_COMMAND, image_extras
from core.keys import Keys

UID_BASE = 54_000_000  # apart from servers, the test suites and the other benches
WRITES_MB = (1, 50)
CONNECTIONS = 16
TIMEOUT_S = 60.0  # a request not answered by then fails the bench
WRITER = """
import os, sys, time
megabytes = int(sys.argv[1])
data = bytearray(os.urandom(1 << 20))
os.makedirs("/workspace/data", exist_ok=True)
n = 0
while True:
    second = time.monotonic()
    for k in range(megabytes):  # spread over 0.9 s of each second
        n += 1
        data[:8] = n.to_bytes(8, "little")
        with open(f"/workspace/data/{k}.bin", "wb") as f:
            f.write(data)
        time.sleep(max(0.0, second + (k + 1) * 0.9 / megabytes - time.monotonic()))
    time.sleep(max(0.0, second + 1 - time.monotonic()))
"""


async def requests(socket: str, rate: float, seconds: float) -> list[float]:
    """Latencies (ms, from when each request was due) of `rate` requests a second."""
    pool: asyncio.Queue[Conn] = asyncio.Queue()
    for _ in range(CONNECTIONS):
        pool.put_nowait(await asyncio.wait_for(Conn.open(socket), TIMEOUT_S))
    latencies: list[float] = []

    async def one(due: float) -> None:
        conn = await pool.get()
        try:
            status, _ = await asyncio.wait_for(conn.request("POST", "/health", {}, b"{}"),
                                               TIMEOUT_S)
            if status != 200:
                raise RuntimeError(f"status {status}")
            latencies.append((time.perf_counter() - due) * 1000)
        finally:
            pool.put_nowait(conn)

    start = time.perf_counter()
    sent = []
    for i in range(int(rate * seconds)):
        due = start + i / rate
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        sent.append(asyncio.create_task(one(due)))
    await asyncio.gather(*sent)
    while not pool.empty():
        pool.get_nowait().close()
    return latencies


class Pauses:
    """How long each checkpoint froze the box (its manager's phases)."""

    def __init__(self) -> None:
        self.frozen_ms: list[float] = []
        self.taken = 0
        self._since = 0.0

    def phase(self, box_id: str, step: str) -> None:
        if step == "checkpoint-freezing":
            self._since = time.perf_counter()
        elif step == "checkpoint-thawed":
            self.frozen_ms.append((time.perf_counter() - self._since) * 1000)
        elif step == "checkpointed":
            self.taken += 1


def row(name: str, samples: list[float], base: list[float] | None = None) -> None:
    added = "" if base is None else f"{pct(samples, 0.99) - pct(base, 0.99):>+12.2f}"
    print(f"{name:<34}{len(samples):>7}{statistics.median(samples):>9.2f}"
          f"{pct(samples, 0.99):>9.2f}{added}")


@dataclass
class Measured:
    """One writer's windows: request latencies (ms) without and with checkpoints, and how
    long each checkpoint froze the box."""

    base: list[float]
    with_checkpoints: list[float]
    frozen_ms: list[float]
    taken: int
    spent_s: float

    @property
    def added_p99(self) -> float:
        return pct(self.with_checkpoints, 0.99) - pct(self.base, 0.99)


async def measure(manager: BoxManager, megabytes: int, seconds: float, rounds: int,
                  rate: float, interval: float) -> Measured:
    """A box running the tenant agent and a writer of `megabytes` MB/s; `rounds` windows of
    requests without checkpoints alternating with as many with a Checkpointer every
    `interval` s, `seconds` of each kind in all."""
    box = await manager.create(BoxSpec(service=list(DEFAULT_AGENT_COMMAND)))
    socket = manager.service_path(box.id)
    await manager.write_file(box.id, "writer.py", WRITER.encode())
    await manager.exec(box.id, ExecRequest(
        command=f"nohup python3 writer.py {megabytes} > /dev/null 2>&1 &"))
    await requests(socket, rate, 2)  # the agent warm, the writer going
    window = seconds / rounds
    measured = Measured([], [], [], 0, 0.0)
    pauses = Pauses()
    manager.on_phase = pauses.phase
    try:
        for _ in range(rounds):
            measured.base += await requests(socket, rate, window)
            checkpointer = Checkpointer(manager, interval)
            checkpointer.start()
            started = time.perf_counter()
            measured.with_checkpoints += await requests(socket, rate, window)
            await checkpointer.stop()
            measured.spent_s += time.perf_counter() - started
    finally:
        manager.on_phase = None
    measured.frozen_ms, measured.taken = sorted(pauses.frozen_ms), pauses.taken
    await manager.delete(box.id)
    return measured


def report(megabytes: int, interval: float, measured: Measured) -> None:
    title = f"writer {megabytes} MB/s"
    row(f"{title}, no checkpoints", measured.base)
    row(f"{title}, checkpoint every {interval:g} s", measured.with_checkpoints, measured.base)
    frozen = measured.frozen_ms
    print(f"{'':<4}{measured.taken} checkpoints in {measured.spent_s:.1f} s; the box frozen "
          f"p50 {statistics.median(frozen):.2f} ms, p99 {pct(frozen, 0.99):.2f} ms, "
          f"max {frozen[-1]:.2f} ms each")


async def main(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="burrow-bench-cp-"))
    server = EmbeddedRedis(work / "redis", appendonly=False)
    server.start()
    redis = Redis.from_url(server.url)
    config = RuntimeConfig(data_dir=work / "data", uid_base=UID_BASE,
                           image_extras=image_extras())
    manager = await BoxManager.open(config, redis, Keys())
    try:
        print(f"requests: POST /health to the agent, {args.rate:g}/s open loop, "
              f"{args.seconds:g} s of each in {args.rounds} rounds\n")
        print(f"{'measure':<34}{'n':>7}{'p50 ms':>9}{'p99 ms':>9}{'added p99':>12}")
        print("-" * 71)
        for megabytes in WRITES_MB:
            report(megabytes, args.interval, await measure(
                manager, megabytes, args.seconds, args.rounds, args.rate, args.interval))
    finally:
        await manager.close()
        await redis.aclose()
        server.stop()
        shutil.rmtree(config.run_dir, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="of each kind of window")
    parser.add_argument("--rounds", type=int, default=6, help="windows of each kind")
    parser.add_argument("--rate", type=float, default=200.0, help="requests a second")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between passes")
    asyncio.run(main(parser.parse_args()))
