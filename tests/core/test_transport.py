"""Requests between roles (core/transport.py), as a host receives them: only a request signed
with the instance's secret, for this host, now, once, with the body it was signed with, gets
through; everything else is a 401 that changes nothing."""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from core.keys import Keys
from core.transport import (
    BODY_HEADER,
    UNSIGNED_PAYLOAD,
    RedisNonces,
    SignedAuth,
    SignedOnly,
    SignedStreamAuth,
    sign,
    target_of,
    transport_key,
)

KEY = transport_key(b"s" * 64)


class Host:
    """A host's app: it keeps what a request writes only once the body ended well."""

    def __init__(self) -> None:
        self.written: list[bytes] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.written.append(body)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"kept " + body})


@pytest.fixture
async def host(redis: Redis) -> AsyncIterator[tuple[Host, httpx.AsyncClient]]:
    app = Host()
    guarded = SignedOnly(app, KEY, lambda: "host-a~1", RedisNonces(redis, Keys("tr")),
                         unsigned_payload=lambda method, path: path == "/stream")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=guarded),
                                 base_url="http://host") as client:
        yield app, client


async def test_a_request_signed_for_this_host_gets_through_with_its_body(host: Any) -> None:
    app, client = host
    r = await client.post("/boxes/b_1/files?path=/a%20b", content=b"data",
                          auth=SignedAuth(KEY, "host-a~1"))
    assert (r.status_code, r.content, app.written) == (200, b"kept data", [b"data"])


@pytest.mark.parametrize("how", ["unsigned", "other secret", "other host", "old", "future"])
async def test_a_request_not_signed_for_this_host_now_is_refused(host: Any, how: str) -> None:
    app, client = host
    key = transport_key(b"t" * 64) if how == "other secret" else KEY
    audience = "host-b~1" if how == "other host" else "host-a~1"
    at = {"old": -31.0, "future": 31.0}.get(how, 0.0)
    headers = {} if how == "unsigned" else sign(key, "POST", "/x", audience, b"d",
                                                now=time.time() + at)
    r = await client.post("/x", content=b"d", headers=headers)
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthenticated", r.text
    assert app.written == []


async def test_a_replayed_request_is_refused(host: Any) -> None:
    app, client = host
    headers = sign(KEY, "POST", "/boxes/b_1/freeze", "host-a~1", b"")
    first = await client.post("/boxes/b_1/freeze", headers=headers)
    again = await client.post("/boxes/b_1/freeze", headers=headers)
    assert (first.status_code, again.status_code) == (200, 401)
    assert "replayed" in again.json()["error"]["message"]
    assert len(app.written) == 1


@pytest.mark.parametrize("change", ["method", "path", "query", "body"])
async def test_a_request_changed_on_the_way_is_refused(host: Any, change: str) -> None:
    app, client = host
    headers = sign(KEY, "POST", target_of("/boxes/b_1/files", "path=/a"), "host-a~1", b"one")
    method = "PUT" if change == "method" else "POST"
    path = "/boxes/b_2/files" if change == "path" else "/boxes/b_1/files"
    query = "path=/etc" if change == "query" else "path=/a"
    body = b"two" if change == "body" else b"one"
    r = await client.request(method, f"{path}?{query}", content=body, headers=headers)
    assert r.status_code == 401, r.text
    assert app.written == []


async def test_a_body_that_is_not_the_signed_one_is_never_kept(host: Any) -> None:
    """The signature covers the declared hash; the body is checked against it as it flows."""
    app, client = host
    headers = sign(KEY, "POST", "/x", "host-a~1", body_sha256=hashlib.sha256(b"one").hexdigest())
    r = await client.post("/x", content=b"two", headers=headers)
    assert r.status_code == 401 and "not the one that was signed" in r.text
    assert app.written == []


async def test_an_unsigned_body_passes_only_where_a_route_takes_a_stream(host: Any) -> None:
    app, client = host

    async def chunks() -> AsyncIterator[bytes]:
        yield b"big "
        yield b"file"

    streamed = await client.post("/stream", content=chunks(),
                                 auth=SignedStreamAuth(KEY, "host-a~1"))
    elsewhere = await client.post("/x", content=chunks(), auth=SignedStreamAuth(KEY, "host-a~1"))
    assert streamed.request.headers[BODY_HEADER] == UNSIGNED_PAYLOAD
    assert (streamed.status_code, elsewhere.status_code) == (200, 401)
    assert app.written == [b"big file"]


async def test_nonces_of_one_instance_are_its_own(redis: Redis) -> None:
    ours, theirs = RedisNonces(redis, Keys("tr-one")), RedisNonces(redis, Keys("tr-two"))
    assert await ours.first_seen("n1", 60) and not await ours.first_seen("n1", 60)
    assert await theirs.first_seen("n1", 60)
    ttl = await redis.pttl(Keys("tr-one").transport_nonce("n1"))
    assert 0 < ttl <= 60_000
