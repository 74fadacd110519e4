"""The preview listener: serves boxes' open ports (core/previews.py) on an origin of their own,
never the API's or the dashboard's, so a page a box serves cannot ride an operator's session.

Each request names its box and port by its path (`/{box}/{port}/…`, the prefix passed to the
app as X-Forwarded-Prefix) or, with BURROW_PREVIEW_DOMAIN, by its Host (`{port}-{box}.{domain}`).
It is checked (the port's token, cookie or password; a public port only while the operator's
policy allows), then sent to the port inside the box through the box's daemon (`connect`,
boxes/daemon.py), which wakes a frozen box and waits a moment for a server that is starting.

Why hand-written on h11 rather than an ASGI app: a preview carries whatever the box speaks —
bodies streamed both ways, Server-Sent Events, WebSockets (spliced as bytes after the 101) —
and ASGI would re-frame WebSockets into messages it buffers whole. Requests are parsed here
and sent upstream one per connection, framed anew from what was parsed (Content-Length or
chunked, never both; a request with both, or two lengths, is refused), so a box sees exactly
the request the listener checked: nothing can be smuggled past the check behind it. Every
read is at most 64 KiB and every write waits for the far side, so a box flooding a visitor (or
the other way) holds bounded memory here.

What a box never sees: the port's token (taken out of the query), Burrow's cookies (any cookie
named burrow_*, the dashboard's session among them), the credentials the listener checked, and
any X-Forwarded-* a visitor sent (replaced by the listener's own). A box cannot set a burrow_*
cookie either.

Activity: opening a request to a box counts as its activity (the idle policy sees it); the
bytes of an upgraded connection count when the visitor sends them, never when the box does, so
an open WebSocket or event stream nobody uses lets its box freeze.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from urllib.parse import unquote_plus

import h11

from boxes import BoxError, BoxFileError, BoxNotFoundError, BoxState
from core.policy import Policies
from core.previews import (
    COOKIE_PREFIX,
    COOKIE_TTL_S,
    PortRecord,
    PreviewOrigin,
    Previews,
    cookie_name,
)
from core.remote import Boxes
from core.roles import parse_listen
from core.services import Core
from core.settings import Settings

log = logging.getLogger("burrow.preview")

CHUNK = 1 << 16
MAX_HEAD = 64 * 1024      # a request's or response's head
IDLE_S = 60.0             # a kept-alive connection between requests
OWNER_TTL_S = 5.0         # how long a box's owner is kept (see PreviewServer._owner)
OWNERS_KEPT = 10_000
_HOP = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer",
                  b"transfer-encoding", b"upgrade", b"proxy-authorization", b"content-length",
                  b"expect", b"forwarded", b"x-forwarded-for", b"x-forwarded-proto",
                  b"x-forwarded-host", b"x-forwarded-prefix", b"x-forwarded-port",
                  b"x-real-ip"})
_RESPONSE_HOP = frozenset({b"connection", b"keep-alive", b"proxy-connection",
                           b"transfer-encoding", b"upgrade", b"trailer"})
_MIGHT_SWITCH = h11.MIGHT_SWITCH_PROTOCOL  # type: ignore[attr-defined]  # (not in h11's stubs)
_NOT_HERE = "No preview here: this address names no open port of a box."


class _Refused(Exception):
    """An answer the listener gives itself (status, message, extra headers)."""

    def __init__(self, status: int, message: str, headers: Iterable[tuple[bytes, bytes]] = (),
                 close: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = list(headers)
        self.close = close


class _Gone(Exception):
    """The visitor's connection ended (or broke) mid-exchange: nothing more to answer."""


@dataclass
class _Target:
    box_id: str
    port: int
    path: bytes    # what the box is asked for
    prefix: str    # X-Forwarded-Prefix ('' in host mode)


def _page(status: int, message: str) -> bytes:
    title = f"{status} {h11_reason(status)}"
    return (f"<!doctype html><meta charset=utf-8><title>{title}</title>"
            f"<h1>{title}</h1><p>{html.escape(message)}</p>\n").encode()


def h11_reason(status: int) -> str:
    return {303: "See Other", 308: "Permanent Redirect", 400: "Bad Request",
            401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
            413: "Content Too Large", 431: "Request Header Fields Too Large",
            502: "Bad Gateway", 503: "Service Unavailable"}.get(status, "Error")


def _strip_token(query: bytes) -> tuple[bytes, str | None]:
    """The query without its `token` parameters, and the (last) token it held."""
    kept, token = [], None
    for pair in query.split(b"&") if query else []:
        name, _, value = pair.partition(b"=")
        if unquote_plus(name.decode("latin-1")) == "token":
            token = unquote_plus(value.decode("latin-1"))
        else:
            kept.append(pair)
    return b"&".join(kept), token


def _cookies(headers: list[tuple[bytes, bytes]]) -> tuple[dict[str, str], bytes | None]:
    """Burrow's cookies of a request, and its Cookie header without them (None: none left)."""
    ours: dict[str, str] = {}
    kept: list[bytes] = []
    for name, value in headers:
        if name != b"cookie":
            continue
        for part in value.split(b";"):
            pair = part.strip()
            key, _, val = pair.partition(b"=")
            if key.decode("latin-1").startswith(COOKIE_PREFIX):
                ours[key.decode("latin-1")] = val.decode("latin-1")
            elif pair:
                kept.append(pair)
    return ours, b"; ".join(kept) or None


class PreviewServer:
    """The listener (one per gateway process), run in the gateway's lifespan."""

    def __init__(self, manager: Boxes, previews: Previews, policies: Policies,
                 origin: PreviewOrigin, settings: Settings) -> None:
        self.manager = manager
        self.previews = previews
        self.policies = policies
        self.origin = origin
        self.settings = settings
        self.server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._per_box: dict[str, int] = {}
        self._owners: dict[str, tuple[tuple[str | None] | None, float]] = {}

    @classmethod
    async def serve(cls, manager: Boxes, previews: Previews, policies: Policies,
                    origin: PreviewOrigin, settings: Settings) -> PreviewServer:
        assert settings.preview_listen not in (None, "off")
        host, port = parse_listen(settings.preview_listen or "")
        self = cls(manager, previews, policies, origin, settings)
        try:
            self.server = await asyncio.start_server(self._accept, host, port, limit=CHUNK)
        except OSError as exc:
            raise RuntimeError(f"cannot listen for previews on {settings.preview_listen}: "
                               f"{exc.strerror}; set BURROW_PREVIEW_LISTEN to a free "
                               "address:port, or to off") from None
        log.info("previews served at %s", origin.url("{box}", 0).replace("/0/", "/{port}/"))
        return self

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    async def aclose(self) -> None:
        if self.server is not None:
            self.server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        if self.server is not None:
            await self.server.wait_closed()

    # --- a visitor's connection ----------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if len(self._connections) >= self.settings.preview_max_connections:
            writer.close()
            return
        self._connections.add(task)
        try:
            await _Visitor(self, reader, writer).run()
        except (_Gone, OSError, asyncio.CancelledError, TimeoutError):
            pass
        except Exception:  # a bug of ours: this connection ends, the listener keeps serving
            log.exception("a preview connection failed")
        finally:
            self._connections.discard(task)
            writer.close()

    @contextlib.contextmanager
    def _slot(self, box_id: str) -> Iterator[None]:
        held = self._per_box.get(box_id, 0)
        if held >= self.settings.preview_max_connections_per_box:
            raise _Refused(503, f"this preview has {held} requests open, the most it may have "
                                "at once; try again shortly", [(b"retry-after", b"2")])
        self._per_box[box_id] = held + 1
        try:
            yield
        finally:
            left = self._per_box[box_id] - 1
            if left:
                self._per_box[box_id] = left
            else:
                del self._per_box[box_id]

    # --- what a request may reach ------------------------------------------------------------

    def target(self, request: h11.Request) -> _Target:
        raw = bytes(request.target)
        path, _, query = raw.partition(b"?")
        if self.origin.domain:
            host = next((v for k, v in request.headers if k == b"host"), b"")
            found = self.origin.target_of_host(host.decode("latin-1"))
            if found is None:
                raise _Refused(404, _NOT_HERE)
            return _Target(found[0], found[1], raw, "")
        parts = path.split(b"/", 3)  # b"", box, port, rest
        if len(parts) < 3 or not parts[2].isdigit() or len(parts[2]) > 5 or not (
                0 < len(parts[1]) <= 64 and parts[1].replace(b"_", b"").isalnum()
                and parts[1].isascii()):
            raise _Refused(404, _NOT_HERE)
        box_id, port = parts[1].decode(), int(parts[2])
        prefix = f"/{box_id}/{port}"
        if len(parts) == 3:  # the app's root is its prefix with a slash
            location = prefix.encode() + b"/" + (b"?" + query if query else b"")
            raise _Refused(308, "the preview is one slash further",
                           [(b"location", location)])
        upstream = b"/" + parts[3] + (b"?" + query if query else b"")
        return _Target(box_id, port, upstream, prefix)

    async def record(self, target: _Target) -> PortRecord:
        """The port's record, while its box exists with the owner that opened it; the same
        404 for every other case (a missing box is not told from another tenant's)."""
        if not 0 < target.port < 65536:
            raise _Refused(404, _NOT_HERE)
        record = await self.previews.get(target.box_id, target.port)
        if record is None or await self._owner(target.box_id) != (record.owner,):
            raise _Refused(404, _NOT_HERE)
        if record.auth == "public" and record.owner is not None:
            policy = await self.policies.for_tenant(record.owner)
            if not policy.allow_public_ports:
                raise _Refused(403, "public previews are turned off by the operator "
                                    "(allow_public_ports); open this port with a token")
        return record


    async def _owner(self, box_id: str) -> tuple[str | None] | None:
        """(the box's owner,), or None if the box is gone. Kept a few seconds: a box's owner
        never changes and its id is never reused, and a deleted box's ports are deleted with
        it (the port record, read on every request, is what revocation removes)."""
        now = time.monotonic()
        known = self._owners.get(box_id)
        if known is not None and known[1] > now:
            return known[0]
        try:
            box = await self.manager.get(box_id)
        except BoxNotFoundError:
            box = None
        owner = None if box is None or box.state == BoxState.DELETED else (box.owner,)
        if len(self._owners) >= OWNERS_KEPT:
            self._owners.clear()
        self._owners[box_id] = (owner, now + OWNER_TTL_S)
        return owner


class _Visitor:
    """One visitor's connection: requests one after another (kept alive), each sent to its
    box on a connection of its own; or, after a 101, bytes both ways."""

    def __init__(self, server: PreviewServer, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        peer = writer.get_extra_info("peername")
        self.peer = str(peer[0]) if isinstance(peer, tuple) and peer else "unknown"

    async def _event(self, wait_s: float | None) -> h11.Event | type[h11.PAUSED]:
        while True:
            try:
                event = self.conn.next_event()
            except h11.RemoteProtocolError as exc:
                raise _Refused(exc.error_status_hint, f"a malformed request: {exc}",
                               close=True) from None
            if event is not h11.NEED_DATA:
                return event  # type: ignore[return-value]
            try:
                data = await asyncio.wait_for(self.reader.read(CHUNK), wait_s)
            except (OSError, TimeoutError) as exc:
                raise _Gone from exc
            self.conn.receive_data(data)

    async def _send(self, event: h11.Event) -> None:
        data = self.conn.send(event)
        if data:
            self.writer.write(data)
            try:
                await self.writer.drain()
            except OSError as exc:
                raise _Gone from exc

    async def run(self) -> None:
        timeout = self.server.settings.header_timeout_s
        while True:
            try:
                event = await self._event(timeout)
                if isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                    return
                assert isinstance(event, h11.Request)
                if await self._request(event):
                    return  # the connection was upgraded, and has ended
            except _Refused as refused:
                if self.conn.our_state in (h11.SEND_BODY, h11.DONE, h11.MUST_CLOSE, h11.CLOSED,
                                           h11.SWITCHED_PROTOCOL):
                    return  # an answer had begun: all the visitor can be told is the end
                await self._refuse(refused)
                if refused.close:
                    return
            if self.conn.our_state is h11.MUST_CLOSE or self.conn.their_state is h11.MUST_CLOSE:
                return
            if self.conn.their_state is not h11.DONE:
                return  # a body left unread (an early answer): do not guess where it ends
            self.conn.start_next_cycle()
            timeout = IDLE_S

    def _rest_of_request(self) -> None:
        """Take the rest of a request answered before its body was read, if it is already
        here (a GET's end); otherwise the connection closes after the answer."""
        with contextlib.suppress(h11.RemoteProtocolError):
            while self.conn.their_state is h11.SEND_BODY:
                event = self.conn.next_event()
                if not isinstance(event, h11.Data | h11.EndOfMessage):
                    return

    async def _refuse(self, refused: _Refused) -> None:
        self._rest_of_request()
        body = _page(refused.status, refused.message)
        headers = [(b"content-type", b"text/html; charset=utf-8"),
                   (b"content-length", str(len(body)).encode()),
                   (b"cache-control", b"no-store"), *refused.headers]
        if refused.close or self.conn.their_state not in (h11.DONE, h11.IDLE):
            headers.append((b"connection", b"close"))
        if self.conn.their_state is h11.ERROR or self.conn.our_state is not h11.SEND_RESPONSE:
            # h11 gave up on the stream (a malformed request): answer by hand, then close.
            head = (f"HTTP/1.1 {refused.status} {h11_reason(refused.status)}\r\n".encode()
                    + b"".join(k + b": " + v + b"\r\n" for k, v in headers)
                    + b"connection: close\r\n\r\n")
            self.writer.write(head + body)
            with contextlib.suppress(OSError):
                await self.writer.drain()
            raise _Gone
        await self._send(h11.Response(status_code=refused.status, headers=headers))
        await self._send(h11.Data(data=body))
        await self._send(h11.EndOfMessage())

    # --- one request -----------------------------------------------------------------------

    def _check_framing(self, request: h11.Request) -> None:
        names = [k for k, _ in request.headers]
        if b"transfer-encoding" in names and b"content-length" in names:
            raise _Refused(400, "a request may not carry both Content-Length and "
                                "Transfer-Encoding", close=True)

    def _credentials(self, request: h11.Request, record: PortRecord, target: _Target,
                     query_token: str | None, cookies: dict[str, str]) -> bool:
        """Whether the visitor may pass; True when the Authorization header was the port's
        credential (then the box does not see it)."""
        previews = self.server.previews
        auth = next((v.decode("latin-1") for k, v in request.headers if k == b"authorization"),
                    None)
        if record.auth == "public":
            return False
        if record.auth == "basic":
            if auth is not None and previews.basic_opens(record, auth):
                return True
            raise _Refused(401, "this preview needs its user name and password",
                           [(b"www-authenticate", b'Basic realm="Burrow preview", '
                                                  b'charset="UTF-8"')])
        if query_token is not None and previews.token_opens(record, query_token):
            return False
        if auth is not None and auth[:7].lower() == "bearer " and previews.token_opens(
                record, auth[7:].strip()):
            return True
        cookie = cookies.get(cookie_name(target.box_id, target.port))
        if cookie is not None and previews.cookie_opens(record, cookie):
            return False
        raise _Refused(401, "this preview needs its token: open the address with ?token=… "
                            "once (the browser keeps a cookie), or send "
                            "Authorization: Bearer <token>",
                       [(b"www-authenticate", b'Bearer realm="Burrow preview"')])

    async def _request(self, request: h11.Request) -> bool:
        """Answer one request; True if it upgraded the connection (which has ended)."""
        server = self.server
        self._check_framing(request)
        target = server.target(request)
        record = await server.record(target)
        path, _, query = target.path.partition(b"?")
        query, token = _strip_token(query)
        cookies, cookie_header = _cookies(list(request.headers))
        took_authorization = self._credentials(request, record, target, token, cookies)
        if token is not None and record.auth == "bearer" and request.method in (b"GET", b"HEAD") \
                and not any(k == b"upgrade" for k, _ in request.headers):
            # A browser showed the token: keep it as a cookie, and go on without it in the URL.
            location = (target.prefix.encode() + path + (b"?" + query if query else b""))
            flags = [f"Path={target.prefix or ''}/", "HttpOnly", "SameSite=Lax",
                     f"Max-Age={COOKIE_TTL_S}"]
            if server.origin.secure:
                flags.append("Secure")
            value = server.previews.cookie_value(record)
            cookie = "; ".join([f"{cookie_name(target.box_id, target.port)}={value}", *flags])
            raise _Refused(303, "the token is kept as a cookie of this preview",
                           [(b"location", location), (b"set-cookie", cookie.encode())])
        upstream_path = path + (b"?" + query if query else b"")
        headers = self._upstream_headers(request, target, cookie_header, took_authorization)
        with server._slot(target.box_id):
            return await self._forward(request, target, upstream_path, headers)

    def _upstream_headers(self, request: h11.Request, target: _Target,
                          cookie_header: bytes | None,
                          took_authorization: bool) -> list[tuple[bytes, bytes]]:
        upgrade = next((v for k, v in request.headers if k == b"upgrade"), None)
        headers = [(k, v) for k, v in request.headers
                   if k not in _HOP and k != b"cookie"
                   and not (took_authorization and k == b"authorization")]
        if cookie_header is not None:
            headers.append((b"cookie", cookie_header))
        host = next((v for k, v in request.headers if k == b"host"), b"")
        headers += [(b"x-forwarded-for", self.peer.encode()),
                    (b"x-forwarded-proto", self.server.origin.scheme.encode()),
                    (b"x-forwarded-host", host)]
        if target.prefix:
            headers.append((b"x-forwarded-prefix", target.prefix.encode()))
        length = next((v for k, v in request.headers if k == b"content-length"), None)
        if length is not None:
            headers.append((b"content-length", length))
        elif any(k == b"transfer-encoding" for k, _ in request.headers):
            headers.append((b"transfer-encoding", b"chunked"))
        if upgrade is not None:
            headers += [(b"connection", b"upgrade"), (b"upgrade", upgrade)]
        else:
            headers.append((b"connection", b"close"))  # one request per connection to the box
        return headers

    async def _open(self, target: _Target) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        try:
            return await self.server.manager.connect_port(
                target.box_id, target.port, self.server.settings.preview_wait_s)
        except BoxNotFoundError:
            raise _Refused(404, _NOT_HERE) from None
        except BoxFileError as exc:
            if exc.code == "refused":
                raise _Refused(502, f"nothing listens on port {target.port} in the box yet; "
                                    "start the server there (on 0.0.0.0 or 127.0.0.1)",
                               [(b"retry-after", b"2")]) from None
            raise _Refused(502, f"the box could not reach port {target.port}: "
                                f"{exc.message}") from None
        except BoxError as exc:
            log.warning("preview of box %s: %s", target.box_id, exc)
            raise _Refused(503, "the box is not available right now; try again shortly",
                           [(b"retry-after", b"2")]) from None

    async def _forward(self, request: h11.Request, target: _Target, path: bytes,
                       headers: list[tuple[bytes, bytes]]) -> bool:
        up_reader, up_writer = await self._open(target)
        upstream = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD)
        body: asyncio.Task[None] | None = None
        try:
            head = upstream.send(h11.Request(method=request.method, target=path,
                                             headers=headers))
            if self._bodyless(request):  # the request is whole: no task to carry a body
                up_writer.write(head + (upstream.send(h11.EndOfMessage()) or b""))
            else:
                up_writer.write(head)
                body = asyncio.create_task(self._send_body(upstream, up_writer))
            response = await self._upstream_event(upstream, up_reader, body)
            switching = self.conn.their_state is _MIGHT_SWITCH
            if isinstance(response, h11.InformationalResponse) and \
                    response.status_code == 101 and switching:
                if body is not None:
                    await body
                await self._switch(response, upstream, target, up_reader, up_writer)
                return True
            while isinstance(response, h11.InformationalResponse):  # 100, 103: the box's
                response = await self._upstream_event(upstream, up_reader, body)
            if not isinstance(response, h11.Response):
                raise _Refused(502, f"the server on port {target.port} ended without an "
                                    "answer")
            kept = [(k, v) for k, v in response.headers if k not in _RESPONSE_HOP
                    and not (k == b"set-cookie"
                             and v.lstrip().decode("latin-1").startswith(COOKIE_PREFIX))]
            await self._send(h11.Response(status_code=response.status_code, headers=kept,
                                          reason=response.reason))
            while True:
                event = await self._upstream_event(upstream, up_reader, body)
                if isinstance(event, h11.Data):
                    await self._send(h11.Data(data=bytes(event.data)))
                elif isinstance(event, h11.EndOfMessage):
                    await self._send(h11.EndOfMessage())
                    return False
                else:
                    raise _Gone  # the box ended mid-answer: so does the visitor's
        finally:
            if body is not None and not body.done():
                body.cancel()
                with contextlib.suppress(asyncio.CancelledError, _Gone, _Refused, OSError):
                    await body
            up_writer.close()

    def _bodyless(self, request: h11.Request) -> bool:
        """Whether the request has no body, and its end is taken (a GET's, say)."""
        length = next((v for k, v in request.headers if k == b"content-length"), b"0")
        if length != b"0" or any(k == b"transfer-encoding" for k, _ in request.headers) or \
                self.conn.they_are_waiting_for_100_continue:
            return False
        return isinstance(self.conn.next_event(), h11.EndOfMessage)

    async def _send_body(self, upstream: h11.Connection, up_writer: asyncio.StreamWriter) -> None:
        """The visitor's request body, to the box as it arrives."""
        if self.conn.they_are_waiting_for_100_continue:
            await self._send(h11.InformationalResponse(status_code=100, headers=[]))
        while True:
            event = await self._event(self.server.settings.body_idle_timeout_s)
            if isinstance(event, h11.Data):
                up_writer.write(upstream.send(h11.Data(data=bytes(event.data))))
            elif isinstance(event, h11.EndOfMessage):
                up_writer.write(upstream.send(h11.EndOfMessage()))
                await up_writer.drain()
                return
            else:
                raise _Gone
            await up_writer.drain()

    async def _upstream_event(self, upstream: h11.Connection, reader: asyncio.StreamReader,
                              body: asyncio.Task[None] | None) -> h11.Event:
        while True:
            try:
                event = upstream.next_event()
            except h11.RemoteProtocolError:
                raise _Refused(502, "the server in the box sent a malformed answer") from None
            if event is not h11.NEED_DATA:
                return event  # type: ignore[return-value]
            if body is None or (body.done() and body.exception() is None):
                try:
                    data = await reader.read(CHUNK)
                except OSError:
                    data = b""
                upstream.receive_data(data)
                continue
            read = asyncio.ensure_future(reader.read(CHUNK))
            try:
                if not body.done():
                    await asyncio.wait({read, body}, return_when=asyncio.FIRST_COMPLETED)
                if body.done() and not read.done() and isinstance(body.exception(),
                                                                  _Gone | _Refused):
                    raise _Gone  # the visitor left, stalled or broke its body
                data = await read
            except OSError:
                data = b""
            finally:
                if not read.done():
                    read.cancel()
                    with contextlib.suppress(asyncio.CancelledError, OSError):
                        await read
            upstream.receive_data(data)

    async def _switch(self, response: h11.InformationalResponse, upstream: h11.Connection,
                      target: _Target, up_reader: asyncio.StreamReader,
                      up_writer: asyncio.StreamWriter) -> None:
        """The box accepted an upgrade (a WebSocket): tell the visitor, then bytes both ways."""
        await self._send(h11.InformationalResponse(status_code=101,
                                                   headers=list(response.headers),
                                                   reason=response.reason))
        visitor_ahead, _ = self.conn.trailing_data
        box_ahead, _ = upstream.trailing_data
        activity = self.server.manager.activity
        if visitor_ahead:
            up_writer.write(visitor_ahead)
        if box_ahead:
            self.writer.write(box_ahead)

        async def to_box() -> None:
            while data := await self.reader.read(CHUNK):
                activity.touch(target.box_id)  # the visitor's bytes are activity
                up_writer.write(data)
                await up_writer.drain()
            if up_writer.can_write_eof():
                up_writer.write_eof()

        async def to_visitor() -> None:
            while data := await up_reader.read(CHUNK):
                self.writer.write(data)
                await self.writer.drain()

        tasks = [asyncio.create_task(to_box()), asyncio.create_task(to_visitor())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)



async def preview_listener(core: Core) -> PreviewServer | None:
    """The listener the settings ask for (BURROW_PREVIEW_LISTEN), or None."""
    origin = PreviewOrigin.of(core.settings)
    if origin is None or core.settings.preview_listen in (None, "off"):
        return None
    return await PreviewServer.serve(core.manager, Previews(core.redis, core.keys, core.secret),
                                     core.policies, origin, core.settings)
