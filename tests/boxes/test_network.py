"""Network modes: `none` (loopback only) and `egress` (slirp4netns behind a filter: public
addresses only unless the operator allows more; a box may narrow its own).

Every address these tests reach is on this machine: a network namespace with a veth pair that
the test creates, holding a "public" (global-scope, documentation-range) address and a private
one, plus the host's own addresses. Nothing leaves the machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass

import pytest
from redis.asyncio import Redis

from boxes import BoxManager, BoxSpec, ExecRequest, RuntimeConfig
from boxes.egress import host_addresses
from boxes.models import BoxRecord, StartPolicy
from core.keys import Keys

PROBE = ("python3 -c \"import socket,sys\n"
         "try:\n"
         "    s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)\n"
         "    print('connected', s.recv(64).decode())\n"
         "except OSError as e: print('failed', type(e).__name__)\" ")
PUBLIC, PRIVATE = "198.51.100.2", "10.199.7.2"
PORTS = (8080, 5432)

# Answers every A query with PUBLIC, so a box can resolve a name through slirp's forwarder.
DNS_SERVER = r"""
import socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 53))
while True:
    q, addr = s.recvfrom(512)
    end = q.index(b"\0", 12) + 5
    answer = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + socket.inet_aton(sys.argv[2])
    s.sendto(q[:2] + b"\x81\x80" + q[4:6] + b"\x00\x01\x00\x00\x00\x00" + q[12:end] + answer,
             addr)
"""
TCP_SERVER = r"""
import socket, sys, threading
def serve(port):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen()
    while True:
        c, _ = s.accept(); c.sendall(b"peer:%d" % port); c.close()
for port in sys.argv[1:]:
    threading.Thread(target=serve, args=(int(port),)).start()
"""


@dataclass
class Peer:
    netns: str
    host_side: str  # the host's own address on the veth (the host: never reachable)


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def peer() -> Iterator[Peer]:
    """A namespace behind a veth pair, serving TCP on PORTS at a public and a private address
    and DNS at the public one."""
    tag = secrets.token_hex(3)
    netns, outer, inner = f"burrow-peer-{tag}", f"bp{tag}h", f"bp{tag}p"
    _ip("netns", "add", netns)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        _ip("link", "add", outer, "type", "veth", "peer", "name", inner)
        _ip("link", "set", inner, "netns", netns)
        for address, peer_address in (("198.51.100.1/24", f"{PUBLIC}/24"),
                                      ("10.199.7.1/24", f"{PRIVATE}/24")):
            _ip("addr", "add", address, "dev", outer)
            _ip("-n", netns, "addr", "add", peer_address, "dev", inner)
        _ip("link", "set", outer, "up")
        _ip("-n", netns, "link", "set", inner, "up")
        _ip("-n", netns, "link", "set", "lo", "up")
        for code, args in ((TCP_SERVER, [str(p) for p in PORTS]), (DNS_SERVER, [PUBLIC, PUBLIC])):
            procs.append(subprocess.Popen(["ip", "netns", "exec", netns, sys.executable, "-c",
                                           code, *args]))
        for port in PORTS:
            _wait_for(PUBLIC, port)
        yield Peer(netns, "198.51.100.1")
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
        with contextlib.suppress(subprocess.CalledProcessError):
            _ip("link", "del", outer)
        _ip("netns", "del", netns)


def _wait_for(host: str, port: int) -> None:
    for _ in range(100):
        try:
            socket.create_connection((host, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"the test peer at {host}:{port} did not start")


@pytest.fixture
async def host_wide_service() -> AsyncIterator[int]:
    """A service on all of the host's addresses (as a careless Redis would be)."""
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HOST\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "0.0.0.0", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


def _policy(allow: tuple[str, ...] = (), deny: tuple[str, ...] = ()
            ) -> Callable[[BoxRecord], Awaitable[StartPolicy]]:
    async def start_policy(box: BoxRecord) -> StartPolicy:
        return StartPolicy(box.limits, egress_allow=allow, egress_deny=deny)
    return start_policy


@contextlib.asynccontextmanager
async def manager_with(config: RuntimeConfig, redis: Redis, **changes: object
                       ) -> AsyncIterator[BoxManager]:
    manager = await BoxManager.open(dataclasses.replace(config, **changes), redis, Keys())
    try:
        yield manager
    finally:
        await manager.close()


async def probe(manager: BoxManager, box_id: str, host: str, port: int) -> str:
    r = await manager.exec(box_id, ExecRequest(command=PROBE + f"{host} {port}", timeout_s=30))
    return r.stdout.strip()


async def test_default_box_has_loopback_only(manager: BoxManager, peer: Peer) -> None:
    box = await manager.create(BoxSpec())
    r = await manager.exec(box.id, ExecRequest(
        command="python3 -c \"import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); "
                "s.listen(); c=socket.create_connection(s.getsockname()); print('loopback ok')\""
                "; cat /proc/net/dev | tail -n +3 | cut -d: -f1"))
    assert r.stdout.split() == ["loopback", "ok", "lo"]
    assert (await probe(manager, box.id, PUBLIC, 8080)).startswith("failed")


async def test_egress_reaches_public_addresses_only(
        manager: BoxManager, peer: Peer, host_tcp_service: int, host_wide_service: int) -> None:
    box = await manager.create(BoxSpec(network="egress"))
    assert await probe(manager, box.id, PUBLIC, 8080) == "connected peer:8080"
    refused = [(PRIVATE, 8080), ("127.0.0.1", host_tcp_service), ("10.0.2.2", host_tcp_service),
               (peer.host_side, host_wide_service), ("169.254.169.254", 80)]
    refused += [(address, host_wide_service) for address in host_addresses()]
    for host, port in refused:
        assert (await probe(manager, box.id, host, port)).startswith("failed"), (host, port)


@pytest.mark.boxes
async def test_the_operator_can_open_a_private_port_and_close_a_public_address(
        config: RuntimeConfig, redis: Redis, peer: Peer) -> None:
    start_policy = _policy(allow=(f"{PRIVATE}:5432",), deny=(f"{PUBLIC}/32",))
    async with manager_with(config, redis, start_policy=start_policy) as manager:
        box = await manager.create(BoxSpec(network="egress"))
        assert await probe(manager, box.id, PRIVATE, 5432) == "connected peer:5432"
        assert (await probe(manager, box.id, PRIVATE, 8080)).startswith("failed")
        assert (await probe(manager, box.id, PUBLIC, 8080)).startswith("failed")
        await manager.delete(box.id)


@pytest.mark.boxes
async def test_a_box_can_narrow_its_egress_but_never_widen_it(
        config: RuntimeConfig, redis: Redis, peer: Peer) -> None:
    async with manager_with(config, redis, start_policy=_policy()) as manager:
        box = await manager.create(BoxSpec(network="egress", egress_allow=(
            f"{PUBLIC}:5432", f"{PRIVATE}/32")))
        assert await probe(manager, box.id, PUBLIC, 5432) == "connected peer:5432"
        assert (await probe(manager, box.id, PUBLIC, 8080)).startswith("failed")
        # its own allow cannot open what the operator keeps closed
        assert (await probe(manager, box.id, PRIVATE, 5432)).startswith("failed")
        other = await manager.create(BoxSpec(network="egress", egress_deny=(f"{PUBLIC}:8080",)))
        assert (await probe(manager, other.id, PUBLIC, 8080)).startswith("failed")
        assert await probe(manager, other.id, PUBLIC, 5432) == "connected peer:5432"
        for b in (box, other):
            await manager.delete(b.id)


@pytest.mark.boxes
async def test_dns_through_slirps_forwarder_keeps_working(
        config: RuntimeConfig, redis: Redis, peer: Peer) -> None:
    async with manager_with(config, redis, egress_dns=PUBLIC) as manager:
        box = await manager.create(BoxSpec(network="egress"))
        r = await manager.exec(box.id, ExecRequest(command=(
            "python3 -c \"import socket; print(socket.gethostbyname('peer.example'))\""),
            timeout_s=30))
        assert r.stdout.strip() == PUBLIC, r
        assert await probe(manager, box.id, "peer.example", 8080) == "connected peer:8080"
        await manager.delete(box.id)


async def test_the_filter_survives_freeze_and_wake(manager: BoxManager, peer: Peer) -> None:
    box = await manager.create(BoxSpec(network="egress"))
    await manager.freeze(box.id)
    await manager.wake(box.id)
    assert await probe(manager, box.id, PUBLIC, 8080) == "connected peer:8080"
    assert (await probe(manager, box.id, PRIVATE, 8080)).startswith("failed")


async def test_the_box_cannot_remove_its_filter(manager: BoxManager, peer: Peer) -> None:
    box = await manager.create(BoxSpec(network="egress"))
    r = await manager.exec(box.id, ExecRequest(
        command="nft flush ruleset 2>&1; echo rc=$?"))
    assert "rc=0" not in r.stdout
    assert (await probe(manager, box.id, PRIVATE, 8080)).startswith("failed")


def test_bad_egress_rules_are_refused_with_what_to_do() -> None:
    from boxes import InvalidRequestError

    for rule, why in (("example.com", "host names"), ("10.0.0.0/8:99999", "port"),
                      ("*", "needs a port"), ("2001:db8::/32", "IPv4")):
        with pytest.raises(InvalidRequestError, match=why):
            BoxSpec(network="egress", egress_allow=(rule,)).validate()
