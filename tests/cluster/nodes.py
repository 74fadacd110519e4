"""The cluster of a test: Redis and SeaweedFS on the bridge of its network (tests/cluster/net.py),
and nodes, each a place (a network namespace, or the root one) running one process of the
test's choosing (a role's argv and env) in a process group of its own, with its log.

What a node runs is the test's: the harness knows no role, so `burrow host`, `burrow gateway`
and `burrow worker` plug in as argv.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shlex
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx

from core.embedded_redis import EmbeddedRedis
from tests.cluster.net import Net
from tests.seaweed import SeaweedFS

REPO = Path(__file__).resolve().parents[2]
BUCKET = "burrow-cluster"


def free_port(address: str) -> int:
    """A port nothing listens on at `address` now (in the root namespace: ports at a
    namespace's address are free anyway, since nothing but its node binds there)."""
    with socket.socket() as s:
        s.bind((address, 0))
        port: int = s.getsockname()[1]
        return port


def process_group(pgid: int) -> list[int]:
    """The live (not zombie) processes of a process group."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        state, _ppid, pgrp = stat.rpartition(")")[2].split()[:3]
        if int(pgrp) == pgid and state != "Z":
            found.append(int(entry))
    return found


class Node:
    """One place of the cluster and the process it runs now (none, or one at a time: a restart
    is `stop()` then `start()` again), with the log of all of them."""

    def __init__(self, name: str, namespace: str | None, address: str, root: Path) -> None:
        self.name = name
        self.namespace = namespace  # None: the root namespace
        self.address = address  # its address on the bridge
        self.dir = root / name  # for the data dir of what it runs, and its log
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log = self.dir / "log"
        self.proc: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        return f"Node({self.name!r}, {self.namespace!r}, {self.address!r})"

    def command(self, argv: Sequence[str]) -> list[str]:
        """`argv` run in this node's network namespace (and no other of its namespaces: the
        mounts of boxes a host makes are the machine's, as on a machine of its own)."""
        if self.namespace is None:
            return list(argv)
        return ["nsenter", f"--net=/run/netns/{self.namespace}", "--", *argv]

    def start(self, argv: Sequence[str], env: Mapping[str, str],
              cwd: Path | None = None) -> Node:
        """Run `argv` with exactly `env`, in a new session (its own process group), its output
        appended to the node's log."""
        if self.running:
            raise AssertionError(f"{self.name} still runs pid {self.pid}: stop() it first")
        with self.log.open("ab") as log:
            log.write(f"--- {time.strftime('%H:%M:%S')} {shlex.join(argv)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(self.command(argv), env=dict(env), cwd=cwd or REPO,
                                         stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def run(self, argv: Sequence[str], env: Mapping[str, str] | None = None,
            timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """A one-off command in this node's namespace (a client, a probe), its output captured
        (stderr into stdout)."""
        return subprocess.run(self.command(argv), env=dict(env or {"PATH": os.environ["PATH"]}),
                              cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, timeout=timeout)

    @property
    def pid(self) -> int:
        """The pid of what it runs, which is also its process group's id."""
        if self.proc is None:
            raise AssertionError(f"{self.name} was never started")
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def group(self) -> list[int]:
        """The live processes of its process group (the leader and what it started there)."""
        return process_group(self.pid) if self.proc is not None else []

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send `sig` to its whole process group (SIGSTOP and SIGCONT too); after SIGKILL,
        reap the leader."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)
        if sig == signal.SIGKILL:
            self.proc.wait(10)

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM to the leader (continued first, if stopped), SIGKILL to the group if it has
        not exited within `timeout` or left anything behind in it; its exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.kill(signal.SIGCONT)
            self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout)
        self.kill(signal.SIGKILL)
        return self.proc.returncode

    def wait(self, timeout: float = 30.0) -> int:
        """Its exit code, once it exits by itself."""
        if self.proc is None:
            raise AssertionError(f"{self.name} was never started")
        return self.proc.wait(timeout)

    def wait_http(self, url: str, timeout: float = 60.0, status: int = 200) -> httpx.Response:
        """Poll `url` (from the root namespace) until it answers `status`; fail, with the
        node's log, when the node exits first or the time is up."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        while True:
            if not self.running:
                code = None if self.proc is None else self.proc.returncode
                raise AssertionError(f"{self.name} exited ({code}) before {url} answered; "
                                     f"its log:\n{self.tail_log()}")
            try:
                r = httpx.get(url, timeout=2, trust_env=False)
                if r.status_code == status:
                    return r
                last = f"{r.status_code} {r.text[:200]}"
            except httpx.HTTPError as exc:
                last = repr(exc)
            if time.monotonic() > deadline:
                raise AssertionError(f"{url} did not answer {status} within {timeout} s (last: "
                                     f"{last}); {self.name}'s log:\n{self.tail_log()}")
            time.sleep(0.1)

    def tail_log(self, chars: int = 4000) -> str:
        """The end of its log, for an assertion's message."""
        with contextlib.suppress(OSError):
            return self.log.read_text(errors="replace")[-chars:]
        return "(no log)"


class Cluster:
    """A network with a namespace per node name, Redis (AOF on, a password) and SeaweedFS (one
    bucket) on its bridge, and the nodes. Build it with `Cluster.open`; `close` stops all."""

    def __init__(self, root: Path, net: Net) -> None:
        self.root = root
        self.net = net
        address = net.bridge_address
        self.redis = EmbeddedRedis(root / "redis", appendonly=True,
                                   tcp=(address, free_port(address)),
                                   password=secrets.token_hex(16))
        self.seaweed = SeaweedFS(root / "seaweed", address)
        self.nodes = {name: Node(name, namespace, net.addresses[name], root)
                      for name, namespace in net.namespaces.items()}

    @classmethod
    def open(cls, root: Path, names: Sequence[str] = ("h1", "h2", "h3")) -> Cluster:
        """A namespace for each of `names`; Redis and SeaweedFS running."""
        net = Net.create(names)
        try:
            cluster = cls(root, net)
        except BaseException:
            net.destroy()
            raise
        try:
            cluster.redis.start()
            cluster.seaweed.start().make_bucket(BUCKET, warm=True)
        except BaseException:
            cluster.close()
            raise
        return cluster

    def add_node(self, name: str, *, namespace: bool = True) -> Node:
        """Another node: in a namespace of its own, or in the root one (at the bridge's
        address, beside Redis and SeaweedFS: give it a port of its own)."""
        if namespace:
            node = Node(name, self.net.add(name), self.net.addresses[name], self.root)
        else:
            node = Node(name, None, self.net.bridge_address, self.root)
        self.nodes[name] = node
        return node

    def __getitem__(self, name: str) -> Node:
        return self.nodes[name]

    def start(self, node: Node | str, argv: Sequence[str], env: Mapping[str, str]) -> Node:
        """Run `argv` with exactly `env` on the node (see Node.start)."""
        return (self.nodes[node] if isinstance(node, str) else node).start(argv, env)

    @property
    def store_url(self) -> str:
        return f"s3://{BUCKET}/boxes"

    def env(self, **extra: str) -> dict[str, str]:
        """What any role needs: a PATH, this checkout's code first on the import path (as
        pytest has it), Redis, the store and its credentials; then `extra`."""
        return {"PATH": os.environ["PATH"], "LANG": "C.UTF-8", "PYTHONPATH": str(REPO),
                "REDIS_URL": self.redis.tcp_url, "BURROW_STORE_URL": self.store_url,
                "BURROW_S3_ENDPOINT": self.seaweed.endpoint, **self.seaweed.env(), **extra}

    def stop_nodes(self, timeout: float = 30.0) -> None:
        for node in self.nodes.values():
            node.stop(timeout)

    def close(self) -> None:
        """Stop every node, Redis and SeaweedFS; remove the network (what still runs in a
        namespace is killed)."""
        try:
            self.stop_nodes()
            self.redis.stop()
            self.seaweed.stop()
        finally:
            self.net.destroy()
