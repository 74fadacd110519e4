"""The app factory: the FastAPI gateway, its routes, and its lifespan, which opens the Core
(core/services.py) and runs around it what a gateway process serves: the host services
socket for its boxes and, in `burrow serve`, the worker."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from redis.exceptions import RedisError
from starlette.types import Message, Receive, Scope, Send

import core
from core import logs
from core.authz import Principal
from core.history import chained
from core.services import Core
from core.settings import Settings
from core.transport import Watched
from gateway import deps, errors
from gateway.frontdoor import FrontDoor, FrontLimits
from gateway.hostguard import answer
from gateway.hostserver import HostSocket
from gateway.metrics import Metrics
from gateway.preview import preview_listener
from gateway.routes import (
    agent,
    boxes,
    dashboard,
    exec,
    files,
    health,
    knowledge,
    memories,
    observations,
    operator,
    ports,
    processes,
    runs,
    tenants,
)
from models.servers import LocalModels
from workers.runner import Running

log = logging.getLogger("burrow")


def create_app(settings: Settings | None = None,
               on_ready: Callable[[FastAPI], Awaitable[None]] | None = None,
               local_models: LocalModels | None = None, remote: bool = False) -> FastAPI:
    """The gateway. `on_ready` runs once everything is up, before the first request;
    `local_models` are the bundled model servers this process supervises, if any. `remote`:
    it runs no box, and reaches a cluster's boxes through their hosts (`burrow gateway`)."""
    settings = settings or Settings()
    if settings.redis_url is None:
        raise ValueError("create_app needs settings.redis_url (burrow serve starts an embedded "
                         "Redis and sets it)")

    @contextlib.asynccontextmanager
    async def lifespan(app: BurrowApp) -> AsyncIterator[None]:
        opened = await core.open(settings, local_models=local_models, remote=remote)
        # this process's metrics, after the history's record of the wakes it runs (core)
        opened.manager.on_transition = chained(opened.manager.on_transition,
                                               app.metrics.transition)
        opened.manager.on_phase = app.metrics.phase
        host = None if remote else await HostSocket.serve(opened)
        worker = Running.start(opened) if settings.run_worker else None
        app.state.core = opened  # the only thing on the app's state
        previews = await preview_listener(opened)
        try:
            if on_ready is not None:
                await on_ready(app)
            yield
        finally:
            if previews is not None:  # no visitor reaches a box from here on
                await previews.aclose()
            if worker is not None:  # first: its loop ends between two polls, not inside one
                await worker.stop()
            await opened.aclose()  # its boxes freeze while their host socket still answers
            if host is not None:
                await host.aclose()

    app = BurrowApp(title="Burrow", version="0.1.0", lifespan=lifespan,
                    description="Persistent per-tenant Linux boxes that freeze when idle. "
                                "Operations tagged `planned` answer 501 in this build.",
                    responses=errors.COMMON_RESPONSES)

    async def identify(scope: Scope) -> Principal:
        return await deps.principal(Request(scope), app.core)

    app.door = FrontDoor(app.route, identify, FrontLimits.of(settings))
    errors.install(app)
    for module in (health, tenants, boxes, exec, files, ports, agent, memories, observations,
                   runs, knowledge, operator, dashboard):
        app.include_router(module.router)
    app.include_router(processes.router)
    return app


class BurrowApp(FastAPI):
    """The gateway app: every HTTP request passes the front door (gateway/frontdoor.py) first,
    and tenant agent requests then take a fast path around FastAPI's machinery."""

    door: FrontDoor
    # this process's metrics: requests here, and the transitions of the boxes it runs
    metrics: Metrics

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.metrics = Metrics()

    @property
    def core(self) -> Core:
        opened: Core = self.state.core
        return opened

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        given = next((v for k, v in scope["headers"] if k == b"x-request-id"), b"")
        rid = logs.new_request_id(given.decode("latin-1"))
        logs.request_id.set(rid)

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()),
                                      (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self.door(scope, receive, send_status)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or scope.get("burrow.route", "unmatched")
            self.metrics.requests.labels(
                template, scope["method"], str(status)).observe(time.perf_counter() - started)

    async def route(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A request the door let in: the agent route's fast path, or FastAPI."""
        watched = Watched(send)
        try:
            if await agent.serve_fast(self, scope, receive, watched):
                return
        except RedisError as exc:  # FastAPI's routes have their handler (gateway/errors.py)
            if watched.started:
                raise
            log.warning("Redis does not answer on the agent route: %s", exc)
            await answer(send, 503, "unavailable", errors.REDIS_DOWN, {"retry-after": "2"})
            return
        await super().__call__(scope, receive, send)
