"""A box's service: a long-running program on a socket the host created, kept running by the
daemon; plus what every box gets from the host (the host socket, start-time environment)."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest
from redis.asyncio import Redis

from boxes import BoxManager, BoxSpec, ExecRequest, RuntimeConfig
from core.keys import Keys
from tests.conftest import make_config

ECHO = ("import os, socket\n"
        "server = socket.socket(fileno=int(os.environ['BURROW_SERVICE_FD']))\n"
        "while True:\n"
        "    conn, _ = server.accept()\n"
        "    data = conn.recv(100)\n"
        "    conn.sendall(b'pid %d says ' % os.getpid() + data)\n"
        "    conn.close()\n")


def kill_service(uid: int, pid: bytes) -> None:
    """Kill a box's service from the host: the code a box runs cannot see it (its pid is the
    one the box's own namespace gives it, which the service reports)."""
    for entry in os.listdir("/proc"):
        try:
            status = Path(f"/proc/{entry}/status").read_text()
        except (OSError, ValueError):
            continue
        fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
        if (fields.get("Uid", "").split()[:1] == [str(uid)]
                and fields.get("NSpid", "").split()[-1:] == [pid.decode()]
                and len(fields["NSpid"].split()) == 2):
            os.kill(int(entry), signal.SIGKILL)
            _wait_dead(Path(f"/proc/{entry}/status"))
            return
    raise AssertionError(f"no process {pid!r} in the box")


def _wait_dead(status: Path) -> None:
    """kill() returns once the signal is sent: a connection made before the process is gone
    could still be accepted by it and reset as it dies (what the test asks is that the next
    service answers)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if "State:\tZ" in status.read_text():
                return
        except OSError:
            return
        time.sleep(0.01)
    raise AssertionError(f"{status.parent.name} outlived SIGKILL by 10 s")


async def ask(path: str, message: bytes) -> bytes:
    reader, writer = await asyncio.open_unix_connection(path)
    writer.write(message)
    await writer.drain()
    reply = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return reply


async def test_service_answers_on_its_socket_and_is_restarted_when_it_dies(
        manager: BoxManager) -> None:
    box = await manager.create(BoxSpec(service=["python3", "-c", ECHO]))
    first = await ask(manager.service_path(box.id), b"hello")
    assert first.endswith(b"says hello")
    pid = first.split()[1]
    kill_service(box.uid, pid)
    second = await ask(manager.service_path(box.id), b"again")  # waits in the backlog
    assert second.endswith(b"says again") and second.split()[1] != pid


async def test_service_stops_with_a_freeze_and_comes_back_on_wake(manager: BoxManager) -> None:
    box = await manager.create(BoxSpec(service=["python3", "-c", ECHO]))
    await ask(manager.service_path(box.id), b"x")
    await manager.freeze(box.id)
    r = await manager.wake(box.id)
    assert (await ask(manager.service_path(r.id), b"back")).endswith(b"says back")
    log = await manager.read_file(box.id, "/workspace/.burrow/service.log")
    assert b"Traceback" not in log


@pytest.mark.boxes
async def test_host_socket_and_start_env_reach_the_box_without_being_stored(
        tmp_path: Path, redis: Redis) -> None:
    host_sock = Path(f"/run/burrow/test-host-{os.getpid()}.sock")  # box uids must reach it
    server = await asyncio.start_unix_server(
        lambda r, w: (w.write(b"from the host\n"), w.close()), path=str(host_sock))
    os.chmod(host_sock, 0o666)  # box uids connect to it
    base = make_config(tmp_path / "data")
    config = RuntimeConfig(**{**base.__dict__, "host_socket": host_sock,
                              "start_env": lambda box: {"SECRET_TOKEN": f"tok-{box.id}"}})
    manager = await BoxManager.open(config, redis, Keys())
    try:
        box = await manager.create(BoxSpec())
        r = await manager.exec(box.id, ExecRequest(
            command="echo $SECRET_TOKEN; python3 -c \"import socket, os; "
                    "s = socket.socket(socket.AF_UNIX); "
                    "s.connect(os.environ['BURROW_HOST_SOCKET']); "
                    "print(s.recv(100).decode().strip())\""))
        assert r.stdout == f"tok-{box.id}\nfrom the host\n", r.stderr
        record = await redis.hgetall(Keys().box(box.id))
        assert b"tok-" not in b"".join(record.values())
        assert b"tok-" not in (config.box_dir(box.id) / "box.json").read_bytes()
        cmdlines = b"".join(p.read_bytes() for p in Path("/proc").glob("[0-9]*/cmdline")
                            if p.exists())
        assert f"tok-{box.id}".encode() not in cmdlines  # not in any host process list
    finally:
        await manager.close()
        server.close()
        await server.wait_closed()
        host_sock.unlink(missing_ok=True)


ENV_ECHO = ECHO.replace("b'pid %d says ' % os.getpid()",
                        "b'pid %d %s says ' % (os.getpid(), os.environ['GREETING'].encode())")


async def test_service_gets_the_box_env_at_start_and_after_a_restart(
        manager: BoxManager) -> None:
    box = await manager.create(BoxSpec(service=["python3", "-c", ENV_ECHO],
                                       env={"GREETING": "hola"}))
    first = await ask(manager.service_path(box.id), b"x")
    assert b" hola says x" in first, first
    kill_service(box.uid, first.split()[1])
    assert b" hola says y" in await ask(manager.service_path(box.id), b"y")
