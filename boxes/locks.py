"""Per-box locks: an asyncio lock inside this process, then a Redis lock across processes.

Every state transition of a box runs under its lock, so a wake and a freeze never interleave
and N concurrent wakes collapse into one (the others find the box running when they get in).
The Redis lock has a TTL, renewed while held, so a crashed holder cannot wedge a box.

Leaving the lock does not wait for Redis: the holder goes on (a woken box's first request
need not wait a round trip) while a task deletes the key and only then lets this process's
next holder in, so that one never finds the key still held. `drain` waits for those tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
import weakref
from collections.abc import AsyncIterator

from redis.asyncio import Redis

from boxes.errors import BoxBusyError
from boxes.keys import BoxKeys

log = logging.getLogger("burrow.boxes")

_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""
_EXTEND = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end
return 0
"""


class BoxLocks:
    def __init__(self, redis: Redis, keys: BoxKeys, ttl_s: float, wait_s: float) -> None:
        self.redis = redis
        self.keys = keys
        self.ttl_ms = int(ttl_s * 1000)
        self.wait_s = wait_s
        self._local: weakref.WeakValueDictionary[str, asyncio.Lock] = \
            weakref.WeakValueDictionary()
        self._releasing: set[asyncio.Task[None]] = set()

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
            key, token = await self._acquire(box_id, wait)
        except BaseException:
            local.release()
            raise
        renewer = asyncio.create_task(self._renew(key, token))
        try:
            yield
        finally:
            task = asyncio.create_task(self._release(local, key, token, renewer))
            self._releasing.add(task)
            task.add_done_callback(self._releasing.discard)

    async def _acquire(self, box_id: str, wait_s: float) -> tuple[str, str]:
        key = self.keys.box_lock(box_id)
        token = secrets.token_hex(8)
        deadline = time.monotonic() + wait_s
        delay = 0.002
        while not await self.redis.set(key, token, nx=True, px=self.ttl_ms):
            if time.monotonic() >= deadline:
                raise BoxBusyError(f"box {box_id} is busy with another operation; "
                                   "retry in a few seconds")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)
        return key, token

    async def _release(self, local: asyncio.Lock, key: str, token: str,
                       renewer: asyncio.Task[None]) -> None:
        renewer.cancel()
        try:
            with contextlib.suppress(asyncio.CancelledError):
                await renewer
            await self.redis.eval(_RELEASE, 1, key, token)  # type: ignore[misc]
        except Exception as exc:  # Redis gone: the key expires with its TTL
            log.warning("could not release the lock %s (%s); it expires in %d ms",
                        key, exc, self.ttl_ms)
        finally:
            local.release()

    async def drain(self) -> None:
        """Wait until every lock left is released in Redis too."""
        while self._releasing:
            await asyncio.gather(*self._releasing, return_exceptions=True)

    async def _renew(self, key: str, token: str) -> None:
        while True:
            await asyncio.sleep(self.ttl_ms / 3000)
            await self.redis.eval(_EXTEND, 1, key, token, str(self.ttl_ms))  # type: ignore[misc]
