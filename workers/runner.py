"""Running the worker around a Core: alone (`burrow worker`, a cluster's: it runs no boxes
and reaches them through their box hosts, core/remote.py), or beside the gateway in one
process (`burrow serve`: gateway/app.py starts it)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys

from redis.asyncio import Redis
from redis.exceptions import RedisError

import core
from core import logs
from core.keys import Keys
from core.services import Core
from core.settings import Settings
from workers.worker import close_worker, make_worker

log = logging.getLogger("burrow.worker")
RESTART_WAIT_S = 1.0


class Running:
    """A worker running in this process's event loop, on this process's Core. Redis going
    away (a restart, a failover) ends arq's polling loop: a new worker takes over once Redis
    answers again (the jobs in flight run again; arq retries them)."""

    def __init__(self, core: Core) -> None:
        self.core = core
        self.worker = make_worker(core)
        self.task = asyncio.create_task(self._run())

    @classmethod
    def start(cls, core: Core) -> Running:
        core.warm_names()  # the contribute job scrubs names: load the detector now
        return cls(core)

    async def _run(self) -> None:
        while True:
            try:
                await self.worker.async_run()
                return
            except (RedisError, OSError) as exc:
                log.warning("the worker lost Redis (%s); it starts again when Redis answers",
                            exc)
            running = list(self.worker.tasks)
            with contextlib.suppress(RedisError, OSError):
                await close_worker(self.worker)
            await self._release(running)
            self.worker = make_worker(self.core)

    async def _release(self, job_ids: list[str]) -> None:
        """Once Redis answers again, let go of the jobs the lost worker had taken: their marks
        would keep every worker from running them again until their timeout (minutes).
        Every job here is safe to run again (deliveries skip what an agent has)."""
        while True:
            await asyncio.sleep(RESTART_WAIT_S)
            try:
                if job_ids:
                    await self.core.redis.delete(*map(self.core.keys.job_taken, job_ids))
                else:
                    await self.core.redis.ping()
                return
            except (RedisError, OSError):
                continue

    async def stop(self) -> None:
        """Stop the worker (its loop ends between two polls, not inside one), then its task."""
        await close_worker(self.worker)
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


def run(settings: Settings) -> None:
    """A standalone arq worker against REDIS_URL (scale-out), until SIGINT or SIGTERM."""
    logs.configure(settings.log_format)
    if not settings.redis_url or not settings.qdrant_url:
        sys.exit("burrow worker needs REDIS_URL and QDRANT_URL (the Redis and Qdrant the "
                 "gateways use)")
    asyncio.run(_run(settings))


async def _run(settings: Settings) -> None:
    opened = await core.open(settings, remote=True)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    running = Running.start(opened)
    print("burrow worker is running", flush=True)
    await stop.wait()
    await running.stop()
    await opened.aclose()


def alive(settings: Settings) -> tuple[bool, str]:
    """Whether a worker of this instance recorded its health in Redis lately, and what."""
    if not settings.redis_url:
        return False, "REDIS_URL is not set"

    async def read() -> bytes | None:
        redis = Redis.from_url(settings.redis_url or "")
        try:
            value: bytes | None = await redis.get(Keys(settings.redis_prefix).worker_health())
            return value
        finally:
            await redis.aclose()

    try:
        value = asyncio.run(read())
    except (RedisError, OSError) as exc:
        return False, f"cannot reach Redis: {exc}"
    if value is None:
        return False, "no worker has reported in the last 11 s"
    return True, value.decode()
