"""What the terminal tests share: the gateway served by uvicorn as `burrow serve` serves it
(gateway/server.py's config: WebSockets need a real server), in this process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn
import websockets
from fastapi import FastAPI
from fastapi.routing import APIWebSocketRoute
from starlette.routing import WebSocketRoute
from websockets.asyncio.client import ClientConnection

from core.settings import Settings
from gateway.app import create_app
from gateway.server import server_config
from tests.conftest import Gateway
from tests.hosts import OPERATOR_KEY, box_processes
from tests.served import free_port


def websocket_paths(app: FastAPI) -> set[str]:
    """The paths of the app's WebSocket routes (FastAPI keeps included routers' routes in
    their routers)."""
    found: set[str] = set()

    def walk(routes: list[Any]) -> None:
        for route in routes:
            if isinstance(route, WebSocketRoute | APIWebSocketRoute):
                found.add(route.path)
            inner = getattr(route, "original_router", None)
            if inner is not None:
                walk(inner.routes)

    walk(app.routes)
    return found


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:  # pytest keeps its own
        yield


@dataclass
class Live:
    gw: Gateway  # its client speaks real HTTP to the server
    url: str

    def ws_url(self, box_id: str, query: str = "") -> str:
        return f"{self.url.replace('http', 'ws', 1)}/v1/boxes/{box_id}/pty{query}"

    async def box(self, headers: dict[str, str]) -> str:
        r = await self.gw.client.post("/v1/boxes", json={}, headers=headers)
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    async def ticket(self, box_id: str, headers: dict[str, str]) -> str:
        r = await self.gw.client.post(f"/v1/boxes/{box_id}/pty/tickets", headers=headers)
        assert r.status_code == 201, r.text
        assert r.json()["expires_in"] == 30
        return str(r.json()["ticket"])

    def connect(self, box_id: str, headers: dict[str, str] | None = None, query: str = "",
                **kwargs: Any) -> Any:
        return websockets.connect(self.ws_url(box_id, query), additional_headers=headers,
                                  open_timeout=60, **kwargs)


@contextlib.asynccontextmanager
async def live_gateway(settings: Settings) -> AsyncIterator[Live]:
    port = free_port()
    app = create_app(settings)
    server = _Server(server_config(app, settings, "127.0.0.1", port))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.05)
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            yield Live(Gateway(app, client, {"Authorization": f"Bearer {OPERATOR_KEY}"}), url)
    finally:
        server.should_exit = True
        await task
    manager = app.state.core.manager
    assert manager.backend.leftovers() == {"processes": [], "mounts": [], "cgroups": []}
    assert box_processes() == [], "box processes outlived the test"
    shutil.rmtree(manager.config.run_dir, ignore_errors=True)


async def typed(ws: ClientConnection, text: str, until: bytes, timeout_s: float = 30) -> bytes:
    """Send `text` as keystrokes; the output up to `until`."""
    await ws.send(text.encode())
    return await output_until(ws, until, timeout_s)


async def output_until(ws: ClientConnection, until: bytes, timeout_s: float = 30) -> bytes:
    seen = b""

    async def collect() -> bytes:
        nonlocal seen
        while until not in seen:
            message = await ws.recv()
            assert isinstance(message, bytes), message
            seen += message
        return seen

    return await asyncio.wait_for(collect(), timeout_s)


async def exit_of(ws: ClientConnection, timeout_s: float = 30) -> int:
    """Output until the exit frame; its code (the close after it is 1000)."""
    async def wait() -> int:
        while True:
            message = await ws.recv()
            if isinstance(message, str):
                control = json.loads(message)
                assert control["type"] == "exit", control
                return int(control["code"])

    code = await asyncio.wait_for(wait(), timeout_s)
    with contextlib.suppress(websockets.ConnectionClosedOK):
        await asyncio.wait_for(ws.recv(), 10)
    assert ws.close_code == 1000
    return code
