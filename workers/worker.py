"""The arq worker: which jobs it runs (the observation pipeline's and housekeeping), on which
Redis and queue (the instance's: core/keys.py), how eagerly it polls."""

from __future__ import annotations

import asyncio
import warnings
from typing import Any

from arq.connections import RedisSettings
from arq.cron import cron
from arq.worker import Worker, func

from core.pipeline import contribute, flush_backlogs, observe
from core.services import Core
from workers.housekeeping import gc_store, optimize_knowledge, sample_history, sweep

# arq's default poll_delay of 0.5 s delays every job by up to half a second; 10 ms costs an
# idle server 7% of a core in polling. Observation queues one job per backlog, not per
# request, so 50 ms (under 2% of a core when idle) delays nothing that matters.
POLL_DELAY_S = 0.05
# How often a worker records that it is alive (`burrow worker --check` reads it).
HEALTH_CHECK_S = 10

# How long a stopping worker's polling loop has to finish its iteration before it is cancelled.
STOP_WAIT_S = 5.0


def make_worker(core: Core) -> Worker:
    """A worker sharing this process's Core: its tasks find what they use in ctx (the box
    runtime, the pipeline, the knowledge base, policy, tenants' standing — when a tenant was
    created and how many turns were recorded for it, which the contribute job checks against
    the policy), all there before any task runs."""
    ctx: dict[str, Any] = {"keys": core.keys, "manager": core.manager,
                           "pipeline": core.pipeline, "kb": core.kb, "policies": core.policies,
                           "standing": core.tenants.standing,
                           "sweep_interval_s": core.settings.sweep_interval_s,
                           "history": core.history, "stats": core.stats}
    keys = core.keys
    return Worker(
        functions=[
            # keep_result=0: one runs per backlog that fills up; nobody reads their results
            func(observe, keep_result=0, max_tries=20, timeout=300),
            func(contribute, max_tries=5, timeout=600),
        ],
        # Each cron's name, and so each of its runs' job ids, is the instance's: another
        # instance's cron of the same name and time does not take this one's place.
        cron_jobs=[
            cron(flush_backlogs, name=keys.cron("flush_backlogs"),
                 second={0, 10, 20, 30, 40, 50}, run_at_startup=True, keep_result=0),
            # every second on every worker; sweep() itself keeps to one per sweep interval
            cron(sweep, name=keys.cron("sweep"), second=None, keep_result=0, timeout=600),
            cron(optimize_knowledge, name=keys.cron("optimize_knowledge"),
                 minute={0, 10, 20, 30, 40, 50}, keep_result=0),
            cron(gc_store, name=keys.cron("gc_store"), minute={7}, keep_result=0,
                 timeout=1800),
            # at the start of every minute, and at once: one worker's sample per minute
            cron(sample_history, name=keys.cron("sample_history"), second={0},
                 run_at_startup=True, keep_result=0, timeout=50),
        ],
        redis_settings=RedisSettings.from_dsn(core.settings.redis_url or ""),
        queue_name=keys.queue(),
        ctx=ctx,
        handle_signals=False,
        poll_delay=POLL_DELAY_S,
        keep_result=60,
        max_jobs=20,
        health_check_interval=HEALTH_CHECK_S,
    )


async def close_worker(worker: Worker) -> None:
    """Worker.close(), stopping the polling loop between two iterations rather than inside one,
    minus the DeprecationWarning arq's use of redis-py's old close() emits, and without its
    CancelledError.

    Cancelled inside an iteration, arq's job start can be left in a WATCHed pipeline that keeps
    its connection (redis-py then warns "Unclosed client session" when it is collected): so the
    loop is told to start no more jobs and return (burst mode with no jobs left), and is
    cancelled only if it has not returned within STOP_WAIT_S. Jobs still running are cancelled
    (arq runs them again later) and awaited here, where a job that ends cancelled is not an
    error of the shutdown. Left to `Worker.close`, that job's CancelledError ended the close
    half-way (health key kept, pool open) and failed whoever was shutting down."""
    worker.burst, worker.max_burst_jobs = True, 0
    for task in worker.tasks.values():
        task.cancel()
    await asyncio.gather(*worker.tasks.values(), return_exceptions=True)
    main = worker.main_task
    if main is not None and not main.done():
        done, _ = await asyncio.wait({main}, timeout=STOP_WAIT_S)
        if not done:
            main.cancel()
        await asyncio.gather(main, return_exceptions=True)
    worker.tasks.clear()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Call to deprecated close",
                                category=DeprecationWarning)
        await worker.close()
