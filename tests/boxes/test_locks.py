"""Per-box locks: the holder leaves without waiting for Redis, and the lock still excludes."""

from __future__ import annotations

import asyncio
import time

import pytest
from redis.asyncio import Redis

from boxes.locks import BoxLocks
from core.keys import Keys


async def test_holders_here_and_in_another_process_never_overlap(redis: Redis) -> None:
    here, there = BoxLocks(redis, Keys("t"), 5, 10), BoxLocks(redis, Keys("t"), 5, 10)
    inside: list[int] = []
    overlaps = []

    async def hold(locks: BoxLocks, n: int) -> None:
        async with locks.hold("b"):
            inside.append(n)
            overlaps.append(len(inside))
            await asyncio.sleep(0.002)
            inside.remove(n)

    await asyncio.gather(*(hold(here if n % 3 else there, n) for n in range(30)))
    assert overlaps == [1] * 30
    await here.drain()
    await there.drain()
    assert await redis.keys(Keys("t").box_lock("*")) == []  # every key deleted once drained


async def test_a_release_redis_refuses_frees_this_process_and_the_key_expires(
        redis: Redis, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    locks = BoxLocks(redis, Keys("t"), 0.3, 5)
    async with locks.hold("b"):
        async def refuse(*args: object) -> None:
            raise ConnectionError("redis went away")
        monkeypatch.setattr(redis, "eval", refuse)
    await locks.drain()
    monkeypatch.undo()
    assert "expires in 300 ms" in caplog.text
    started = time.monotonic()
    async with locks.hold("b"):  # not wedged here, and the key went with its TTL
        pass
    assert time.monotonic() - started < 2
    await locks.drain()
