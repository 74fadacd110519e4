"""The agent proxy: forwards a request into a box's service socket and streams the answer back.

A small HTTP/1.1 client of its own, with a pool of keep-alive connections per box socket:
this is every tenant request's hot path, and a general-purpose client (httpx) cost about
1 ms per request here, several times the box's own answer time. Method, target, headers
(minus the caller's credentials and hop-by-hop headers) and body go in; status, headers and
body stream back.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

from fastapi import Request
from starlette.background import BackgroundTask
from starlette.responses import Response, StreamingResponse

from gateway.errors import ApiError

_HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
    "transfer-encoding", "upgrade",
})
# Not forwarded into the box: the caller's credentials, and what we set ourselves.
_REQUEST_DROP = _HOP_BY_HOP | {"host", "authorization", "cookie", "content-length"}
_CONNECT_TIMEOUT_S = 10.0
_ANSWER_TIMEOUT_S = 600.0  # an agent may think for a while (model calls)
_MAX_HEAD = 64 * 1024
_IDLE_PER_SOCKET = 64
_CHUNK = 64 * 1024
_BUFFER_UP_TO = 1 << 20
_KEEP = 4096  # how much of each answer the observation pipeline sees


class AgentUnreachable(Exception):
    """The box's socket did not answer before anything was sent: safe to retry."""


class _BadAnswer(Exception):
    pass


class _Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    def close(self) -> None:
        self.writer.close()


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, "too_large", f"the request body is over {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "too_large", f"the request body is over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def _read_head(conn: _Conn) -> tuple[int, list[tuple[str, str]]]:
    status_line = await conn.reader.readline()
    if not status_line:
        raise ConnectionResetError("closed before answering")
    parts = status_line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise _BadAnswer(f"not an HTTP status line: {status_line[:80]!r}")
    headers, size = [], len(status_line)
    while True:
        line = await conn.reader.readline()
        size += len(line)
        if size > _MAX_HEAD:
            raise _BadAnswer("answer headers too large")
        if line in (b"\r\n", b"\n", b""):
            break
        name, sep, value = line.decode("latin-1").partition(":")
        if not sep:
            raise _BadAnswer(f"malformed header line {line[:80]!r}")
        headers.append((name.strip(), value.strip()))
    return int(parts[1]), headers


class AgentProxy:
    def __init__(self) -> None:
        self._idle: dict[str, list[_Conn]] = {}

    async def _connect(self, socket_path: str) -> _Conn:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_unix_connection(socket_path, limit=_MAX_HEAD), _CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError) as exc:
            raise AgentUnreachable(str(exc)) from exc
        return _Conn(reader, writer)

    def _release(self, socket_path: str, conn: _Conn) -> None:
        idle = self._idle.setdefault(socket_path, [])
        if len(idle) < _IDLE_PER_SOCKET and not conn.writer.is_closing():
            idle.append(conn)
        else:
            conn.close()

    async def forget(self, socket_path: str) -> None:
        """Drop pooled connections to a socket (its box restarted: they are dead)."""
        for conn in self._idle.pop(socket_path, []):
            conn.close()

    async def _exchange(self, socket_path: str, head: bytes,
                        body: bytes) -> tuple[_Conn, int, list[tuple[str, str]]]:
        """Send the request on a pooled connection (or a new one) and read the answer's head.
        A pooled connection the box has closed meanwhile is retried on a fresh one."""
        while True:
            idle = self._idle.get(socket_path)
            conn = idle.pop() if idle else None
            fresh = conn is None
            if conn is None:
                conn = await self._connect(socket_path)
            try:
                conn.writer.write(head + body)
                await conn.writer.drain()
                status, headers = await asyncio.wait_for(_read_head(conn), _ANSWER_TIMEOUT_S)
                return conn, status, headers
            except OSError as exc:  # reset, broken pipe, or the socket refused more (EINVAL)
                conn.close()
                if fresh:
                    raise AgentUnreachable(str(exc)) from exc
            except TimeoutError as exc:
                conn.close()
                raise ApiError(503, "unavailable", "the tenant's agent did not answer in time; "
                               "retry shortly", {"Retry-After": "5"}) from exc
            except _BadAnswer as exc:
                conn.close()
                raise ApiError(503, "unavailable", f"the tenant's agent answered something "
                               f"that is not HTTP ({exc})") from exc

    async def forward(self, request: Request, socket_path: str, target: str, body: bytes,
                      extra_headers: dict[str, str],
                      on_done: Callable[[int, bytes], None] | None = None) -> Response:
        """`target` is the request target inside the box: percent-encoded, with its query.
        `on_done(status, start of the answer)` runs once the whole answer went through."""
        if not target.startswith("/") or any(c in target for c in " \r\n\t"):
            raise ApiError(400, "invalid_path", "the agent path has characters that cannot "
                           "be forwarded; percent-encode them")
        lines = [f"{request.method} {target} HTTP/1.1", "Host: box",
                 f"Content-Length: {len(body)}"]
        # x-burrow-* come from the gateway only (the tenant, the model the agent may use).
        lines += [f"{k}: {v}" for k, v in request.headers.items()
                  if k.lower() not in _REQUEST_DROP and not k.lower().startswith("x-burrow-")]
        lines += [f"{k}: {v}" for k, v in extra_headers.items()]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")
        conn, status, headers = await self._exchange(socket_path, head, body)
        out_headers = {k: v for k, v in headers if k.lower() not in _HOP_BY_HOP}
        lowered = {k.lower(): v.lower() for k, v in headers}
        no_body = request.method == "HEAD" or status in (204, 304) or 100 <= status < 200
        # After HEAD, a server that wrongly sends a body anyway leaves it on the connection.
        state = {"reusable": "close" not in lowered.get("connection", "")
                 and request.method != "HEAD"}
        seen = bytearray()
        relay = _relay(conn, lowered, no_body, state, seen)

        async def finish() -> None:
            if state.get("done") and state["reusable"]:
                self._release(socket_path, conn)
            else:
                conn.close()
            if on_done is not None:
                on_done(status, bytes(seen))

        length = lowered.get("content-length", "")
        if no_body or (length.isdigit() and int(length) <= _BUFFER_UP_TO):
            # the usual answer: small and sized, so sent whole (streaming costs a task each)
            content = b"".join([piece async for piece in relay])
            await finish()
            return Response(content, status_code=status, headers=out_headers)
        return StreamingResponse(relay, status_code=status, headers=out_headers,
                                 background=BackgroundTask(finish))

    async def close(self) -> None:
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        self._idle.clear()


async def _relay(conn: _Conn, headers: dict[str, str], no_body: bool,
                 state: dict[str, bool], seen: bytearray) -> AsyncIterator[bytes]:
    """The answer's body as it arrives; `state` learns whether the connection is reusable,
    `seen` keeps its start (what the observation pipeline records)."""
    try:
        if no_body:
            return
        if "chunked" in headers.get("transfer-encoding", ""):
            async for piece in _chunked(conn):
                _keep(seen, piece)
                yield piece
        elif "content-length" in headers:
            left = int(headers["content-length"])
            while left > 0:
                piece = await conn.reader.read(min(left, _CHUNK))
                if not piece:
                    raise ConnectionResetError("short body")
                left -= len(piece)
                _keep(seen, piece)
                yield piece
        else:  # delimited by the box closing the connection
            state["reusable"] = False
            while piece := await conn.reader.read(_CHUNK):
                _keep(seen, piece)
                yield piece
    except (ConnectionError, ValueError):
        state["reusable"] = False  # the agent went away mid-answer: a short body
    except BaseException:
        state["reusable"] = False  # the caller went away: the connection is mid-body
        raise
    finally:
        state["done"] = True


def _keep(seen: bytearray, piece: bytes) -> None:
    if len(seen) < _KEEP:
        seen += piece[:_KEEP - len(seen)]


async def _chunked(conn: _Conn) -> AsyncIterator[bytes]:
    while True:
        size_line = await conn.reader.readline()
        size = int(size_line.split(b";")[0].strip() or b"0", 16)
        if size == 0:
            while (await conn.reader.readline()) not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return
        while size > 0:  # a chunk's size is the box's to say: relay it in bounded pieces
            piece = await conn.reader.read(min(size, _CHUNK))
            if not piece:
                raise ConnectionResetError("short chunk")
            size -= len(piece)
            yield piece
        await conn.reader.readexactly(2)

