"""The agent proxy: forwards a request into a box's service socket and streams the answer back.

One keep-alive HTTP connection pool per box socket. Method, path, query, headers (minus the
caller's credentials and hop-by-hop headers) and body go in; status, headers and body stream
back.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import AsyncIterator

import httpx
from fastapi import Request
from starlette.background import BackgroundTask
from starlette.responses import StreamingResponse

from gateway.errors import ApiError

_HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
    "transfer-encoding", "upgrade", "host", "authorization", "content-length", "cookie",
})
_TIMEOUT = httpx.Timeout(connect=10.0, read=600.0, write=60.0, pool=30.0)


class AgentUnreachable(Exception):
    """The box's socket did not answer (before anything was sent): safe to retry."""


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


class AgentProxy:
    def __init__(self, max_clients: int = 1024) -> None:
        self._clients: OrderedDict[str, httpx.AsyncClient] = OrderedDict()
        self._max = max_clients
        self._closing: set[asyncio.Task[None]] = set()

    def _client(self, socket_path: str) -> httpx.AsyncClient:
        client = self._clients.get(socket_path)
        if client is None:
            client = httpx.AsyncClient(
                transport=httpx.AsyncHTTPTransport(uds=socket_path, retries=0),
                base_url="http://box", timeout=_TIMEOUT)
            self._clients[socket_path] = client
            while len(self._clients) > self._max:
                _, old = self._clients.popitem(last=False)
                task = asyncio.create_task(old.aclose())
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)
        else:
            self._clients.move_to_end(socket_path)
        return client

    async def forget(self, socket_path: str) -> None:
        """Drop pooled connections to a socket (its box restarted: they are dead)."""
        client = self._clients.pop(socket_path, None)
        if client is not None:
            await client.aclose()

    async def forward(self, request: Request, socket_path: str, path: str, body: bytes,
                      extra_headers: dict[str, str]) -> StreamingResponse:
        """`path` is the request target inside the box: percent-encoded, with its query."""
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP]
        headers += list(extra_headers.items())
        client = self._client(socket_path)
        try:
            outgoing = client.build_request(request.method, path, headers=headers, content=body)
        except httpx.InvalidURL as exc:
            raise ApiError(400, "invalid_path", f"cannot forward this path: {exc}") from exc
        try:
            response = await client.send(outgoing, stream=True)
        except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError) as exc:
            raise AgentUnreachable(str(exc)) from exc
        except httpx.TimeoutException as exc:
            raise ApiError(503, "unavailable", "the tenant's agent did not answer in time; "
                           "retry shortly", {"Retry-After": "5"}) from exc
        out_headers = {k: v for k, v in response.headers.items()
                       if k.lower() not in _HOP_BY_HOP and k.lower() != "content-encoding"}
        return StreamingResponse(_relay(response), status_code=response.status_code,
                                 headers=out_headers, background=BackgroundTask(response.aclose))

    async def close(self) -> None:
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()
        for task in list(self._closing):
            await task


async def _relay(response: httpx.Response) -> AsyncIterator[bytes]:
    try:
        async for chunk in response.aiter_raw():
            yield chunk
    except httpx.HTTPError:
        return  # the agent went away mid-answer; the client sees a short body
