"""A box host's listener (gateway/hostapi.py) as its callers meet it when it leaves the
cluster: an op in flight is answered, not cut off."""

from __future__ import annotations

import asyncio
import socket
import time
from types import SimpleNamespace
from typing import Any, cast

from redis.asyncio import Redis

from boxes import BoxManager
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
