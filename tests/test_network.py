"""Network modes: `none` (loopback only) and `egress` (slirp4netns, host loopback unreachable)."""

from __future__ import annotations

import asyncio
import socket

import pytest

from boxes import BoxManager, BoxSpec, ExecRequest

PROBE = ("python3 -c \"import socket,sys\n"
         "try:\n"
         "    s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)\n"
         "    print('connected')\n"
         "except OSError as e: print('failed', type(e).__name__)\" ")


def _host_reaches(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=5).close()
        return True
    except OSError:
        return False


async def probe(manager: BoxManager, box_id: str, host: str, port: int) -> str:
    r = await manager.exec(box_id, ExecRequest(command=PROBE + f"{host} {port}", timeout_s=30))
    return r.stdout.strip()


async def test_default_box_has_loopback_only(manager: BoxManager) -> None:
    box = await manager.create(BoxSpec())
    r = await manager.exec(box.id, ExecRequest(
        command="python3 -c \"import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); "
                "s.listen(); c=socket.create_connection(s.getsockname()); print('loopback ok')\""
                "; ls /sys/class/net 2>/dev/null || cat /proc/net/dev | tail -n +3 | cut -d: -f1"))
    assert r.stdout.split() == ["loopback", "ok", "lo"]
    assert (await probe(manager, box.id, "pypi.org", 443)).startswith("failed")


async def test_egress_box_reaches_out_but_not_the_host_loopback(
        manager: BoxManager, host_tcp_service: int) -> None:
    box = await manager.create(BoxSpec(network="egress"))
    for host in ("127.0.0.1", "10.0.2.2"):
        assert (await probe(manager, box.id, host, host_tcp_service)).startswith("failed"), host
    if not await asyncio.to_thread(_host_reaches, "pypi.org", 443):
        pytest.skip("this host itself cannot reach pypi.org, so egress cannot be shown")
    assert (await probe(manager, box.id, "pypi.org", 443)).startswith("connected")


async def test_egress_survives_freeze_and_wake(manager: BoxManager) -> None:
    box = await manager.create(BoxSpec(network="egress"))
    await manager.freeze(box.id)
    await manager.wake(box.id)
    r = await manager.exec(box.id, ExecRequest(command="cat /proc/net/dev | grep -c tap0"))
    assert r.stdout.strip() == "1"
