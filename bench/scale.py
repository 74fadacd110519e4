"""Many tenants on one machine, against a real `burrow serve` over HTTP: the same figures at 10
tenants and at `--tenants` (default 2,000), measured in one run so each large figure stands
next to its small baseline.

Tenants are created through the HTTP API in batches; each is sent one agent request (`/ask`
with a statement the agent learns from); the idle policy (freeze after 2 s, at most `--warm`
warm boxes) then freezes them. Once every box is frozen and the observation backlog is empty,
at 10 tenants and again at N:

- creation rate (tenants per second, `POST /v1/tenants` alone) and the first agent request's
  latency (it starts the home box);
- unique bytes per frozen tenant in the snapshot store and, apart, in local layers (the store's
  and layers' growth since the server started, divided by the tenants);
- Redis memory (`used_memory`), `burrow serve`'s RSS (the server, its worker and helpers; no
  box processes);
- one sweeper pass over everything (`/v1/stats`, a pass with nothing to do);
- wake p50/p99 over `--wakes` wakes: a frozen tenant picked at random (at 10 tenants, each in
  turn), its first agent answer through the gateway; the bench freezes it again and waits
  0.5 s before the next, so no box it woke before is warm or being frozen beside a wake, at
  either size;
- memory per warm home box: PSS summed over the box's processes (`smaps_rollup`), over up to
  `--warm` boxes woken together.

    sudo .venv/bin/python bench/scale.py [--tenants 2000] [--wakes 40] [--warm 64]

Needs root. Nothing is asserted: the output is the result.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
from redis.asyncio import Redis

from bench.httpload import pct
from bench.serving import phases, run_as_root, served, tree_cpu_s

OPERATOR_KEY = "bench-operator-key-" + "s" * 24
UID_BASE = 5_000_000
OP = {"Authorization": f"Bearer {OPERATOR_KEY}"}
BATCH = 50
SETTLE_S = 0.5  # between a freeze and the next wake, as bench/gateway.py
TURN = {"question": "I prefer short answers, in French please. What do you know about me?"}


def _status(pid: int) -> dict[str, str]:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)


def _pids() -> list[int]:
    return [int(e) for e in os.listdir("/proc") if e.isdigit()]


def _box_uid(status: dict[str, str]) -> int | None:
    uid = int(status.get("Uid", "0").split()[0])
    return uid if UID_BASE <= uid < UID_BASE + 1_000_000 else None


def server_rss_mb(server_pid: int) -> float:
    """RSS of `burrow serve` and the processes below it that are not box processes."""
    parents = {p: int(_status(p).get("PPid", "0")) for p in _pids()}
    tree, todo = set(), [server_pid]
    while todo:
        pid = todo.pop()
        tree.add(pid)
        todo.extend(child for child, parent in parents.items() if parent == pid)
    total = 0
    for pid in tree:
        status = _status(pid)
        if status and _box_uid(status) is None and status.get("State", "").strip()[:1] != "Z":
            total += int(status.get("VmRSS", "0 kB").split()[0])
    return total / 1024


def pss_by_box() -> dict[int, float]:
    """PSS in MB summed over each box uid's processes."""
    out: dict[int, float] = {}
    for pid in _pids():
        uid = _box_uid(_status(pid))
        if uid is None:
            continue
        try:
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        for line in rollup.splitlines():
            if line.startswith("Pss:"):
                out[uid] = out.get(uid, 0.0) + int(line.split()[1]) / 1024
    return out


class Scale:
    def __init__(self, client: httpx.AsyncClient, data_dir: Path, server_pid: int,
                 warm: int) -> None:
        self.client = client
        self.data_dir = data_dir
        self.server_pid = server_pid
        self.warm = warm
        self.keys: dict[str, str] = {}
        self.homes: dict[str, str] = {}
        self.failed: list[str] = []  # first agent requests that were not answered
        self.redis = Redis(unix_socket_path=str(data_dir.resolve() / "redis" / "redis.sock"))
        self.base: dict[str, int] = {}

    async def stats(self) -> dict[str, Any]:
        r = await self.client.get("/v1/stats", headers=OP)
        r.raise_for_status()
        stats: dict[str, Any] = r.json()
        return stats

    async def settled(self, timeout_s: float = 1800) -> None:
        """Until no box is warm. Pairs recorded after the worker's last delivery to a box that
        froze since wait in the backlog for its next wake (delivery never wakes a box), so
        the backlog need not be empty: it is reported."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            s = await self.stats()
            warm = s["boxes"].get("running", 0) + s["boxes"].get("paused", 0)
            if warm == 0:
                if s["observations"]["backlog"]:
                    print(f"  ({s['observations']['backlog']} pairs wait for their frozen "
                          "boxes' next wake)", file=sys.stderr)
                return
            await asyncio.sleep(1)
        sys.exit("the boxes were not all frozen within the timeout")

    async def learned(self, timeout_s: float = 180) -> None:
        """Until the worker's queue is empty: the wakes are measured once the learning from
        the tenants' requests is done, not beside it."""
        deadline = time.monotonic() + timeout_s
        while (await self.stats())["observations"]["queue_depth"]:
            if time.monotonic() > deadline:
                print("  (the worker's queue did not empty; measuring anyway)", file=sys.stderr)
                return
            await asyncio.sleep(1)

    async def room(self) -> None:
        """Wait until the sweeper has brought the warm boxes down to the policy's bound."""
        while True:
            s = await self.stats()
            if s["boxes"].get("running", 0) + s["boxes"].get("paused", 0) <= self.warm:
                return
            await asyncio.sleep(0.5)

    async def grow(self, to: int) -> tuple[list[float], list[float]]:
        """Tenants up to `to`, each sent one agent request: (creation ms, first request ms)."""
        creations: list[float] = []
        firsts: list[float] = []
        slots = asyncio.Semaphore(4)

        async def one(n: int) -> None:
            tenant = f"scale-{n:05d}"
            async with slots:
                start = time.perf_counter()
                r = await self.client.post("/v1/tenants", json={"id": tenant}, headers=OP)
                r.raise_for_status()
                creations.append((time.perf_counter() - start) * 1000)
                key = r.json()["api_key"]
                self.keys[tenant] = key
                self.homes[tenant] = r.json()["home_box_id"]
                start = time.perf_counter()
                r = await self.client.post(f"/v1/tenants/{tenant}/agent/ask", json=TURN,
                                           headers={"Authorization": f"Bearer {key}"})
                if r.status_code != 200:
                    self.failed.append(f"{tenant}: {r.status_code} {r.text[:200]}")
                    return
                firsts.append((time.perf_counter() - start) * 1000)

        while len(self.keys) < to:
            await self.room()
            batch = range(len(self.keys), min(to, len(self.keys) + BATCH))
            await asyncio.gather(*(one(n) for n in batch))
        return creations, firsts

    async def wake(self, tenant: str) -> float | None:
        """One frozen tenant's first agent answer, ms (None if it failed)."""
        start = time.perf_counter()
        r = await self.client.post(f"/v1/tenants/{tenant}/agent/health",
                                   headers={"Authorization": f"Bearer {self.keys[tenant]}"})
        if r.status_code != 200:
            self.failed.append(f"wake of {tenant}: {r.status_code} {r.text[:200]}")
            return None
        return (time.perf_counter() - start) * 1000

    async def wakes(self, count: int) -> tuple[list[float], list[float]]:
        """`count` wakes of random frozen tenants through their agent (at 10 tenants each is
        woken count/10 times), each frozen again before the next wake: every wake is measured
        under the same conditions at both sizes, with no box the bench woke before still warm
        or being frozen beside it. Then PSS MB per warm box, over up to `warm` of them woken
        together. Returns (ms each, PSS each)."""
        names = sorted(self.keys)
        chosen = names * -(-count // len(names))
        random.shuffle(chosen)
        chosen = chosen[:count]
        samples = []
        for tenant in chosen:
            sample = await self.wake(tenant)
            if sample is not None:
                samples.append(sample)
            r = await self.client.post(f"/v1/boxes/{self.homes[tenant]}/freeze", headers=OP)
            r.raise_for_status()
            await asyncio.sleep(SETTLE_S)
        together = random.sample(names, min(self.warm, len(names), count))
        for tenant in together:
            await self.wake(tenant)
        await asyncio.sleep(0.5)  # the agents settle after their first answer
        pss = list(pss_by_box().values())
        return samples, pss

    async def measure(self, creations: list[float], firsts: list[float], wakes: int,
                      elapsed_s: float) -> dict[str, float]:
        await self.settled()
        s = await self.stats()
        n = len(self.keys)
        stored = s["storage"]["stored_bytes"] - self.base["stored"]
        local = s["storage"]["local_layer_bytes"] - self.base["local"]
        redis_mb = int((await self.redis.info("memory"))["used_memory"]) / 2**20
        rss = await asyncio.to_thread(server_rss_mb, self.server_pid)
        sweep = await self.sweep_ms()
        await self.learned()
        metrics = phases((await self.client.get("/metrics", headers=OP)).text)
        cpu, started = tree_cpu_s(self.server_pid), time.perf_counter()
        wake, pss = await self.wakes(wakes)
        busy = (tree_cpu_s(self.server_pid) - cpu) / (time.perf_counter() - started)
        after = phases((await self.client.get("/metrics", headers=OP)).text)
        await self.settled()
        return {
            "tenants": n,
            "creation rate, tenants/s": len(creations) / elapsed_s,
            "POST /v1/tenants p50 ms": statistics.median(creations),
            "first agent request p50 ms": statistics.median(firsts),
            "agent requests not answered": len(self.failed),
            "snapshot store KB per frozen tenant": stored / n / 1024,
            "local layers KB per frozen tenant": local / n / 1024,
            "Redis used_memory MB": redis_mb,
            "burrow serve RSS MB": rss,
            "sweeper pass ms (nothing to do)": sweep,
            "wake p50 ms": statistics.median(wake),
            "wake p99 ms": pct(wake, 0.99),
            **{f"  {phase} phase, mean ms": (after[phase][0] - metrics.get(phase, (0, 0))[0])
               / max(1, after[phase][1] - metrics.get(phase, (0, 0))[1]) * 1000
               for phase in ("registry", "layer", "daemon", "catch_up", "agent_answer")
               if phase in after},
            "  server CPU while waking, % of a core": busy * 100,
            "PSS per warm home box MB (median)": statistics.median(pss) if pss else 0.0,
        }

    async def sweep_ms(self) -> float:
        """The duration of the next sweep to finish, all boxes idle and frozen."""
        before = (await self.stats())["sweep"]["last_at"]
        for _ in range(120):
            await asyncio.sleep(0.5)
            sweep = (await self.stats())["sweep"]
            if sweep["last_at"] != before and not any(sweep["last_actions"].values()):
                return float(sweep["duration_ms"])
            before = sweep["last_at"] if any(sweep["last_actions"].values()) else before
        return float("nan")

    async def run(self, args: argparse.Namespace) -> None:
        r = await self.client.put("/v1/policy", headers=OP, json={
            "freeze_after_s": 2, "max_warm_boxes": self.warm})
        r.raise_for_status()
        s = await self.stats()
        self.base = {"stored": s["storage"]["stored_bytes"],
                     "local": s["storage"]["local_layer_bytes"]}
        figures = []
        for size in (10, args.tenants):
            started = time.perf_counter()
            creations, firsts = await self.grow(size)
            elapsed = time.perf_counter() - started
            figures.append(await self.measure(creations, firsts, args.wakes, elapsed))
            print(f"  {size} tenants measured", flush=True)
        small, large = figures
        for failure in self.failed[:10]:
            print(f"  not answered: {failure}")
        print(f"\n{'measure':<40}{small['tenants']:>12.0f}{large['tenants']:>12.0f}{'ratio':>9}")
        print("-" * 73)
        for name in small:
            if name == "tenants":
                continue
            ratio = f"{large[name] / small[name]:>8.2f}x" if small[name] else f"{'-':>9}"
            print(f"{name:<40}{small[name]:>12.2f}{large[name]:>12.2f}{ratio}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=2000)
    parser.add_argument("--wakes", type=int, default=40, help="frozen tenants woken per size")
    parser.add_argument("--warm", type=int, default=64, help="the policy's max_warm_boxes")
    args = parser.parse_args()
    if args.tenants <= 10:
        parser.error("--tenants must be more than the 10-tenant baseline")
    with served(OPERATOR_KEY, str(UID_BASE), "burrow-bench-scale-",
                {"BURROW_SWEEP_INTERVAL_S": "1"}) as server:

        async def go() -> None:
            async with httpx.AsyncClient(base_url=server.url, timeout=300) as client:
                await Scale(client, server.data_dir, server.pid, args.warm).run(args)

        asyncio.run(go())

if __name__ == "__main__":
    run_as_root("bench/scale.py", main)
