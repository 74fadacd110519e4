"""The app factory: builds the FastAPI gateway and, in its lifespan, everything it serves with
(Redis client, box runtime, tenants, agent proxy, host services socket, in-process worker)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Generator
from pathlib import Path

import uvicorn
from fastapi import FastAPI
from redis.asyncio import Redis
from starlette.types import Message, Receive, Scope, Send

import tenant_agent
from boxes import BoxError, BoxManager, BoxState, RuntimeConfig
from boxes.models import BoxRecord
from gateway import errors
from gateway.errors import ApiError
from gateway.hostsvc import create_host_app
from gateway.proxy import AgentProxy
from gateway.routes import agent, boxes, exec, files, health, knowledge, operator, tenants
from gateway.security import box_token, operator_key, server_secret
from gateway.settings import Settings
from gateway.tenants import Tenants
from workers.settings import make_worker

log = logging.getLogger("burrow.gateway")

AGENT_DIR = "opt/burrow/tenant_agent"
# -I -S: no site, no environment, no user paths: the agent is stdlib-only and starts fast.
DEFAULT_AGENT_COMMAND = ["/usr/bin/python3", "-I", "-S", f"/{AGENT_DIR}/__main__.py"]
SHUTDOWN_FREEZE_BUDGET_S = 60.0


def create_app(settings: Settings | None = None,
               on_ready: Callable[[FastAPI], Awaitable[None]] | None = None) -> FastAPI:
    """The gateway. `on_ready` runs once everything is up, before the first request."""
    settings = settings or Settings()
    if settings.redis_url is None:
        raise ValueError("create_app needs settings.redis_url (burrow serve starts an embedded "
                         "Redis and sets it)")

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with _services(app, settings):
            if on_ready is not None:
                await on_ready(app)
            yield

    app = BurrowApp(title="Burrow", version="0.1.0", lifespan=lifespan,
                  description="Persistent per-tenant Linux boxes that freeze when idle. "
                              "Operations tagged `planned` answer 501 in this build.",
                  responses=errors.COMMON_RESPONSES)
    app.state.settings = settings
    errors.install(app)
    for module in (health, tenants, boxes, exec, files, agent, knowledge, operator):
        app.include_router(module.router)
    return app


class BurrowApp(FastAPI):
    """The gateway app; tenant agent requests take a fast path around FastAPI's machinery,
    and no request body may exceed the configured size (with room for JSON framing)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if await agent.serve_fast(self, scope, receive, send):
            return
        if scope["type"] == "http":
            limit = self.state.settings.max_body_bytes + _JSON_FRAMING
            declared = dict(scope["headers"]).get(b"content-length", b"")
            if declared.isdigit() and int(declared) > limit:
                await errors.too_large(limit)(scope, receive, send)
                return
            receive = _bounded(receive, limit)
        await super().__call__(scope, receive, send)


_JSON_FRAMING = 1024 * 1024


def _bounded(receive: Receive, limit: int) -> Receive:
    """`receive`, failing with 413 once the body passes `limit` bytes."""
    seen = 0

    async def bounded() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise ApiError(413, "too_large", f"the request body is over {limit} bytes")
        return message

    return bounded


@contextlib.asynccontextmanager
async def _services(app: FastAPI, settings: Settings) -> AsyncIterator[None]:
    data_dir = settings.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    assert settings.redis_url is not None
    redis = Redis.from_url(settings.redis_url)
    key, created = operator_key(data_dir, settings.operator_key.get_secret_value()
                                if settings.operator_key else None)
    secret = server_secret(data_dir)
    app.state.redis, app.state.operator_key, app.state.secret = redis, key, secret
    app.state.operator_key_created = created

    config = RuntimeConfig(
        data_dir=data_dir, launcher_pool=settings.launcher_pool, uid_base=settings.uid_base,
        lock_wait_s=settings.wake_wait_s,
        image_extras={AGENT_DIR: Path(tenant_agent.__file__).parent},
        start_env=lambda box: {"BURROW_BOX_TOKEN": box_token(secret, box.id)})
    host_socket = config.run_dir / f"host-{os.getpid()}.sock"
    config = dataclasses.replace(config, host_socket=host_socket)
    host_server = await _serve_host_socket(app, host_socket)
    manager = await BoxManager.open(config, redis)
    app.state.manager = manager
    app.state.tenants = Tenants(redis, manager, settings.agent_command or DEFAULT_AGENT_COMMAND)
    app.state.proxy = AgentProxy()
    worker = make_worker(settings.redis_url, manager) if settings.run_worker else None
    worker_task = asyncio.create_task(worker.async_run()) if worker else None
    try:
        yield
    finally:
        if worker is not None and worker_task is not None:
            worker_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker_task
            await worker.close()
        await _freeze_on_shutdown(manager)
        await manager.close()
        await app.state.proxy.close()
        host_server.should_exit = True
        await app.state.host_server_task
        with contextlib.suppress(FileNotFoundError):
            os.unlink(host_socket)
        await redis.aclose()


class _NestedServer(uvicorn.Server):
    """A second server in the same process: the main one owns the signal handlers."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


async def _serve_host_socket(app: FastAPI, path: Path) -> uvicorn.Server:
    os.makedirs(path.parent, mode=0o711, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    server = _NestedServer(uvicorn.Config(create_host_app(app), uds=str(path), lifespan="off",
                                          log_level="warning", access_log=False))
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
