"""Running a box host of a cluster (`burrow host`): this machine's boxes, the host services
socket they reach, the host's listener for the gateways and the worker (gateway/hostapi.py),
its lease, and its own idle sweep.

The host registers with a lease before its first box starts and keeps renewing it. If the
lease lapses (the process was stopped, or cut off from Redis, past it), its boxes may be
running elsewhere already and every write it makes for them is refused: it stops and exits
(1), so that its supervisor starts it again as a new host. On SIGTERM it freezes its boxes
to the store and leaves the cluster at once (the lease is released, not left to lapse).
A host told to drain (`burrow host drain`) freezes its boxes and gives them up, so that
their next request wakes them on another host.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import time
from functools import partial

from redis.exceptions import RedisError

from boxes import BoxError, BoxManager, BoxRecord, BoxState, HostUnsupportedError, disk, hostdirs
from boxes.checkpoints import Checkpointer
from boxes.hosts import HostLease, Hosts
from core import logs
from core.roles import DRAIN_S
from core.services import Core
from core.settings import Settings
from core.transport import DEFAULT_WINDOW_S, RedisNonces, transport_key
from gateway.hostapi import HostAPI
from gateway.hostserver import HostSocket
from workers.sweeper import Sweeper

log = logging.getLogger("burrow.host")
DRAIN_PARALLEL = 4       # freezes at once: each packs a layer in a thread


def requirements(settings: Settings) -> str | None:
    """What a box host of a cluster needs that it lacks, in one line (None: nothing)."""
    if not settings.redis_url:
        return "burrow host needs REDIS_URL (the Redis every role of the cluster shares)"
    if settings.server_secret is None:
        return ("burrow host needs BURROW_SERVER_SECRET (the same on every role: "
                "`openssl rand -hex 32`)")
    if not settings.store_url:
        return ("burrow host needs BURROW_STORE_URL (s3://bucket/prefix, the store every "
                "host shares: a box frozen here wakes on another host from it)")
    return None


def run(settings: Settings) -> None:
    logs.configure(settings.log_format)
    try:
        disk.check_host()
        hostdirs.check_traversable(settings.runtime_dir)
    except HostUnsupportedError as exc:
        sys.exit(f"error: {exc.message}")
    sys.exit(asyncio.run(_run(settings)))


async def _run(settings: Settings) -> int:
    opened = await Core.open(settings, host=True)
    assert opened.lease is not None and isinstance(opened.manager, BoxManager)
    lease, manager = opened.lease, opened.manager
    stop = asyncio.Event()
    lapsed = False

    async def on_lapse(host_id: str) -> None:
        nonlocal lapsed
        lapsed = True
        stop.set()

    lease.on_lapse = on_lapse
    socket = await HostSocket.serve(opened)
    api = HostAPI(manager, lease, transport_key(opened.secret),
                  RedisNonces(opened.redis, opened.keys), partial(_not_ready, opened),
                  DEFAULT_WINDOW_S)
    await api.serve(settings.host_listen)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    sweeping = asyncio.create_task(_sweep_forever(opened))
    checkpoints = Checkpointer(manager, settings.checkpoint_s)
    checkpoints.start()
    log.info("box host %s serving on %s", lease.host_id, settings.host_listen)
    print(f"box host {lease.host_id} serving on {settings.host_listen}", flush=True)
    await stop.wait()
    sweeping.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await sweeping
    await checkpoints.stop()
    if not lapsed:  # a stop (an upgrade, a drain): its boxes move while it still answers
        await _leave(lease, manager)
    await api.aclose()
    if lapsed:
        log.error("box host %s lost its lease: stopping its boxes; start it again to rejoin",
                  lease.host_id)
    await opened.aclose()  # freezes its boxes while the host socket still answers (if held)
    await socket.aclose()
    return 1 if lapsed else 0


def _not_ready(core: Core) -> str | None:
    lease = core.lease
    assert lease is not None
    if not lease.valid():
        return "its lease has lapsed"
    failure = core.manager.store_failure
    if failure is not None:
        return f"the snapshot store fails: {failure.message}"
    return None


async def _sweep_forever(core: Core) -> None:
    """The idle sweep of this host's boxes (pause, freeze, archive by the operator's
    policy); when the host is drained, every box it holds is frozen and given up."""
    manager = core.manager
    assert isinstance(manager, BoxManager)
    sweeper = Sweeper(manager, core.policies, partial(core.pipeline.before_freeze, manager),
                      mine_only=True)
    while True:
        await asyncio.sleep(core.settings.sweep_interval_s)
        try:
            if core.lease is not None and core.lease.draining:
                await _drain(manager)
            else:
                await sweeper.sweep()
        except (BoxError, RedisError, OSError) as exc:
            log.warning("the sweep of this host's boxes failed: %s", exc)


async def _leave(lease: HostLease, manager: BoxManager) -> None:
    """Leave the cluster without failing a request: take no new box, freeze and give up every
    box (a request for one meanwhile waits for its lock, then finds it on no host and has it
    placed elsewhere), all while this host still answers; within DRAIN_S."""
    lease.draining = True  # this process knows now; the others from Redis
    with contextlib.suppress(BoxError, OSError, RedisError):
        await Hosts(manager.redis, manager.registry.keys).drain(lease.host_id)
    try:
        await asyncio.wait_for(_drain(manager), DRAIN_S)
    except TimeoutError:
        log.error("the drain did not end within %.0f s: the boxes still here wake elsewhere "
                  "once this host's lease lapses", DRAIN_S)


async def _drain(manager: BoxManager) -> None:
    """Freeze every box this host holds, then give each up (its next request places it on
    another host, which wakes it from the store); a few at a time."""
    slots = asyncio.Semaphore(DRAIN_PARALLEL)
    failed: list[str] = []

    async def move(box: BoxRecord) -> None:
        async with slots:
            try:
                if box.state in (BoxState.RUNNING, BoxState.PAUSED, BoxState.FAILED):
                    box = await manager.freeze(box.id)
                await manager.release(box.id)
            except BoxError as exc:  # its next request finds it here, or where it wakes
                failed.append(box.id)
                log.warning("draining: box %s stays on this host: %s", box.id, exc)

    held = [b for b in await manager.list() if b.host == manager.host]
    log.info("draining: freezing %d boxes and giving them up", len(held))
    started = time.monotonic()
    await asyncio.gather(*(move(b) for b in held))
    log.info("drained in %.1f s: %d boxes given up, %d not", time.monotonic() - started,
             len(held) - len(failed), len(failed))
