"""The agent proxy: forwards a tenant's request into its agent and streams the answer back.

Method, target, headers (minus the caller's credentials, hop-by-hop headers and anything
under x-burrow-, which only the gateway sets) and body go in over the box's service socket
(boxes/servicehttp.py: the one client of it, pooled, hand-written because a general-purpose
client cost about 1 ms per request on this hot path); status, headers and body come back.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable

from fastapi import Request
from starlette.background import BackgroundTask
from starlette.responses import Response, StreamingResponse

from boxes.client import Socket
from boxes.servicehttp import Answer, BadAnswer, ServiceClient, ServiceUnreachable
from core.errors import ApiError

_HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
    "transfer-encoding", "upgrade",
})
# Not forwarded into the box: the caller's credentials, and what we set ourselves.
_REQUEST_DROP = _HOP_BY_HOP | {"host", "authorization", "cookie", "content-length"}
_BUFFER_UP_TO = 1 << 20
_KEEP = 4096  # how much of each answer the observation pipeline sees

# The agent route, /v1/tenants/{tenant}/agent[/...]: its fast path (gateway/routes/agent.py)
# and the front door (gateway/frontdoor.py) tell it apart by this.
AGENT_PATH = re.compile(r"^/v1/tenants/([a-z0-9][a-z0-9_-]{0,62})/agent(/.*)?$")

AgentUnreachable = ServiceUnreachable  # the box's socket took nothing: safe to retry


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


async def forward(client: ServiceClient, request: Request, socket_path: Socket, target: str,
                  body: bytes, extra_headers: dict[str, str],
                  on_done: Callable[[int, bytes], None] | None = None) -> Response:
    """Forward `request` over `client` to the agent at `socket_path`. `target` is the
    request target inside the box: percent-encoded, with its query. `on_done(status, start of
    the answer)` runs once the whole answer went through."""
    if not target.startswith("/") or any(c in target for c in " \r\n\t"):
        raise ApiError(400, "invalid_path", "the agent path has characters that cannot "
                       "be forwarded; percent-encode them")
    lines = [f"{request.method} {target} HTTP/1.1", "Host: box",
             f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in request.headers.items()
              if k.lower() not in _REQUEST_DROP and not k.lower().startswith("x-burrow-")]
    lines += [f"{k}: {v}" for k, v in extra_headers.items()]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")
    try:
        answer = await client.exchange(socket_path, request.method, head, body)
    except TimeoutError as exc:
        raise ApiError(503, "unavailable", "the tenant's agent did not answer in time; "
                       "retry shortly", {"Retry-After": "5"}) from exc
    except BadAnswer as exc:
        raise ApiError(503, "unavailable", f"the tenant's agent answered something "
                       f"that is not HTTP ({exc.message})") from exc
    out_headers = {k: v for k, v in answer.headers if k.lower() not in _HOP_BY_HOP}
    seen = bytearray()

    async def relay() -> AsyncIterator[bytes]:
        async for piece in answer.body():
            if len(seen) < _KEEP:
                seen.extend(piece[:_KEEP - len(seen)])
            yield piece

    async def finish() -> None:
        client.release(socket_path, answer)
        if on_done is not None:
            on_done(answer.status, bytes(seen))

    length = answer.lowered.get("content-length", "")
    if answer.no_body or (length.isdigit() and int(length) <= _BUFFER_UP_TO):
        # the usual answer: small and sized, so sent whole (streaming costs a task each)
        content = b"".join([piece async for piece in relay()])
        await finish()
        return Response(content, status_code=answer.status, headers=out_headers)
    return StreamingResponse(relay(), status_code=answer.status, headers=out_headers,
                             background=BackgroundTask(finish))


__all__ = ["AgentUnreachable", "Answer", "forward", "read_body"]
