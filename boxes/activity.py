"""Hot-path bookkeeping for in-box calls: which boxes this process saw running a moment ago,
and their latest activity, written to Redis in batches rather than once per request. A box with
a call in flight (a long exec, a slow agent answer) counts as active at every flush, so the idle
sweeper never takes it for idle.

A box another process freezes within that moment is caught by the caller: its socket stops
answering, the caller asks BoxManager.recover(), which forgets the box here and wakes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator

from boxes.registry import Registry

log = logging.getLogger("burrow.boxes")


class Activity:
    def __init__(self, registry: Registry, confirm_s: float = 1.0, flush_s: float = 1.0) -> None:
        self.registry = registry
        self.confirm_s = confirm_s
        self.flush_s = flush_s
        self._confirmed: dict[str, float] = {}
        self._touched: dict[str, float] = {}
        self._in_flight: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None

    def running(self, box_id: str) -> bool:
        """Confirmed running within confirm_s; records the activity if so."""
        seen = self._confirmed.get(box_id)
        if seen is None or time.monotonic() - seen > self.confirm_s:
            return False
        self._touched[box_id] = time.time()
        return True

    def touch(self, box_id: str) -> None:
        """Record activity of the box now (a visitor's bytes on an open preview connection)."""
        self._touched[box_id] = time.time()

    @contextlib.contextmanager
    def in_flight(self, box_id: str) -> Iterator[None]:
        """Around a call into the box: active while it lasts, and when it ends."""
        self._in_flight[box_id] = self._in_flight.get(box_id, 0) + 1
        try:
            yield
        finally:
            left = self._in_flight[box_id] - 1
            if left:
                self._in_flight[box_id] = left
            else:
                del self._in_flight[box_id]
            self._touched[box_id] = time.time()

    def confirm(self, box_id: str) -> None:
        self._confirmed[box_id] = time.monotonic()

    def forget(self, box_id: str) -> None:
        self._confirmed.pop(box_id, None)

    async def flush(self) -> None:
        touched, self._touched = self._touched, {}
        now = time.time()
        touched.update(dict.fromkeys(self._in_flight, now))
        if touched:
            await self.registry.touch_many(touched)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.flush_s)
            try:
                await self.flush()
            except Exception as exc:  # keep flushing; the next round carries newer times
                log.warning("could not record box activity: %s", exc)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(Exception):
            await self.flush()
