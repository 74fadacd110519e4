"""The one host-side HTTP/1.1 client of a box's service socket (the tenant agent's): the agent
route proxies through it and the observation pipeline delivers through it.

A small client of its own, with a pool of keep-alive connections per socket: the agent route
is every tenant request's hot path, and a general-purpose client (httpx) cost about 1 ms per
request here, several times the box's own answer time. Whatever runs in the box is not
trusted: heads are capped, bodies are read in bounded pieces whatever the box announces
(sized, chunked, or delimited by closing), and `request()` refuses an answer over its limit.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from boxes.client import Socket, connect
from boxes.errors import BoxUnavailableError, DaemonUnreachableError

CONNECT_TIMEOUT_S = 10.0
ANSWER_TIMEOUT_S = 600.0  # an agent may think for a while (model calls)
MAX_HEAD = 64 * 1024
IDLE_PER_SOCKET = 64
CHUNK = 64 * 1024


class ServiceUnreachable(DaemonUnreachableError):
    """The box's socket did not answer before anything was sent: safe to retry."""


class BadAnswer(BoxUnavailableError):
    """The box answered something that is not HTTP, or too much of it."""


class ServiceTimeout(BoxUnavailableError):
    """The box's service did not answer within the caller's deadline (it may still be
    working on the request: whatever it does with it must be safe to do again)."""


class Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    def close(self) -> None:
        self.writer.close()


async def _read_head(conn: Conn) -> tuple[int, list[tuple[str, str]]]:
    try:
        return await _parse_head(conn)
    except ValueError as exc:  # a line longer than the stream's limit (MAX_HEAD)
        raise BadAnswer("answer headers too large") from exc


async def _parse_head(conn: Conn) -> tuple[int, list[tuple[str, str]]]:
    status_line = await conn.reader.readline()
    if not status_line:
        raise ConnectionResetError("closed before answering")
    parts = status_line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise BadAnswer(f"not an HTTP status line: {status_line[:80]!r}")
    headers, size = [], len(status_line)
    while True:
        line = await conn.reader.readline()
        size += len(line)
        if size > MAX_HEAD:
            raise BadAnswer("answer headers too large")
        if line in (b"\r\n", b"\n", b""):
            break
        name, sep, value = line.decode("latin-1").partition(":")
        if not sep:
            raise BadAnswer(f"malformed header line {line[:80]!r}")
        headers.append((name.strip(), value.strip()))
    return int(parts[1]), headers


class Answer:
    """An answer's status and headers; its body as it arrives (`body()`), once. After the
    body is read, `reusable` says whether the connection may serve another request."""

    def __init__(self, conn: Conn, status: int, headers: list[tuple[str, str]],
                 no_body: bool) -> None:
        self.conn = conn
        self.status = status
        self.headers = headers
        self.lowered = {k.lower(): v.lower() for k, v in headers}
        self.no_body = no_body
        self.reusable = "close" not in self.lowered.get("connection", "")
        self.done = False

    async def body(self) -> AsyncIterator[bytes]:
        try:
            if self.no_body:
                return
            if "chunked" in self.lowered.get("transfer-encoding", ""):
                async for piece in self._chunked():
                    yield piece
            elif "content-length" in self.lowered:
                left = int(self.lowered["content-length"])
                while left > 0:
                    piece = await self.conn.reader.read(min(left, CHUNK))
                    if not piece:
                        raise ConnectionResetError("short body")
                    left -= len(piece)
                    yield piece
            else:  # delimited by the box closing the connection
                self.reusable = False
                while piece := await self.conn.reader.read(CHUNK):
                    yield piece
        except (ConnectionError, ValueError):
            self.reusable = False  # the agent went away mid-answer: a short body
        except BaseException:
            self.reusable = False  # the caller went away: the connection is mid-body
            raise
        finally:
            self.done = True

    async def _chunked(self) -> AsyncIterator[bytes]:
        reader = self.conn.reader
        while True:
            size_line = await reader.readline()
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return
            while size > 0:  # the box says how big a chunk is: relay it in bounded pieces
                piece = await reader.read(min(size, CHUNK))
                if not piece:
                    raise ConnectionResetError("short chunk")
                size -= len(piece)
                yield piece
            await reader.readexactly(2)


class ServiceClient:
    def __init__(self) -> None:
        self._idle: dict[Socket, list[Conn]] = {}

    async def _connect(self, socket_path: Socket) -> Conn:
        try:
            reader, writer = await connect(socket_path, MAX_HEAD, CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError) as exc:
            raise ServiceUnreachable(f"box service unreachable: {exc}") from exc
        return Conn(reader, writer)

    def release(self, socket_path: Socket, answer: Answer) -> None:
        """Return the answer's connection to the pool if it can serve again, else close it."""
        idle = self._idle.setdefault(socket_path, [])
        if (answer.done and answer.reusable and len(idle) < IDLE_PER_SOCKET
                and not answer.conn.writer.is_closing()):
            idle.append(answer.conn)
        else:
            answer.conn.close()

    async def forget(self, socket_path: Socket) -> None:
        """Drop pooled connections to a socket (its box restarted: they are dead)."""
        for conn in self._idle.pop(socket_path, []):
            conn.close()

    async def exchange(self, socket_path: Socket, method: str, head: bytes,
                       body: bytes) -> Answer:
        """Send a request (its head already written) on a pooled connection or a new one and
        read the answer's head. A pooled connection the box has closed meanwhile is retried
        on a fresh one."""
        while True:
            idle = self._idle.get(socket_path)
            conn = idle.pop() if idle else None
            if conn is not None and conn.writer.is_closing():  # the box closed it since
                conn.close()
                continue
            fresh = conn is None
            if conn is None:
                conn = await self._connect(socket_path)
            try:
                conn.writer.write(head + body)
                await conn.writer.drain()
                status, headers = await asyncio.wait_for(_read_head(conn), ANSWER_TIMEOUT_S)
            except (OSError, RuntimeError) as exc:
                # reset, broken pipe, the socket refused more (EINVAL), or (uvloop) a transport
                # closed just now: "unable to perform operation on <UnixTransport closed=True>"
                conn.close()
                if fresh:
                    raise ServiceUnreachable(f"box service unreachable: {exc}") from exc
                continue
            except (TimeoutError, BadAnswer):
                conn.close()
                raise
            except BaseException:  # cancelled (a caller's deadline) with the request sent
                conn.close()
                raise
            no_body = method == "HEAD" or status in (204, 304) or 100 <= status < 200
            answer = Answer(conn, status, headers, no_body)
            # After HEAD, a server that wrongly sends a body leaves it on the connection.
            answer.reusable = answer.reusable and method != "HEAD"
            return answer

    async def request(self, socket_path: Socket, method: str, target: str, body: bytes = b"",
                      headers: dict[str, str] | None = None, max_answer: int = 8 << 20,
                      timeout_s: float | None = None) -> tuple[int, bytes]:
        """One whole request and answer (status, body); an answer over `max_answer` bytes is
        refused (what runs in the box decides how much it sends). `timeout_s` bounds the
        whole exchange, answer included: past it, ServiceTimeout."""
        lines = [f"{method} {target} HTTP/1.1", "Host: box", f"Content-Length: {len(body)}",
                 "Content-Type: application/json",
                 *(f"{k}: {v}" for k, v in (headers or {}).items())]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")
        try:
            async with asyncio.timeout(timeout_s):
                return await self._whole(socket_path, method, head, body, max_answer)
        except TimeoutError as exc:
            raise ServiceTimeout("the box service did not answer in time") from exc

    async def _whole(self, socket_path: Socket, method: str, head: bytes, body: bytes,
                     max_answer: int) -> tuple[int, bytes]:
        answer = await self.exchange(socket_path, method, head, body)
        data = bytearray()
        try:
            async for piece in answer.body():
                data += piece
                if len(data) > max_answer:
                    answer.reusable = False
                    raise BadAnswer(f"the box service answered more than {max_answer} bytes")
        finally:
            self.release(socket_path, answer)
        return answer.status, bytes(data)

    async def close(self) -> None:
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        self._idle.clear()
