"""The Core: every collaborator of Burrow's domain, built once and connected in one place —
Redis and its keys, the box runtime, tenants and who holds which key, the knowledge base,
the observation pipeline and the job queue, policy, models and budgets, agent runs, stats.

It serves nothing and runs no worker: each runner builds one with `core.open(settings)` and
runs its own servers and workers around it — the gateway app's lifespan (the HTTP app, the
host services socket, and in `burrow serve` the worker too: gateway/app.py) and `burrow
worker` (workers/runner.py). The one choice a runner makes is whether this process runs
boxes (a gateway) or only reaches the gateways' boxes through their sockets (a worker).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import os
from collections.abc import Coroutine
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from arq import ArqRedis, create_pool
from arq.connections import RedisSettings
from redis.asyncio import Redis
from redis.exceptions import RedisError

from boxes import BoxError, BoxManager, BoxState, RuntimeConfig
from boxes.hosts import HostLease, HostLoad
from boxes.models import BoxRecord
from boxes.placement import expected_mb
from boxes.servicehttp import ServiceClient
from core import quotas
from core.authz import Authenticator
from core.episodes import PairEpisodes
from core.history import History
from core.hosts import host_lease
from core.inbox import DEFAULT_AGENT_COMMAND, GIT_RELAY_PORT, HARNESS_COMMAND, image_extras
from core.insights import Insights
from core.keys import Keys
from core.observations import HeldInSnapshots, Observations
from core.parsing import PairParses, ProcessParser, chained
from core.pipeline import Pipeline, Prepare
from core.policy import Policies
from core.remote import Boxes, RemoteBoxes
from core.runs import AgentRuns
from core.security import box_token, operator_key, server_secret
from core.settings import Settings
from core.stats import Collector
from core.tenants import HOME_LABEL, Tenants
from core.transport import transport_key
from core.vectors import PairVectors
from knowledge.base import KnowledgeBase
from knowledge.child import Child, off_loop
from knowledge.embedder import ProcessEmbedder
from knowledge.vectors import VectorStore, open_store
from models.budgets import ModelBudgets
from models.metered import OperatorModel
from models.providers import Providers
from models.relay import Relay, harnesses
from models.servers import LocalModels
from tenant_agent.memory.server import STATE_DIR as AGENT_STATE_DIR

log = logging.getLogger("burrow.core")


def _preparer(*steps: Prepare | None) -> Prepare | None:
    """What the worker adds to the pairs it delivers (the host's vectors, its judgement of
    episodes), each step beside the others (each asks a child process of its own)."""
    chosen = [step for step in steps if step is not None]
    if not chosen:
        return None

    async def prepare(pairs: list[dict[str, Any]]) -> None:
        await asyncio.gather(*(step(pairs) for step in chosen))

    return prepare

SHUTDOWN_FREEZE_BUDGET_S = 60.0
EMBEDDING_DIM = 384
SPOOL_REPLAY_S = 5.0


def _start_env(secret: bytes, box: BoxRecord) -> dict[str, str]:
    """What each box start gets and no record keeps: its token; the git relay's port."""
    env = {"BURROW_BOX_TOKEN": box_token(secret, box.id)}
    if (box.meta.get("git") or {}).get("relay"):
        env["BURROW_RELAY_PORT"] = str(GIT_RELAY_PORT)
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


def _runtime(settings: Settings, data_dir: Path, secret: bytes, policies: Policies,
             runs_boxes: bool) -> RuntimeConfig:
    config = RuntimeConfig(
        data_dir=data_dir, runtime_root=settings.runtime_dir,
        launcher_pool=settings.launcher_pool if runs_boxes else 0,
        uid_base=settings.uid_base, lock_wait_s=settings.wake_wait_s,
        image_extras=image_extras(),
        egress_dns=settings.egress_dns, start_env=lambda box: _start_env(secret, box),
        start_policy=quotas.start_policy(policies), ro_binds=_harness_binds(),
        # Burrow's own agent reads only its state and its log before the box's large files
        # are written (a replacement agent may read anything: its box is restored whole).
        lazy_restore_services=(() if settings.agent_command else
                               (tuple(DEFAULT_AGENT_COMMAND),)),
        eager_restore_dirs=("workspace/.burrow", AGENT_STATE_DIR.strip("/")),
        store_url=settings.store_url, s3_endpoint=settings.s3_endpoint,
        s3_region=settings.s3_region, store_cache_bytes=settings.store_cache_bytes,
        store_fetch_parallel=settings.store_fetch_parallel, store_format=settings.store_format)
    if not runs_boxes:
        return config
    # the host services socket every box of this process reaches (its runner serves it)
    return dataclasses.replace(config, host_socket=config.run_dir / f"host-{os.getpid()}.sock")


@dataclass
class Core:
    settings: Settings
    keys: Keys
    redis: Redis
    secret: bytes
    operator_key: str
    operator_key_created: bool
    manager: Boxes
    store: VectorStore
    kb: KnowledgeBase
    observations: Observations
    queue: ArqRedis
    pipeline: Pipeline
    policies: Policies
    budgets: ModelBudgets
    tenants: Tenants
    authenticator: Authenticator
    insights: Insights
    providers: Providers
    relay: Relay
    runs: AgentRuns
    vectors: PairVectors
    stats: Collector
    history: History  # the last hours, for the operator's charts
    service_client: ServiceClient  # the one client of boxes' service sockets
    local_models: LocalModels | None = None
    lease: HostLease | None = None  # this process as a box host of a cluster (burrow host)
    # what tenants' collected execs hold in this process (max_tenant_exec_output_mb)
    exec_output: quotas.OutputMeter = field(default_factory=quotas.OutputMeter)
    closed: bool = False  # its knowledge base closed: a box's last calls are told to retry
    _warming: list[asyncio.Task[object]] = field(default_factory=list)  # models loading
    _background: list[asyncio.Task[None]] = field(default_factory=list)

    @classmethod
    async def open(cls, settings: Settings, *, runs_boxes: bool = True, host: bool = False,
                   remote: bool = False, local_models: LocalModels | None = None) -> Core:
        """Everything, connected. `runs_boxes`: this process runs boxes (recovering those
        it ran before, keeping launchers ready, freezing them when it closes) and its runner
        serves their host socket at `host_socket`; otherwise it reaches the boxes other
        processes of this machine run through their sockets. `host`: it runs them as a box
        host of a cluster (`burrow host`: registered with a lease, its writes fenced).
        `remote`: it runs none and reaches a cluster's boxes through their hosts (`burrow
        gateway`, `burrow worker`: core/remote.py)."""
        data_dir = settings.data_dir.resolve()
        data_dir.mkdir(parents=True, exist_ok=True)
        assert settings.redis_url is not None
        redis = Redis.from_url(settings.redis_url)
        key, created = operator_key(data_dir, settings.operator_key.get_secret_value()
                                    if settings.operator_key else None)
        secret = server_secret(data_dir, settings.server_secret.get_secret_value()
                               if settings.server_secret else None)
        keys = Keys(settings.redis_prefix)
        policies = Policies(redis, keys)
        runs_boxes = runs_boxes and not remote
        config = _runtime(settings, data_dir, secret, policies, runs_boxes)
        lease: HostLease | None = None
        manager: Boxes
        if remote:
            manager = RemoteBoxes(config, redis, keys, transport_key(secret))
            await manager.start()
        elif host:
            lease = host_lease(settings, redis, keys)
            await lease.register()
            lease.start()  # renewed from now on: what follows may take longer than it
            manager = await BoxManager.open(config, redis, keys, lease=lease)
            lease.load = partial(host_load, manager)
        elif runs_boxes:
            manager = await BoxManager.open(config, redis, keys)
        else:  # it collects the store's garbage: a store that cannot work stops it too
            manager = BoxManager(config, redis, keys)
            await asyncio.to_thread(manager.store.check)
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
        parses = PairParses(ProcessParser(), embedder if settings.observe_embeddings else None,
                            settings.embed_model) if settings.observe_parses else None
        # the parse before the vectors (they embed what the parse reads); the host's
        # judgement of episodes beside both
        prepare = _preparer(chained(parses.attach if parses else None,
                                    vectors.attach if settings.observe_embeddings else None),
                            PairEpisodes(kb.reader).attach if settings.observe_episodes
                            else None)
        client = ServiceClient()
        observations = Observations(redis, data_dir / "spool", keys=keys,
                                    backlog_max=settings.observe_backlog_max, client=client,
                                    deadline_s=settings.observe_deadline_s,
                                    backoff_max_s=settings.observe_backoff_max_s,
                                    durable=host or remote)
        if isinstance(manager, BoxManager) and host:
            manager.durability = HeldInSnapshots(observations, HOME_LABEL)
        history = History(redis, keys)
        if isinstance(manager, BoxManager):  # wakes are recorded where they happen
            manager.on_transition = history.transition
        queue = await create_pool(RedisSettings.from_dsn(settings.redis_url),
                                  default_queue_name=keys.queue())
        tenants = Tenants(redis, manager, kb, observations, policies,
                          settings.agent_command or DEFAULT_AGENT_COMMAND, budgets, keys)
        core = cls(
            settings=settings, keys=keys, redis=redis, secret=secret, operator_key=key,
            operator_key_created=created, manager=manager, store=store, kb=kb,
            observations=observations, queue=queue,
            pipeline=Pipeline(observations, queue, keys, enabled=settings.observe,
                              prepare=prepare,
                              model_for=partial(extraction_model, settings, policies)),
            policies=policies, budgets=budgets, tenants=tenants,
            authenticator=Authenticator(tenants, manager.registry, secret, key),
            insights=Insights(kb, budgets, policies),
            providers=providers, relay=Relay(providers),
            # A run whose model no provider could serve (unknown, no key) fails first.
            runs=AgentRuns(redis, keys, manager, HARNESS_COMMAND, check_model=providers.get),
            vectors=vectors,
            stats=Collector(redis, keys, manager, tenants, observations, kb, budgets,
                            settings.sweep_interval_s),
            history=history, service_client=client, local_models=local_models, lease=lease)
        core._warm(off_loop(embedder.embed, ["warm up"]))
        if parses is not None and runs_boxes:  # a process that delivers: its first batch
            core._warm(off_loop(parses.parser.parse, ["I warm up."]))
        core._background.append(asyncio.create_task(core._replay_spool()))
        return core

    @property
    def host_socket(self) -> Path | None:
        """Where this process's boxes reach the host services (None: it runs no boxes)."""
        return self.manager.config.host_socket

    def warm_names(self) -> None:
        """Load the name detector now (the contribute job scrubs with it), so that the first
        job does not wait: a worker's runner asks for it."""
        self._warm(off_loop(self.kb.names.find, "Warm Up"))

    def _warm(self, loading: Coroutine[Any, Any, object]) -> None:
        self._warming.append(asyncio.create_task(loading))

    async def agent_model(self, tenant: str) -> str | None:
        """The model `tenant`'s agent answers through: its policy's, else BURROW_AGENT_MODEL."""
        return await agent_model(self.settings, self.policies, tenant)

    async def aclose(self) -> None:
        """Close everything; a process that runs boxes freezes them first, so a restart finds
        them consistent. Its runner has stopped its worker before, and stops the host socket
        after."""
        if not all(task.done() for task in self._warming):
            # Stopping while the models still load: end their processes rather than wait
            # (under load, a minute); the next use starts them again.
            Child.interrupt_all()
        for task in self._background:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.pipeline.drain()
        if isinstance(self.manager, BoxManager) and self.host_socket is not None:
            await _freeze_on_shutdown(self.manager)  # it runs boxes: they freeze
        if self.host_socket is not None or isinstance(self.manager, RemoteBoxes):
            await self.manager.close()
        if self.lease is not None:  # its boxes are frozen: it leaves the cluster at once
            with contextlib.suppress(RedisError, OSError):
                await self.lease.release()
        await self.service_client.close()
        await self.providers.aclose()
        for loading in self._warming:
            with contextlib.suppress(Exception):
                await loading
        self.closed = True
        await asyncio.to_thread(self.store.close)
        await self.queue.aclose()
        await self.history.drain()
        await self.redis.aclose()

    async def _replay_spool(self) -> None:
        """Observations spooled while Redis was unreachable go in as soon as it is back."""
        while True:
            await asyncio.sleep(SPOOL_REPLAY_S)
            try:
                await self.observations.replay_spool()
            except (RedisError, OSError) as exc:
                log.warning("spooled observations wait: %s", exc)


async def host_load(manager: BoxManager) -> HostLoad:
    """What this box host runs now, for its lease's renewals (placement balances on it): its
    boxes, and the memory they take (their cgroups'; a box still being started counts what
    placement expects of it: boxes/placement.py)."""
    boxes = [b for b in await manager.list()
             if b.host == manager.host and b.state in (BoxState.RUNNING, BoxState.PAUSED,
                                                       BoxState.WAKING, BoxState.CREATING)]
    taken = 0
    for box, usage in zip(boxes, await manager.usages(boxes), strict=True):
        starting = box.state in (BoxState.WAKING, BoxState.CREATING)
        taken += (expected_mb(box.limits.memory_mb) if starting
                  else math.ceil(usage.memory_bytes / (1 << 20)))
    return HostLoad(boxes=len(boxes), memory_used_mb=taken)


async def agent_model(settings: Settings, policies: Policies, tenant: str) -> str | None:
    """`tenant`'s agent model: its policy's, else BURROW_AGENT_MODEL."""
    return await policies.agent_model(tenant) or settings.agent_model


async def extraction_model(settings: Settings, policies: Policies, tenant: str) -> str | None:
    """The model `tenant`'s agent distils memories with (named with each delivery)."""
    return settings.extraction_model_for(await agent_model(settings, policies, tenant))


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
