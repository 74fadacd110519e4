"""Everything Burrow serves with, as one typed object built in one place: Redis, keys, the
box runtime, tenants, the agent proxy, the knowledge base, the observation pipeline, the job
queue, policy, models and budgets, and — in the gateway — the host services socket and (in
`burrow serve`) the in-process worker. `burrow serve`, `burrow gateway` and `burrow worker`
all open it with `Services.open(settings, role)` and close it with `aclose()`; routes receive
it through `ServicesDep` (gateway/deps.py), and it is the only thing on the app's state."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
from collections.abc import Generator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Literal

import httpx
import uvicorn
from arq import ArqRedis, create_pool
from arq.connections import RedisSettings
from arq.worker import Worker
from redis.asyncio import Redis
from redis.exceptions import RedisError

import tenant_agent
from boxes import BoxError, BoxManager, BoxState, RuntimeConfig
from boxes.models import BoxRecord
from boxes.servicehttp import ServiceClient
from core import quotas
from core.keys import Keys
from core.observations import Observations
from core.pipeline import Pipeline
from core.policy import Policies
from core.runs import AgentRuns
from core.security import box_token, operator_key, server_secret
from core.settings import Settings
from core.tenants import Tenants
from core.vectors import PairVectors
from gateway import gitrelay
from gateway.metrics import Metrics
from gateway.proxy import AgentProxy
from knowledge.base import KnowledgeBase
from knowledge.child import Child
from knowledge.embedder import ProcessEmbedder
from knowledge.vectors import VectorStore, open_store
from models.budgets import ModelBudgets
from models.metered import OperatorModel
from models.providers import Providers
from models.relay import Relay, harnesses
from models.servers import LocalModels
from tenant_agent.server import STATE_DIR as AGENT_STATE_DIR
from workers.worker import close_worker, make_worker

log = logging.getLogger("burrow.gateway")

AGENT_DIR = "opt/burrow/tenant_agent"
# -I -S: no site, no environment, no user paths: the agent is stdlib-only and starts fast.
DEFAULT_AGENT_COMMAND = ["/usr/bin/python3", "-I", "-S", f"/{AGENT_DIR}/__main__.py"]
HARNESS_COMMAND = ["/usr/bin/python3", "-I", "-S", f"/{AGENT_DIR}/harness.py"]
SHUTDOWN_FREEZE_BUDGET_S = 60.0
EMBEDDING_DIM = 384
SPOOL_REPLAY_S = 5.0

Role = Literal["gateway", "worker"]


def _start_env(secret: bytes, box: BoxRecord) -> dict[str, str]:
    """What each box start gets and no record keeps: its token; the git relay's port."""
    env = {"BURROW_BOX_TOKEN": box_token(secret, box.id)}
    if (box.meta.get("git") or {}).get("relay"):
        env["BURROW_RELAY_PORT"] = str(gitrelay.RELAY_PORT)
    return env


def _harness_binds() -> tuple[tuple[Path, str], ...]:
    """The agent CLIs installed on this host, bound read-only into every box (a box that
    never runs one pays three bind mounts)."""
    found = [name for name in harnesses.HARNESSES if harnesses.installed(name) is not None]
    try:
        return tuple(harnesses.mounts(found))
    except harnesses.HarnessError as exc:
        log.warning("agent CLIs left out of boxes: %s", exc)
        return ()


@dataclass
class Services:
    settings: Settings
    keys: Keys
    redis: Redis
    secret: bytes
    operator_key: str
    operator_key_created: bool
    manager: BoxManager
    store: VectorStore
    kb: KnowledgeBase
    observations: Observations
    queue: ArqRedis
    pipeline: Pipeline
    policies: Policies
    budgets: ModelBudgets
    tenants: Tenants
    providers: Providers
    relay: Relay
    runs: AgentRuns
    proxy: AgentProxy
    metrics: Metrics
    relay_client: httpx.AsyncClient
    vectors: PairVectors
    local_models: LocalModels | None = None
    host_socket: Path | None = None
    # what tenants' collected execs hold in this process (max_tenant_exec_output_mb)
    exec_output: quotas.OutputMeter = field(default_factory=quotas.OutputMeter)
    _host_server: uvicorn.Server | None = None
    _host_task: asyncio.Task[None] | None = None
    _worker: Worker | None = None
    _background: list[asyncio.Task[None]] = field(default_factory=list)
    _warm: asyncio.Task[object] | None = None

    @classmethod
    async def open(cls, settings: Settings, role: Role = "gateway",
                   local_models: LocalModels | None = None) -> Services:
        """Everything, connected and started. A worker runs no boxes of its own (it reaches
        the gateways' boxes through their sockets) and serves no host socket."""
        data_dir = settings.data_dir.resolve()
        data_dir.mkdir(parents=True, exist_ok=True)
        assert settings.redis_url is not None
        redis = Redis.from_url(settings.redis_url)
        key, created = operator_key(data_dir, settings.operator_key.get_secret_value()
                                    if settings.operator_key else None)
        secret = server_secret(data_dir)
        keys = Keys(settings.redis_prefix)
        policies = Policies(redis, keys)
        config = RuntimeConfig(
            data_dir=data_dir, runtime_root=settings.runtime_dir,
            launcher_pool=settings.launcher_pool if role == "gateway" else 0,
            uid_base=settings.uid_base, lock_wait_s=settings.wake_wait_s,
            image_extras={AGENT_DIR: Path(tenant_agent.__file__).parent},
            egress_dns=settings.egress_dns, start_env=lambda box: _start_env(secret, box),
            start_policy=quotas.start_policy(policies), ro_binds=_harness_binds(),
            # Burrow's own agent reads only its state and its log before the box's large files
            # are written (a replacement agent may read anything: its box is restored whole).
            lazy_restore_services=(() if settings.agent_command else
                                   (tuple(DEFAULT_AGENT_COMMAND),)),
            eager_restore_dirs=("workspace/.burrow", AGENT_STATE_DIR.strip("/")))
        host_socket = config.run_dir / f"host-{os.getpid()}.sock" if role == "gateway" else None
        if host_socket is not None:
            config = dataclasses.replace(config, host_socket=host_socket)
        manager = (await BoxManager.open(config, redis, keys) if role == "gateway"
                   else BoxManager(config, redis, keys))
        store = await asyncio.to_thread(open_store, settings.qdrant_url,
                                        data_dir / "knowledge", EMBEDDING_DIM)
        embedder = ProcessEmbedder(settings.embed_model)
        budgets = ModelBudgets(redis, keys)
        providers = Providers(settings, local_servers=local_models)
        kb = KnowledgeBase(
            store, embedder, redis, secret, k=settings.k_anonymity, keys=keys,
            model=OperatorModel(settings.knowledge_model, providers, budgets, policies)
            if settings.knowledge_model else None,
            model_distils=settings.knowledge_model_distils)
        vectors = PairVectors(embedder, settings.embed_model)
        client = ServiceClient()  # the one client of boxes' service sockets
        observations = Observations(redis, data_dir / "spool", keys=keys,
                                    backlog_max=settings.observe_backlog_max, client=client,
                                    deadline_s=settings.observe_deadline_s,
                                    backoff_max_s=settings.observe_backoff_max_s)
        queue = await create_pool(RedisSettings.from_dsn(settings.redis_url),
                                  default_queue_name=keys.queue())
        metrics = Metrics()
        manager.on_transition = metrics.transition
        manager.on_phase = metrics.phase
        services = cls(
            settings=settings, keys=keys, redis=redis, secret=secret, operator_key=key,
            operator_key_created=created, manager=manager, store=store, kb=kb,
            observations=observations, queue=queue,
            pipeline=Pipeline(observations, queue, keys, enabled=settings.observe,
                              prepare=vectors.attach if settings.observe_embeddings else None,
                              model_for=partial(_extraction_model, settings, policies)),
            vectors=vectors,
            policies=policies, budgets=budgets,
            tenants=Tenants(redis, manager, kb, observations, policies,
                            settings.agent_command or DEFAULT_AGENT_COMMAND, budgets, keys),
            providers=providers, relay=Relay(providers),
            # A run whose model no provider could serve (unknown, no key) fails first.
            runs=AgentRuns(redis, keys, manager, HARNESS_COMMAND, check_model=providers.get),
            proxy=AgentProxy(client), metrics=metrics,
            relay_client=httpx.AsyncClient(timeout=httpx.Timeout(300.0, connect=10.0)),
            local_models=local_models, host_socket=host_socket)
        services._warm = asyncio.create_task(services._warm_up(
            names=role == "worker" or settings.run_worker))
        if host_socket is not None:
            await services._serve_host_socket(host_socket)
        services._background.append(asyncio.create_task(services._replay_spool()))
        if role == "worker" or settings.run_worker:
            services._worker = services.worker()
            if role == "gateway":  # burrow serve: the worker runs in this process too
                services._background.append(asyncio.create_task(services._worker.async_run()))
        return services

    async def _warm_up(self, names: bool) -> None:
        """Load the embedding model now, and where the worker runs the name detector (the
        contribute job scrubs with it), so that the first request or job does not wait."""
        await asyncio.to_thread(self.kb.embedder.embed, ["warm up"])
        if names:
            await asyncio.to_thread(self.kb.names.find, "Warm Up")

    async def agent_model(self, tenant: str) -> str | None:
        """The model `tenant`'s agent answers through: its policy's, else BURROW_AGENT_MODEL."""
        return await _agent_model(self.settings, self.policies, tenant)

    async def run_worker(self) -> None:
        """Run this process's worker until cancelled (`burrow worker`)."""
        assert self._worker is not None, "open the services with role='worker'"
        await self._worker.async_run()

    def worker(self) -> Worker:
        return make_worker(self.settings.redis_url or "", keys=self.keys, manager=self.manager,
                           pipeline=self.pipeline, kb=self.kb, policies=self.policies,
                           standing=self.tenants.standing,
                           sweep_interval_s=self.settings.sweep_interval_s)

    async def aclose(self) -> None:
        if self._warm is not None and not self._warm.done():
            # Stopping while the models still load: end their processes rather than wait
            # (under load, a minute); the next use starts them again.
            Child.interrupt_all()
        if self._worker is not None:  # first: its loop ends between two polls, not inside one
            await close_worker(self._worker)
        for task in self._background:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.pipeline.drain()
        if self.host_socket is not None:  # a gateway: its boxes freeze, so a restart
            await _freeze_on_shutdown(self.manager)  # finds them consistent
            await self.manager.close()
        await self.proxy.client.close()
        await self.providers.aclose()
        await self.relay_client.aclose()
        if self._warm is not None:
            with contextlib.suppress(Exception):
                await self._warm
        await asyncio.to_thread(self.store.close)
        await self.queue.aclose()
        if self._host_server is not None and self._host_task is not None:
            self._host_server.should_exit = True
            await self._host_task
        if self.host_socket is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.host_socket)
        await self.redis.aclose()

    async def _replay_spool(self) -> None:
        """Observations spooled while Redis was unreachable go in as soon as it is back."""
        while True:
            await asyncio.sleep(SPOOL_REPLAY_S)
            try:
                await self.observations.replay_spool()
            except (RedisError, OSError) as exc:
                log.warning("spooled observations wait: %s", exc)

    async def _serve_host_socket(self, path: Path) -> None:
        from gateway.hostguard import HostLimits, connection_ceiling, protocol_for
        from gateway.hostsvc import create_host_app

        os.makedirs(path.parent, mode=0o711, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        s = self.settings
        limits = HostLimits(max_body_bytes=s.host_max_body_bytes,
                            header_timeout_s=s.host_header_timeout_s,
                            idle_timeout_s=s.host_idle_timeout_s,
                            max_concurrent=s.host_max_concurrent,
                            max_connections_per_uid=s.host_max_connections_per_box,
                            max_connections=connection_ceiling(s.host_max_connections),
                            max_box_buffered_bytes=s.host_max_box_buffered_bytes,
                            max_buffered_bytes=s.host_max_buffered_bytes)
        server = _NestedServer(uvicorn.Config(
            create_host_app(self, limits), uds=str(path), lifespan="off", log_level="warning",
            access_log=False, http=protocol_for(limits), timeout_keep_alive=5,
            h11_max_incomplete_event_size=limits.max_header_bytes))
        task = asyncio.create_task(server.serve())
        self._host_server, self._host_task = server, task
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        os.chmod(path, 0o666)  # box uids connect to it; their uid and token are the gate


class _NestedServer(uvicorn.Server):
    """A second server in the same process: the main one owns the signal handlers."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


async def _agent_model(settings: Settings, policies: Policies, tenant: str) -> str | None:
    """`tenant`'s agent model: its policy's, else BURROW_AGENT_MODEL."""
    return await policies.agent_model(tenant) or settings.agent_model


async def _extraction_model(settings: Settings, policies: Policies, tenant: str) -> str | None:
    """The model `tenant`'s agent distils memories with (named with each delivery)."""
    return settings.extraction_model_for(await _agent_model(settings, policies, tenant))


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
