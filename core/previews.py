"""Preview URLs of boxes' ports: which ports of a box are open, how each is authenticated, its
URL, and the checks the preview listener (gateway/preview.py) makes of a visitor's token,
password or cookie.

Invariants:
- A port's secret (a bearer token, or a basic password) is random unless the tenant chose the
  password, shown once when the port is opened, and kept only as an HMAC under the server
  secret: Redis alone opens nothing. It is never a tenant's API key, and each port has its
  own, so a token of one port opens no other.
- Opening a port again replaces its secret (the old token and the cookies made from it stop
  working); closing it revokes both at once. A browser's cookie is derived from the secret's
  hash, so it lives exactly as long as that secret.
- A port record names its box's owner; a request is served only while the box exists, is
  not deleted, and has that owner. Deleting a box or its tenant drops its ports.
- Previews are served from an origin of their own (`PreviewOrigin`), never the API's.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import time
from dataclasses import asdict, dataclass
from typing import Literal
from urllib.parse import urlsplit

from redis.asyncio import Redis

from core.errors import ApiError
from core.keys import Keys
from core.roles import parse_listen
from core.settings import Settings

Auth = Literal["bearer", "basic", "public"]
AUTHS: tuple[Auth, ...] = ("bearer", "basic", "public")
MAX_PORTS_PER_BOX = 32
# The listener's port, by default: the gateway's own + 20 (8420 -> 8440), clear of the second
# gateway on one machine (8421) and the box host API (8430).
DEFAULT_PORT_OFFSET = 20
# Cookies whose names start with this are Burrow's (the preview cookies, the dashboard's
# session): the listener takes them out of every request before a box sees it.
COOKIE_PREFIX = "burrow_"
COOKIE = "burrow_preview"
COOKIE_TTL_S = 7 * 86400
USERNAME = re.compile(r"^[\x21-\x39\x3b-\x7e]{1,64}$")  # printable, no ':' (basic auth's split)
_DOMAIN_SEP = b"burrow-preview v1\n"


@dataclass(frozen=True)
class PortRecord:
    box_id: str
    port: int
    auth: Auth
    owner: str | None
    created_at: float
    secret_hash: str = ""  # HMAC of the token (bearer) or the password (basic)
    username: str | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | bytes) -> PortRecord:
        return cls(**json.loads(raw))


@dataclass(frozen=True)
class Opened:
    record: PortRecord
    token: str | None = None     # bearer: shown once
    password: str | None = None  # basic: shown once when Burrow chose it


@dataclass(frozen=True)
class PreviewOrigin:
    """Where previews are served, as browsers reach them: path-based URLs
    (`{base}/{box}/{port}/`) or, with a domain, host-based ones (`{port}-{box}.{domain}`)."""

    scheme: str
    netloc: str            # the path mode's host[:port]
    domain: str | None     # the host mode's parent domain
    port_suffix: str = ""  # ":8440" in host mode, or "" for the scheme's default port

    @property
    def secure(self) -> bool:
        return self.scheme == "https"

    def url(self, box_id: str, port: int) -> str:
        if self.domain:  # a box id's '_' is no DNS character; ids have no '-' of their own
            label = f"{port}-{box_id.replace('_', '-')}"
            return f"{self.scheme}://{label}.{self.domain}{self.port_suffix}/"
        return f"{self.scheme}://{self.netloc}/{box_id}/{port}/"

    def prefix(self, box_id: str, port: int) -> str:
        """The path the box's app is served under (X-Forwarded-Prefix); '' in host mode."""
        return "" if self.domain else f"/{box_id}/{port}"

    def target_of_host(self, host: str) -> tuple[str, int] | None:
        """(box, port) a Host header names in host mode; None if it names none."""
        if not self.domain:
            return None
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        label, dot, parent = name.lower().partition(".")
        if not dot or parent != self.domain:
            return None
        port, dash, box_label = label.partition("-")
        if not dash or not port.isdigit() or not box_label or len(port) > 5 or \
                "_" in box_label:  # one spelling per box: its URL's
            return None
        return box_label.replace("-", "_"), int(port)

    @classmethod
    def of(cls, settings: Settings, api_port: int | None = None) -> PreviewOrigin | None:
        """The settings' preview origin; None when previews are off."""
        listen = settings.preview_listen
        if listen == "off" or (listen is None and settings.preview_url is None):
            return None
        if settings.preview_url:
            parts = urlsplit(settings.preview_url)
            scheme, netloc = parts.scheme, parts.netloc
            port = f":{parts.port}" if parts.port else ""
        else:
            assert listen is not None
            host, number = parse_listen(listen)
            if host in ("0.0.0.0", "::"):
                host = "localhost"  # every interface: BURROW_PREVIEW_URL names the public one
            scheme = "http"
            netloc = f"[{host}]:{number}" if ":" in host else f"{host}:{number}"
            port = f":{number}" if number != 80 else ""
        if settings.preview_domain:
            return cls(scheme, settings.preview_domain + port, settings.preview_domain, port)
        return cls(scheme, netloc, None)


def _mac(secret: bytes, *parts: str) -> str:
    return hmac.new(secret, _DOMAIN_SEP + "\n".join(parts).encode(),
                    hashlib.sha256).hexdigest()


class Previews:
    """The open ports of boxes, in Redis under the instance's keys."""

    def __init__(self, redis: Redis, keys: Keys, secret: bytes) -> None:
        self.redis = redis
        self.keys = keys
        self.secret = secret

    def _hash(self, box_id: str, port: int, kind: str, value: str) -> str:
        return _mac(self.secret, "secret", kind, box_id, str(port), value)

    async def open(self, box_id: str, owner: str | None, port: int, auth: Auth,
                   username: str | None = None, password: str | None = None) -> Opened:
        """Open `port` of the box (again: a new secret replaces the old one)."""
        if auth not in AUTHS:
            raise ApiError(422, "invalid_request", f"auth must be one of {', '.join(AUTHS)}")
        if (username is not None or password is not None) and auth != "basic":
            raise ApiError(422, "invalid_request",
                           "username and password go with auth \"basic\" only")
        key = self.keys.box_ports(box_id)
        existing = await self.redis.hlen(key)  # type: ignore[misc]
        if existing >= MAX_PORTS_PER_BOX and not await self.redis.hexists(  # type: ignore[misc]
                key, str(port)):
            raise ApiError(409, "conflict", f"box {box_id} has {MAX_PORTS_PER_BOX} open ports, "
                           "the most a box may have; close one first")
        token = chosen = None
        secret_hash = ""
        if auth == "bearer":
            token = "bp_" + secrets.token_urlsafe(32)
            secret_hash = self._hash(box_id, port, "bearer", token)
        elif auth == "basic":
            username = username or "burrow"
            if not USERNAME.match(username):
                raise ApiError(422, "invalid_request", "username must be 1 to 64 printable "
                               "characters without spaces or ':'")
            if password is None:
                chosen = password = secrets.token_urlsafe(18)
            if not 8 <= len(password) <= 256:
                raise ApiError(422, "invalid_request", "password must be 8 to 256 characters "
                               "(leave it out to have one made)")
            secret_hash = self._hash(box_id, port, "basic", f"{username}:{password}")
        record = PortRecord(box_id, port, auth, owner, time.time(), secret_hash,
                            username if auth == "basic" else None)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, str(port), record.to_json())
            if owner is not None:
                pipe.sadd(self.keys.owner_ports(owner), box_id)
            await pipe.execute()
        return Opened(record, token, chosen)

    async def get(self, box_id: str, port: int) -> PortRecord | None:
        raw = await self.redis.hget(self.keys.box_ports(box_id), str(port))  # type: ignore[misc]
        return PortRecord.from_json(raw) if raw else None

    async def list(self, box_id: str) -> list[PortRecord]:
        raw = await self.redis.hgetall(self.keys.box_ports(box_id))  # type: ignore[misc]
        return sorted((PortRecord.from_json(v) for v in raw.values()), key=lambda r: r.port)

    async def close(self, box_id: str, port: int) -> bool:
        """Close the port; its token and cookies open nothing from now on."""
        return bool(await self.redis.hdel(self.keys.box_ports(box_id),  # type: ignore[misc]
                                          str(port)))

    async def forget_box(self, box_id: str, owner: str | None) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(self.keys.box_ports(box_id))
            if owner is not None:
                pipe.srem(self.keys.owner_ports(owner), box_id)
            await pipe.execute()

    async def forget_owner(self, owner: str) -> None:
        """Drop every port of the owner's boxes (its deletion)."""
        index = self.keys.owner_ports(owner)
        boxes = await self.redis.smembers(index)  # type: ignore[misc]
        async with self.redis.pipeline(transaction=True) as pipe:
            for box_id in boxes:
                name = box_id.decode() if isinstance(box_id, bytes) else box_id
                pipe.delete(self.keys.box_ports(name))
            pipe.delete(index)
            await pipe.execute()

    # --- a visitor's credentials ---------------------------------------------------------

    def token_opens(self, record: PortRecord, token: str) -> bool:
        return record.auth == "bearer" and hmac.compare_digest(
            self._hash(record.box_id, record.port, "bearer", token), record.secret_hash)

    def basic_opens(self, record: PortRecord, header: str) -> bool:
        """Whether an `Authorization: Basic …` value holds the port's user and password."""
        scheme, _, value = header.partition(" ")
        if record.auth != "basic" or scheme.lower() != "basic":
            return False
        try:
            pair = base64.b64decode(value.strip(), validate=True).decode()
        except (ValueError, UnicodeDecodeError):
            return False
        return hmac.compare_digest(
            self._hash(record.box_id, record.port, "basic", pair), record.secret_hash)

    def cookie_value(self, record: PortRecord) -> str:
        """What a browser that showed the port's token keeps (it dies with the secret)."""
        return _mac(self.secret, "cookie", record.box_id, str(record.port), record.secret_hash)

    def cookie_opens(self, record: PortRecord, value: str) -> bool:
        return record.auth == "bearer" and hmac.compare_digest(
            self.cookie_value(record), value)


def cookie_name(box_id: str, port: int) -> str:
    """One cookie per preview: in path mode all previews share one origin."""
    return f"{COOKIE}_{port}_{box_id.replace('-', '_')}"
