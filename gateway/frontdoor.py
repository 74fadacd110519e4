"""The public port's door: a caller is known before any of its request's body is read, callers
without a key share a small, fixed part of the gateway, and no tenant can hold all of it. The
host socket's door (gateway/hostguard.py) works the same way, with the same pieces.

For every connection and request on the public port, in order:

1. At most `max_connections` connections at once (503, closed as they come, beyond); headers
   of at most `max_header_bytes`, complete within `header_timeout_s` of their first byte
   (431, 408).
2. Routes are told apart by method and path (`FrontDoor.route`). Health probes, the API docs
   and the dashboard's page, sign-in and static files (scripts and styles: no data) need no
   key; every other route needs a key or a dashboard session, checked from the headers alone:
   missing or invalid is a 401 and the connection is closed, its body unread. At most
   `max_unauthenticated` requests are being checked, or served without a key, at once (503
   beyond; health probes are never refused).
3. A tenant (its key, or its boxes' tokens) has at most `tenant_max_concurrent` requests open
   at once (429 and Retry-After beyond); the operator is not bound.
4. A body is at most its route's limit: `max_body_bytes` for file uploads, exec (its stdin),
   the agent route and the observations a product sends itself (1,000 pairs of its own
   requests and answers), `max_json_body_bytes` for every other route, a few KiB without a key
   (413, by Content-Length before anything is read, or as it arrives). Each piece must arrive
   within `body_idle_timeout_s` of the last, and a body of those smaller limits whole within
   `body_timeout_s` (408; the connection is closed). Bodies are read here, whole, so that a
   slow or oversized one is answered by the door, not as a parse error by the app; a file
   upload streams through to the box, bounded the same way. Answers are not limited in time.

The caller found in step 2 goes on in the scope (`PRINCIPAL`): routes do not look the key
up again.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from redis.exceptions import RedisError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.authz import Principal
from core.errors import ApiError
from core.settings import Settings
from gateway.hostguard import GuardedProtocol, GuardError, answer, bounded, prefetched
from gateway.proxy import AGENT_PATH
from models.errors import StatusError

log = logging.getLogger("burrow.gateway")

PROBES = frozenset({"/healthz", "/readyz"})
OPEN = PROBES | {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc", "/dashboard",
                 "/dashboard/login", "/dashboard/logout"}
# The dashboard's static files, which a <script src> fetches without the session's header.
DASHBOARD_ASSETS = "/dashboard/assets/"
# The largest body a route without a key takes: the dashboard's sign-in form (a key of at most
# 4096 characters) is the only one that has one.
OPEN_BODY_BYTES = 16 * 1024
# Room for the JSON around an exec's stdin, or observed bodies, of max_body_bytes.
JSON_FRAMING = 1024 * 1024
_UPLOAD = re.compile(r"^/v1/boxes/[^/]+/files$")
_EXEC = re.compile(r"^/v1/boxes/[^/]+/exec(/stream)?$")
_OBSERVATIONS = re.compile(r"^/v1/tenants/[^/]+/observations$")
_CLOSE = {"Connection": "close"}


@dataclass(frozen=True)
class FrontLimits:
    max_connections: int = 4096
    max_header_bytes: int = 64 * 1024
    header_timeout_s: float = 10.0
    max_body_bytes: int = 100 * 1024 * 1024
    max_json_body_bytes: int = 1024 * 1024
    body_idle_timeout_s: float = 30.0
    body_timeout_s: float = 60.0
    max_unauthenticated: int = 256
    tenant_max_concurrent: int = 128

    @classmethod
    def of(cls, s: Settings) -> FrontLimits:
        return cls(max_connections=s.max_connections, max_header_bytes=s.max_header_bytes,
                   header_timeout_s=s.header_timeout_s, max_body_bytes=s.max_body_bytes,
                   max_json_body_bytes=s.max_json_body_bytes,
                   body_idle_timeout_s=s.body_idle_timeout_s, body_timeout_s=s.body_timeout_s,
                   max_unauthenticated=s.max_unauthenticated,
                   tenant_max_concurrent=s.tenant_max_concurrent)


class FrontProtocol(GuardedProtocol):
    """The guarded protocol (header size and deadline), refusing connections beyond
    `max_connections` as they come, before they cost more than their socket."""

    limits = FrontLimits()  # set per server by `protocol_for`

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            self._refuse(503, b"the server has all the connections it takes open; retry "
                              b"shortly")


def protocol_for(limits: FrontLimits) -> type[FrontProtocol]:
    return type("FrontProtocol", (FrontProtocol,), {"limits": limits})


@dataclass(frozen=True)
class Route:
    """What the door holds a request to."""
    keyed: bool  # needs a key (or a dashboard session)
    limit: int  # the largest body
    too_large: str  # what a larger body is told
    timeout_s: float | None = None  # for the whole body; else only its pace is bounded
    streamed: bool = False  # the body goes through as it arrives, not read whole first
    probe: bool = False  # a health probe: never refused for the number of callers


# Where the door leaves the caller it identified, before any of the request's body was read;
# routes take it from there (gateway/deps.py).
PRINCIPAL = "burrow.principal"
# Who calls, from the request's headers (ApiError 401 if no one we know).
Identify = Callable[[Scope], Awaitable[Principal]]


class FrontDoor:
    """ASGI middleware in front of the gateway (its fast path and FastAPI alike)."""

    def __init__(self, app: ASGIApp, identify: Identify, limits: FrontLimits) -> None:
        self.app = app
        self.identify = identify
        self.limits = limits
        self.unidentified = 0  # requests whose caller is not known (yet)
        self.active: Counter[str] = Counter()  # open requests per tenant
        large, json = limits.max_body_bytes, limits.max_json_body_bytes
        paced = limits.body_timeout_s
        self._open = Route(False, OPEN_BODY_BYTES, f"the request body is over {OPEN_BODY_BYTES} "
                           "bytes, the most a route without a key takes", paced)
        self._probe = Route(False, OPEN_BODY_BYTES, self._open.too_large, paced, probe=True)
        self._json = Route(True, json, f"the request body is over {json} bytes, the most this "
                           "route takes; send less in one call (files go up with PUT "
                           "/v1/boxes/{id}/files)", paced)
        over = f"the request body is over {large} bytes, the most this server takes"
        self._upload = Route(True, large, over, streamed=True)
        self._bulk = Route(True, large + JSON_FRAMING, over)  # exec, observations
        self._agent = Route(True, large, over)

    def route(self, method: str, path: str) -> Route:
        if path in OPEN:
            return self._probe if path in PROBES else self._open
        if method == "GET" and path.startswith(DASHBOARD_ASSETS):
            return self._open
        if method == "PUT" and _UPLOAD.match(path):
            return self._upload
        if method == "POST" and (_EXEC.match(path) or _OBSERVATIONS.match(path)):
            return self._bulk
        if AGENT_PATH.match(path):
            return self._agent
        return self._json

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self.route(scope["method"], scope["path"])
        if route.probe:
            await self._serve(route, scope, receive, send)
            return
        if self.unidentified >= self.limits.max_unauthenticated:
            await answer(send, 503, "unavailable", "the server is checking as many callers "
                         "as it takes at once; retry shortly", {"retry-after": "1"})
            return
        self.unidentified += 1
        try:
            if not route.keyed:
                await self._serve(route, scope, receive, send)
                return
            who = await self._identify(scope, send)
        finally:
            self.unidentified -= 1
        if who is not None:
            scope[PRINCIPAL] = who
            await self._as(who, route, scope, receive, send)

    async def _identify(self, scope: Scope, send: Send) -> Principal | None:
        """The caller, or None once it was answered (401; 503 when keys cannot be checked)."""
        try:
            return await self.identify(scope)
        except StatusError as exc:
            await answer(send, exc.status, exc.code, exc.message, exc.headers)
        except (RedisError, OSError) as exc:
            log.warning("a key could not be checked: %s", exc)
            await answer(send, 503, "unavailable", "keys cannot be checked right now; retry "
                         "shortly", {"retry-after": "2"})
        return None

    async def _as(self, who: Principal, route: Route, scope: Scope, receive: Receive,
                  send: Send) -> None:
        """Serve the request within its tenant's share of the gateway."""
        tenant = None if who.is_operator else who.tenant
        if tenant is None:  # the operator, or a box it made for no tenant
            await self._serve(route, scope, receive, send)
            return
        if self.active[tenant] >= self.limits.tenant_max_concurrent:
            await answer(send, 429, "rate_limited",
                         f"tenant {tenant} has {self.active[tenant]} requests open, the most "
                         "it may at once; wait for one to finish", {"retry-after": "1"})
            return
        self.active[tenant] += 1
        try:
            await self._serve(route, scope, receive, send)
        finally:
            self.active[tenant] -= 1
            if not self.active[tenant]:
                del self.active[tenant]

    async def _serve(self, route: Route, scope: Scope, receive: Receive, send: Send) -> None:
        if _content_length(scope) > route.limit:
            await answer(send, 413, "too_large", route.too_large)
            return
        body = bounded(receive, route.limit, self.limits.body_idle_timeout_s, route.too_large)
        if route.streamed:
            await self.app(scope, _as_api_errors(body), send)
            return
        try:
            body = await prefetched(body, route.timeout_s)
        except GuardError as exc:
            await answer(send, exc.status, exc.code, exc.message)
            return
        await self.app(scope, body, send)


def _content_length(scope: Scope) -> int:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else 0
    return 0


def _as_api_errors(receive: Receive) -> Receive:
    """For a body the app reads as it goes: the door's refusals as the API's errors, which the
    app's handlers answer (and then the connection is closed)."""
    async def receive_api() -> Message:
        try:
            return await receive()
        except GuardError as exc:
            raise ApiError(exc.status, exc.code, exc.message, _CLOSE) from None
    return receive_api
