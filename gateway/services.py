"""Everything the gateway serves with, built in the app's lifespan and closed with it: Redis,
keys, the box runtime, tenants, the agent proxy, the knowledge base, the observation pipeline,
the job queue, the host services socket and (in `burrow serve`) the in-process worker."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
from collections.abc import AsyncIterator, Generator
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from arq import ArqRedis, create_pool
from arq.connections import RedisSettings
from fastapi import FastAPI
from redis.asyncio import Redis
from redis.exceptions import RedisError

import tenant_agent
from boxes import BoxError, BoxManager, BoxState, RuntimeConfig
from boxes.models import BoxRecord
from gateway import gitrelay, quotas
from gateway.budgets import ModelBudgets
from gateway.hostguard import HostLimits, protocol_for
from gateway.hostsvc import create_host_app
from gateway.metrics import Metrics
from gateway.modelservers import LocalModels
from gateway.providers import Providers
from gateway.proxy import AgentProxy
from gateway.runs import AgentRuns
from gateway.security import box_token, operator_key, server_secret
from gateway.settings import Settings
from gateway.stats import StatsCollector
from gateway.tenants import Tenants
from knowledge.base import KnowledgeBase
from knowledge.embedder import ProcessEmbedder
from knowledge.vectors import open_store
from workers.observations import Observations
from workers.policy import Policies
from workers.settings import close_worker, make_worker

log = logging.getLogger("burrow.gateway")

AGENT_DIR = "opt/burrow/tenant_agent"
# -I -S: no site, no environment, no user paths: the agent is stdlib-only and starts fast.
DEFAULT_AGENT_COMMAND = ["/usr/bin/python3", "-I", "-S", f"/{AGENT_DIR}/__main__.py"]
HARNESS_COMMAND = ["/usr/bin/python3", "-I", "-S", f"/{AGENT_DIR}/harness.py"]
SHUTDOWN_FREEZE_BUDGET_S = 60.0
EMBEDDING_DIM = 384
SPOOL_REPLAY_S = 5.0


def _start_env(secret: bytes, box: BoxRecord) -> dict[str, str]:
    """What each box start gets and no record keeps: its token; the git relay's port."""
    env = {"BURROW_BOX_TOKEN": box_token(secret, box.id)}
    if (box.meta.get("git") or {}).get("relay"):
        env["BURROW_RELAY_PORT"] = str(gitrelay.RELAY_PORT)
    return env


class Observer:
    """Records a tenant's (request, response) pairs off the request path."""

    def __init__(self, observations: Observations, queue: ArqRedis,
                 enabled: bool = True) -> None:
        self.observations = observations
        self.queue = queue
        self.enabled = enabled
        self._tasks: set[asyncio.Task[None]] = set()

    def record(self, tenant: str, box_id: str, pair: dict[str, Any]) -> None:
        """Costs the request a dict and a task; the Redis work happens after it."""
        if not self.enabled:
            return
        task = asyncio.create_task(self._record(tenant, box_id, pair))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _record(self, tenant: str, box_id: str, pair: dict[str, Any]) -> None:
        recorded = await self.observations.record(tenant, box_id, pair)
        # A backlog that already held pairs has a delivery queued or running, and a running
        # delivery goes on until the backlog is empty: one job per backlog, not per request.
        if recorded is not None and recorded.started_backlog:
            await self.enqueue(tenant, box_id)

    async def enqueue(self, tenant: str, box_id: str) -> None:
        """Queue a delivery of the tenant's backlog. Deliveries of one tenant are serialised
        by a lease, so a second one queued meanwhile finds nothing to do and costs little."""
        with contextlib.suppress(RedisError, OSError):  # the worker's cron catches up
            await self.queue.enqueue_job("observe", tenant, box_id)

    async def drain(self) -> None:
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


@contextlib.asynccontextmanager
async def services(app: FastAPI, settings: Settings,
                   local_models: LocalModels | None = None) -> AsyncIterator[None]:
    data_dir = settings.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    assert settings.redis_url is not None
    redis = Redis.from_url(settings.redis_url)
    key, created = operator_key(data_dir, settings.operator_key.get_secret_value()
                                if settings.operator_key else None)
    secret = server_secret(data_dir)
    state = app.state
    state.redis, state.operator_key, state.secret = redis, key, secret
    state.operator_key_created = created

    config = RuntimeConfig(
        data_dir=data_dir, runtime_root=settings.runtime_dir,
        launcher_pool=settings.launcher_pool, uid_base=settings.uid_base,
        lock_wait_s=settings.wake_wait_s,
        image_extras={AGENT_DIR: Path(tenant_agent.__file__).parent},
        egress_dns=settings.egress_dns,
        start_env=lambda box: _start_env(secret, box),
        start_policy=quotas.start_policy(Policies(redis)))
    host_socket = config.run_dir / f"host-{os.getpid()}.sock"
    config = dataclasses.replace(config, host_socket=host_socket)
    host_server = await _serve_host_socket(app, host_socket, settings)
    manager = await BoxManager.open(config, redis)
    store = await asyncio.to_thread(open_store, settings.qdrant_url, data_dir / "knowledge",
                                    EMBEDDING_DIM)
    embedder = ProcessEmbedder(settings.embed_model)
    warm = asyncio.create_task(asyncio.to_thread(embedder.embed, ["warm up"]))
    kb = KnowledgeBase(store, embedder, redis, secret, k=settings.k_anonymity)
    observations = Observations(redis, data_dir / "spool",
                                backlog_max=settings.observe_backlog_max)
    queue = await create_pool(RedisSettings.from_dsn(settings.redis_url))
    state.manager, state.kb, state.observations, state.queue = manager, kb, observations, queue
    state.policies = Policies(redis)
    state.budgets = ModelBudgets(redis)
    state.metrics = Metrics()
    manager.on_transition = state.metrics.transition
    state.stats = StatsCollector(app)
    state.tenants = Tenants(redis, manager, kb, observations, state.policies,
                            settings.agent_command or DEFAULT_AGENT_COMMAND, state.budgets)
    state.proxy = AgentProxy()
    state.providers = Providers(settings, local_servers=local_models)
    state.relay_client = httpx.AsyncClient(timeout=httpx.Timeout(300.0, connect=10.0))
    state.local_models = local_models
    # A run whose model no provider could serve (unknown, no key) fails before it starts.
    state.runs = AgentRuns(redis, manager, HARNESS_COMMAND, check_model=state.providers.get)
    state.observer = Observer(observations, queue, enabled=settings.observe)
    worker = (make_worker(settings.redis_url, manager=manager, observations=observations,
                          kb=kb, policies=state.policies,
                          sweep_interval_s=settings.sweep_interval_s)
              if settings.run_worker else None)
    background = [asyncio.create_task(_replay_spool(observations))]
    if worker is not None:
        background.append(asyncio.create_task(worker.async_run()))
    try:
        yield
    finally:
        for task in background:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if worker is not None:
            await close_worker(worker)
        await state.observer.drain()
        await _freeze_on_shutdown(manager)
        await manager.close()
        await state.proxy.close()
        await state.providers.aclose()
        await state.relay_client.aclose()
        with contextlib.suppress(Exception):
            await warm
        await asyncio.to_thread(store.close)
        await queue.aclose()
        host_server.should_exit = True
        await state.host_server_task
        with contextlib.suppress(FileNotFoundError):
            os.unlink(host_socket)
        await redis.aclose()


async def _replay_spool(observations: Observations) -> None:
    """Observations spooled while Redis was unreachable go in as soon as it is back."""
    while True:
        await asyncio.sleep(SPOOL_REPLAY_S)
        try:
            await observations.replay_spool()
        except (RedisError, OSError) as exc:
            log.warning("spooled observations wait: %s", exc)


class _NestedServer(uvicorn.Server):
    """A second server in the same process: the main one owns the signal handlers."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


async def _serve_host_socket(app: FastAPI, path: Path, settings: Settings) -> uvicorn.Server:
    os.makedirs(path.parent, mode=0o711, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    limits = HostLimits(max_body_bytes=settings.host_max_body_bytes,
                        header_timeout_s=settings.host_header_timeout_s,
                        idle_timeout_s=settings.host_idle_timeout_s,
                        max_concurrent=settings.host_max_concurrent)
    server = _NestedServer(uvicorn.Config(
        create_host_app(app, limits), uds=str(path), lifespan="off", log_level="warning",
        access_log=False, http=protocol_for(limits), timeout_keep_alive=5,
        h11_max_incomplete_event_size=limits.max_header_bytes))
    task = asyncio.create_task(server.serve())
    app.state.host_server_task = task
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    os.chmod(path, 0o666)  # box uids connect to it; box tokens are the gate
    return server


async def _freeze_on_shutdown(manager: BoxManager) -> None:
    """Freeze the boxes this process runs, so a restart finds them consistent and wakes them
    on demand. Whatever the budget does not cover is stopped and marked failed by close()."""
    running = [b for b in await manager.list()
               if b.host == manager.host and b.state in (BoxState.RUNNING, BoxState.PAUSED)]

    async def freeze(box: BoxRecord) -> None:
        with contextlib.suppress(BoxError):
            await manager.freeze(box.id)

    if running:
        log.info("freezing %d running boxes before shutdown", len(running))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*(freeze(b) for b in running)),
                                   SHUTDOWN_FREEZE_BUDGET_S)
