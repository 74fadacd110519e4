"""A box's terminal through a real gateway (uvicorn, as `burrow serve` runs it): keystrokes,
output, resize and exit over the WebSocket; tickets for browsers; every refusal a close with a
code and a reason; the limits on open terminals; a freeze ends the shell with its exit; typing
is activity and output is not."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import websockets
from redis.asyncio import Redis

from core.embedded_redis import EmbeddedRedis
from core.security import box_token
from core.terminals import MAX_PER_BOX
from tests.conftest import ECHO_AGENT, gateway_settings
from tests.terminals import Live, exit_of, live_gateway, output_until, typed

pytestmark = pytest.mark.boxes


@pytest.fixture
async def live(tmp_path: Path, redis_server: EmbeddedRedis, redis: Redis) -> AsyncIterator[Live]:
    settings = gateway_settings(tmp_path / "gw", redis_server.url, run_worker=False,
                                agent_command=ECHO_AGENT)
    async with live_gateway(settings) as served:
        yield served


async def refused(live: Live, box_id: str, headers: dict[str, str] | None = None,
                  query: str = "") -> tuple[int, str]:
    """The close code and reason a refused terminal gets (it is accepted, then closed)."""
    async with live.connect(box_id, headers, query) as ws:
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 30)
        assert ws.close_code is not None
        return ws.close_code, ws.close_reason or ""


async def test_a_tenant_types_into_its_boxs_shell_resizes_it_and_gets_its_exit(
        live: Live) -> None:
    alice, _ = await live.gw.tenant("alice")
    box = await live.box(alice)
    async with live.connect(box, alice, "?cols=100&rows=30") as ws:
        out = await typed(ws, "echo $((6*7)); stty size; echo $TERM $PWD\n", b"/workspace\r\n")
        assert b"42\r\n30 100\r\nxterm-256color /workspace" in out
        await ws.send(json.dumps({"type": "resize", "cols": 132, "rows": 43}))
        assert b"43 132" in await typed(ws, "stty size\n", b"43 132")
        await ws.send(b"exit 3\n")
        assert await exit_of(ws) == 3


async def test_a_ticket_opens_one_terminal_of_its_box_once(live: Live) -> None:
    alice, _ = await live.gw.tenant("alice")
    box, other_box = await live.box(alice), await live.box(alice)
    ticket = await live.ticket(box, alice)
    key = f"{live.gw.core.keys.prefix}:pty:ticket:"
    stored = [k async for k in live.gw.core.redis.scan_iter(match=key + "*")]
    assert len(stored) == 1 and ticket not in stored[0].decode()  # kept only hashed
    assert 0 < await live.gw.core.redis.ttl(stored[0]) <= 30
    async with live.connect(box, None, f"?ticket={ticket}&cwd=/tmp") as ws:
        assert b"/tmp" in await typed(ws, "pwd\n", b"/tmp\r\n")
    code, reason = await refused(live, box, None, f"?ticket={ticket}")  # used up
    assert code == 4401 and "ticket" in reason and "/pty/tickets" in reason
    ticket = await live.ticket(box, alice)
    assert (await refused(live, other_box, None, f"?ticket={ticket}"))[0] == 4401
    assert (await refused(live, box, None, f"?ticket={ticket}"))[0] == 4401  # taken by the try
    operator_ticket = await live.ticket(box, live.gw.operator)
    async with live.connect(box, None, f"?ticket={operator_ticket}") as ws:
        await ws.send(b"exit 0\n")
        assert await exit_of(ws) == 0


async def test_each_refusal_is_a_close_code_with_a_reason_that_says_what_to_do(
        live: Live) -> None:
    alice, alice_home = await live.gw.tenant("alice")
    mallory, _ = await live.gw.tenant("mallory")
    box = await live.box(alice)
    none = await refused(live, box)
    assert none[0] == 4401 and "Authorization: Bearer" in none[1] and "ticket" in none[1]
    assert (await refused(live, box, {"Authorization": "Bearer brw_t_nope"}))[0] == 4401
    token = {"Authorization": f"Bearer {box_token(live.gw.core.secret, alice_home)}"}
    assert (await refused(live, box, token))[0] == 4403
    theirs = await refused(live, box, mallory)
    missing = await refused(live, "b_0000000000000000", mallory)
    assert theirs[0] == missing[0] == 4404 and "no box" in theirs[1]
    assert theirs[1].replace(box, "") == missing[1].replace("b_0000000000000000", "")
    for query in ("?cols=0", "?rows=1001", "?cols=x"):
        code, reason = await refused(live, box, alice, query)
        assert code == 4400 and "1 to 1000" in reason, (query, reason)
    code, reason = await refused(live, box, alice, "?cwd=/no/such/dir")
    assert code == 4400 and "/no/such/dir" in reason
    async with live.connect(box, alice) as ws:
        await ws.send('{"type": "resize", "cols": 0}')
        with pytest.raises(websockets.ConnectionClosed):
            while True:
                await asyncio.wait_for(ws.recv(), 30)
        assert ws.close_code == 4400 and "resize" in (ws.close_reason or "")
    own_origin = {**alice, "Origin": live.url}
    async with live.connect(box, own_origin) as ws:
        await ws.send(b"exit 0\n")
        assert await exit_of(ws) == 0
    code, reason = await refused(live, box, {**alice, "Origin": "http://elsewhere.example"})
    assert code == 4403 and "origin" in reason


async def test_open_terminals_are_limited_per_box_and_a_closed_one_frees_its_place(
        live: Live) -> None:
    alice, _ = await live.gw.tenant("alice")
    box = await live.box(alice)
    opened = []
    for _ in range(MAX_PER_BOX):
        ws = await live.connect(box, alice)
        await typed(ws, "echo up\n", b"up\r\n")
        opened.append(ws)
    code, reason = await refused(live, box, alice)
    assert code == 4429 and f"{MAX_PER_BOX} terminals" in reason and "close one" in reason
    await opened.pop().close()
    await asyncio.sleep(0.5)
    async with live.connect(box, alice) as ws:
        assert b"again" in await typed(ws, "echo again\n", b"again\r\n")
    for ws in opened:
        await ws.close()


async def test_a_freeze_ends_the_shell_with_its_exit_and_opening_wakes_the_box(
        live: Live) -> None:
    alice, _ = await live.gw.tenant("alice")
    box = await live.box(alice)
    async with live.connect(box, alice) as ws:
        await typed(ws, "echo ready\n", b"ready\r\n")
        r = await live.gw.client.post(f"/v1/boxes/{box}/freeze", headers=alice)
        assert r.status_code == 200 and r.json()["state"] == "frozen", r.text
        assert await exit_of(ws) == 129  # hung up: SIGHUP
    async with live.connect(box, alice) as ws:
        assert b"42" in await typed(ws, "echo $((6*7))\n", b"42\r\n")
    r = await live.gw.client.get(f"/v1/boxes/{box}", headers=alice)
    assert r.json()["state"] == "running"


async def test_typing_is_activity_and_output_is_not(live: Live) -> None:
    alice, _ = await live.gw.tenant("alice")
    box = await live.box(alice)

    async def last_active() -> float:
        r = await live.gw.client.get(f"/v1/boxes/{box}", headers=alice)
        return float(r.json()["last_active_at"])

    async with live.connect(box, alice) as ws:
        await typed(ws, "while :; do echo tick; sleep 0.1; done\n", b"tick\r\n")
        await asyncio.sleep(2.5)  # the activity flush (1 s) has written the keystrokes
        typed_at = await last_active()
        await output_until(ws, b"tick\r\ntick\r\n")
        await asyncio.sleep(2.5)
        assert await last_active() == typed_at  # 25 lines of output since: no activity
        await ws.send(b"\x03")  # ^C
        await asyncio.sleep(2.5)
        assert await last_active() > typed_at
        await ws.send(b"exit 0\n")
        assert await exit_of(ws) == 0
