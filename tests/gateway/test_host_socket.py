"""The host socket's share of the gateway: what one box's requests may hold read ahead, and
all boxes' together (the attacks themselves are in tests/test_attacks.py)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from core.embedded_redis import EmbeddedRedis
from tests.conftest import ECHO_AGENT, Gateway, gateway_settings, running_gateway

# Inside a box: after `delay` s, open `count` requests with bodies of 60 KiB, send 50 KiB of
# each and stall for `hold` s; then the status each got (0: none yet, its body is held).
STALL = r"""
import json, os, socket, sys, time
count, delay, hold = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
length, sent = 60 * 1024, 50 * 1024
time.sleep(delay)
socks = []
for _ in range(count):
    s = socket.socket(socket.AF_UNIX)
    s.connect(os.environ["BURROW_HOST_SOCKET"])
    s.sendall((f"POST /v1/embed HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer "
               f"{os.environ['BURROW_BOX_TOKEN']}\r\nContent-Length: {length}\r\n\r\n"
               ).encode() + b"x" * sent)
    socks.append(s)
    time.sleep(0.3)
time.sleep(hold)
statuses = []
for s in socks:
    s.settimeout(1)
    try:
        statuses.append(int(s.recv(4096).split()[1]))
    except OSError:
        statuses.append(0)
print(json.dumps(statuses))
"""


@pytest.fixture
async def tight(tmp_path: Path, redis: Redis,
                redis_server: EmbeddedRedis) -> AsyncIterator[Gateway]:
    settings = gateway_settings(tmp_path / "gw", redis_server.url, run_worker=False,
                                agent_command=ECHO_AGENT, host_max_body_bytes=64 * 1024,
                                host_max_box_buffered_bytes=100 * 1024,
                                host_max_buffered_bytes=160 * 1024)
    async with running_gateway(settings) as gw:
        yield gw


async def stall(gw: Gateway, headers: dict[str, str], box: str, count: int,
                delay: float = 0, hold: float = 0) -> list[int]:
    r = await gw.client.post(f"/v1/boxes/{box}/exec", headers=headers, json={
        "command": ["python3", "-c", STALL, str(count), str(delay), str(hold)],
        "timeout_s": 60})
    assert r.json()["exit_code"] == 0, r.json()
    statuses: list[int] = json.loads(r.json()["stdout"])
    return statuses


@pytest.mark.boxes
async def test_bodies_held_read_ahead_are_bounded_per_box_and_in_all(tight: Gateway) -> None:
    """Each request sends 50 KiB of a 60 KiB body and stalls, its body held by the guard: a
    box may hold 100 KiB of bodies, all boxes together 160 KiB; what a closed connection held
    is given back."""
    gw = tight
    headers, first = await gw.tenant("holder")
    second = (await gw.client.post("/v1/boxes", headers=headers, json={})).json()["id"]
    held, late = await asyncio.gather(stall(gw, headers, first, 3, hold=5),
                                      stall(gw, headers, second, 2, delay=2))
    assert held == [0, 0, 429] and late == [0, 503], (held, late)
    assert await stall(gw, headers, second, 2) == [0, 0]
