"""Per-box locks: an asyncio lock inside this process, then a Redis lock across processes.

Every state transition of a box runs under its lock, so a wake and a freeze never interleave
and N concurrent wakes collapse into one (the others find the box running when they get in).
The Redis lock has a TTL, renewed while held, so a crashed holder cannot wedge a box.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
import weakref
from collections.abc import AsyncIterator

from redis.asyncio import Redis

from boxes.errors import BoxBusyError

_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""
_EXTEND = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end
return 0
"""


class BoxLocks:
    def __init__(self, redis: Redis, prefix: str, ttl_s: float, wait_s: float) -> None:
        self.redis = redis
        self.prefix = prefix
        self.ttl_ms = int(ttl_s * 1000)
        self.wait_s = wait_s
        self._local: weakref.WeakValueDictionary[str, asyncio.Lock] = \
            weakref.WeakValueDictionary()

    def _local_lock(self, box_id: str) -> asyncio.Lock:
        lock = self._local.get(box_id)
        if lock is None:
            lock = asyncio.Lock()
            self._local[box_id] = lock
        return lock

    @contextlib.asynccontextmanager
    async def hold(self, box_id: str, wait_s: float | None = None) -> AsyncIterator[None]:
        wait = self.wait_s if wait_s is None else wait_s
        local = self._local_lock(box_id)
        try:
            await asyncio.wait_for(local.acquire(), wait)
        except TimeoutError:
            raise BoxBusyError(f"box {box_id} is busy with another operation; "
                               "retry in a few seconds") from None
        try:
            async with self._redis_lock(box_id, wait):
                yield
        finally:
            local.release()

    @contextlib.asynccontextmanager
    async def _redis_lock(self, box_id: str, wait_s: float) -> AsyncIterator[None]:
        key = f"{self.prefix}:lock:box:{box_id}"
        token = secrets.token_hex(8)
        deadline = time.monotonic() + wait_s
        delay = 0.002
        while not await self.redis.set(key, token, nx=True, px=self.ttl_ms):
            if time.monotonic() >= deadline:
                raise BoxBusyError(f"box {box_id} is busy with another operation; "
                                   "retry in a few seconds")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)
        renewer = asyncio.create_task(self._renew(key, token))
        try:
            yield
        finally:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer
            await self.redis.eval(_RELEASE, 1, key, token)  # type: ignore[misc]

    async def _renew(self, key: str, token: str) -> None:
        while True:
            await asyncio.sleep(self.ttl_ms / 3000)
            await self.redis.eval(_EXTEND, 1, key, token, str(self.ttl_ms))  # type: ignore[misc]
