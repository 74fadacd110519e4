"""The arq worker: which tasks it runs, on which Redis, how eagerly it polls."""

from __future__ import annotations

from typing import Any

from arq.connections import RedisSettings
from arq.cron import cron
from arq.worker import Worker

from boxes import BoxManager
from workers.tasks import gc_store

# arq's default poll_delay of 0.5 s drains only ~200 jobs/s; 10 ms drains thousands.
POLL_DELAY_S = 0.01


def make_worker(redis_url: str, manager: BoxManager, **ctx: Any) -> Worker:
    """A worker sharing `manager` (and anything else in ctx) with the process that runs it."""
    return Worker(
        functions=[gc_store],
        cron_jobs=[cron(gc_store, minute={7}, run_at_startup=False)],  # hourly
        redis_settings=RedisSettings.from_dsn(redis_url),
        ctx={"manager": manager, **ctx},
        handle_signals=False,
        poll_delay=POLL_DELAY_S,
        keep_result=60,
    )
