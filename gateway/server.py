"""Running the server: `burrow serve` (all in one), `burrow gateway`, `burrow worker`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Awaitable, Callable

import uvicorn
from fastapi import FastAPI
from redis.asyncio import Redis
from redis.exceptions import RedisError

from boxes import HostUnsupportedError, disk, hostdirs
from core import logs
from core.embedded_redis import EmbeddedRedis
from core.keys import Keys
from core.settings import Settings
from gateway import frontdoor
from gateway.app import create_app
from gateway.services import Services
from models.servers import LocalModelError, LocalModels

log = logging.getLogger("burrow")
DEMO_TENANT = "demo"


def _announce(url: str, settings: Settings) -> Callable[[FastAPI], Awaitable[None]]:
    async def on_ready(app: FastAPI) -> None:
        await _print_welcome(app, url, settings)
    return on_ready


async def _print_welcome(app: FastAPI, url: str, settings: Settings) -> None:
    """The URL, and on first start the operator key and a demo tenant with its key."""
    lines = [f"Burrow is serving at {url}  (API docs: {url}/docs)"]
    data_dir = settings.data_dir.resolve()
    services: Services = app.state.services
    if services.operator_key_created:
        lines.append(f"operator key (shown once; also in {data_dir / 'operator.key'}, 0600):")
        lines.append(f"    {services.operator_key}")
        tenants = services.tenants
        if await tenants.get(DEMO_TENANT) is None:
            record, key = await tenants.create(DEMO_TENANT, None)
            lines.append(f"demo tenant {record.id!r} (home box {record.home_box_id}); its key:")
            lines.append(f"    {key}")
            lines.append(f"try: curl -H 'Authorization: Bearer {key}' "
                         f"{url}/v1/tenants/{DEMO_TENANT}/agent/hello")
    elif settings.operator_key is None:
        lines.append(f"operator key: in {data_dir / 'operator.key'}")
    if settings.local_model:
        lines.append("local models for agent runs: " + ", ".join(
            f"local/{alias} (llama.cpp at {url})"
            for alias, url in settings.local_model_routes.items()))
    print("\n".join(lines), flush=True)


def _redis_url(settings: Settings) -> tuple[str, EmbeddedRedis | None]:
    if settings.redis_url:
        return settings.redis_url, None
    embedded = EmbeddedRedis(settings.data_dir.resolve() / "redis")
    return embedded.start(), embedded


def serve(settings: Settings, host: str, port: int, *, with_worker: bool = True) -> None:
    """The gateway (and, unless told otherwise, the worker) in this process."""
    logs.configure(settings.log_format)
    try:  # what would otherwise fail inside the app's start-up, as one line
        disk.check_host()
        hostdirs.check_traversable(settings.runtime_dir)
    except HostUnsupportedError as exc:
        sys.exit(f"error: {exc.message}")
    local = _local_model(settings)
    redis_url, embedded = _redis_url(settings)
    settings = settings.model_copy(update={"redis_url": redis_url, "run_worker": with_worker})
    if local is not None:
        settings = settings.model_copy(update={"local_model_url": local.url,
                                               "local_model_routes": local.routes})
    url = f"http://{host}:{port}"
    app = create_app(settings, on_ready=_announce(url, settings), local_models=local)
    try:
        # The front door's protocol: connections, header size and deadline (the rest of the
        # door is in the app, gateway/frontdoor.py).
        uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False,
                    proxy_headers=False, server_header=False, timeout_graceful_shutdown=90,
                    http=frontdoor.protocol_for(frontdoor.FrontLimits.of(settings)))
    finally:
        if embedded is not None:
            embedded.stop()
        if local is not None:
            local.stop()


def _local_model(settings: Settings) -> LocalModels | None:
    """The bundled local model server, when asked for and no other is set (a child process,
    started from this main thread so that it dies with it)."""
    if not settings.local_model or settings.local_model_url:
        return None
    models = LocalModels(settings.data_dir.resolve() / "local-model")
    try:
        models.start()
    except LocalModelError as exc:
        sys.exit(f"error: {exc}")
    return models


def worker_alive(settings: Settings) -> tuple[bool, str]:
    """Whether a worker recorded its health in Redis lately, and what it recorded."""
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


def run_worker(settings: Settings) -> None:
    """A standalone arq worker against REDIS_URL (scale-out)."""
    logs.configure(settings.log_format)
    if not settings.redis_url or not settings.qdrant_url:
        sys.exit("burrow worker needs REDIS_URL and QDRANT_URL (the Redis and Qdrant the "
                 "gateways use)")
    asyncio.run(_worker(settings))


async def _worker(settings: Settings) -> None:
    # The worker runs no boxes itself: it talks to the gateways' boxes through their sockets
    # (same host, same data dir), the registry and the snapshot store.
    services = await Services.open(settings, "worker")
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    task = asyncio.create_task(services.run_worker())
    await stop.wait()
    await services.aclose()  # stops the worker's loop between two polls; the task then ends
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
