"""A cluster's roles as separate processes: box hosts, a gateway, one Redis, SeaweedFS as the
S3 store. A box frozen on one host wakes on another with its files byte-identical; a host's
listener refuses what is not signed for it, and a replay; a host stopped past its lease and
continued writes nothing that wins."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import secrets
import signal
import socket
import time
from collections.abc import Iterator

import httpx
import pytest
from redis.asyncio import Redis

from core import channel
from core.embedded_redis import EmbeddedRedis
from core.keys import Keys
from core.transport import transport_key
from tests.cluster.roles import Cluster, Role, client
from tests.hosts import CLUSTER_UID_BASE, box_processes
from tests.seaweed import SeaweedFS

pytestmark = pytest.mark.boxes

KEYS = Keys()
DEADLINE_S = 120.0  # generous: a loaded 2-core machine wakes a box on another host in < 1 s


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, redis_server: EmbeddedRedis,
            seaweed: SeaweedFS) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("cluster")
    bucket = seaweed.make_bucket("cluster-" + secrets.token_hex(3), warm=True)
    made = Cluster(root, redis_server.url, f"s3://{bucket}/t",
                   {**seaweed.env(), "BURROW_S3_ENDPOINT": seaweed.endpoint}, CLUSTER_UID_BASE)
    try:
        yield made
    finally:
        made.stop()
    # a killed host's boxes die with it (bwrap's --die-with-parent): none outlives the test
    _until(lambda: box_processes(CLUSTER_UID_BASE, CLUSTER_UID_BASE + 200_000) == [],
           "box processes of the cluster's hosts outlived it")


@pytest.fixture(scope="module")
def running(cluster: Cluster) -> tuple[list[Role], Role]:
    hosts = [cluster.host(), cluster.host()]
    gateway = cluster.gateway()
    for host in hosts:
        host.wait_for_line("serving on")
    gateway.wait_for_line("Burrow is serving")
    return hosts, gateway


def _tenant(gateway: Role, cluster: Cluster) -> tuple[str, str]:
    name = "t" + secrets.token_hex(4)
    with client(gateway, cluster.operator_key) as op:
        r = op.post("/v1/tenants", json={"id": name})
        assert r.status_code == 201, r.text
        return r.json()["api_key"], r.json()["home_box_id"]


def _holder(hosts: list[Role], box: dict[str, object]) -> Role:
    """The host process the box's record names (its id starts with the host's name)."""
    placed = str(box.get("host") or "")
    return next(h for h in hosts if placed.startswith(h.name + "~"))


def _record(cluster: Cluster, box_id: str) -> dict[str, object]:
    async def read() -> dict[str, object]:
        redis = Redis.from_url(cluster.redis_url)
        try:
            raw = await redis.hgetall(KEYS.box(box_id))
            return {k.decode(): json.loads(v) for k, v in raw.items()}
        finally:
            await redis.aclose()
    return asyncio.run(read())


def _until(check: object, what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def test_a_box_frozen_on_one_host_wakes_on_another_with_every_file_byte_identical(
        cluster: Cluster, running: tuple[list[Role], Role]) -> None:
    hosts, gateway = running
    key, box_id = _tenant(gateway, cluster)
    files = {"/workspace/big.bin": os.urandom(1 << 20), "/workspace/small.txt": b"hello\n",
             "/workspace/deep/er/x.json": json.dumps({"n": 1}).encode()}
    with client(gateway, key) as c:
        for path, data in files.items():
            r = c.put(f"/v1/boxes/{box_id}/files", params={"path": path}, content=data)
            assert r.status_code in (200, 204), r.text
        assert c.post(f"/v1/boxes/{box_id}/freeze").json()["state"] == "frozen"
        first = _holder(hosts, _record(cluster, box_id))
        first.kill()  # its disk (and its cached layer) is gone with it
        for path, data in files.items():
            r = c.get(f"/v1/boxes/{box_id}/files", params={"path": path})
            assert r.status_code == 200, r.text
            assert hashlib.sha256(r.content).hexdigest() == hashlib.sha256(data).hexdigest()
        now = _record(cluster, box_id)
        assert _holder(hosts, now) is not first and now["state"] == "running"
    hosts.remove(first)
    hosts.append(cluster.host())
    hosts[-1].wait_for_line("serving on")


def _send(host: Role, line: bytes) -> dict[str, object]:
    with socket.create_connection(("127.0.0.1", host.port), timeout=10) as s:
        s.sendall(line)
        answer = s.makefile("rb").readline()
    parsed: dict[str, object] = json.loads(answer)
    return parsed


def test_a_host_refuses_what_is_not_signed_for_it_and_every_replay(
        cluster: Cluster, running: tuple[list[Role], Role]) -> None:
    hosts, _ = running
    host, other = hosts[0], hosts[1]
    host_id = _host_id(cluster, host)
    key = transport_key(cluster.secret.encode())
    good = channel.opening(key, host_id, "usages", "", {"boxes": []})
    assert _send(host, good) == {"ok": True, "result": {}}
    assert _send(host, good)["ok"] is False  # the same line again: a replay
    refused = [b'{"op": "usages", "box": "", "args": {}}\n',
               channel.opening(transport_key(b"another secret" * 3), host_id, "usages", "", {}),
               channel.opening(key, _host_id(cluster, other), "usages", "", {}),
               channel.opening(key, host_id, "usages", "", {}, now=time.time() - 3600)]
    for line in refused:
        answer = _send(host, line)
        assert answer["ok"] is False and answer["error"]["type"] == "TransportError", answer  # type: ignore[index]
    # the kubelet's probes need no signature, and learn nothing else
    r = httpx.get(f"http://127.0.0.1:{host.port}/readyz", timeout=10)
    assert r.status_code == 200 and r.json() == {"status": "ready"}


def _host_id(cluster: Cluster, host: Role) -> str:
    async def read() -> str:
        redis = Redis.from_url(cluster.redis_url)
        try:
            ids = await redis.smembers(KEYS.hosts())
            live = [i.decode() for i in ids if i.decode().startswith(host.name + "~")
                    and await redis.exists(KEYS.host_lease(i.decode()))]
            return str(live[0])
        finally:
            await redis.aclose()
    return asyncio.run(read())


def test_a_host_stopped_past_its_lease_and_continued_writes_nothing_that_wins(
        cluster: Cluster, running: tuple[list[Role], Role]) -> None:
    hosts, gateway = running
    key, box_id = _tenant(gateway, cluster)
    with client(gateway, key) as c:
        r = c.put(f"/v1/boxes/{box_id}/files", params={"path": "/workspace/v"}, content=b"one")
        assert r.status_code in (200, 204), r.text
        zombie = _holder(hosts, _record(cluster, box_id))
        generation = int(str(_record(cluster, box_id)["generation"]))
        zombie.signal(signal.SIGSTOP)
        time.sleep(cluster.lease_s * 1.5)
        # the next request wakes the box on a live host, from its newest durable state
        r = c.put(f"/v1/boxes/{box_id}/files", params={"path": "/workspace/v"}, content=b"two")
        assert r.status_code in (200, 204), r.text
        moved = _record(cluster, box_id)
        assert _holder(hosts, moved) is not zombie and int(str(moved["generation"])) > generation
        zombie.signal(signal.SIGCONT)
        assert zombie.proc is not None
        assert zombie.proc.wait(timeout=DEADLINE_S) == 1, zombie.tail()  # it knew, and left
        assert "lost its lease" in zombie.tail()
        after = _record(cluster, box_id)
        assert after["host"] == moved["host"] and after["generation"] == moved["generation"]
        assert c.get(f"/v1/boxes/{box_id}/files", params={"path": "/workspace/v"}).content \
            == b"two"
    hosts.remove(zombie)
    hosts.append(cluster.host())
    hosts[-1].wait_for_line("serving on")
