"""A cluster's costs against one machine's, measured in one run: box hosts (`burrow host`, each
in a network namespace of its own on a bridge), a `burrow gateway`, Redis and SeaweedFS (the
S3 store) started as tests/cluster/ starts them, beside a `burrow serve` on the same machine.
Every figure is a served one, a request through a gateway until its answer, as a client sees
it, unless its name says otherwise:

1. waking a frozen tenant: the agent route's first answer (`POST /v1/tenants/T/agent/health`)
   once its box was frozen, with a 1 MB layer (64 files of 16 KB, half random, half text) and
   a 50 MB one (the same and 49 random files of 1 MB), on the one machine (`burrow serve`:
   frozen, the baseline, and archived, restored from its local store) and in the cluster: on
   the host it was frozen on (its layer cached there), on another host whose cache is cold
   (the layer fetched from the store), and back on the first host (its cache warm: it packed
   those objects, but no longer trusts its layer, which another host woke the box from
   since). Each sample is a tenant of its own, so a cold cache is really cold; the box is
   moved to the other host with the placement script a gateway runs (boxes/placement.py),
   by the bench, timed apart; a round measures each kind once, so the machine's drift hits
   them all, each wake once the roles are quiet and the machine has written back what the
   steps before it wrote;
2. forwarding: the agent route on a running box, through `burrow gateway` -> the box's host
   against through `burrow serve`, one request at a time and `--concurrency` at once, next to
   each box's own service socket (what each path adds to the agent's own time);
3. a lost host: `--lost` tenants frozen on one host and `--warm` running there (each with a
   snapshot) when it is killed (SIGKILL of its process group, its boxes die with it); then a
   fleet of `--fleet` clients sends every one of those tenants a request, again until it is
   answered. The time until all have answered, from the kill and from the moment its lease
   lapsed (BURROW_HOST_LEASE_S, `--lease`), against the time `burrow serve` takes to wake as
   many frozen tenants with the same fleet, in the same run, just before and just after (the
   baseline is the mean of the two: a machine's load drifts over the minutes this takes).
   The two other hosts take them (cold caches: they never saw those tenants), their idle
   sweep bounding the warm boxes at `--max-warm` each (`burrow serve`: twice that, the same
   in all);
4. a checkpoint's cost to a running box's requests: bench/checkpoint.py's measure (a box
   running the tenant agent and a writer of 1 MB/s; its requests at a fixed rate with and
   without a checkpoint every second) on a box host in this process whose store is the
   cluster's bucket.

    sudo .venv/bin/python bench/cluster.py           # 20 + 10 wakes; 100 and 1,000 lost
    sudo .venv/bin/python bench/cluster.py --quick   # a small run: 6 + 3 wakes; 50 lost

Needs root (namespaces, a bridge, boxes). No worker runs (nothing measured needs one: /health
is not an observed route). Box uids: the cluster's hosts from 11,100,000, `burrow serve` from
11,500,000, the checkpoint measure's box 11,700,000. Nothing is asserted: the output is the
result.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
from redis.asyncio import Redis

from bench import checkpoint
from bench.httpload import Conn, load, pct
from bench.serving import run_as_root, served, tree_cpu, tree_cpu_s
from boxes import BoxManager, RuntimeConfig
from boxes.errors import InvalidRequestError
from boxes.hosts import Hosts
from boxes.locks import BoxLocks
from boxes.placement import Placer
from core.channel import HostClient
from core.inbox import image_extras
from core.keys import Keys
from core.transport import transport_key
from tests.cluster.nodes import BUCKET, REPO, Cluster, Node
from tests.cluster.roles import GATEWAY_PORT, HOST_PORT, Roles

SERVE_KEY = "bench-operator-key-" + "c" * 24
CLUSTER_UID_BASE = 11_100_000  # + 20,000 per host machine (tests/cluster/roles.py)
SERVE_UID_BASE = 11_500_000
CHECKPOINT_UID_BASE = 11_700_000  # the box of the checkpoint measure
HOSTS = ("h1", "h2", "h3")  # h1 and h2 serve throughout; h3 is the host that is lost
SETTLE_S = 0.5  # between a freeze and the wake measured, as bench/gateway.py
KEYS = Keys()
HEALTH = "/v1/tenants/{}/agent/health"
SMALL_FILES = ("mkdir -p notes && for i in $(seq 64); do { head -c 8192 /dev/urandom; "
               "yes line of text $i | head -c 8192; } > notes/f$i; done")
LARGE_FILES = "mkdir -p state && for i in $(seq 49); do head -c 1M /dev/urandom > state/f$i; done"


# --- the table -----------------------------------------------------------------------------

def p90(samples: Sequence[float]) -> float:
    return pct(list(samples), 0.9)


class Table:
    """One table for everything: a row is a measure, its n, p50, p90, p99, the time until
    all were done (for a fleet) and its ratio to the row named as its baseline."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def section(self, title: str) -> None:
        self.lines.append(f"{title}")

    def row(self, name: str, samples: Sequence[float], base: Sequence[float] | float | None = None,
            total: float | None = None, unit: str = "ms", target: str = "") -> float | None:
        """A row of `samples`; its ratio to `base` (samples: their p50; a number: itself),
        compared by p50, or by `total` when given."""
        med = statistics.median(samples) if samples else float("nan")
        ours = total if total is not None else med
        ratio = None
        if base is not None:
            against = base if isinstance(base, float | int) else statistics.median(base)
            ratio = ours / against if against else None
        cells = [f"{len(samples):>6}"]
        cells += [f"{v:>9.2f}" for v in (med, p90(samples), pct(list(samples), 0.99))] \
            if samples else [f"{'-':>9}"] * 3
        cells.append(f"{total:>9.2f}" if total is not None else f"{'':>9}")
        cells.append(f"{ratio:>8.2f}x" if ratio is not None else f"{'':>9}")
        self.lines.append(f"  {name:<70}{unit:>4}{''.join(cells)}  {target}".rstrip())
        return ratio

    def text(self, name: str) -> None:
        self.lines.append(f"  {name}")

    def print(self) -> None:
        head = (f"  {'measure':<70}{'unit':>4}{'n':>6}{'p50':>9}{'p90':>9}{'p99':>9}"
                f"{'all':>9}{'ratio':>9}")
        print("\n" + head + "\n" + "-" * (len(head) + 14))
        for line in self.lines:
            print(line)


# --- clients -------------------------------------------------------------------------------

@dataclass
class Tenant:
    id: str
    key: str
    home: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"}


@dataclass
class Front:
    """A gateway: `burrow serve`'s or `burrow gateway`'s, as a client reaches it."""

    name: str
    address: tuple[str, int]
    operator_key: str
    pids: Callable[[], list[int]]  # the processes whose CPU says whether it is quiet
    run_dirs: Callable[[str], Path]  # a box's runtime dir, on whatever machine runs it
    tenants: list[Tenant] = field(default_factory=list)
    no_room: int = 0  # tenant creations refused for want of room on a host, then retried

    @property
    def url(self) -> str:
        return f"http://{self.address[0]}:{self.address[1]}"

    @property
    def op(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.operator_key}"}

    def client(self, timeout: float = 300) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, timeout=timeout, trust_env=False)

    async def tenant(self, c: httpx.AsyncClient, tenant_id: str) -> Tenant:
        """A new tenant; while no host has room (503), asked again (and counted)."""
        while True:
            r = await c.post("/v1/tenants", json={"id": tenant_id}, headers=self.op)
            if r.status_code != 503 or "room" not in r.text:
                break
            self.no_room += 1
            await asyncio.sleep(0.5)
        if r.status_code != 201:
            raise RuntimeError(f"{self.name}: creating tenant {tenant_id}: {r.status_code} "
                               f"{r.text[:300]}")
        made = Tenant(tenant_id, r.json()["api_key"], r.json()["home_box_id"])
        self.tenants.append(made)
        return made

    async def ask(self, c: httpx.AsyncClient, tenant: Tenant) -> None:
        r = await c.post(HEALTH.format(tenant.id), headers=tenant.auth)
        if r.status_code != 200:
            raise RuntimeError(f"{self.name}: {tenant.id}'s agent: {r.status_code} "
                               f"{r.text[:300]}")

    async def exec(self, c: httpx.AsyncClient, tenant: Tenant, command: str) -> None:
        r = await c.post(f"/v1/boxes/{tenant.home}/exec", headers=tenant.auth,
                         json={"command": command, "timeout_s": 300})
        if r.status_code != 200 or r.json().get("exit_code") != 0:
            raise RuntimeError(f"{self.name}: exec in {tenant.home}: {r.text[:300]}")

    async def freeze(self, c: httpx.AsyncClient, tenant: Tenant) -> None:
        """Freeze the tenant's box; a freeze the store failed (503) is tried again, twice,
        and said on stderr."""
        for attempt in range(3):
            r = await c.post(f"/v1/boxes/{tenant.home}/freeze", headers=self.op)
            if r.status_code == 200 and r.json().get("state") == "frozen":
                return
            if r.status_code != 503 or attempt == 2:
                break
            print(f"  note: {self.name}: a freeze of {tenant.home} failed, tried again: "
                  f"{r.text[:1000]}", file=sys.stderr, flush=True)
            await asyncio.sleep(1)
        raise RuntimeError(f"{self.name}: freezing {tenant.home}: {r.status_code} "
                           f"{r.text[:1000]}")

    async def policy(self, c: httpx.AsyncClient, **fields: object) -> None:
        r = await c.put("/v1/policy", headers=self.op, json=fields)
        r.raise_for_status()

    async def served_wake(self, tenant: Tenant) -> float:
        """The tenant's first agent answer on a new connection, ms."""
        conn = await Conn.open(self.address)
        try:
            start = time.perf_counter()
            status, body = await conn.request("POST", HEALTH.format(tenant.id), tenant.auth)
            elapsed = (time.perf_counter() - start) * 1000
        finally:
            conn.close()
        if status != 200:
            raise RuntimeError(f"{self.name}: waking {tenant.id}: {status} {body[:300]!r}")
        return elapsed

    def service_socket(self, tenant: Tenant) -> str:
        return str(self.run_dirs(tenant.home) / "service.sock")

    async def quiet(self, quiet_s: float = 0.15, timeout_s: float = 120.0) -> None:
        """Until its processes (and the boxes below them) used under `quiet_s` of CPU in a
        second: what earlier steps started is done before the next is measured."""
        deadline = time.monotonic() + timeout_s

        def used() -> float:
            return sum(tree_cpu_s(pid) for pid in self.pids())

        before = await asyncio.to_thread(used)
        while time.monotonic() < deadline:
            await asyncio.sleep(1.0)
            now = await asyncio.to_thread(used)
            if now - before < quiet_s:
                return
            before = now


async def gather_limited(limit: int, calls: Sequence[Callable[[], Awaitable[object]]]) -> None:
    slots = asyncio.Semaphore(limit)

    async def one(call: Callable[[], Awaitable[object]]) -> None:
        async with slots:
            await call()

    await asyncio.gather(*(one(call) for call in calls))


# --- the cluster ---------------------------------------------------------------------------

class BenchRoles(Roles):
    """The test cluster's roles, each given `extra` settings too."""

    def __init__(self, cluster: Cluster, uid_base: int, lease_s: float,
                 extra: dict[str, str]) -> None:
        super().__init__(cluster, uid_base, lease_s)
        self.extra = extra

    def _env(self, node: Node, **extra: str) -> dict[str, str]:
        return super()._env(node, **{**self.extra, **extra})


class Machines:
    """The cluster (hosts h1 and h2, a gateway g1; h3 when a host is to be lost) and its
    Redis as the bench reads and places with."""

    def __init__(self, root: Path, lease_s: float, host_memory_mb: int | None) -> None:
        self.cluster = Cluster.open(root, HOSTS)
        extra = {} if host_memory_mb is None else {"BURROW_HOST_MEMORY_MB": str(host_memory_mb)}
        self.roles = BenchRoles(self.cluster, CLUSTER_UID_BASE, lease_s, extra)
        self.redis: Redis | None = None
        self.hosts: Hosts | None = None

    def start_host(self, name: str) -> Node:
        """Start (again) the host of machine `name`, with its data dir as it was."""
        node = self.cluster[name]
        node.stop()
        self.roles.host(name)
        self.roles.ready(node)
        return node

    def start(self) -> Node:
        for name in ("h1", "h2"):
            self.start_host(name)
        gateway = self.roles.gateway()
        self.roles.ready(gateway)
        return gateway

    def front(self, gateway: Node) -> Front:
        def pids() -> list[int]:
            return [n.pid for n in self.cluster.nodes.values() if n.running]

        def run_dir(box_id: str) -> Path:
            for name in HOSTS:
                path = RuntimeConfig(data_dir=self.cluster[name].dir / "data").run_dir
                if (path / "boxes" / box_id / "service.sock").exists():
                    return path / "boxes" / box_id
            raise RuntimeError(f"box {box_id} runs on no host")

        return Front("cluster", (gateway.address, GATEWAY_PORT), self.roles.operator_key,
                     pids, run_dir)

    async def open(self) -> None:
        self.redis = Redis.from_url(self.cluster.redis.tcp_url)
        self.hosts = Hosts(self.redis, KEYS)

    async def drain(self, host_id: str, draining: bool = True) -> None:
        assert self.hosts is not None
        await self.hosts.drain(host_id, draining)

    @property
    def r(self) -> Redis:
        assert self.redis is not None
        return self.redis

    async def host_id(self, name: str) -> str:
        for raw in await self.r.smembers(KEYS.hosts()):  # type: ignore[misc]
            host_id = raw.decode()
            if host_id.startswith(name + "~") and await self.r.exists(KEYS.host_lease(host_id)):
                return str(host_id)
        raise RuntimeError(f"no live host on {name}")

    async def placed_on(self, box_id: str) -> tuple[str, int]:
        """(the host the box's record names, its generation)."""
        host, generation = await self.r.hmget(KEYS.box(box_id), ["host", "generation"])  # type: ignore[misc]
        return (host or b"null").decode().strip('"'), int(generation or 0)

    async def place(self, box_id: str, on: str) -> float:
        """Place the frozen box on host `on`, as a gateway would (under its lock, the
        placement script, excluding every other host); ms."""
        config = RuntimeConfig(data_dir=Path("/nonexistent"))
        locks = BoxLocks(self.r, KEYS, config.lock_ttl_s, config.lock_wait_s)
        placer = Placer(self.r, KEYS)
        others = [h for h in await placer.hosts.ids() if h != on]
        start = time.perf_counter()
        async with locks.hold(box_id):
            _, generation = await self.placed_on(box_id)
            placement = await placer.place(box_id, generation, exclude=others)
        elapsed = (time.perf_counter() - start) * 1000
        if placement is None or placement.host != on:
            raise RuntimeError(f"box {box_id} was not placed on {on}: {placement}")
        return elapsed

    async def close(self) -> None:
        if self.redis is not None:
            await self.redis.aclose()
        self.cluster.close()


# --- 1. wakes ------------------------------------------------------------------------------

@dataclass
class Wakes:
    one_machine: list[float] = field(default_factory=list)
    archived: list[float] = field(default_factory=list)
    same_host: list[float] = field(default_factory=list)
    cold: list[float] = field(default_factory=list)
    warm: list[float] = field(default_factory=list)
    placement: list[float] = field(default_factory=list)


async def fill(front: Front, c: httpx.AsyncClient, tenant: Tenant, large: bool) -> None:
    await front.exec(c, tenant, SMALL_FILES)
    if large:
        await front.exec(c, tenant, LARGE_FILES)
    await front.ask(c, tenant)


async def settled(*fronts: Front) -> None:
    """Before a wake measured: what earlier steps started is done (their CPU, and the
    machine's writeback of what they wrote), at least SETTLE_S after the freeze."""
    started = time.monotonic()
    for front in fronts:
        await front.quiet(timeout_s=20)
    await asyncio.to_thread(os.sync)
    await asyncio.sleep(max(0.0, SETTLE_S - (time.monotonic() - started)))


async def measure_wakes(serve: Front, cluster: Front, machines: Machines, label: str,
                        runs: int, large: bool) -> Wakes:
    """`runs` rounds; in each, one wake of each kind (a new tenant in the cluster)."""
    out = Wakes()
    h1, h2 = await machines.host_id("h1"), await machines.host_id("h2")
    async with serve.client() as s, cluster.client() as c:
        alone = await serve.tenant(s, f"wake-{label}")
        await fill(serve, s, alone, large)
        tenants = []
        for n in range(runs):  # made first: making one is not beside a wake measured
            tenant = await cluster.tenant(c, f"wake-{label}-{n}")
            await fill(cluster, c, tenant, large)
            await cluster.freeze(c, tenant)
            tenants.append(tenant)

        async def wake(front: Front, tenant: Tenant, into: list[float]) -> None:
            await settled(serve, cluster)
            into.append(await front.served_wake(tenant))

        for tenant in tenants:
            await serve.freeze(s, alone)
            await wake(serve, alone, out.one_machine)
            await serve.freeze(s, alone)
            r = await s.post(f"/v1/boxes/{alone.home}/archive", headers=serve.op)
            if r.json().get("state") != "archived":
                raise RuntimeError(f"serve: archiving {alone.home}: {r.text[:300]}")
            await wake(serve, alone, out.archived)
            first, _ = await machines.placed_on(tenant.home)
            other = h2 if first == h1 else h1
            await wake(cluster, tenant, out.same_host)
            await cluster.freeze(c, tenant)
            out.placement.append(await machines.place(tenant.home, other))
            await wake(cluster, tenant, out.cold)
            await cluster.freeze(c, tenant)
            out.placement.append(await machines.place(tenant.home, first))
            await wake(cluster, tenant, out.warm)
            await cluster.freeze(c, tenant)
        await serve.freeze(s, alone)
    return out


def print_wakes(table: Table, label: str, wakes: Wakes) -> None:
    table.section(f"1. wake of a frozen tenant, {label} layer: the agent's first answer "
                  "through the gateway (served)")
    base = wakes.one_machine
    table.row("one machine (burrow serve): frozen, local layer   [baseline]", base)
    table.row("one machine: archived (restored from the local store)", wakes.archived, base)
    table.row("cluster: on the host it froze on (layer cached)", wakes.same_host, base)
    table.row("cluster: on another host, cold cache (layer from S3)", wakes.cold, base,
              target="target <= 2x (1 MB)" if label == "1 MB" else "")
    table.row("cluster: back on the first host, warm cache (from S3)", wakes.warm, base)
    table.row("  the move: lock + placement script, by the bench (not in the above)",
              wakes.placement)


# --- 2. forwarding -------------------------------------------------------------------------

def cpu_split(pid: int) -> tuple[float, float]:
    """CPU seconds so far of `pid` and everything below it: (what runs as root, what runs as
    a box uid: its boxes)."""
    role = boxes = 0.0
    for current, used in tree_cpu(pid):
        try:
            uid = os.stat(f"/proc/{current}").st_uid
        except OSError:
            continue
        if uid >= CLUSTER_UID_BASE:
            boxes += used
        else:
            role += used
    return role, boxes


Address = str | tuple[str, int]  # a unix socket, or host and port


@dataclass
class Route:
    where: Address
    target: str
    headers: dict[str, str]
    # the processes whose CPU the route spends, by name: (its pid, True for its boxes' part)
    cpu: dict[str, tuple[int, bool]] = field(default_factory=dict)


async def measure_forwarding(serve: Front, cluster: Front, machines: Machines, table: Table,
                             requests: int, concurrency: int, one_by_one: int) -> None:
    async with serve.client() as s, cluster.client() as c:
        here = await serve.tenant(s, "forward")
        there = await cluster.tenant(c, "forward")
        await serve.ask(s, here)
        await cluster.ask(c, there)
    serve_pid = serve.pids()[0]
    host = machines.cluster[(await machines.placed_on(there.home))[0].partition("~")[0]]
    gateway = machines.cluster["g1"]
    paths = {
        "serve socket": Route(serve.service_socket(here), "/health", {}),
        "serve route": Route(serve.address, HEALTH.format(here.id), here.auth,
                             {"burrow serve": (serve_pid, False), "its box": (serve_pid, True)}),
        "cluster socket": Route(cluster.service_socket(there), "/health", {}),
        "cluster route": Route(cluster.address, HEALTH.format(there.id), there.auth,
                               {"burrow gateway": (gateway.pid, False),
                                "burrow host": (host.pid, False), "its box": (host.pid, True)}),
    }
    for path in paths.values():  # warm-up of every path
        await load(path.where, path.target, path.headers, 200, concurrency)
    await serve.quiet()
    await cluster.quiet()
    results: dict[tuple[str, int], list[float]] = {}
    rates: dict[tuple[str, int], list[float]] = {}
    cpu: dict[tuple[str, int], dict[str, float]] = {}
    for _ in range(2):  # each path twice, in turn: the machine's drift hits them all
        for level, total in ((1, one_by_one // 2), (concurrency, requests // 2)):
            for name, path in paths.items():
                before = {k: cpu_split(pid)[part] for k, (pid, part) in path.cpu.items()}
                samples, rps = await load(path.where, path.target, path.headers, total, level)
                used = cpu.setdefault((name, level), {})
                for k, (pid, part) in path.cpu.items():
                    spent = (cpu_split(pid)[part] - before[k]) * 1000 / total
                    used[k] = used.get(k, 0.0) + spent / 2
                results.setdefault((name, level), []).extend(samples)
                rates.setdefault((name, level), []).append(rps)
    table.section("2. the agent route on a running box (/health): gateway -> host against "
                  "one process")
    for level in (1, concurrency):
        at = "one at a time" if level == 1 else f"{level} at once"
        sock, route = results[("serve socket", level)], results[("serve route", level)]
        csock, croute = results[("cluster socket", level)], results[("cluster route", level)]
        table.row(f"the box's own socket, burrow serve's box, {at}", sock)
        table.row(f"burrow serve: agent route, {at}   [baseline]", route)
        table.row(f"the box's own socket, on its host, {at}", csock)
        table.row(f"burrow gateway -> host: agent route, {at}", croute, route,
                  target="target: <= 1 ms p50 added" if level == 1 else "")
        added = statistics.median(croute) - statistics.median(route)
        floors = statistics.median(csock) - statistics.median(sock)
        per_s = (statistics.mean(rates[("serve route", level)]),
                 statistics.mean(rates[("cluster route", level)]))
        table.text(f"    added p50 {added:+.2f} ms ({floors:+.2f} ms of it between the two "
                   f"boxes' own sockets), p99 {pct(croute, .99) - pct(route, .99):+.2f} ms; "
                   f"requests/s {per_s[0]:.0f} -> {per_s[1]:.0f}")
        shares = [", ".join(f"{k} {v:.2f}" for k, v in cpu[(name, level)].items())
                  for name in ("serve route", "cluster route")]
        table.text(f"    CPU ms per request: {shares[0]}; against {shares[1]}")
    await channel_rows(machines, host, table, one_by_one)


async def channel_rows(machines: Machines, host: Node, table: Table, runs: int) -> None:
    """What opening a connection to a host costs: the signed first line (an op it does not
    have: checked, nonce and all, then refused) against an unsigned health probe on the same
    listener. (The gateway keeps a
    box's service connections open: a warm box's requests pay neither.)"""
    client = HostClient(transport_key(machines.roles.secret.encode()))
    host_id = await machines.host_id(host.name)
    address = f"{host.address}:{HOST_PORT}"

    async def probe() -> None:
        reader, writer = await asyncio.open_connection(host.address, HOST_PORT)
        writer.write(b"GET /healthz HTTP/1.1\r\n\r\n")
        await reader.read()
        writer.close()

    async def signed() -> None:  # an op no host has: verified, then refused, nothing done
        with contextlib.suppress(InvalidRequestError):
            await client.call(host_id, address, "nothing", "", {})

    times: dict[str, list[float]] = {"probe": [], "signed": []}
    for _ in range(runs):
        for name, call in (("probe", probe), ("signed", signed)):
            start = time.perf_counter()
            await call()
            times[name].append((time.perf_counter() - start) * 1000)
    table.row("a new connection to a host: unsigned GET /healthz", times["probe"])
    table.row("a new connection to a host: a signed line (verified, nonce stored)", times["signed"],
              times["probe"])


# --- 3. a lost host ------------------------------------------------------------------------

@dataclass
class Fleet:
    answered: dict[str, float] = field(default_factory=dict)  # tenant -> s since the start
    refused: int = 0   # answers that were not 200 (then asked again)
    broken: int = 0    # connections that broke (then opened again)
    statuses: dict[int, int] = field(default_factory=dict)
    reasons: Counter[str] = field(default_factory=Counter)  # the refusals' messages

    @property
    def total(self) -> float:
        return max(self.answered.values()) if self.answered else float("nan")


async def fleet(front: Front, tenants: Sequence[Tenant], concurrency: int, started: float,
                deadline_s: float = 1800.0) -> Fleet:
    """Each tenant asked until it answers 200, `concurrency` clients at once on keep-alive
    connections, a tenant refused going to the back of the queue (a client retrying); the
    time of each one's first 200, from `started` (a perf_counter reading)."""
    out = Fleet()
    queue: asyncio.Queue[Tenant] = asyncio.Queue()
    order = list(tenants)
    random.shuffle(order)
    for tenant in order:
        queue.put_nowait(tenant)
    left = [len(order)]

    async def client() -> None:
        conn: Conn | None = None
        while left[0] > 0 and time.perf_counter() - started < deadline_s:
            try:
                tenant = queue.get_nowait()
            except asyncio.QueueEmpty:
                await asyncio.sleep(0.05)  # the rest are in flight, or will be retried
                continue
            try:
                if conn is None:
                    conn = await Conn.open(front.address)
                status, body = await asyncio.wait_for(
                    conn.request("POST", HEALTH.format(tenant.id), tenant.auth), 300)
            except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError,
                    IndexError):
                out.broken += 1
                if conn is not None:
                    conn.close()
                conn = None
                queue.put_nowait(tenant)
                await asyncio.sleep(0.2)
                continue
            if status == 200:
                out.answered[tenant.id] = time.perf_counter() - started
                left[0] -= 1
            else:
                out.refused += 1
                out.statuses[status] = out.statuses.get(status, 0) + 1
                out.reasons[reason(body)] += 1
                queue.put_nowait(tenant)
                await asyncio.sleep(0.2)
        if conn is not None:
            conn.close()

    await asyncio.gather(*(client() for _ in range(concurrency)))
    return out


def reason(body: bytes) -> str:
    """A refusal's message, its ids left out, so that alike ones count together."""
    try:
        message = str(json.loads(body)["error"]["message"])
    except (ValueError, KeyError, TypeError):
        message = body[:120].decode(errors="replace")
    return re.sub(r"\b(b_[0-9a-z]+|h\d~[0-9a-f]+|[0-9.]+:\d+|\d+(?= registered))\b", "…",
                  message)[:160]


async def make_tenants(front: Front, prefix: str, count: int, parallel: int) -> list[Tenant]:
    """`count` tenants, each answered once, then frozen."""
    made: list[Tenant] = []
    async with front.client() as c:

        async def one(n: int) -> None:
            tenant = await front.tenant(c, f"{prefix}-{n:05d}")
            await front.ask(c, tenant)
            await front.freeze(c, tenant)
            made.append(tenant)

        await gather_limited(parallel, [partial(one, n) for n in range(count)])
    return made


async def freeze_all(front: Front, tenants: Sequence[Tenant], parallel: int) -> None:
    async with front.client() as c:
        async def one(tenant: Tenant) -> None:
            r = await c.post(f"/v1/boxes/{tenant.home}/freeze", headers=front.op)
            r.raise_for_status()
        await gather_limited(parallel, [partial(one, t) for t in tenants])


@dataclass
class Lost:
    tenants: int
    warm: int
    lapse_s: float           # from the kill to the lease's lapse
    no_room: int             # creations of its tenants refused for want of room, retried
    cluster: Fleet           # times from the kill
    # times from the fleet's start: before the host is lost and after it answered again (the
    # machine's load drifts over the minutes that takes; the baseline is their mean)
    one_machine: tuple[Fleet, Fleet]

    @property
    def base_s(self) -> float:
        return statistics.mean(run.total for run in self.one_machine)


async def watch_lapse(machines: Machines, host_id: str, started: float) -> float:
    """Seconds from `started` until the host's lease key is gone."""
    key = KEYS.host_lease(host_id)
    while True:
        if not await machines.r.exists(key):
            return time.perf_counter() - started
        await asyncio.sleep(0.01)


async def measure_lost(serve: Front, cluster: Front, machines: Machines, count: int,
                       warm: int, fleet_size: int, parallel: int,
                       serve_pool: list[Tenant]) -> Lost:
    """`count` frozen and `warm` running tenants on h3, h3 killed, all asked again; before and
    after, as many frozen tenants of `burrow serve` woken by the same fleet."""
    n = count + warm
    while len(serve_pool) < n:
        serve_pool += await make_tenants(serve, f"lost-{len(serve_pool)}", n - len(serve_pool),
                                         parallel)
    chosen = serve_pool[:n]

    async def one_machine() -> Fleet:
        await freeze_all(serve, serve_pool, parallel)
        await serve.quiet()
        return await fleet(serve, chosen, fleet_size, time.perf_counter())

    before = await one_machine()
    await freeze_all(serve, chosen, parallel)
    victim = await asyncio.to_thread(machines.start_host, "h3")
    h3 = await machines.host_id("h3")
    survivors = [await machines.host_id("h1"), await machines.host_id("h2")]
    for host_id in survivors:  # new boxes go to h3 alone
        await machines.drain(host_id)
    refused = cluster.no_room
    try:
        made = await make_tenants(cluster, f"lost{count}", n, parallel)
    finally:
        for host_id in survivors:
            await machines.drain(host_id, draining=False)
    # the survivors see the end of their drain at their next renewal, before the sweep
    await asyncio.sleep(machines.roles.lease_s + 3)
    hot = made[:warm]
    async with cluster.client() as c:
        await gather_limited(parallel, [partial(cluster.ask, c, t) for t in hot])
    on_victim = sum([(await machines.placed_on(t.home))[0] == h3 for t in made])
    if on_victim != len(made):
        raise RuntimeError(f"only {on_victim} of {len(made)} tenants are on the host to lose")
    await cluster.quiet()
    async with cluster.client() as c:  # the warm ones were just active: not idle
        await gather_limited(parallel, [partial(cluster.ask, c, t) for t in hot])
    started = time.perf_counter()
    await asyncio.to_thread(victim.kill, signal.SIGKILL)
    lapse = asyncio.create_task(watch_lapse(machines, h3, started))
    cluster_fleet = await fleet(cluster, made, fleet_size, started)
    lapse_s = await lapse
    after = await one_machine()
    await freeze_all(serve, chosen, parallel)
    return Lost(count, warm, lapse_s, cluster.no_room - refused, cluster_fleet,
                (before, after))


def print_lost(table: Table, lost: Lost, fleet_size: int) -> None:
    n = lost.tenants + lost.warm
    table.section(f"3. a host lost (SIGKILL) with {lost.tenants} frozen and {lost.warm} running "
                  f"tenants; {fleet_size} clients ask each until it answers (s)")
    for when, run in zip(("before", "after"), lost.one_machine, strict=True):
        table.row(f"one machine: {n} frozen tenants woken, from the fleet's start, {when}",
                  list(run.answered.values()), total=run.total, unit="s")
    table.text(f"    the baseline: their mean, {lost.base_s:.2f} s")
    times = list(lost.cluster.answered.values())
    table.row("cluster: every tenant of the lost host answers again, from the kill", times,
              lost.base_s, total=lost.cluster.total, unit="s")
    after = [t - lost.lapse_s for t in times]
    table.row(f"cluster: the same, from the lease's lapse ({lost.lapse_s:.2f} s after the kill)",
              after, lost.base_s, total=lost.cluster.total - lost.lapse_s, unit="s",
              target="target <= 1.5x" if lost.tenants >= 1000 else "")
    named = (("cluster", lost.cluster), ("one machine, before", lost.one_machine[0]),
             ("one machine, after", lost.one_machine[1]))
    for name, run in named:
        unanswered = n - len(run.answered)
        table.text(f"    {name}: answered {len(run.answered)} of {n}"
                   + (f" ({unanswered} NOT within the deadline)" if unanswered else "")
                   + f"; asked again after a refusal {run.refused} times "
                   f"{dict(sorted(run.statuses.items()))}, after a broken connection "
                   f"{run.broken}")
        for message, seen in run.reasons.most_common(3):
            table.text(f"      {seen} x {message}")
    if lost.no_room:
        table.text(f"    (making them on the one host: {lost.no_room} creations refused for "
                   "want of room, asked again)")


# --- the run -------------------------------------------------------------------------------

@dataclass
class Args:
    quick: bool
    runs: int
    big_runs: int
    requests: int
    concurrency: int
    lost: list[int]
    warm: int
    fleet: int
    max_warm: int
    lease: float
    parallel: int
    host_memory_mb: int | None
    keep: bool
    parts: set[int]
    checkpoint_s: float
    work: Path = Path()


def parse() -> Args:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="a small run: 6 and 3 wakes, 1,000 requests, 50 lost tenants")
    parser.add_argument("--runs", type=int, help="wakes of each kind, 1 MB (default 20)")
    parser.add_argument("--big-runs", type=int, help="wakes of each kind, 50 MB (default 10)")
    parser.add_argument("--requests", type=int, help="agent requests at once (default 4000)")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--lost", help="frozen tenants of the lost host, comma-separated "
                                       "(default 100,1000)")
    parser.add_argument("--warm", type=int, help="running tenants of the lost host "
                                                 "(default 32)")
    parser.add_argument("--fleet", type=int, default=48, help="clients asking at once")
    parser.add_argument("--max-warm", type=int, default=16,
                        help="max_warm_boxes of each surviving host's sweep")
    parser.add_argument("--lease", type=float, default=10.0, help="BURROW_HOST_LEASE_S")
    parser.add_argument("--parallel", type=int, default=6, help="tenants made at once")
    parser.add_argument("--parts", default="1,2,3,4",
                        help="which measures to run, of 1 (wakes), 2 (forwarding), 3 (a lost "
                             "host), 4 (checkpoints)")
    parser.add_argument("--checkpoint-s", type=float,
                        help="seconds of requests with and without checkpoints (default 60)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the work dir (the roles' logs) and say where")
    parser.add_argument("--host-memory-mb", type=int,
                        help="BURROW_HOST_MEMORY_MB of the hosts (unset: the machine's)")
    a = parser.parse_args()
    quick = bool(a.quick)
    lost = a.lost or ("50" if quick else "100,1000")
    return Args(quick=quick, runs=a.runs or (6 if quick else 20),
                big_runs=a.big_runs or (3 if quick else 10),
                requests=a.requests or (1000 if quick else 4000),
                concurrency=a.concurrency, lost=[int(x) for x in lost.split(",") if x],
                warm=a.warm if a.warm is not None else (8 if quick else 32), fleet=a.fleet,
                max_warm=a.max_warm, lease=a.lease, parallel=a.parallel,
                host_memory_mb=a.host_memory_mb, keep=bool(a.keep),
                parts={int(x) for x in a.parts.split(",") if x},
                checkpoint_s=a.checkpoint_s or (20.0 if quick else 60.0))


async def measure_checkpoints(machines: Machines, work: Path, seconds: float,
                              table: Table) -> None:
    """bench/checkpoint.py's measure on a box host whose store is the cluster's bucket (format
    2, as the hosts write it): a box running the tenant agent and a writer of 1 MB/s, its
    requests without checkpoints against with a checkpoint every second (a host takes one
    every BURROW_CHECKPOINT_S, 60 by default)."""
    seaweed = machines.cluster.seaweed
    os.environ.update(seaweed.env())  # the AWS chain's identity, as the hosts have it
    config = RuntimeConfig(data_dir=work, uid_base=CHECKPOINT_UID_BASE,
                           image_extras=image_extras(),
                           store_url=f"s3://{BUCKET}/checkpoint-bench",
                           s3_endpoint=seaweed.endpoint)
    manager = await BoxManager.open(config, machines.r, Keys("benchcp"))
    try:
        measured = await checkpoint.measure(manager, 1, seconds, max(2, int(seconds / 5)),
                                            rate=200, interval=1.0)
    finally:
        await manager.close()
        shutil.rmtree(config.run_dir, ignore_errors=True)
    table.section("4. a checkpoint's cost to a running box's requests: the agent's /health "
                  "on its socket, 200/s open loop, a writer of 1 MB/s in the box")
    table.row("no checkpoints   [baseline]", measured.base)
    table.row("a checkpoint to the bucket every second", measured.with_checkpoints,
              measured.base, target=f"p99 added {measured.added_p99:+.2f} ms (target <= 5)")
    table.row(f"the box frozen by each of the {measured.taken} checkpoints", measured.frozen_ms)


async def run(args: Args, serve: Front, cluster: Front, machines: Machines,
              table: Table) -> None:
    await machines.open()
    started = time.monotonic()

    def done(what: str) -> None:
        print(f"  {what} measured ({time.monotonic() - started:.0f} s)", file=sys.stderr,
              flush=True)

    async with serve.client() as s, cluster.client() as c:  # nothing freezes on its own
        await serve.policy(s, freeze_after_s=3600)
        await cluster.policy(c, freeze_after_s=3600)
    sizes = (("1 MB", args.runs, False), ("50 MB", args.big_runs, True))
    for label, runs, large in sizes if 1 in args.parts else ():
        name = label.replace(" ", "").lower()
        print_wakes(table, label, await measure_wakes(serve, cluster, machines, name, runs,
                                                      large))
        done(f"wakes, {label}")
    if 2 in args.parts:
        await measure_forwarding(serve, cluster, machines, table, args.requests,
                                 args.concurrency, args.requests // 4)
        done("forwarding")
    async with serve.client() as s, cluster.client() as c:
        await serve.policy(s, freeze_after_s=3600, max_warm_boxes=2 * args.max_warm)
        await cluster.policy(c, freeze_after_s=3600, max_warm_boxes=args.max_warm)
    serve_pool: list[Tenant] = []
    for count in args.lost if 3 in args.parts else []:
        lost = await measure_lost(serve, cluster, machines, count, args.warm, args.fleet,
                                  args.parallel, serve_pool)
        print_lost(table, lost, args.fleet)
        done(f"a lost host, {count} tenants")
    if 4 in args.parts:
        await measure_checkpoints(machines, args.work / "checkpoint", args.checkpoint_s, table)
        done("checkpoints")


def main() -> None:
    args = parse()
    root = Path(tempfile.mkdtemp(prefix="burrow-bench-cluster-"))
    args.work = root
    table = Table()
    with ExitStack() as stack:
        stack.callback(table.print)  # what was measured, also when a later part failed
        if args.keep:
            stack.callback(print, f"the work dir, with each role's log: {root}",
                           file=sys.stderr)
        else:
            stack.callback(shutil.rmtree, root, True)
        server = stack.enter_context(served(SERVE_KEY, str(SERVE_UID_BASE),
                                            "burrow-bench-cluster-serve-",
                                            {"BURROW_SWEEP_INTERVAL_S": "2",
                                             "PYTHONPATH": str(REPO)}))
        machines = Machines(root / "cluster", args.lease, args.host_memory_mb)
        stack.callback(machines.cluster.close)
        gateway = machines.start()
        serve_config = RuntimeConfig(data_dir=server.data_dir)
        serve = Front("serve", ("127.0.0.1", server.port), SERVE_KEY, lambda: [server.pid],
                      lambda box_id: serve_config.run_dir / "boxes" / box_id)
        cluster = machines.front(gateway)
        print(f"cluster: hosts h1 and h2 ({machines.roles.lease_s:g} s leases), gateway at "
              f"{cluster.url}, SeaweedFS at {machines.cluster.seaweed.endpoint}; "
              f"burrow serve at {serve.url}", file=sys.stderr, flush=True)

        async def go() -> None:
            try:
                await run(args, serve, cluster, machines, table)
            finally:
                if machines.redis is not None:
                    await machines.redis.aclose()

        asyncio.run(go())


if __name__ == "__main__":
    run_as_root("bench/cluster.py", main)
