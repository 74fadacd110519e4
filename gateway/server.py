"""Running the gateway: `burrow serve` (all in one: the gateway, its worker, an embedded Redis)
and `burrow gateway` (scale-out; `burrow worker` is workers/runner.py)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Awaitable, Callable

import uvicorn
from fastapi import FastAPI

from boxes import HostUnsupportedError, disk, hostdirs
from core import logs
from core.embedded_redis import EmbeddedRedis
from core.previews import DEFAULT_PORT_OFFSET
from core.services import Core
from core.settings import Settings
from gateway import frontdoor
from gateway.app import create_app
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
    core: Core = app.state.core
    if core.operator_key_created:
        lines.append(f"operator key (shown once; also in {data_dir / 'operator.key'}, 0600):")
        lines.append(f"    {core.operator_key}")
        tenants = core.tenants
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


def serve(settings: Settings, host: str, port: int, *, with_worker: bool = True,
          remote: bool = False) -> None:
    """The gateway (and, unless told otherwise, the worker) in this process; `remote`: it
    runs no box, but reaches a cluster's through their hosts (`burrow gateway`)."""
    logs.configure(settings.log_format)
    try:  # what would otherwise fail inside the app's start-up, as one line
        if not remote:
            disk.check_host()
            hostdirs.check_traversable(settings.runtime_dir)
    except HostUnsupportedError as exc:
        sys.exit(f"error: {exc.message}")
    local = _local_model(settings)
    redis_url, embedded = _redis_url(settings)
    settings = settings.model_copy(update={"redis_url": redis_url, "run_worker": with_worker})
    if settings.preview_listen is None:  # previews on an origin of their own: a port nearby
        number = port + DEFAULT_PORT_OFFSET if port + DEFAULT_PORT_OFFSET < 65536 \
            else port - DEFAULT_PORT_OFFSET
        address = f"[{host}]" if ":" in host else host
        settings = settings.model_copy(update={"preview_listen": f"{address}:{number}"})
    if local is not None:
        settings = settings.model_copy(update={"local_model_url": local.url,
                                               "local_model_routes": local.routes})
    url = f"http://{host}:{port}"
    app = create_app(settings, on_ready=_announce(url, settings), local_models=local,
                     remote=remote)
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
