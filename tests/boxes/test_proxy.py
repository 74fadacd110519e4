"""The one client of boxes' service sockets (boxes/servicehttp.py) against a scripted socket:
every way an answer can be framed — sized, chunked, delimited by closing, HEAD, 204 — and
answers that are not HTTP or too large. What runs in a box is not trusted to frame well."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from boxes.servicehttp import CHUNK, BadAnswer, ServiceClient, ServiceUnreachable


class Scripted:
    """A unix socket server answering each request with the next scripted bytes; `close`
    after an answer closes that connection. Counts connections."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.script: list[tuple[bytes, bool]] = []
        self.connections = 0
        self.requests: list[bytes] = []
        self.server: asyncio.AbstractServer | None = None

    async def start(self) -> Scripted:
        self.server = await asyncio.start_unix_server(self._serve, str(self.path))
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        with contextlib.suppress(ConnectionError):
            while self.script:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                self.requests.append(head + await reader.readexactly(length))
                answer, close = self.script.pop(0)
                writer.write(answer)
                await writer.drain()
                if close:
                    break
        writer.close()

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


@pytest.fixture
async def box(tmp_path: Path) -> AsyncIterator[Scripted]:
    scripted = await Scripted(tmp_path / "service.sock").start()
    yield scripted
    await scripted.stop()


@pytest.fixture
async def client() -> AsyncIterator[ServiceClient]:
    c = ServiceClient()
    yield c
    await c.close()


def head(method: str = "GET") -> bytes:
    return f"{method} /x HTTP/1.1\r\nHost: box\r\nContent-Length: 0\r\n\r\n".encode()


async def whole(client: ServiceClient, box: Scripted, method: str = "GET"
                ) -> tuple[int, bytes, list[int]]:
    answer = await client.exchange(str(box.path), method, head(method), b"")
    pieces = [piece async for piece in answer.body()]
    client.release(str(box.path), answer)
    return answer.status, b"".join(pieces), [len(p) for p in pieces]


async def test_a_chunked_answer_is_relayed_in_bounded_pieces_and_the_connection_kept(
        box: Scripted, client: ServiceClient) -> None:
    big = b"x" * (5 * CHUNK + 7)
    chunked = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
               + b"5\r\nhello\r\n" + f"{len(big):x}\r\n".encode() + big + b"\r\n0\r\n\r\n")
    box.script = [(chunked, False), (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", False)]
    status, body, sizes = await whole(client, box)
    assert status == 200 and body == b"hello" + big
    assert max(sizes) <= CHUNK  # a 320 KiB chunk never sits whole in memory
    assert (await whole(client, box))[1] == b"ok"
    assert box.connections == 1  # kept alive and reused


async def test_a_close_delimited_answer_is_read_to_the_end_and_not_reused(
        box: Scripted, client: ServiceClient) -> None:
    box.script = [(b"HTTP/1.1 200 OK\r\n\r\nuntil the end", True),
                  (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", False)]
    assert (await whole(client, box))[1] == b"until the end"
    assert (await whole(client, box))[1] == b"ok"
    assert box.connections == 2


async def test_head_and_204_have_no_body_and_a_head_answer_is_not_reused(
        box: Scripted, client: ServiceClient) -> None:
    box.script = [(b"HTTP/1.1 204 No Content\r\n\r\n", False),
                  # a server that wrongly sends a body after HEAD leaves it on the connection
                  (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstray", False),
                  (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", False)]
    assert await whole(client, box) == (204, b"", [])
    assert (await whole(client, box, "HEAD"))[:2] == (200, b"")
    assert (await whole(client, box))[1] == b"ok"
    assert box.connections == 2  # the 204 kept its connection; the HEAD's was dropped


async def test_answers_that_are_not_http_or_too_large_are_refused(
        box: Scripted, client: ServiceClient) -> None:
    box.script = [(b"SSH-2.0-OpenSSH\r\n\r\n", True)]
    with pytest.raises(BadAnswer, match="not an HTTP status line"):
        await client.exchange(str(box.path), "GET", head(), b"")
    box.script = [(b"HTTP/1.1 200 OK\r\n" + b"X-Pad: " + b"a" * 70000 + b"\r\n\r\n", True)]
    with pytest.raises(BadAnswer, match="too large"):
        await client.exchange(str(box.path), "GET", head(), b"")
    box.script = [(b"HTTP/1.1 200 OK\r\nContent-Length: 3000000\r\n\r\n" + b"y" * 3000000,
                   True)]
    with pytest.raises(BadAnswer, match="more than 1000000 bytes"):
        await client.request(str(box.path), "POST", "/x", b"{}", max_answer=1_000_000)


@pytest.mark.boxes
async def test_a_socket_nobody_listens_on_is_unreachable_before_anything_is_sent(
        tmp_path: Path, client: ServiceClient) -> None:
    with pytest.raises(ServiceUnreachable):
        await client.request(str(tmp_path / "nothing.sock"), "GET", "/")


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_a_pooled_connection_the_box_closed_is_replaced_on_either_event_loop(
        tmp_path: Path, loop: str) -> None:
    """A box frozen after an answer closes its end of a pooled connection; the next request
    goes out on a fresh one. (uvloop, which `burrow serve` runs on, refused the write on the
    closed transport with a RuntimeError that failed the worker's delivery.)"""
    import uvloop

    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

    async def scenario() -> None:
        box = await Scripted(tmp_path / f"{loop}.sock").start()
        client = ServiceClient()
        try:
            box.script = [(ok, False)]  # answered, then the script ends: the box closes
            assert await client.request(str(box.path), "GET", "/x") == (200, b"ok")
            await asyncio.sleep(0.05)  # the close reaches the pooled connection
            box.script = [(ok, False)]
            assert await client.request(str(box.path), "GET", "/x") == (200, b"ok")
            assert box.connections == 2
        finally:
            await client.close()
            await box.stop()

    runner = asyncio.new_event_loop() if loop == "asyncio" else uvloop.new_event_loop()
    try:
        runner.run_until_complete(scenario())
    finally:
        runner.close()
