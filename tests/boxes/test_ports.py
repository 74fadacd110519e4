"""Reaching a port in a box through its daemon (`connect`, what preview URLs ride on): the box
needs no network, a server that is not listening yet is waited for (bounded), and bytes flow
both ways as they come."""

from __future__ import annotations

import asyncio
import time

import pytest

from boxes import BoxFileError, BoxManager, BoxSpec, ExecRequest, InvalidRequestError

# A line echo server on 127.0.0.1:PORT, left running after the exec that starts it.
ECHO = ("import socket\n"
        "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
        "s.bind(('127.0.0.1', {port})); s.listen(8)\n"
        "while True:\n"
        "    c, _ = s.accept()\n"
        "    f = c.makefile('rb')\n"
        "    for line in f:\n"
        "        c.sendall(b'echo ' + line)\n"
        "    c.close()\n")


async def start_detached(manager: BoxManager, box_id: str, script: str) -> None:
    """Start `script` in the box so that it outlives the exec (setsid -f: its own session)."""
    await manager.write_file(box_id, "/workspace/server.py", script.encode())
    r = await manager.exec(box_id, ExecRequest(
        command="setsid -f python3 /workspace/server.py >/dev/null 2>&1 </dev/null"))
    assert r.exit_code == 0, r


async def test_connect_reaches_a_loopback_server_of_a_box_without_network(
        manager: BoxManager) -> None:
    box = await manager.create(BoxSpec())  # network "none": loopback only
    await start_detached(manager, box.id, ECHO.format(port=7001))
    reader, writer = await manager.connect_port(box.id, 7001, wait_s=10)
    try:
        for n in range(3):
            writer.write(b"line %d\n" % n)
            await writer.drain()
            assert await asyncio.wait_for(reader.readline(), 10) == b"echo line %d\n" % n
    finally:
        writer.close()
    await manager.delete(box.id)


async def test_connect_waits_for_a_server_that_starts_late_and_gives_up_when_bounded(
        manager: BoxManager) -> None:
    box = await manager.create(BoxSpec())
    started = time.monotonic()
    with pytest.raises(BoxFileError) as refused:
        await manager.connect_port(box.id, 7002, wait_s=0.3)
    assert refused.value.code == "refused" and "7002" in refused.value.message
    assert 0.25 < time.monotonic() - started < 5

    async def late() -> None:
        await asyncio.sleep(1.0)
        await start_detached(manager, box.id, ECHO.format(port=7002))

    starter = asyncio.create_task(late())
    reader, writer = await manager.connect_port(box.id, 7002, wait_s=20)
    await starter
    writer.write(b"late\n")
    assert await asyncio.wait_for(reader.readline(), 10) == b"echo late\n"
    writer.close()
    await manager.delete(box.id)


async def test_connect_refuses_ports_that_are_not_ports(manager: BoxManager) -> None:
    box = await manager.create(BoxSpec())
    for port in (0, 65536, -1, True, "80"):
        with pytest.raises(InvalidRequestError):
            await manager.connect_port(box.id, port, wait_s=0)  # type: ignore[arg-type]
    await manager.delete(box.id)


async def test_a_port_ends_when_its_server_closes(manager: BoxManager) -> None:
    box = await manager.create(BoxSpec())
    once = ("import socket\n"
            "s = socket.socket(); s.bind(('127.0.0.1', 7003)); s.listen(1)\n"
            "while True:\n"
            "    c, _ = s.accept(); c.sendall(b'bye'); c.close()\n")
    await start_detached(manager, box.id, once)
    reader, writer = await manager.connect_port(box.id, 7003, wait_s=10)
    assert await asyncio.wait_for(reader.read(), 10) == b"bye"  # then EOF
    writer.close()
    await manager.delete(box.id)
