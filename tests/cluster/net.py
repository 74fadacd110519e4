"""The network of a cluster test: a Linux bridge in the root namespace on a private /24 that no
route of this machine uses, and one network namespace per node, joined to the bridge by a veth
pair, with loopback up and no other route: a node reaches the bridge's /24 and its own loopback,
nothing else.

Every name starts with `bw<pid>x<n>` (the creating process's pid, the n-th network it made): two
runs side by side never collide, and the next run removes what a run that died left behind
(`sweep_stale`). The box runtime names nothing this way: a box's network namespace is unnamed
(bubblewrap's), its nftables table lives in that namespace, and the root namespace gets no rules.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

IFNAMSIZ = 15  # the longest interface name Linux takes
TOOLS = {"ip": "iproute2", "nsenter": "util-linux"}
# The /24s are picked from 10.200.0.0-10.249.255.0 (tests/boxes/test_network.py uses
# 10.199.7.0/24), under a lock, so two runs starting together never pick the same one.
_FIRST_NETWORK = ipaddress.IPv4Address("10.200.0.0")
_NETWORKS = 50 * 256
_LOCK = Path("/run/lock/burrow-cluster-net.lock")
_NAME = re.compile(r"^bw(?P<pid>\d+)x\d+")
_counter = itertools.count()


def require_tools(path: str | None = None) -> None:
    """Fail (never skip) with what to install when this machine cannot build the network."""
    if os.geteuid() != 0:
        raise AssertionError("cluster tests make network namespaces and a bridge: run them as "
                             "root (they carry the `boxes` tier)")
    for tool, package in TOOLS.items():
        if shutil.which(tool, path=path) is None:
            raise AssertionError(f"cluster tests need `{tool}`, which this machine lacks: "
                                 f"install {package} (apt-get install {package})")


def ip(*args: str) -> str:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def _json(*args: str) -> list[dict[str, object]]:
    out = ip("-j", *args).strip()
    return json.loads(out) if out else []


def routes() -> list[ipaddress.IPv4Network]:
    """Every IPv4 destination in this machine's routing tables (local addresses included)."""
    found = []
    for route in _json("-4", "route", "show", "table", "all"):
        with contextlib.suppress(ValueError):
            if route.get("dst") != "default":
                found.append(ipaddress.IPv4Network(str(route.get("dst")), strict=False))
    return found


def _free_network(start: int) -> ipaddress.IPv4Network:
    used = routes()
    for i in range(_NETWORKS):
        base = int(_FIRST_NETWORK) + (start + i) % _NETWORKS * 256
        network = ipaddress.IPv4Network((base, 24))
        if not any(network.overlaps(u) for u in used):
            return network
    raise AssertionError("no free /24 in 10.200.0.0-10.249.255.0 for a cluster test's bridge: "
                         "remove stale bridges (ip -br addr)")


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    with _LOCK.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _kill_inside(namespace: str) -> None:
    """SIGKILL every process in the namespace: one left there keeps it (and its veth) alive."""
    with contextlib.suppress(RuntimeError):
        for pid in ip("netns", "pids", namespace).split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)


def _remove(namespaces: Sequence[str], links: Sequence[str]) -> None:
    for namespace in namespaces:
        _kill_inside(namespace)
    for link in links:  # a veth goes with its peer; the bridge last
        with contextlib.suppress(RuntimeError):
            ip("link", "del", link)
    for namespace in namespaces:
        with contextlib.suppress(RuntimeError):
            ip("netns", "del", namespace)


def sweep_stale() -> list[str]:
    """Remove the namespaces and links of runs whose process is gone; return their names."""
    def dead(name: str) -> bool:
        match = _NAME.match(name)
        return match is not None and not Path(f"/proc/{match['pid']}").exists()

    namespaces = [str(n["name"]) for n in _json("netns", "list") if dead(str(n["name"]))]
    links = sorted((str(link["ifname"]) for link in _json("link", "show")
                    if dead(str(link["ifname"]))), key=lambda n: n.endswith("br"))
    _remove(namespaces, links)
    return namespaces + links


@dataclass
class Net:
    """The bridge `<tag>br` at the network's first address, and for each node name a namespace
    `<tag><name>` at the next addresses, whose eth0 pairs with `<tag><name>` on the bridge."""

    tag: str
    network: ipaddress.IPv4Network
    namespaces: dict[str, str] = field(default_factory=dict)  # node name -> namespace
    addresses: dict[str, str] = field(default_factory=dict)  # node name -> its address

    @property
    def bridge(self) -> str:
        return f"{self.tag}br"

    @property
    def bridge_address(self) -> str:
        """The root namespace's address on the bridge (Redis and SeaweedFS listen there)."""
        return str(self.network[1])

    @classmethod
    def create(cls, names: Sequence[str] = (), *, pid: int | None = None) -> Net:
        """A bridge and a namespace per name; `pid`: whose names (a test of the sweep)."""
        require_tools()
        pid = os.getpid() if pid is None else pid
        tag = f"bw{pid}x{next(_counter)}"
        with _locked():
            sweep_stale()
            net = cls(tag, _free_network(pid))
            ip("link", "add", net.bridge, "type", "bridge")
            try:
                ip("addr", "add", f"{net.bridge_address}/24", "dev", net.bridge)
                ip("link", "set", net.bridge, "up")
            except BaseException:
                net.destroy()
                raise
        try:
            for name in names:
                net.add(name)
        except BaseException:
            net.destroy()
            raise
        return net

    def add(self, name: str) -> str:
        """A namespace for node `name` on the bridge; its name."""
        namespace = f"{self.tag}{name}"
        if (len(namespace) > IFNAMSIZ or not re.fullmatch(r"[a-z][a-z0-9]*", name)
                or name == "br" or name in self.namespaces):
            raise ValueError(f"node name {name!r}: a new one, a letter then letters or digits, "
                             f"short enough that {namespace!r} fits in {IFNAMSIZ} characters")
        address = str(self.network[10 + len(self.namespaces)])
        self.namespaces[name], self.addresses[name] = namespace, address
        ip("netns", "add", namespace)
        ip("link", "add", namespace, "type", "veth", "peer", "name", "eth0", "netns", namespace)
        ip("link", "set", namespace, "master", self.bridge, "up")
        ip("-n", namespace, "addr", "add", f"{address}/24", "dev", "eth0")
        ip("-n", namespace, "link", "set", "eth0", "up")
        ip("-n", namespace, "link", "set", "lo", "up")
        return namespace

    def destroy(self) -> None:
        """Remove everything it made, killing what still runs in its namespaces."""
        names = list(self.namespaces.values())
        _remove(names, [*names, self.bridge])

    def leftovers(self) -> list[str]:
        """Its namespaces and links that still exist."""
        found = [str(n["name"]) for n in _json("netns", "list")]
        found += [str(link["ifname"]) for link in _json("link", "show")]
        return [name for name in found if re.match(rf"{self.tag}(?!\d)", name)]
