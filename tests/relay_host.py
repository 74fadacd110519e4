"""A stand-in for the host services socket's relay route, for tests: uvicorn on a unix socket,
checking the box token, answering `/v1/relay/{family}/{path}` with `models.relay.Relay` for one
configured model, and recording each call (what reached the host, the usage it cost). The
gateway's own route adds what needs the gateway (token lookup, budgets, size and time limits)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from core.settings import Settings
from models.providers import Providers
from models.relay import Relay, RelayAnswer


@dataclass
class HostCall:
    family: str
    path: str
    headers: dict[str, str]
    status: int = 0
    mode: str = ""
    usage: dict[str, int] = field(default_factory=dict)
    body: bytes = b""  # what the box sent
    answer: bytes = b""  # what went back (kept with keep_answers)


class RelayHost:
    def __init__(self, socket_path: Path, token: str, model: str, settings: Settings,
                 keepalive_s: float | None = 10.0, keep_answers: bool = False) -> None:
        self.socket_path = socket_path
        self.token = token
        self.model = model
        self.settings = settings
        self.keepalive_s = keepalive_s
        self.keep_answers = keep_answers
        self.calls: list[HostCall] = []
        self._relay: Relay | None = None
        app = Starlette(routes=[Route("/v1/relay/{family}/{path:path}", self._route,
                                      methods=["GET", "POST", "PUT", "DELETE", "PATCH"])],
                        lifespan=self._lifespan)
        config = uvicorn.Config(app, uds=str(socket_path), log_level="warning",
                                lifespan="on", timeout_graceful_shutdown=2)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        # the providers' HTTP client belongs to the server's event loop
        self._relay = Relay(Providers(self.settings), keepalive_s=self.keepalive_s)
        try:
            yield
        finally:
            await self._relay.providers.aclose()

    async def _route(self, request: Request) -> Response:
        assert self._relay is not None
        call = HostCall(request.path_params["family"], request.url.path,
                        {k.lower(): v for k, v in request.headers.items()})
        self.calls.append(call)
        if request.headers.get("authorization") != f"Bearer {self.token}":
            call.status = 401
            return JSONResponse({"error": {"code": "unauthorized", "message": "box token"}},
                                status_code=401)
        call.body = await request.body()
        answer: RelayAnswer = await self._relay.answer(
            call.family, request.method, "/" + request.path_params["path"], request.headers,
            call.body, self.model)
        call.status, call.mode = answer.status, answer.mode
        body = answer.body
        if self.keep_answers:
            async def kept(source: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
                async for chunk in source:
                    call.answer += chunk
                    yield chunk
            body = kept(answer.body)

        def settle() -> None:
            call.usage = answer.usage.model_dump()

        return StreamingResponse(body, status_code=answer.status,
                                 media_type=answer.media_type, headers=answer.headers,
                                 background=BackgroundTask(settle))

    def __enter__(self) -> RelayHost:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the relay host did not start")
            time.sleep(0.02)
        self.socket_path.chmod(0o666)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

