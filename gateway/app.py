"""The app factory: the FastAPI gateway, its routes, and its lifespan (gateway/services.py)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from fastapi import FastAPI
from starlette.types import Message, Receive, Scope, Send

from gateway import errors, logs
from gateway.errors import ApiError
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
from gateway.settings import Settings
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
    app.max_body_bytes = settings.max_body_bytes
    errors.install(app)
    for module in (health, tenants, boxes, exec, files, agent, memories, observations, runs,
                   knowledge, operator, dashboard):
        app.include_router(module.router)
    return app


class BurrowApp(FastAPI):
    """The gateway app; tenant agent requests take a fast path around FastAPI's machinery,
    and no request body may exceed the configured size (with room for JSON framing)."""

    max_body_bytes = 100 * 1024 * 1024

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
            await self._serve(scope, receive, send_status)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or scope.get("burrow.route", "unmatched")
            self.services.metrics.requests.labels(
                template, scope["method"], str(status)).observe(time.perf_counter() - started)

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        if await agent.serve_fast(self, scope, receive, send):
            return
        limit = self.max_body_bytes + _JSON_FRAMING
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            await errors.too_large(limit)(scope, receive, send)
            return
        await super().__call__(scope, _bounded(receive, limit), send)


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
