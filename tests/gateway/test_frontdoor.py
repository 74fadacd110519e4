"""The public port's door, through the app: each route takes the body it needs and no more,
bodies keep a pace, callers without a key and each tenant hold a bounded share. (The attack it
answers, against a real `burrow serve`, is in tests/test_attacks.py.)"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from redis.asyncio import Redis
from starlette.types import Receive, Scope, Send

from core.embedded_redis import EmbeddedRedis
from gateway.frontdoor import FrontLimits, protocol_for
from tests.conftest import ECHO_AGENT, gateway_settings, running_gateway
from tests.served import free_port


def _error(r: httpx.Response, status: int, code: str) -> str:
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code, r.text
    message: str = r.json()["error"]["message"]
    return message


@pytest.mark.boxes
async def test_each_route_takes_the_body_it_needs_and_no_more(
        tmp_path: Path, redis: Redis, redis_server: EmbeddedRedis) -> None:
    settings = gateway_settings(tmp_path / "gw", redis_server.url, run_worker=False,
                                agent_command=ECHO_AGENT, max_json_body_bytes=64 << 10,
                                max_body_bytes=4 << 20)
    async with running_gateway(settings) as gw:
        headers, home = await gw.tenant("big")
        c = gw.client
        over = {"name": "x", "labels": {"pad": "p" * (80 << 10)}}
        message = _error(await c.post("/v1/boxes", json=over, headers=headers), 413,
                         "too_large")
        assert f"over {64 << 10} bytes" in message and "send less" in message

        async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: counted as it comes
            yield b'{"name": "x", "labels": {"pad": "'
            for _ in range(10):
                yield b"p" * (10 << 10)
            yield b'"}}'
        _error(await c.post("/v1/boxes", content=chunked(), headers={
            **headers, "content-type": "application/json"}), 413, "too_large")
        # without a valid key, not one byte of a body is read
        read = []

        async def watched() -> AsyncIterator[bytes]:
            read.append(True)
            yield b"{}"
        for key in ({}, {"Authorization": "Bearer brw_t_junk"}):
            r = await c.post("/v1/boxes", content=watched(), headers={
                **key, "content-type": "application/json", "content-length": "2"})
            _error(r, 401, "unauthenticated")
        assert read == []
        # an upload, exec's stdin, the agent's body and observations take far more
        data = bytes(range(256)) * (8 << 10)  # 2 MiB
        r = await c.put(f"/v1/boxes/{home}/files", params={"path": "up.bin"}, content=data,
                        headers=headers)
        assert r.status_code == 204, r.text
        assert (await c.get(f"/v1/boxes/{home}/files", params={"path": "up.bin"},
                            headers=headers)).content == data
        r = await c.post(f"/v1/boxes/{home}/exec", headers=headers,
                         json={"command": "wc -c", "stdin": "s" * (1 << 20)})
        assert r.json()["stdout"].strip() == str(1 << 20), r.text
        r = await c.post("/v1/tenants/big/agent/echo", content=b"a" * (1 << 20),
                         headers=headers)
        assert r.status_code == 200 and len(r.json()["echo"]["body"]) == 1 << 20
        pairs = [{"request": {"body": "q" * (40 << 10)}, "response": {"body": "a"}}] * 4
        r = await c.post("/v1/tenants/big/observations", json={"pairs": pairs},
                         headers=headers)
        assert r.status_code == 202 and r.json()["accepted"] == 4, r.text
        _error(await c.put(f"/v1/boxes/{home}/files", params={"path": "huge"},
                           content=b"x" * ((4 << 20) + 1), headers=headers), 413, "too_large")


@pytest.mark.boxes
async def test_a_slow_body_gets_408(
        tmp_path: Path, redis: Redis, redis_server: EmbeddedRedis) -> None:
    settings = gateway_settings(tmp_path / "gw", redis_server.url, run_worker=False,
                                agent_command=ECHO_AGENT, body_idle_timeout_s=0.5,
                                body_timeout_s=1.5)
    async with running_gateway(settings) as gw:
        headers, home = await gw.tenant("slow")
        json_headers = {**headers, "content-type": "application/json"}

        async def stalls() -> AsyncIterator[bytes]:
            yield b'{"name": '
            await asyncio.sleep(2)
            yield b'"x"}'

        async def trickles() -> AsyncIterator[bytes]:  # never idle, never done
            yield b'{"name": "'
            for _ in range(20):
                await asyncio.sleep(0.2)
                yield b"x"
            yield b'"}'

        started = time.monotonic()
        message = _error(await gw.client.post("/v1/boxes", content=stalls(),
                                              headers=json_headers), 408, "timeout")
        assert "stopped arriving" in message and time.monotonic() - started < 1.5
        message = _error(await gw.client.post("/v1/boxes", content=trickles(),
                                              headers=json_headers), 408, "timeout")
        assert "within 1.5 s" in message
        for sized in ({}, {"content-length": "13"}):  # an upload streams, paced the same way
            r = await gw.client.put(f"/v1/boxes/{home}/files", params={"path": "up.bin"},
                                    content=stalls(), headers={**headers, **sized})
            _error(r, 408, "timeout")
            assert r.headers["connection"] == "close"


@pytest.mark.boxes
async def test_callers_without_a_key_and_each_tenant_hold_a_bounded_share(
        tmp_path: Path, redis: Redis, redis_server: EmbeddedRedis) -> None:
    settings = gateway_settings(tmp_path / "gw", redis_server.url, run_worker=False,
                                agent_command=ECHO_AGENT, tenant_max_concurrent=2,
                                max_unauthenticated=1, launcher_pool=0)
    async with running_gateway(settings) as gw:
        c = gw.client
        ana, _ = await gw.tenant("ana")
        bob, _ = await gw.tenant("bob")
        release = asyncio.Event()

        async def held() -> AsyncIterator[bytes]:
            yield b'{"runtime": "held'
            await release.wait()
            yield b'"}'

        async def hold(headers: dict[str, str], path: str = "/v1/boxes") -> httpx.Response:
            return await c.post(path, content=held(), headers={
                **headers, "content-type": "application/json"})

        holding = []
        for _ in range(2):  # one after the other: a key being checked holds the one place
            holding.append(asyncio.create_task(hold(ana)))
            await asyncio.sleep(0.2)
        r = await c.get("/v1/boxes", headers=ana)
        assert "2 requests open" in _error(r, 429, "rate_limited")
        assert r.headers["retry-after"]
        assert (await c.get("/v1/boxes", headers=bob)).status_code == 200
        assert (await c.get("/v1/boxes", headers=gw.operator)).status_code == 200
        # a request without a key (the dashboard's sign-in, sent slowly) holds the one place
        signing_in = asyncio.create_task(c.post("/dashboard/login", content=held(), headers={
            "content-type": "application/x-www-form-urlencoded"}))
        await asyncio.sleep(0.2)
        r = await c.get("/v1/boxes", headers={"Authorization": "Bearer brw_t_junk"})
        _error(r, 503, "unavailable")
        assert (await c.get("/healthz")).status_code == 200  # probes are never refused
        release.set()
        assert [r.status_code for r in await asyncio.gather(*holding)] == [422, 422]
        assert (await signing_in).status_code == 303
        assert (await c.get("/v1/boxes", headers=ana)).status_code == 200


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:  # pytest keeps its own
        yield


async def test_the_public_port_holds_connections_and_headers_to_their_limits() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    limits = FrontLimits(max_connections=2, max_header_bytes=4096, header_timeout_s=0.5)
    port = free_port()
    server = _Server(uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off",
                                    log_level="warning", http=protocol_for(limits)))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)

    async def status(request: bytes, wait_s: float = 5) -> tuple[int, float]:
        started = time.monotonic()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request)
        reply = await asyncio.wait_for(reader.read(4096), wait_s)
        writer.close()
        return int(reply.split()[1]), time.monotonic() - started

    try:
        assert (await status(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"))[0] == 200
        held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
        code, _ = await status(b"")  # a third connection is refused as it comes
        assert code == 503
        reader, writer = held[0]  # a held one is closed once its headers are late
        writer.write(b"GET / HT")
        assert int((await asyncio.wait_for(reader.read(4096), 5)).split()[1]) == 408
        for _, writer in held:
            writer.close()
        await asyncio.sleep(0.1)
        code, seconds = await status(b"GET / HTTP/1.1\r\nX-Pad: " + b"a" * 5000 + b"\r\n\r\n")
        assert code == 431 and seconds < 0.5
    finally:
        server.should_exit = True
        await task
