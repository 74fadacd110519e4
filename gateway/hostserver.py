"""The host services socket's server: the host app (gateway/hostsvc.py) behind its guard,
served by a second uvicorn server in the gateway's process, on the unix socket every box of
this process reaches (the Core's `host_socket`)."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Generator
from pathlib import Path

import httpx
import uvicorn

from core.services import Core
from gateway.hostguard import HostLimits, connection_ceiling, protocol_for
from gateway.hostsvc import create_host_app


class _NestedServer(uvicorn.Server):
    """A second server in the same process: the main one owns the signal handlers."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def limits(core: Core) -> HostLimits:
    s = core.settings
    return HostLimits(max_body_bytes=s.host_max_body_bytes,
                      header_timeout_s=s.host_header_timeout_s,
                      idle_timeout_s=s.host_idle_timeout_s,
                      max_concurrent=s.host_max_concurrent,
                      max_connections_per_uid=s.host_max_connections_per_box,
                      max_connections=connection_ceiling(s.host_max_connections),
                      max_box_buffered_bytes=s.host_max_box_buffered_bytes,
                      max_buffered_bytes=s.host_max_buffered_bytes)


class HostSocket:
    """The host socket, served until aclose()."""

    def __init__(self, path: Path, server: uvicorn.Server, task: asyncio.Task[None],
                 relay_client: httpx.AsyncClient) -> None:
        self.path = path
        self._server = server
        self._task = task
        self._relay_client = relay_client

    @classmethod
    async def serve(cls, core: Core) -> HostSocket:
        path = core.host_socket
        assert path is not None, "open the core with runs_boxes=True"
        os.makedirs(path.parent, mode=0o711, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        bounds = limits(core)
        relay_client = httpx.AsyncClient(timeout=httpx.Timeout(300.0, connect=10.0))
        server = _NestedServer(uvicorn.Config(
            create_host_app(core, relay_client, bounds), uds=str(path), lifespan="off",
            log_level="warning", access_log=False, http=protocol_for(bounds),
            timeout_keep_alive=5, h11_max_incomplete_event_size=bounds.max_header_bytes))
        task = asyncio.create_task(server.serve())
        while not server.started:
            if task.done():
                await relay_client.aclose()
                task.result()
            await asyncio.sleep(0.01)
        os.chmod(path, 0o666)  # box uids connect to it; their uid and token are the gate
        return cls(path, server, task, relay_client)

    async def aclose(self) -> None:
        await self._relay_client.aclose()
        self._server.should_exit = True
        await self._task
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
