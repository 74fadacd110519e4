"""What the preview tests share: the test app (tests/preview_app.py) started in a box, and a
gateway with its preview listener on a free port."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import ECHO_AGENT, Gateway, gateway_settings, running_gateway
from tests.served import free_port

APP = (Path(__file__).resolve().parent / "preview_app.py").read_bytes()
# Until background processes exist, a server outlives the exec that starts it by leaving
# the exec's session (setsid -f).
START = "setsid -f python3 /workspace/preview_app.py {port} >/workspace/app.log 2>&1 </dev/null"


@dataclass
class Previewing:
    gw: Gateway
    url: str  # the preview listener's origin

    async def box(self, headers: dict[str, str], port: int = 8000) -> str:
        """A new box of the caller's with the test app listening on `port`."""
        r = await self.gw.client.post("/v1/boxes", json={}, headers=headers)
        assert r.status_code == 201, r.text
        box_id: str = r.json()["id"]
        await start_app(self.gw, box_id, headers, port)
        return box_id

    async def open(self, box_id: str, headers: dict[str, str], port: int = 8000,
                   **body: Any) -> dict[str, Any]:
        r = await self.gw.client.post(f"/v1/boxes/{box_id}/ports",
                                      json={"port": port, **body}, headers=headers)
        assert r.status_code == 201, r.text
        opened: dict[str, Any] = r.json()
        return opened


async def start_app(gw: Gateway, box_id: str, headers: dict[str, str], port: int) -> None:
    r = await gw.client.put(f"/v1/boxes/{box_id}/files?path=/workspace/preview_app.py",
                            content=APP, headers=headers)
    assert r.status_code == 204, r.text
    r = await gw.client.post(f"/v1/boxes/{box_id}/exec",
                             json={"command": START.format(port=port)}, headers=headers)
    assert r.status_code == 200 and r.json()["exit_code"] == 0, r.text


@contextlib.asynccontextmanager
async def preview_gateway(data_dir: Path, redis_url: str,
                          **extra: object) -> AsyncIterator[Previewing]:
    """A gateway (no worker, echo agents) with its preview listener on a free port."""
    port = free_port()
    settings = gateway_settings(data_dir, redis_url, run_worker=False,
                                agent_command=ECHO_AGENT, preview_listen=f"127.0.0.1:{port}",
                                **{"preview_wait_s": 5, **extra})
    async with running_gateway(settings) as gw:
        yield Previewing(gw, f"http://127.0.0.1:{port}")


def cookie_of(response: httpx.Response) -> tuple[str, str, str]:
    """(name, value, attributes) of the one cookie a response sets."""
    [header] = response.headers.get_list("set-cookie")
    pair, _, attrs = header.partition(";")
    name, _, value = pair.partition("=")
    return name.strip(), value, attrs
