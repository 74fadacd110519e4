"""The app factory: the FastAPI gateway, its routes, and its lifespan (gateway/services.py)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from fastapi import FastAPI, Request
from starlette.types import Message, Receive, Scope, Send

from core import logs
from core.authz import Principal
from core.settings import Settings
from gateway import deps, errors
from gateway.frontdoor import FrontDoor, FrontLimits
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
    runs,
    tenants,
)
from gateway.services import Services
from models.servers import LocalModels


def create_app(settings: Settings | None = None,
               on_ready: Callable[[FastAPI], Awaitable[None]] | None = None,
               local_models: LocalModels | None = None) -> FastAPI:
    """The gateway. `on_ready` runs once everything is up, before the first request;
    `local_models` are the bundled model servers this process supervises, if any."""
    settings = settings or Settings()
    if settings.redis_url is None:
        raise ValueError("create_app needs settings.redis_url (burrow serve starts an embedded "
                         "Redis and sets it)")

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        opened = await Services.open(settings, "gateway", local_models)
        app.state.services = opened  # the only thing on the app's state
        try:
            if on_ready is not None:
                await on_ready(app)
            yield
        finally:
            await opened.aclose()

    app = BurrowApp(title="Burrow", version="0.1.0", lifespan=lifespan,
                    description="Persistent per-tenant Linux boxes that freeze when idle. "
                                "Operations tagged `planned` answer 501 in this build.",
                    responses=errors.COMMON_RESPONSES)

    async def identify(scope: Scope) -> Principal:
        return await deps.principal(Request(scope), app.services)

    app.door = FrontDoor(app.route, identify, FrontLimits.of(settings))
    errors.install(app)
    for module in (health, tenants, boxes, exec, files, agent, memories, observations, runs,
                   knowledge, operator, dashboard):
        app.include_router(module.router)
    return app


class BurrowApp(FastAPI):
    """The gateway app: every HTTP request passes the front door (gateway/frontdoor.py) first,
    and tenant agent requests then take a fast path around FastAPI's machinery."""

    door: FrontDoor

    @property
    def services(self) -> Services:
        services: Services = self.state.services
        return services

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
            self.services.metrics.requests.labels(
                template, scope["method"], str(status)).observe(time.perf_counter() - started)

    async def route(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A request the door let in: the agent route's fast path, or FastAPI."""
        if await agent.serve_fast(self, scope, receive, send):
            return
        await super().__call__(scope, receive, send)
