"""A cluster's roles as separate processes, each box host a machine of its own (a network
namespace on the test's bridge): a box frozen on one host wakes on another with its files
byte-identical; a host's listener refuses what is not signed for it, and a replay; a host
stopped past its lease and continued writes nothing that wins."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from functools import partial
from typing import Any

import httpx
import pytest

from core import channel
from core.roles import DRAIN_S
from core.transport import transport_key
from tests.cluster.nodes import Cluster, Node
from tests.cluster.roles import CHECKPOINT_S, HOST_PORT, Roles, unmount_under, until
from tests.hosts import CLUSTER_UID_BASE, box_processes

HOSTS = ("h1", "h2", "h3")
# How often each tenant of a test "under traffic" asks its agent: every request is a pair the
# hosts then parse, embed and judge, and these tests run beside the rest of the suite on two
# cores; a faster pace measured nothing more and starved the other tests.
TRAFFIC_S = 0.5
# The first test starts three hosts, a gateway and a worker; some wait out leases and wakes.
pytestmark = pytest.mark.timeout(900)


@pytest.fixture(autouse=True)
def the_nodes_stop(roles: tuple[Roles, Node]) -> None:
    """The roles run for the whole module here (starting them takes a while): each test
    starts again what it stopped, and a role a failed test left stopped starts again before
    the next test, which would otherwise fail for it too."""
    made, gateway = roles
    stopped = [made.host(name) for name in HOSTS if not made.cluster[name].running]
    if not gateway.running:
        stopped.append(made.gateway())
    if not made.cluster["w1"].running:
        stopped.append(made.worker())
    made.ready(*stopped)


@pytest.fixture(scope="module")
def roles(cluster: Cluster) -> Iterator[tuple[Roles, Node]]:
    made = Roles(cluster, CLUSTER_UID_BASE)
    hosts = [made.host(name) for name in HOSTS]
    gateway = made.gateway()
    worker = made.worker()
    made.ready(*hosts, gateway, worker)
    yield made, gateway
    cluster.stop_nodes()
    unmount_under(cluster.root)  # what a killed host had mounted, as a lost machine's disks
    # a stopped host froze its boxes, a killed one's died with it (--die-with-parent)
    until(lambda: box_processes(CLUSTER_UID_BASE, CLUSTER_UID_BASE + 200_000) == [],
          "box processes of the cluster's hosts outlived it")


def _restart(made: Roles, node: Node) -> None:
    node.stop()
    made.host(node.name)
    made.ready(node)


def test_a_box_frozen_on_one_host_wakes_on_another_with_every_file_byte_identical(
        roles: tuple[Roles, Node]) -> None:
    made, gateway = roles
    key, box_id = made.tenant(gateway)
    files = {"/workspace/big.bin": os.urandom(1 << 20), "/workspace/small.txt": b"hello\n",
             "/workspace/deep/er/x.json": json.dumps({"n": 1}).encode()}
    with made.client(gateway, key) as c:
        for path, data in files.items():
            r = c.put(f"/v1/boxes/{box_id}/files", params={"path": path}, content=data)
            assert r.status_code in (200, 204), r.text
        assert c.post(f"/v1/boxes/{box_id}/freeze").json()["state"] == "frozen"
        first = made.holder(box_id)
        first.kill()  # the machine is gone, and its cached layer with it
        for path, data in files.items():
            r = c.get(f"/v1/boxes/{box_id}/files", params={"path": path})
            assert r.status_code == 200, r.text
            assert hashlib.sha256(r.content).hexdigest() == hashlib.sha256(data).hexdigest()
        assert made.holder(box_id) is not first
        assert made.record(box_id)["state"] == "running"
    # The wake was recorded by the host that ran it, for the operator's charts; the worker
    # samples the cluster's boxes once a minute (and when it starts).
    with made.client(gateway, made.operator_key) as op:
        history = op.get("/v1/stats/history", params={"hours": 1}).json()
        assert sum(history["wakes"]["count"]) >= 1, history["wakes"]
        assert max(p for p in history["wakes"]["p99_ms"] if p is not None) > 0
        assert history["samples"]["at"], "the cluster's worker took no minute sample"
    _restart(made, first)


def _send(node: Node, line: bytes) -> dict[str, object]:
    with socket.create_connection((node.address, HOST_PORT), timeout=10) as s:
        s.sendall(line)
        answer: dict[str, object] = json.loads(s.makefile("rb").readline())
        return answer


def test_a_host_refuses_what_is_not_signed_for_it_and_every_replay(
        roles: tuple[Roles, Node]) -> None:
    made, _ = roles
    host, other = made.cluster["h1"], made.cluster["h2"]
    host_id = made.host_id("h1")
    key = transport_key(made.secret.encode())
    good = channel.opening(key, host_id, "usages", "", {"boxes": []})
    assert _send(host, good) == {"ok": True, "result": {}}
    refused = [
        good,  # the same line again: a replay
        b'{"op": "usages", "box": "", "args": {}}\n',  # not signed
        channel.opening(transport_key(b"another secret" * 3), host_id, "usages", "", {}),
        channel.opening(key, made.host_id("h2"), "usages", "", {}),  # for another host
        channel.opening(key, host_id, "usages", "", {}, now=time.time() - 3600),  # stale
    ]
    for line in refused:
        answer = _send(host, line)
        error = answer.get("error")
        assert answer["ok"] is False and isinstance(error, dict), answer
        assert error["type"] == "TransportError", answer
    # the kubelet's probes need no signature, and say nothing more
    r = httpx.get(f"http://{other.address}:{HOST_PORT}/readyz", timeout=10, trust_env=False)
    assert r.status_code == 200 and r.json() == {"status": "ready"}
    r = httpx.get(f"http://{other.address}:{HOST_PORT}/v1/boxes", timeout=10, trust_env=False)
    assert r.status_code == 404


def test_a_host_stopped_past_its_lease_and_continued_writes_nothing_that_wins(
        roles: tuple[Roles, Node]) -> None:
    made, gateway = roles
    key, box_id = made.tenant(gateway)
    with made.client(gateway, key) as c:
        r = c.put(f"/v1/boxes/{box_id}/files", params={"path": "/workspace/v"}, content=b"one")
        assert r.status_code in (200, 204), r.text
        zombie = made.holder(box_id)
        generation = int(str(made.record(box_id)["generation"]))
        zombie.kill(signal.SIGSTOP)
        time.sleep(made.lease_s * 1.5)
        # the next request wakes the box on a live host, from its newest durable state
        r = c.put(f"/v1/boxes/{box_id}/files", params={"path": "/workspace/v"}, content=b"two")
        assert r.status_code in (200, 204), r.text
        moved = made.record(box_id)
        assert made.holder(box_id) is not zombie
        assert int(str(moved["generation"])) > generation
        zombie.kill(signal.SIGCONT)
        assert zombie.wait(timeout=120) == 1, zombie.tail_log()  # it knew, and left
        assert "lost its lease" in zombie.tail_log()
        after = made.record(box_id)
        assert (after["host"], after["generation"]) == (moved["host"], moved["generation"])
        assert c.get(f"/v1/boxes/{box_id}/files",
                     params={"path": "/workspace/v"}).content == b"two"
    made.host(zombie.name)
    made.ready(zombie)



def _ask(made: Roles, gateway: Node, key: str, tenant: str, text: str) -> httpx.Response:
    with made.client(gateway, key) as c:
        return c.post(f"/v1/tenants/{tenant}/agent/ask", json={"question": text})


def _export(made: Roles, gateway: Node, key: str, tenant: str) -> dict[str, Any]:
    with made.client(gateway, key) as c:
        r = c.get(f"/v1/tenants/{tenant}/memories/export")
        assert r.status_code == 200, r.text
        found: dict[str, Any] = r.json()
        return found


def _answers(made: Roles, gateway: Node, key: str, tenant: str,
             last: dict[str, str] | None = None) -> bool:
    r = _ask(made, gateway, key, tenant, "again?")
    if last is not None:
        last[tenant] = f"{r.status_code} {r.text[:300]}"
    return r.status_code == 200


def _answers_again(made: Roles, gateway: Node, key: str, tenant: str) -> None:
    """Wait for the tenant's agent to answer; past the time, fail with its last answer and
    the hosts' logs."""
    last: dict[str, str] = {}
    until(partial(_answers, made, gateway, key, tenant, last),
          lambda: f"{tenant} answers again (last: {last.get(tenant)}); the hosts' logs:\n"
                  + "\n".join(made.cluster[h].tail_log(1500) for h in HOSTS))


def _holds(made: Roles, gateway: Node, key: str, tenant: str, pairs: int) -> bool:
    return int(_export(made, gateway, key, tenant)["observed"]) >= pairs


def _tenants_with_a_file_and_pairs(made: Roles, gateway: Node, count: int,
                                   pairs: int) -> dict[str, tuple[str, str]]:
    """`count` tenants (tenant -> its key and home box), each having sent `pairs` pairs and
    written its name to /workspace/mine.txt."""
    tenants: dict[str, tuple[str, str]] = {}
    for _ in range(count):
        key, box_id = made.tenant(gateway)
        tenant = str(made.record(box_id)["owner"])
        tenants[tenant] = (key, box_id)
        for n in range(pairs):
            r = _ask(made, gateway, key, tenant, f"my project {n} is {tenant}")
            assert r.status_code == 200, r.text
        with made.client(gateway, key) as c:
            r = c.put(f"/v1/boxes/{box_id}/files", params={"path": "/workspace/mine.txt"},
                      content=tenant.encode())
            assert r.status_code in (200, 204), r.text
    return tenants


@contextlib.contextmanager
def _traffic(made: Roles, gateway: Node,
             tenants: dict[str, tuple[str, str]]) -> Iterator[list[tuple[str, int, str]]]:
    """Each tenant asking its agent every TRAFFIC_S while the block runs; every answer."""
    stop = threading.Event()
    answers: list[tuple[str, int, str]] = []

    def ask(tenant: str, key: str) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            with contextlib.suppress(httpx.HTTPError):
                r = _ask(made, gateway, key, tenant, f"later {n} of {tenant}")
                answers.append((tenant, r.status_code, r.text))
            time.sleep(TRAFFIC_S)

    threads = [threading.Thread(target=ask, args=(t, k)) for t, (k, _) in tenants.items()]
    for thread in threads:
        thread.start()
    try:
        yield answers
    finally:
        stop.set()
        for thread in threads:
            thread.join()


def test_a_host_killed_under_traffic_loses_no_tenant_file_or_pair(
        roles: tuple[Roles, Node]) -> None:
    made, gateway = roles
    tenants = _tenants_with_a_file_and_pairs(made, gateway, 50, 3)
    until(lambda: all(_export(made, gateway, key, t)["observed"] == 3
                      for t, (key, _) in tenants.items()), "the worker delivered every pair",
          300)  # 150 pairs, each parsed, embedded and judged on the host: a busy machine's pace
    time.sleep(3 * CHECKPOINT_S)  # a checkpoint of every box since
    by_host: dict[str, list[str]] = {}
    for tenant, (_, box_id) in tenants.items():
        by_host.setdefault(made.holder(box_id).name, []).append(tenant)
    victim = made.cluster[max(by_host, key=lambda h: len(by_host[h]))]
    wiped = by_host[victim.name][0]
    with made.client(gateway, tenants[wiped][0]) as c:
        assert c.delete(f"/v1/tenants/{wiped}/memories").status_code == 200

    with _traffic(made, gateway, {t: v for t, v in tenants.items() if t != wiped}) as answers:
        time.sleep(2)
        victim.kill()  # SIGKILL: the machine is lost, with its disk's cached layers
        started = time.monotonic()
        time.sleep(made.lease_s * 3)
    for tenant, (key, box_id) in tenants.items():
        _answers_again(made, gateway, key, tenant)
        with made.client(gateway, key) as c:
            assert c.get(f"/v1/boxes/{box_id}/files",
                         params={"path": "/workspace/mine.txt"}).content == tenant.encode()
    print(f"every tenant answered again {time.monotonic() - started:.1f} s after the kill")
    for tenant, (key, _) in tenants.items():
        sent = made.recorded(tenant)
        until(partial(_holds, made, gateway, key, tenant, 0 if tenant == wiped else sent),
              f"{tenant}'s agent holds every pair it was sent ({sent})")
    for tenant, status, text in answers:  # no answer carries another tenant's data
        assert not any(o in text for o in set(tenants) - {tenant}), (tenant, status, text[:300])
    kept = _export(made, gateway, tenants[wiped][0], wiped)
    assert not any("my project" in e.get("user", "") for e in kept["episodes"]), kept
    assert all("my project" not in json.dumps(m) for m in kept["memories"]), kept
    made.host(victim.name)
    made.ready(victim)


def test_a_rolling_restart_of_every_host_under_traffic_fails_no_request(
        roles: tuple[Roles, Node]) -> None:
    made, gateway = roles
    tenants = []
    for _ in range(12):
        key, box_id = made.tenant(gateway)
        tenants.append((str(made.record(box_id)["owner"]), key))
    stop = threading.Event()
    failures: list[str] = []
    served = [0]

    def traffic(tenant: str, key: str) -> None:
        with made.client(gateway, key) as c:
            while not stop.is_set():
                try:
                    r = c.post(f"/v1/tenants/{tenant}/agent/ask", json={"question": "hi"})
                    if r.status_code == 200:
                        served[0] += 1
                    else:
                        failures.append(f"{tenant}: {r.status_code} {r.text[:200]}")
                except httpx.HTTPError as exc:
                    failures.append(f"{tenant}: {exc!r}")
                time.sleep(TRAFFIC_S)

    threads = [threading.Thread(target=traffic, args=t) for t in tenants]
    for thread in threads:
        thread.start()
    try:
        for name in HOSTS:
            node = made.cluster[name]
            # SIGTERM: it drains, then exits, within the bound of a drain
            assert node.stop(timeout=DRAIN_S + 30) == 0, node.tail_log()
            made.host(name)
            made.ready(node)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert failures == [], failures[:10]
    assert served[0] > 100


def _restart_redis(cluster: Cluster, kill: bool) -> None:
    redis = cluster.redis
    assert redis.proc is not None
    if kill:  # what appendfsync everysec had not written yet is lost
        redis.proc.kill()
        redis.proc.wait()
        redis.proc = None
    else:
        redis.stop()
    redis.start()


@pytest.mark.parametrize("kill", [False, True], ids=["sigterm", "sigkill"])
def test_redis_restarted_under_traffic_keeps_what_it_acknowledged_and_no_role_restarts(
        roles: tuple[Roles, Node], kill: bool) -> None:
    made, gateway = roles
    tenants: dict[str, tuple[str, str]] = {}
    for _ in range(4):
        key, box_id = made.tenant(gateway)
        tenant = str(made.record(box_id)["owner"])
        tenants[tenant] = (key, box_id)
        for n in range(2):
            assert _ask(made, gateway, key, tenant, f"before {n}").status_code == 200
    before = {t: made.recorded(t) for t in tenants}
    # appendfsync everysec: what was acknowledged over a second ago is on disk
    time.sleep(2.5)
    stop = threading.Event()

    def traffic(tenant: str, key: str) -> None:
        with made.client(gateway, key) as c:
            while not stop.is_set():
                with contextlib.suppress(httpx.HTTPError):
                    c.post(f"/v1/tenants/{tenant}/agent/ask", json={"question": "during"})
                time.sleep(TRAFFIC_S)

    threads = [threading.Thread(target=traffic, args=(t, k)) for t, (k, _) in tenants.items()]
    for thread in threads:
        thread.start()
    time.sleep(1)
    _restart_redis(made.cluster, kill)
    time.sleep(2)
    stop.set()
    for thread in threads:
        thread.join()
    for tenant, (key, box_id) in tenants.items():
        _answers_again(made, gateway, key, tenant)
        assert made.record(box_id)["owner"] == tenant
        assert made.recorded(tenant) >= before[tenant]
        until(partial(_holds, made, gateway, key, tenant, before[tenant]),
              f"{tenant}'s agent holds the pairs acknowledged before the restart "
              f"({before[tenant]}): {made.backlog(tenant)}")
    for node in (*(made.cluster[h] for h in HOSTS), gateway):
        assert node.running, f"{node.name} had to restart:\n{node.tail_log()}"


def test_a_store_outage_fails_freezes_safe_names_itself_and_loses_nothing(
        roles: tuple[Roles, Node]) -> None:
    made, gateway = roles
    key, box_id = made.tenant(gateway)
    data = os.urandom(200_000)
    with made.client(gateway, key) as c:
        r = c.put(f"/v1/boxes/{box_id}/files", params={"path": "/workspace/kept.bin"},
                  content=data)
        assert r.status_code in (200, 204), r.text
        holder = made.holder(box_id)
        made.cluster.seaweed.stop()
        try:
            r = c.post(f"/v1/boxes/{box_id}/freeze")
            assert r.status_code == 503 and "store" in r.text, r.text
            assert made.record(box_id)["state"] == "running"  # it keeps running
            r = c.post(f"/v1/boxes/{box_id}/exec", json={"command": "wc -c < kept.bin"})
            assert r.json()["stdout"].strip() == str(len(data)), r.text
            ready = httpx.get(f"http://{holder.address}:{HOST_PORT}/readyz", timeout=10,
                              trust_env=False)
            assert ready.status_code == 503 and "store" in ready.json()["reason"], ready.text
            assert "snapshot store fails" in holder.tail_log()
        finally:
            made.cluster.seaweed.start()
        until(lambda: c.post(f"/v1/boxes/{box_id}/freeze").status_code == 200,
              "the freeze succeeds once the store is back")
        assert made.record(box_id)["state"] == "frozen"
        holder.kill()  # and what it froze is in the store: another host wakes it
        r = c.get(f"/v1/boxes/{box_id}/files", params={"path": "/workspace/kept.bin"})
        assert r.status_code == 200 and r.content == data
    made.host(holder.name)
    made.ready(holder)
