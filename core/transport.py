"""Requests between a cluster's roles — a gateway or the worker calling a box host — signed
with the server secret every role already holds.

Why signatures and not mutual TLS: every role needs the server secret anyway (box tokens and
dashboard sessions derive from it), so signing adds nothing to run — no CA, no certificates to
issue, rotate or revoke per pod — and it names more than a certificate would: the method, the
path and query, the host the request is for, its time, a nonce and the body's hash. What a
signature does not give is secrecy: on a network others can read, run the host listener with
TLS (a certificate the operator provides) or an encrypted pod network (docs/scale-out.md).

A request carries four headers: its time, a random nonce, the sha256 of its body (or
`UNSIGNED-PAYLOAD` for a body streamed on a route that verifies it otherwise), and an HMAC over
all of them with the method, path, query and audience (the host id it is for), under a key
derived from the server secret for this use alone. The receiver refuses a request that is not
signed, or signed for another host, or older or newer than the window, or whose nonce it has
seen within the window (a replay: the nonce is kept in Redis for twice the window, so no
copy of the request is accepted anywhere while its time is still valid). A body whose hash
does not match fails as it ends; a route that writes keeps what it wrote aside until the body
has ended well.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Protocol
from urllib.parse import quote

import httpx
from redis.asyncio import Redis

from core.keys import Keys

TIME_HEADER = "x-burrow-time"
NONCE_HEADER = "x-burrow-nonce"
BODY_HEADER = "x-burrow-body-sha256"
SIGNATURE_HEADER = "x-burrow-signature"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
DEFAULT_WINDOW_S = 30.0
_DOMAIN = b"burrow transport v1"  # the key is for this use alone (box tokens use the secret)
_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class Watched:
    """An ASGI `send` that notes whether the response has started: after that, a failure can
    no longer be answered with a response of its own (the server ends the connection)."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self.started = False

    async def __call__(self, message: Message) -> None:
        self.started = self.started or message["type"] == "http.response.start"
        await self._send(message)
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class TransportError(Exception):
    """A request between roles that is not what it says it is."""


class Nonces(Protocol):
    """Where the receiver remembers the nonces it has seen (Redis: core/keys.py's family)."""

    async def first_seen(self, nonce: str, ttl_s: float) -> bool: ...


class RedisNonces:
    """Nonces seen by any host of the instance: one key each, gone after twice the window."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys

    async def first_seen(self, nonce: str, ttl_s: float) -> bool:
        return bool(await self.redis.set(self.keys.transport_nonce(nonce), b"1", nx=True,
                                         px=max(1, int(ttl_s * 1000))))


class SignedAuth(httpx.Auth):
    """httpx's side: signs each request for the host it is for (`audience`, or per request
    `extensions={"burrow_audience": host_id}`), its body hashed."""

    requires_request_body = True

    def __init__(self, key: bytes, audience: str | None = None) -> None:
        self.key = key
        self.audience = audience

    def _body_sha256(self, request: httpx.Request) -> str:
        return hashlib.sha256(request.content).hexdigest()

    def auth_flow(self, request: httpx.Request) -> Any:
        audience = request.extensions.get("burrow_audience", self.audience)
        if not audience:
            raise TransportError("a request between roles names the host it is for")
        target = target_of(request.url.path, request.url.query.decode("latin-1"))
        request.headers.update(sign(self.key, request.method, target, audience,
                                    body_sha256=self._body_sha256(request)))
        yield request


class SignedStreamAuth(SignedAuth):
    """For a body streamed as it is read (a file upload passed on): it is not read first to be
    hashed, so its hash is not signed (UNSIGNED_PAYLOAD), and only routes that take a streamed
    body accept that."""

    requires_request_body = False

    def _body_sha256(self, request: httpx.Request) -> str:
        return UNSIGNED_PAYLOAD


def transport_key(secret: bytes) -> bytes:
    return hmac.new(secret, _DOMAIN, hashlib.sha256).digest()


def _canonical(method: str, target: str, audience: str, at: str, nonce: str,
               body_sha256: str) -> bytes:
    return "\n".join(("burrow-request", method.upper(), target, audience, at, nonce,
                      body_sha256)).encode()


def target_of(path: str, query: str) -> str:
    """The path and query as signed: the path percent-encoded the one way both sides agree on
    (ASGI gives it decoded), the query as sent."""
    encoded = quote(path, safe="/-._~!$&'()*+,;=:@")
    return f"{encoded}?{query}" if query else encoded


def sign(key: bytes, method: str, target: str, audience: str, body: bytes | None = None, *,
         body_sha256: str | None = None, now: float | None = None) -> dict[str, str]:
    """The headers that sign a request for `audience` (a host id). `body_sha256` is given for a
    body streamed later (its hash, or UNSIGNED_PAYLOAD); otherwise `body` is hashed."""
    at = f"{(time.time() if now is None else now):.3f}"
    nonce = secrets.token_urlsafe(18)
    digest = body_sha256 or (hashlib.sha256(body).hexdigest() if body else _EMPTY_SHA256)
    mac = hmac.new(key, _canonical(method, target, audience, at, nonce, digest),
                   hashlib.sha256).hexdigest()
    return {TIME_HEADER: at, NONCE_HEADER: nonce, BODY_HEADER: digest, SIGNATURE_HEADER: mac}


async def verify(key: bytes, nonces: Nonces, method: str, target: str, audience: str,
                 headers: MutableMapping[str, str], *, window_s: float = DEFAULT_WINDOW_S,
                 now: float | None = None) -> str:
    """Check a request's signature, time and nonce; the body hash it declares (TransportError
    says what is wrong, in words that reveal nothing a caller without the key could use)."""
    try:
        at, nonce = headers[TIME_HEADER], headers[NONCE_HEADER]
        digest, mac = headers[BODY_HEADER], headers[SIGNATURE_HEADER]
        sent = float(at)
    except (KeyError, ValueError) as exc:
        raise TransportError("not a signed request between Burrow's roles") from exc
    expected = hmac.new(key, _canonical(method, target, audience, at, nonce, digest),
                        hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, mac):
        raise TransportError("bad signature (another secret, another host, or changed "
                             "on the way)")
    if abs((time.time() if now is None else now) - sent) > window_s:
        raise TransportError(f"signed more than {window_s:g} s away from this host's clock")
    if not await nonces.first_seen(nonce, 2 * window_s):
        raise TransportError("replayed: this request was already received")
    return digest


class SignedOnly:
    """ASGI middleware: only requests signed for `audience` reach `app`; a body is hashed as it
    flows and one that does not match its signed hash ends in an error from `receive` (and a
    401 if nothing was answered yet). Routes in `unsigned_payload` may declare
    UNSIGNED_PAYLOAD."""

    def __init__(self, app: ASGIApp, key: bytes, audience: Callable[[], str], nonces: Nonces,
                 *, window_s: float = DEFAULT_WINDOW_S,
                 unsigned_payload: Callable[[str, str], bool] = lambda method, path: False
                 ) -> None:
        self.app = app
        self.key = key
        self.audience = audience
        self.nonces = nonces
        self.window_s = window_s
        self.unsigned_payload = unsigned_payload

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in scope.get("headers", [])}
        target = target_of(scope["path"], scope.get("query_string", b"").decode("latin-1"))
        try:
            digest = await verify(self.key, self.nonces, scope["method"], target,
                                  self.audience(), headers, window_s=self.window_s)
            if digest == UNSIGNED_PAYLOAD and not self.unsigned_payload(scope["method"],
                                                                         scope["path"]):
                raise TransportError("this route's body must be signed")
        except TransportError as exc:
            await _refuse(send, str(exc))
            return
        if digest == UNSIGNED_PAYLOAD:
            await self.app(scope, receive, send)
            return
        watched = Watched(send)
        try:
            await self.app(scope, _hashing(receive, digest), watched)
        except TransportError as exc:
            if watched.started:
                raise  # the server ends the connection: the answer cannot be taken back
            await _refuse(send, str(exc))


def _hashing(receive: Receive, digest: str) -> Receive:
    hasher = hashlib.sha256()

    async def checked() -> Message:
        message = await receive()
        if message["type"] == "http.request":
            hasher.update(message.get("body", b""))
            if not message.get("more_body", False) and hasher.hexdigest() != digest:
                raise TransportError("the body is not the one that was signed")
        return message

    return checked


async def _refuse(send: Send, why: str) -> None:
    body = json.dumps({"error": {"code": "unauthenticated", "message": why}}).encode()
    await send({"type": "http.response.start", "status": 401,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
