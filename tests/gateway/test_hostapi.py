"""A box host's listener (gateway/hostapi.py) as its callers meet it when it leaves the
cluster: an op in flight is answered, not cut off."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from types import SimpleNamespace
from typing import Any, cast

from redis.asyncio import Redis

from boxes import BoxManager, BoxSpec, ExecRequest
from boxes.hosts import HostLease, HostSpec
from core.channel import HostClient
from core.keys import Keys
from core.transport import DEFAULT_WINDOW_S, RedisNonces, transport_key
from gateway.hostapi import HostAPI

KEYS = Keys("hostapi")
KEY = transport_key(b"a server secret of the test" * 2)


async def test_an_op_in_flight_when_the_host_closes_gets_its_answer(redis: Redis) -> None:
    """A request that reached a host as it left (a rolling restart) is answered before the
    listener ends its connections, so the caller learns "draining: place it elsewhere" or the
    result, rather than "closed before answering", which it cannot act on."""
    started = asyncio.Event()

    async def ensure_running(box_id: str) -> bool:
        started.set()
        await asyncio.sleep(1.0)  # a wake that takes a while
        return True

    lease = HostLease(redis, KEYS, HostSpec("h1", "127.0.0.1:1", 10, 1000), 30.0)
    host_id = await lease.register()
    manager = cast(BoxManager, SimpleNamespace(ensure_running=ensure_running))
    api = HostAPI(manager, lease, KEY, RedisNonces(redis, KEYS), lambda: None,
                  DEFAULT_WINDOW_S)
    with socket.socket() as probe:  # a free port (the listener takes no port 0)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    await api.serve(f"127.0.0.1:{port}")
    address = f"127.0.0.1:{api.port}"
    call: asyncio.Task[Any] = asyncio.create_task(
        HostClient(KEY).call(host_id, address, "ensure", "b_1"))
    await asyncio.wait_for(started.wait(), 10)
    begun = time.monotonic()
    await api.aclose()
    assert await call is True
    assert time.monotonic() - begun < 5
    try:  # and it listens no more
        await HostClient(KEY).call(host_id, address, "ensure", "b_1")
    except Exception as exc:
        assert "does not answer" in str(exc), exc
    else:
        raise AssertionError("a closed host answered")
    await lease.release()


async def test_a_port_connection_through_a_host_is_not_the_boxs_activity_while_open(
        redis: Redis, manager: BoxManager) -> None:
    """A preview's connection to a box's port runs through its host (`port`, the daemon's
    protocol): open and idle, it must not keep the box from idling, as a daemon call does
    while it lasts."""
    box = await manager.create(BoxSpec())
    server = ("import socket\ns = socket.socket(); s.bind(('127.0.0.1', 7005)); s.listen(1)\n"
              "while True:\n    c, _ = s.accept(); c.sendall(c.recv(100)); c.close()\n")
    await manager.write_file(box.id, "/workspace/s.py", server.encode())
    r = await manager.exec(box.id, ExecRequest(
        command="setsid -f python3 /workspace/s.py >/dev/null 2>&1 </dev/null"))
    assert r.exit_code == 0
    lease = HostLease(redis, KEYS, HostSpec("h1", "127.0.0.1:1", 10, 1000), 30.0)
    host_id = await lease.register()
    api = HostAPI(manager, lease, KEY, RedisNonces(redis, KEYS), lambda: None,
                  DEFAULT_WINDOW_S)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    await api.serve(f"127.0.0.1:{port}")
    try:
        held = {}
        for op in ("daemon", "port"):
            reader, writer = await HostClient(KEY).connect(host_id, f"127.0.0.1:{api.port}",
                                                           op, box.id, {}, 1 << 16)
            writer.write(json.dumps({"op": "connect", "port": 7005, "wait_s": 5}).encode()
                         + b"\n")
            assert json.loads(await reader.readline()) == {"ok": True}
            held[op] = box.id in manager.activity._in_flight
            writer.write(b"ping")
            assert await asyncio.wait_for(reader.read(), 10) == b"ping"
            writer.close()
        assert held == {"daemon": True, "port": False}
    finally:
        await api.aclose()
        await lease.release()
        await manager.delete(box.id)
