"""Burrow's roles on the test cluster's nodes (tests/cluster/nodes.py): box hosts (`burrow
host`) in the namespaces h1..h3, each a machine of its own with its data dir and uid range;
gateways (`burrow gateway`) and the worker in namespaces of their own; all sharing the
cluster's Redis and S3 store (SeaweedFS) and one server secret."""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import httpx
from redis.asyncio import Redis

from core.keys import Keys
from tests.cluster.nodes import Cluster, Node

BURROW = str(Path(sys.executable).parent / "burrow")
HOST_PORT = 8430
GATEWAY_PORT = 8420
START_TIMEOUT_S = 240.0  # a role loads the embedding model in a child process first
UID_STEP = 20_000        # box uids per host machine: ranges never overlap
CHECKPOINT_S = 2.0       # how often hosts checkpoint running boxes here
KEYS = Keys()


class Roles:
    def __init__(self, cluster: Cluster, uid_base: int, lease_s: float = 4.0) -> None:
        self.cluster = cluster
        self.uid_base = uid_base
        self.lease_s = lease_s
        self.secret = secrets.token_hex(32)
        self.operator_key = "op-" + secrets.token_hex(24)

    def _env(self, node: Node, **extra: str) -> dict[str, str]:
        return self.cluster.env(
            HOME=str(node.dir), BURROW_DATA_DIR=str(node.dir / "data"),
            BURROW_SERVER_SECRET=self.secret, BURROW_OPERATOR_KEY=self.operator_key,
            QDRANT_URL=":memory:", BURROW_HOST_LEASE_S=str(self.lease_s),
            BURROW_SWEEP_INTERVAL_S="2", BURROW_CHECKPOINT_S=str(CHECKPOINT_S),
            BURROW_LOG_FORMAT="text", **extra)

    def host(self, name: str) -> Node:
        """Start (or start again) the box host of machine `name` (h1, h2, h3)."""
        node = self.cluster[name]
        index = sorted(self.cluster.nodes).index(name)
        listen = f"{node.address}:{HOST_PORT}"
        return node.start([BURROW, "host"], self._env(
            node, BURROW_HOST_NAME=name, BURROW_HOST_LISTEN=listen,
            BURROW_HOST_ADDRESS=listen, BURROW_UID_BASE=str(self.uid_base + index * UID_STEP)))

    def gateway(self, name: str = "g1") -> Node:
        node = self.cluster.nodes.get(name) or self.cluster.add_node(name)
        return node.start([BURROW, "gateway", "--host", node.address, "--port",
                           str(GATEWAY_PORT)], self._env(node))

    def worker(self, name: str = "w1") -> Node:
        node = self.cluster.nodes.get(name) or self.cluster.add_node(name)
        return node.start([BURROW, "worker"], self._env(node))

    def ready(self, *nodes: Node) -> None:
        """Wait until each node's role answers its readiness probe."""
        for node in nodes:
            if node.name.startswith("w"):
                until(partial(_worker_up, node),
                      f"{node.name} did not start:\n{node.tail_log()}", START_TIMEOUT_S)
                continue
            port = GATEWAY_PORT if node.name.startswith("g") else HOST_PORT
            node.wait_http(f"http://{node.address}:{port}/readyz", timeout=START_TIMEOUT_S)

    def client(self, gateway: Node, key: str) -> httpx.Client:
        return httpx.Client(base_url=f"http://{gateway.address}:{GATEWAY_PORT}", timeout=120,
                            headers={"Authorization": f"Bearer {key}"}, trust_env=False)

    def tenant(self, gateway: Node) -> tuple[str, str]:
        """A new tenant's key and home box."""
        with self.client(gateway, self.operator_key) as op:
            r = op.post("/v1/tenants", json={"id": "t" + secrets.token_hex(4)})
            assert r.status_code == 201, r.text
            return r.json()["api_key"], r.json()["home_box_id"]

    def record(self, box_id: str) -> dict[str, object]:
        """The box's record as Redis holds it."""
        async def read() -> dict[str, object]:
            redis = Redis.from_url(self.cluster.redis.tcp_url)
            try:
                raw = await redis.hgetall(KEYS.box(box_id))
                return {k.decode(): json.loads(v) for k, v in raw.items()}
            finally:
                await redis.aclose()
        return asyncio.run(read())

    def host_id(self, name: str) -> str:
        """The id machine `name`'s live host registered as."""
        async def read() -> str:
            redis = Redis.from_url(self.cluster.redis.tcp_url)
            try:
                for raw in await redis.smembers(KEYS.hosts()):
                    host_id = raw.decode()
                    if host_id.startswith(name + "~") and await redis.exists(
                            KEYS.host_lease(host_id)):
                        return str(host_id)
                raise AssertionError(f"no live host on {name}")
            finally:
                await redis.aclose()
        return asyncio.run(read())

    def recorded(self, tenant: str) -> int:
        """How many of the tenant's agent-route pairs the gateways recorded (its sequence)."""
        async def read() -> int:
            redis = Redis.from_url(self.cluster.redis.tcp_url)
            try:
                return int(await redis.get(KEYS.observed_seq(tenant)) or 0)
            finally:
                await redis.aclose()
        return asyncio.run(read())

    def backlog(self, tenant: str) -> dict[str, object]:
        """Where the tenant's pairs wait: its backlog, what its agent was given that no
        snapshot holds yet, whether it is pending, the queue's length (for failures)."""
        async def read() -> dict[str, object]:
            redis = Redis.from_url(self.cluster.redis.tcp_url)
            try:
                pending = [m.decode() for m in await redis.smembers(KEYS.observed_pending())]
                return {"backlog": await redis.llen(KEYS.observed_backlog(tenant)),
                        "given": await redis.llen(KEYS.observed_delivered(tenant)),
                        "pending": any(m.startswith(tenant + " ") for m in pending),
                        "stalled": await redis.hgetall(KEYS.observed_unanswered(tenant)),
                        "queue": await redis.zcard(KEYS.queue())}
            finally:
                await redis.aclose()
        return asyncio.run(read())

    def holder(self, box_id: str) -> Node:
        """The machine whose host the box's record names."""
        placed = str(self.record(box_id).get("host") or "")
        return self.cluster[placed.partition("~")[0]]


def until(check: Callable[[], bool], what: str | Callable[[], str],
          timeout_s: float = 120.0) -> None:
    """Wait for `check`; past the time, fail saying `what` (or what it returns then)."""
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, what if isinstance(what, str) else what()
        time.sleep(0.2)


def unmount_under(root: Path) -> list[str]:
    """Unmount the box disks whose images are under `root`: a host killed here leaves them
    mounted, since every "machine" of the test shares this one's mounts."""
    gone = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        source = fields[fields.index("-") + 2] if "-" in fields else ""
        backing = Path(f"/sys/block/{Path(source).name}/loop/backing_file")
        if source.startswith("/dev/loop") and backing.exists() and \
                backing.read_text().strip().startswith(str(root)):
            subprocess.run(["umount", "-l", fields[4]], check=False, capture_output=True)
            gone.append(fields[4])
    return gone


def _worker_up(node: Node) -> bool:
    return node.running and "burrow worker is running" in node.tail_log()
