"""The cluster harness is the real thing: namespaces that reach each other only over the bridge,
loopback that stays per machine, Redis and SeaweedFS reached from a namespace, process groups
that stop, continue and die whole, and a teardown that leaves nothing behind."""

from __future__ import annotations

import ipaddress
import json
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.cluster.net import Net, ip, require_tools, sweep_stale
from tests.cluster.nodes import BUCKET, Cluster, Node, free_port

pytestmark = pytest.mark.boxes  # root: namespaces and a bridge (tests/conftest.py TIERS)

LISTEN = """
import socket, sys
s = socket.socket()
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen()
print("listening", flush=True)
while True:
    c, _ = s.accept()
    c.sendall(sys.argv[3].encode())
    c.close()
"""
CONNECT = """
import socket, sys
try:
    with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3) as c:
        print("answer:" + c.recv(100).decode())
except OSError as exc:
    print("failed:" + type(exc).__name__)
"""


def connect(node: Node, address: str, port: int) -> str:
    """What a TCP client in the node's namespace gets at address:port."""
    return node.run([sys.executable, "-c", CONNECT, address, str(port)]).stdout.strip()


def root_connect(address: str, port: int) -> str:
    return subprocess.run([sys.executable, "-c", CONNECT, address, str(port)],
                          capture_output=True, text=True, check=True).stdout.strip()


def listen(node: Node, cluster: Cluster, address: str, port: int, reply: str) -> None:
    cluster.start(node, [sys.executable, "-c", LISTEN, address, str(port), reply], cluster.env())
    until(lambda: connect(node, address, port) == f"answer:{reply}", node)


def until(check: Callable[[], bool], node: Node, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not within {timeout} s; log:\n{node.tail_log()}"
        time.sleep(0.05)


def test_a_listener_on_the_bridge_is_reached_from_another_namespace_and_the_root_one(
        cluster: Cluster) -> None:
    h1, h2 = cluster["h1"], cluster["h2"]
    listen(h1, cluster, h1.address, 8430, "h1")
    assert connect(h2, h1.address, 8430) == "answer:h1"
    assert root_connect(h1.address, 8430) == "answer:h1"
    assert connect(h2, h2.address, 8430) == "failed:ConnectionRefusedError"  # h2's own: none


def test_a_loopback_listener_stays_in_its_namespace(cluster: Cluster) -> None:
    h1, h2 = cluster["h1"], cluster["h2"]
    port = free_port("127.0.0.1")  # free on the root namespace's loopback too
    listen(h1, cluster, "127.0.0.1", port, "secret")  # (`listen` reached it from inside h1)
    assert connect(h2, "127.0.0.1", port) == "failed:ConnectionRefusedError"
    assert connect(h2, h1.address, port) == "failed:ConnectionRefusedError"
    assert root_connect("127.0.0.1", port) == "failed:ConnectionRefusedError"
    assert root_connect(h1.address, port) == "failed:ConnectionRefusedError"


def test_a_namespace_has_addresses_only_on_the_bridge_and_loopback(cluster: Cluster) -> None:
    h1 = cluster["h1"]
    assert h1.namespace is not None
    links = json.loads(ip("-n", h1.namespace, "-j", "-4", "addr", "show"))
    assert {(a["label"], a["local"]) for link in links for a in link["addr_info"]} == {
        ("lo", "127.0.0.1"), ("eth0", h1.address)}
    assert ipaddress.IPv4Address(h1.address) in cluster.net.network
    assert ip("-n", h1.namespace, "-4", "route", "show", "default").strip() == ""
    machine = {a["local"] for link in json.loads(ip("-j", "-4", "addr", "show"))
               for a in link["addr_info"]} - {"127.0.0.1", cluster.net.bridge_address}
    for address in machine:  # the machine's own addresses, its LAN: out of reach
        assert connect(h1, address, 22) == "failed:OSError", address


def test_the_bridge_collides_with_no_other_route(cluster: Cluster) -> None:
    others = [r for r in json.loads(ip("-j", "-4", "route", "show", "table", "all"))
              if r.get("dev") != cluster.net.bridge and r["dst"] != "default"]
    assert others, "the machine has routes of its own"
    for route in others:
        assert not cluster.net.network.overlaps(
            ipaddress.IPv4Network(route["dst"], strict=False)), route


def test_redis_on_the_bridge_answers_a_namespace_that_has_its_password(
        cluster: Cluster) -> None:
    code = """
import sys, redis
r = redis.Redis.from_url(sys.argv[1])
r.set("from-h1", "yes")
print(r.ping(), r.get("from-h1"))
try:
    redis.Redis(host=sys.argv[2], port=int(sys.argv[3])).ping()
except redis.AuthenticationError:
    print("refused without the password")
"""
    host, port = cluster.redis.tcp or ("", 0)
    out = cluster["h1"].run([sys.executable, "-c", code, cluster.redis.tcp_url, host,
                             str(port)], cluster.env())
    assert out.stdout.splitlines() == ["True b'yes'", "refused without the password"], out.stdout


def test_seaweedfs_on_the_bridge_stores_and_returns_an_object_for_a_namespace(
        cluster: Cluster) -> None:
    code = """
import sys, httpx
from boxes.objectclient import ObjectClient
bucket, endpoint, data = sys.argv[1:]
store = ObjectClient(bucket, "net-test", endpoint=endpoint)
store.put("object", data.encode())
print(store.read("object").decode())
print(httpx.get(f"{endpoint}/{bucket}/net-test/object", trust_env=False).status_code)
"""
    data = secrets.token_hex(16)
    out = cluster["h2"].run([sys.executable, "-c", code, BUCKET, cluster.seaweed.endpoint, data],
                            cluster.env())
    assert out.stdout.splitlines() == [data, "403"], out.stdout  # unsigned: refused


def test_a_stopped_node_continues_after_sigcont(cluster: Cluster) -> None:
    h3 = cluster["h3"]
    tick = "import time\nwhile True:\n    print('tick', flush=True)\n    time.sleep(0.02)\n"
    cluster.start(h3, [sys.executable, "-c", tick], cluster.env())
    until(lambda: h3.tail_log().count("tick") > 3, h3)
    h3.kill(signal.SIGSTOP)
    until(lambda: state(h3.pid) == "T", h3)
    stopped = h3.log.stat().st_size
    time.sleep(0.5)
    assert h3.log.stat().st_size == stopped and h3.running
    h3.kill(signal.SIGCONT)
    until(lambda: h3.log.stat().st_size > stopped, h3)


def state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]


def test_a_sigkilled_node_leaves_nothing_of_its_process_group(cluster: Cluster) -> None:
    h2 = cluster["h2"]
    cluster.start(h2, ["sh", "-c", "sleep 600 & sleep 600 & wait"], cluster.env())
    until(lambda: len(h2.group()) == 3, h2)
    h2.kill(signal.SIGKILL)
    until(lambda: h2.group() == [], h2, timeout=10)
    assert h2.proc is not None and h2.proc.returncode == -signal.SIGKILL


def test_a_node_that_ignores_sigterm_is_killed_by_stop(cluster: Cluster) -> None:
    h1 = cluster["h1"]
    cluster.start(h1, ["sh", "-c", "trap '' TERM; sleep 600 & wait"], cluster.env())
    until(lambda: len(h1.group()) == 2, h1)
    pids = h1.group()
    assert h1.stop(timeout=0.5) == -signal.SIGKILL
    assert h1.group() == [] and all(not Path(f"/proc/{p}").exists() or state(p) == "Z"
                                    for p in pids)


def test_wait_http_fails_with_the_log_of_a_node_that_exited(cluster: Cluster) -> None:
    h1 = cluster["h1"]
    cluster.start(h1, ["sh", "-c", "echo cannot bind; exit 3"], cluster.env())
    with pytest.raises(AssertionError, match=r"exited \(3\)[\s\S]*cannot bind"):
        h1.wait_http(f"http://{h1.address}:8430/healthz", timeout=10)


def test_an_added_node_in_the_root_namespace_is_on_the_bridge_address(cluster: Cluster) -> None:
    root = cluster.add_node("g0", namespace=False)
    port = free_port(root.address)
    cluster.start(root, [sys.executable, "-m", "http.server", "--bind", root.address,
                         str(port)], cluster.env())
    root.wait_http(f"http://{root.address}:{port}/")
    out = cluster["h1"].run([sys.executable, "-c", "import httpx, sys; print(httpx.get("
                             "sys.argv[1], trust_env=False).status_code)",
                             f"http://{root.address}:{port}/"], cluster.env())
    assert out.stdout.strip() == "200", out.stdout


def test_a_missing_tool_fails_and_says_what_to_install() -> None:
    with pytest.raises(AssertionError, match=r"need `ip`.*install iproute2"):
        require_tools(path="/nonexistent")


def outcome(proc: subprocess.Popen[bytes]) -> int | None:
    """Its exit code if it ends within 10 s; else None (and it is killed now)."""
    try:
        return proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return None


def test_closing_a_cluster_leaves_no_namespace_bridge_veth_or_process(tmp_path: Path) -> None:
    cluster = Cluster.open(tmp_path, ["a1", "a2"])
    a1 = cluster["a1"]
    stray = subprocess.Popen(a1.command(["sleep", "600"]), start_new_session=True)
    try:
        listen(a1, cluster, a1.address, 8430, "a1")
        assert cluster.redis.proc is not None and cluster.seaweed.proc is not None
        servers = [cluster.redis.proc.pid, cluster.seaweed.proc.pid]
        names = cluster.net.leftovers()
        assert len(names) == 5, names  # two namespaces, two veths, the bridge
    finally:
        cluster.close()
        code = outcome(stray)
    assert cluster.net.leftovers() == []
    assert not any(Path("/run/netns", n).exists() for n in names)
    assert a1.group() == []
    assert all(not Path(f"/proc/{pid}").exists() for pid in servers)
    assert code == -signal.SIGKILL  # it ran in a1: killed with the namespace


def test_what_a_dead_run_left_is_swept(tmp_path: Path) -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()
    net = Net.create(["s1"], pid=gone.pid)  # as if made by a run that died since
    stray = subprocess.Popen(Node("s1", net.namespaces["s1"], "", tmp_path).command(
        ["sleep", "600"]), start_new_session=True)
    try:
        made = net.leftovers()
        assert len(made) == 3, made  # the namespace, its veth, the bridge
        swept = sweep_stale()
        assert net.leftovers() == [] and set(made) <= set(swept), swept
    finally:
        code = outcome(stray)
        net.destroy()
    assert code == -signal.SIGKILL  # it ran in s1: killed by the sweep
