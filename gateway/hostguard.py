"""The host services socket's door: every box can connect to it, so nothing is read, parsed or
buffered for a caller before it is known to be a box, and no box can hold more of the
gateway than a small, fixed share.

In order, for every connection and request on the socket:

1. The connection's peer is asked of the kernel (SO_PEERCRED): the host uid of the process
   that connected. Each box runs as its own uid, so this names the box whatever it sends.
   A uid holds at most `max_connections_per_uid` connections and all together hold at most
   `max_connections`, at most 1/FD_SHARE of the process's file descriptors: beyond either,
   the connection is answered 429/503 and closed at once, so no box can take the files the
   public port, Redis and the boxes' own sockets need.
2. Headers: at most `max_header_bytes`, complete within `header_timeout_s` of the request's
   first byte (a slow sender cannot hold a connection open for free).
3. The token (`Authorization: Bearer $BURROW_BOX_TOKEN`) must name a live box, and that box's
   uid must be the peer's: a token copied out of one box does not work from another. Checked
   before the body is read (uvicorn reads no more than 64 KiB ahead of the app).
4. At most `max_concurrent` requests per box at once (429 beyond); a body of at most
   `max_body_bytes` (413, by Content-Length or as it arrives), each chunk of which must arrive
   within `idle_timeout_s` of the last (408). Bodies are read whole before the app sees them
   (git pushes stream through): a box's requests hold at most `max_box_buffered_bytes` of them
   at once (429), all boxes' at most `max_buffered_bytes` (503). Answers are not limited in
   time: a long streamed model answer keeps flowing as long as it flows.

The header guard (GuardedProtocol) and the body bound (`bounded`, `prefetched`) hold the
public port's callers too (gateway/frontdoor.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
import socket
import struct
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger("burrow.gateway")

PEER_UID = "burrow.peer_uid"  # the scope key the protocol fills in
_CREDS = struct.Struct("3i")  # struct ucred: pid, uid, gid
FD_SHARE = 4  # the host socket's connections may use at most 1/FD_SHARE of the fd limit


@dataclass(frozen=True)
class HostLimits:
    max_header_bytes: int = 16 * 1024
    max_body_bytes: int = 4 * 1024 * 1024
    max_relay_body_bytes: int = 1 << 30  # a git push under /v1/relay/git/ can be large
    header_timeout_s: float = 10.0
    idle_timeout_s: float = 30.0
    max_concurrent: int = 8
    max_connections_per_uid: int = 32
    max_connections: int = 4096
    max_box_buffered_bytes: int = 16 * 1024 * 1024  # bodies read ahead, per box at once
    max_buffered_bytes: int = 256 * 1024 * 1024  # and all boxes together


def fd_limit() -> int:
    """This process's file descriptor limit, raised first to the most it may have (the soft
    limit is often 1024, far below what a gateway of many boxes needs; the hard one is the
    operator's to set)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the file descriptor limit from %d to %d: %s",
                        soft, hard, exc)
    return soft


def connection_ceiling(wanted: int) -> int:
    """`wanted` host-socket connections, or fewer: never more than 1/FD_SHARE of the fd limit,
    so the rest stays for the public port, Redis, the boxes' sockets and files."""
    ceiling = max(1, fd_limit() // FD_SHARE)
    if wanted > ceiling:
        log.warning("the host socket takes at most %d connections (BURROW_HOST_MAX_CONNECTIONS "
                    "is %d): 1/%d of the file descriptor limit; raise `ulimit -Hn` for more",
                    ceiling, wanted, FD_SHARE)
    return min(wanted, ceiling)


class Connections:
    """Open connections per peer uid and in all: one count per host-socket server."""

    def __init__(self) -> None:
        self.per_uid: Counter[int | None] = Counter()
        self.total = 0

    def admit(self, uid: int | None, limits: HostLimits) -> tuple[int, bytes] | None:
        """Count a new connection, or the (status, message) it is refused with."""
        if self.per_uid[uid] >= limits.max_connections_per_uid:
            return 429, (b"this box has %d connections open to the host socket, the most it "
                         b"may; close some (or reuse them) first"
                         % limits.max_connections_per_uid)
        if self.total >= limits.max_connections:
            return 503, b"the host socket has all the connections it takes; retry shortly"
        self.per_uid[uid] += 1
        self.total += 1
        return None

    def release(self, uid: int | None) -> None:
        self.total -= 1
        self.per_uid[uid] -= 1
        if not self.per_uid[uid]:
            del self.per_uid[uid]


class HeaderLimits(Protocol):
    @property
    def max_header_bytes(self) -> int: ...
    @property
    def header_timeout_s(self) -> float: ...


_REFUSALS = {408: (b"Request Timeout", b"timeout"),
             429: (b"Too Many Requests", b"rate_limited"),
             431: (b"Request Header Fields Too Large", b"too_large"),
             503: (b"Service Unavailable", b"unavailable")}


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's HTTP protocol with a cap on header bytes and a deadline for the headers to
    arrive."""

    limits: HeaderLimits = HostLimits()  # set per server by a subclass

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.header_bytes = 0
        self.header_timer: asyncio.TimerHandle | None = None
        self._arm()

    def _arm(self) -> None:
        if self.header_timer is not None:
            self.header_timer.cancel()
        self.header_timer = self.loop.call_later(self.limits.header_timeout_s, self._too_slow)

    def _too_slow(self) -> None:
        self.header_timer = None
        if self.transport is not None and not self.transport.is_closing():
            self._refuse(408, b"the request's headers did not arrive in time")

    def _refuse(self, status: int, message: bytes) -> None:
        reason, code = _REFUSALS[status]
        body = b'{"error":{"code":"%s","message":"%s"}}' % (code, message)
        retry = b"retry-after: 1\r\n" if status in (429, 503) else b""
        self.transport.write(b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\n%s"
                             b"content-length: %d\r\nconnection: close\r\n\r\n%s"
                             % (status, reason, retry, len(body), body))
        self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.header_timer is not None:
            self.header_timer.cancel()
            self.header_timer = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.transport.is_closing():
            return
        super().data_received(data)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.header_bytes = 0
        if self.header_timer is None:  # a later request on a kept-alive connection
            self._arm()

    def _count(self, size: int) -> None:
        self.header_bytes += size
        if self.header_bytes > self.limits.max_header_bytes and not self.transport.is_closing():
            self._refuse(431, b"the request's headers are too large")

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        if self.header_timer is not None:
            self.header_timer.cancel()
            self.header_timer = None
        if self.transport.is_closing():
            return
        super().on_headers_complete()


class BoxSocketProtocol(GuardedProtocol):
    """The guarded protocol with the peer's uid in each request's scope, and the connections
    of each uid and of all counted and capped."""

    limits = HostLimits()  # set per server by `protocol_for`
    open_connections = Connections()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.peer_uid: int | None = None
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family == socket.AF_UNIX:
            _pid, uid, _gid = _CREDS.unpack(sock.getsockopt(
                socket.SOL_SOCKET, socket.SO_PEERCRED, _CREDS.size))
            self.peer_uid = uid
        super().connection_made(transport)
        refused = self.open_connections.admit(self.peer_uid, self.limits)
        self.counted = refused is None
        if refused is not None:
            self._refuse(*refused)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.counted:
            self.counted = False
            self.open_connections.release(self.peer_uid)
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.scope[PEER_UID] = self.peer_uid  # type: ignore[literal-required]


def protocol_for(limits: HostLimits) -> type[BoxSocketProtocol]:
    """The protocol of one host-socket server: its limits, and its own connection counts."""
    return type("BoxSocketProtocol", (BoxSocketProtocol,),
                {"limits": limits, "open_connections": Connections()})


# A box whose token checks out and whose uid matches: (box id, tenant) — or an error answer.
Identify = Callable[[str, int | None], Awaitable[tuple[str, str | None]]]


class HostGuard:
    """ASGI middleware in front of the host app: identify the box before anything is read,
    bound its concurrency and its body. The app finds the box in scope["burrow.box"]."""

    def __init__(self, app: ASGIApp, identify: Identify, limits: HostLimits) -> None:
        self.app = app
        self.identify = identify
        self.limits = limits
        self.active: Counter[str] = Counter()
        self.buffered: Counter[str] = Counter()  # bytes of bodies read ahead, per box
        self.buffered_total = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        streamed = scope["path"].startswith("/v1/relay/git/")
        limit = self.limits.max_relay_body_bytes if streamed else self.limits.max_body_bytes
        try:
            box_id, tenant = await self._identify(headers, scope.get(PEER_UID))
            self._admit(box_id, headers, limit)
        except GuardError as exc:
            await answer(send, exc.status, exc.code, exc.message, exc.headers)
            return
        self.active[box_id] += 1
        scope["burrow.box"] = (box_id, tenant)
        started = False
        held = [0]  # what this request's body holds of the box's read-ahead bytes

        async def tracked_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            too_large = f"the host socket takes bodies of at most {limit} bytes here"
            body = bounded(receive, limit, self.limits.idle_timeout_s, too_large)
            if not streamed:
                # Small bodies are read here, whole, so that a slow or oversized one is
                # answered 408/413 by the guard, not as a parse error by the app. Git pushes
                # stream through, bounded the same way.
                def hold(size: int) -> None:
                    self._hold(box_id, size)
                    held[0] += size
                body = await prefetched(body, on_piece=hold)
            await self.app(scope, body, tracked_send)
        except GuardError as exc:
            if started:
                raise
            await answer(send, exc.status, exc.code, exc.message, exc.headers)
        finally:
            self._hold(box_id, -held[0])
            self.active[box_id] -= 1
            if not self.active[box_id]:
                del self.active[box_id]

    async def _identify(self, headers: dict[bytes, bytes],
                        peer_uid: int | None) -> tuple[str, str | None]:
        token = headers.get(b"authorization", b"").decode("latin-1")
        scheme, _, key = token.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise GuardError(401, "unauthenticated",
                             "send the box token as `Authorization: Bearer $BURROW_BOX_TOKEN`")
        return await self.identify(key.strip(), peer_uid)

    def _admit(self, box_id: str, headers: dict[bytes, bytes], limit: int) -> None:
        """Refuse, by its headers alone, a request whose body is too large, or one more than
        the box may have open."""
        length = headers.get(b"content-length", b"0")
        if not length.isdigit() or int(length) > limit:
            raise GuardError(413, "too_large",
                             f"the host socket takes bodies of at most {limit} bytes here")
        if self.active[box_id] >= self.limits.max_concurrent:
            raise GuardError(429, "rate_limited",
                             f"this box has {self.active[box_id]} requests open on the host "
                             "socket, the most it may; wait for one to finish",
                             {"retry-after": "1"})

    def _hold(self, box_id: str, size: int) -> None:
        """Count `size` more bytes of bodies read ahead for `box_id` (fewer when negative), or
        raise the GuardError of the per-box or the total ceiling. A box may always hold one
        body of the largest size."""
        if size > 0:
            per_box = max(self.limits.max_box_buffered_bytes, self.limits.max_body_bytes)
            if self.buffered[box_id] + size > per_box:
                raise GuardError(429, "rate_limited",
                                 f"this box's requests on the host socket hold {per_box} "
                                 "bytes of bodies, the most it may; wait for one to finish",
                                 {"retry-after": "1"})
            if self.buffered_total + size > self.limits.max_buffered_bytes:
                raise GuardError(503, "unavailable", "the host socket holds all the request "
                                 "bodies it takes; retry shortly", {"retry-after": "1"})
        self.buffered[box_id] += size
        self.buffered_total += size
        if self.buffered[box_id] <= 0:
            del self.buffered[box_id]


def bounded(receive: Receive, limit: int, idle_timeout_s: float, too_large: str) -> Receive:
    """`receive`, failing with GuardError once the body passes `limit` bytes (413, saying
    `too_large`) or a piece of it takes longer than `idle_timeout_s` (408). What comes once
    the body is in (a disconnect, whenever it comes) is not timed: answers take their time."""
    seen, done = 0, False

    async def bounded_receive() -> Message:
        nonlocal seen, done
        if done:
            return await receive()
        try:
            async with asyncio.timeout(idle_timeout_s):
                message = await receive()
        except TimeoutError:
            raise GuardError(408, "timeout", "the request body stopped arriving") from None
        seen += len(message.get("body", b""))
        if seen > limit:
            raise GuardError(413, "too_large", too_large)
        done = message["type"] != "http.request" or not message.get("more_body")
        return message
    return bounded_receive



async def prefetched(receive: Receive, timeout_s: float | None = None,
                     on_piece: Callable[[int], None] | None = None) -> Receive:
    """The whole body, read now (within `timeout_s`, else GuardError 408), then replayed; a
    caller that left midway is replayed as having left. `on_piece` is told each piece's size
    before it is kept (it may refuse it by raising GuardError)."""
    body = bytearray()
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                message = await receive()
                piece = message.get("body", b"")
                if on_piece is not None and piece:
                    on_piece(len(piece))
                body += piece
                if message["type"] != "http.request" or not message.get("more_body"):
                    break
    except TimeoutError:
        raise GuardError(408, "timeout", f"the request body did not arrive within "
                                         f"{timeout_s:g} s") from None
    first: Message | None = ({"type": "http.request", "body": bytes(body), "more_body": False}
                             if message["type"] == "http.request" else message)

    async def replay() -> Message:
        nonlocal first
        if first is None:
            return await receive()  # a disconnect, when it comes
        message, first = first, None
        return message
    return replay


class GuardError(Exception):
    def __init__(self, status: int, code: str, message: str,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers


async def answer(send: Send, status: int, code: str, message: str,
                 headers: dict[str, str] | None = None) -> None:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    extra: list[Any] = [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close"), *extra]})
    await send({"type": "http.response.body", "body": body})
