"""Preview URLs of boxes' ports through a real gateway and its preview listener: the API that
opens them, the token, cookie and password checks, what the box sees (and never sees), bodies
streamed both ways, events, WebSockets, and a frozen box woken by its URL."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import websockets
from redis.asyncio import Redis

from core.embedded_redis import EmbeddedRedis
from tests.conftest import until
from tests.previews import Previewing, cookie_of, preview_gateway, start_app

pytestmark = pytest.mark.boxes


@pytest.fixture
async def previewing(tmp_path: Path, redis_server: EmbeddedRedis,
                     redis: Redis) -> AsyncIterator[Previewing]:
    """A gateway with its preview listener (tests/previews.py)."""
    async with preview_gateway(tmp_path / "gw", redis_server.url) as previews:
        yield previews


async def test_a_bearer_port_takes_its_token_once_then_thecookie_of(
        previewing: Previewing) -> None:
    headers, _ = await previewing.gw.tenant("acme")
    box = await previewing.box(headers)
    opened = await previewing.open(box, headers)
    url, token = opened["url"], opened["token"]
    assert url == f"{previewing.url}/{box}/8000/" and opened["auth"] == "bearer"
    assert token and token not in headers["Authorization"]

    async with httpx.AsyncClient(timeout=30) as visitor:
        r = await visitor.get(url)
        assert r.status_code == 401 and r.headers["content-type"].startswith("text/html")
        assert "token" in r.text and "Traceback" not in r.text

        r = await visitor.get(f"{url}echo?a=1&token={token}&b=2")
        assert r.status_code == 303
        assert r.headers["location"] == f"/{box}/8000/echo?a=1&b=2"
        name, value, attrs = cookie_of(r)
        assert name.startswith("burrow_preview") and value and value != token
        for flag in ("HttpOnly", "SameSite=Lax", f"Path=/{box}/8000/"):
            assert flag in attrs, attrs
        assert "Secure" not in attrs  # the preview origin is http here
        visitor.cookies.clear()  # from here on a cookie goes only where a request names it

        r = await visitor.get(f"{url}echo?a=1", headers={
            "Cookie": f"{name}={value}; theirs=kept; burrow_session=operator-session"})
        assert r.status_code == 200, r.text
        seen = dict(r.json()["headers"])
        assert seen["cookie"] == "theirs=kept"  # Burrow's cookies never reach the box
        assert r.json()["path"] == "/echo?a=1"
        assert seen["x-forwarded-prefix"] == f"/{box}/8000"
        assert seen["x-forwarded-proto"] == "http"
        assert seen["x-forwarded-host"] == previewing.url.removeprefix("http://")
        assert seen["x-forwarded-for"] == "127.0.0.1"
        # The box cannot plant a cookie of Burrow's (the dashboard's session is one).
        assert [c.split("=")[0] for c in r.headers.get_list("set-cookie")] == ["app"]

        r = await visitor.get(f"{url}echo", headers={"Authorization": f"Bearer {token}",
                                                     "X-Forwarded-For": "6.6.6.6"})
        assert r.status_code == 200
        seen = dict(r.json()["headers"])
        assert "authorization" not in seen and seen["x-forwarded-for"] == "127.0.0.1"

        r = await visitor.get(f"{url}echo", headers={"Authorization": "Bearer nope"})
        assert r.status_code == 401


async def test_bodies_stream_both_ways_and_connections_stay_alive(
        previewing: Previewing) -> None:
    headers, _ = await previewing.gw.tenant("acme")
    box = await previewing.box(headers)
    opened = await previewing.open(box, headers)
    auth = {"Authorization": f"Bearer {opened['token']}"}
    async with httpx.AsyncClient(timeout=30) as visitor:
        body = b"x" * (3 << 20)
        r = await visitor.post(f"{opened['url']}echo", content=body, headers=auth)
        assert r.status_code == 200 and len(r.json()["body"]) == len(body)

        async def pieces() -> AsyncIterator[bytes]:
            for n in range(5):
                yield b"piece %d;" % n

        r = await visitor.post(f"{opened['url']}echo", content=pieces(), headers=auth)
        assert r.status_code == 200
        assert r.json()["body"] == "".join(f"piece {n};" for n in range(5))
        assert dict(r.json()["headers"])["transfer-encoding"] == "chunked"

        # Server-Sent Events arrive as they are sent, not when the stream ends.
        started = time.monotonic()
        arrivals = []
        async with visitor.stream("GET", f"{opened['url']}sse", headers=auth) as events:
            assert events.headers["content-type"] == "text/event-stream"
            async for line in events.aiter_lines():
                if line.startswith("data:"):
                    arrivals.append(time.monotonic() - started)
        assert len(arrivals) == 3 and arrivals[2] - arrivals[0] > 0.4, arrivals

    # Two requests on one connection: the visitor's connection is kept alive.
    port = int(previewing.url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = (f"GET /{box}/8000/echo HTTP/1.1\r\nHost: x\r\n"
               f"Authorization: Bearer {opened['token']}\r\n\r\n").encode()
    writer.write(request + request)
    for _ in range(2):
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert head.startswith(b"HTTP/1.1 200"), head
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        await reader.readexactly(length)
    writer.close()


async def test_a_websocket_is_echoed_through_the_preview(previewing: Previewing) -> None:
    headers, _ = await previewing.gw.tenant("acme")
    box = await previewing.box(headers)
    opened = await previewing.open(box, headers)
    ws_url = opened["url"].replace("http://", "ws://") + f"ws?token={opened['token']}"
    async with websockets.connect(ws_url) as ws:
        for n in range(3):
            await ws.send(f"hello {n}")
            assert await asyncio.wait_for(ws.recv(), 10) == f"echo: hello {n}"
        await ws.send(b"\x00" * 200_000)
        assert await asyncio.wait_for(ws.recv(), 10) == b"echo: " + b"\x00" * 200_000
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with websockets.connect(ws_url.replace(opened["token"], "wrong")):
            pass
    assert refused.value.response.status_code == 401


async def test_basic_and_public_ports(previewing: Previewing) -> None:
    headers, _ = await previewing.gw.tenant("acme")
    box = await previewing.box(headers)
    await start_app(previewing.gw, box, headers, 8001)
    basic = await previewing.open(box, headers, auth="basic", username="ann",
                                  password="correct horse")
    assert basic["username"] == "ann" and basic["password"] is None and basic["token"] is None
    made = await previewing.open(box, headers, port=8001, auth="basic")
    assert made["username"] == "burrow" and len(made["password"]) >= 16

    async with httpx.AsyncClient(timeout=30) as visitor:
        r = await visitor.get(f"{basic['url']}echo")
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Basic")
        r = await visitor.get(f"{basic['url']}echo", auth=("ann", "wrong password"))
        assert r.status_code == 401
        r = await visitor.get(f"{basic['url']}echo", auth=("ann", "correct horse"))
        assert r.status_code == 200 and "authorization" not in dict(r.json()["headers"])
        r = await visitor.get(f"{made['url']}echo", auth=("burrow", made["password"]))
        assert r.status_code == 200
        # One port's password opens no other port.
        r = await visitor.get(f"{made['url']}echo", auth=("ann", "correct horse"))
        assert r.status_code == 401

        public = await previewing.open(box, headers, auth="public")
        assert public["token"] is None and public["url"] == basic["url"]
        r = await visitor.get(f"{public['url']}echo", headers={"Authorization": "Bearer app"})
        assert r.status_code == 200  # the app's own Authorization passes on a public port
        assert dict(r.json()["headers"])["authorization"] == "Bearer app"


async def test_list_close_and_reopen_revoke_tokens_and_cookies(previewing: Previewing) -> None:
    gw = previewing.gw
    headers, _ = await gw.tenant("acme")
    box = await previewing.box(headers)
    first = await previewing.open(box, headers)
    async with httpx.AsyncClient(timeout=30) as visitor:
        r = await visitor.get(f"{first['url']}?token={first['token']}")
        name, value, _ = cookie_of(r)
        visitor.cookies.clear()
        cookie = {"Cookie": f"{name}={value}"}
        assert (await visitor.get(first["url"], headers=cookie)).status_code == 200

        listed = (await gw.client.get(f"/v1/boxes/{box}/ports", headers=headers)).json()
        assert [(p["port"], p["auth"], p["token"]) for p in listed] == [(8000, "bearer", None)]
        one = await gw.client.get(f"/v1/boxes/{box}/ports/8000", headers=headers)
        assert one.status_code == 200 and one.json()["url"] == first["url"]

        second = await previewing.open(box, headers)  # again: a new token
        assert second["token"] != first["token"]
        for old in ({"Authorization": f"Bearer {first['token']}"}, cookie):
            assert (await visitor.get(first["url"], headers=old)).status_code == 401
        new = {"Authorization": f"Bearer {second['token']}"}
        assert (await visitor.get(first["url"], headers=new)).status_code == 200

        r = await gw.client.delete(f"/v1/boxes/{box}/ports/8000", headers=headers)
        assert r.status_code == 204
        r = await visitor.get(first["url"], headers=new)
        assert r.status_code == 404
        r = await gw.client.delete(f"/v1/boxes/{box}/ports/8000", headers=headers)
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


async def test_bad_requests_to_the_ports_api_say_what_to_do(previewing: Previewing) -> None:
    gw = previewing.gw
    headers, _ = await gw.tenant("acme")
    r = await gw.client.post("/v1/boxes", json={}, headers=headers)
    box = r.json()["id"]
    for body in ({"port": 0}, {"port": 70000}, {"port": 80, "auth": "none"},
                 {"port": 80, "auth": "bearer", "password": "something long"},
                 {"port": 80, "auth": "basic", "password": "short"},
                 {"port": 80, "auth": "basic", "username": "a:b"}):
        r = await gw.client.post(f"/v1/boxes/{box}/ports", json=body, headers=headers)
        assert r.status_code == 422, (body, r.text)
        assert r.json()["error"]["message"]


async def test_a_request_to_a_frozen_boxs_url_wakes_it(previewing: Previewing) -> None:
    gw = previewing.gw
    headers, _ = await gw.tenant("acme")
    box = await previewing.box(headers)
    opened = await previewing.open(box, headers)
    auth = {"Authorization": f"Bearer {opened['token']}"}
    async with httpx.AsyncClient(timeout=60) as visitor:
        first = (await visitor.get(f"{opened['url']}echo", headers=auth)).json()["pid"]
        r = await gw.client.post(f"/v1/boxes/{box}/freeze", headers=headers)
        assert r.json()["state"] == "frozen"

        # Until background processes restart on wake, the server is started again by an
        # exec once the request has woken the box; the request waits for its port meanwhile.
        async def running() -> bool:
            r = await gw.client.get(f"/v1/boxes/{box}", headers=headers)
            return bool(r.json()["state"] == "running")

        async def restart_when_woken() -> None:
            await until(running, 60, "the preview request woke the box")
            await start_app(gw, box, headers, 8000)

        restarter = asyncio.create_task(restart_when_woken())
        r = await visitor.get(f"{opened['url']}echo", headers=auth)
        await restarter
        assert r.status_code == 200 and r.json()["method"] == "GET", r.text
        assert isinstance(first, int)


async def test_nothing_listening_is_a_502_page_after_the_wait(previewing: Previewing) -> None:
    headers, _ = await previewing.gw.tenant("acme")
    r = await previewing.gw.client.post("/v1/boxes", json={}, headers=headers)
    box = r.json()["id"]
    opened = await previewing.open(box, headers, port=8999)
    started = time.monotonic()
    async with httpx.AsyncClient(timeout=30) as visitor:
        r = await visitor.get(opened["url"], headers={
            "Authorization": f"Bearer {opened['token']}"})
    assert r.status_code == 502 and "8999" in r.text and "Traceback" not in r.text
    assert 4.5 < time.monotonic() - started < 15  # preview_wait_s = 5
