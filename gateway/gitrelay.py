"""Git over HTTPS for boxes, with the credentials kept on the host.

A box created with `git: {token, repos?}` gets a .gitconfig that sends `https://<host>/…` to
its daemon's loopback relay (127.0.0.1:$BURROW_RELAY_PORT), which passes each request to the
host socket under /v1/relay/git/<host>/…. Here the box is known (its token and uid), so the
request is checked — git's smart-HTTP paths only, the box's own git host, one of the
repositories it was created for (all of that host's when it named none) — and sent on with
the box's credentials added. The token is never written into the box: a box can use it only
for what it was created for, and only while it exists.

Where the relay connects is the operator's to say, never the box's. A host the operator
mapped to a base URL (BURROW_GIT_HOSTS, e.g. a mirror on the LAN) is reached there as given.
Any other host must be one the operator allows (BURROW_GIT_ALLOWED_HOSTS: the public forges
by default) and is reached at https://<host> on a public address only: the name is resolved
here, every address it has must be public (no loopback, private, link-local, CGNAT,
multicast or reserved range, in any IPv6 spelling of one), and the connection goes to the
address that was checked, with the host's name for TLS and `Host`, so a DNS answer that
changes between the check and the connection (rebinding) reaches nothing else.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import re
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from fastapi import Request
from fastapi.responses import StreamingResponse
from starlette.background import BackgroundTask

from core.errors import ApiError
from core.inbox import GIT_RELAY_PORT
from core.settings import Settings

DEFAULT_HOST = "github.com"
HTTPS_PORT = 443
_REPO = r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+?"
_SMART_HTTP = re.compile(rf"^(?P<repo>{_REPO})(?:\.git)?/"
                         r"(?P<what>info/refs|git-upload-pack|git-receive-pack)$")
_SERVICES = ("git-upload-pack", "git-receive-pack")
_FORWARD = ("content-type", "accept", "content-encoding", "accept-encoding", "git-protocol",
            "user-agent", "content-length", "transfer-encoding")


# Kept beside the box's disk image on its host (BoxManager.keep, 0600), not in Redis or
# box.json: only the relay reads it. It stays on the host that ran the box when it was set.
TOKEN_FILE = "git-token"


def load_token(box_dir: Path) -> str | None:
    try:
        return (box_dir / TOKEN_FILE).read_text() or None
    except OSError:
        return None


def prepare(git: dict[str, Any]) -> dict[str, Any]:
    """A box's git settings as kept in its record (the token apart); ValueError for repos
    that are not the host's."""
    kept = {k: v for k, v in git.items() if k in ("user_name", "user_email", "host")}
    kept["repos"] = sorted({repo_name(r, git.get("host", DEFAULT_HOST))
                            for r in git.get("repos") or []})
    kept["relay"] = bool(git.get("token"))
    return kept


def repo_name(url_or_name: str, host: str) -> str:
    """`owner/repo` of a repository URL or name on `host`; ValueError saying why not."""
    text = url_or_name.strip()
    if "://" in text:
        parts = urlsplit(text)
        if parts.hostname != host:
            raise ValueError(f"{url_or_name!r} is not on {host}")
        text = parts.path
    text = text.strip("/").removesuffix(".git")
    if not re.fullmatch(_REPO, text):
        raise ValueError(f"{url_or_name!r} is not a repository (owner/name)")
    return text.lower()


def git_config(box_git: dict[str, Any]) -> bytes:
    """The box's .gitconfig: https://<host>/ goes through the relay; name and email."""
    host = box_git.get("host", DEFAULT_HOST)
    lines = [f'[url "http://127.0.0.1:{GIT_RELAY_PORT}/git/{host}/"]',
             f"\tinsteadOf = https://{host}/"]
    if box_git.get("user_name") or box_git.get("user_email"):
        lines.append("[user]")
        if box_git.get("user_name"):
            lines.append(f"\tname = {box_git['user_name']}")
        if box_git.get("user_email"):
            lines.append(f"\temail = {box_git['user_email']}")
    return ("\n".join(lines) + "\n").encode()


def _check(box_git: dict[str, Any] | None, host: str, path: str, request: Request) -> str:
    """The repository a request may reach, or the ApiError that says why not."""
    if not box_git or not box_git.get("relay"):
        raise ApiError(403, "forbidden", "this box was created without git credentials "
                                         "(git: {token} when creating it)")
    if host != box_git.get("host", DEFAULT_HOST):
        raise ApiError(403, "forbidden", f"this box's git credentials are for "
                                         f"{box_git.get('host', DEFAULT_HOST)}, not {host}")
    match = _SMART_HTTP.match(path)
    if match is None:
        raise ApiError(403, "forbidden", "only git's smart HTTP (info/refs, git-upload-pack, "
                                         "git-receive-pack) is relayed")
    repo = match["repo"].lower()
    allowed = box_git.get("repos") or []
    if allowed and repo not in allowed:
        raise ApiError(403, "forbidden", f"this box may reach {', '.join(allowed)} with its "
                                         f"git credentials, not {repo}")
    if match["what"] == "info/refs" and request.query_params.get("service") not in _SERVICES:
        raise ApiError(403, "forbidden", "info/refs is relayed for git's smart HTTP only")
    if match["what"] != "info/refs" and request.method != "POST":
        raise ApiError(405, "method_not_allowed", "git's service calls are POSTs")
    return repo


@dataclass(frozen=True)
class GitHosts:
    """Where the relay may go: hosts the operator mapped to a base URL, reached as given, and
    hosts the operator allows, reached at https://<host> on a public address only."""

    mapped: dict[str, str]
    allowed: frozenset[str]

    @classmethod
    def of(cls, settings: Settings) -> GitHosts:
        return cls(settings.git_hosts, frozenset(settings.git_allowed_hosts))


@dataclass(frozen=True)
class Upstream:
    base: str  # scheme://address[:port], what the connection goes to
    name: str | None  # the host's name for TLS and Host when `base` is an address


def public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether `address` is on the public internet (not this host, its networks or a
    special range; an IPv6 address that carries an IPv4 one is judged by that one)."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.teredo is not None:
            return False
        carried = address.ipv4_mapped or address.sixtofour
        if carried is not None:
            return public(carried)
    return address.is_global and not address.is_multicast and not address.is_reserved


async def upstream(hosts: GitHosts, host: str) -> Upstream:
    """Where a request for `host` goes, or the ApiError that says why nowhere."""
    if host in hosts.mapped:
        return Upstream(hosts.mapped[host].rstrip("/"), None)
    if host not in hosts.allowed:
        named = ", ".join(sorted(hosts.allowed | set(hosts.mapped))) or "none"
        raise ApiError(403, "forbidden", f"this server's operator allows git relay to {named} "
                                         f"only, not {host} (BURROW_GIT_ALLOWED_HOSTS)")
    try:
        found = await asyncio.get_running_loop().getaddrinfo(
            host, HTTPS_PORT, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as exc:
        raise ApiError(503, "unavailable", f"{host} cannot be resolved ({exc}); retry "
                                           "later") from None
    addresses = [ipaddress.ip_address(str(info[4][0]).partition("%")[0]) for info in found]
    for address in addresses:  # one inward address is enough to refuse the name
        if not public(address):
            raise ApiError(403, "forbidden", f"{host} resolves to {address}, not a public "
                                             "address: the git relay reaches public addresses "
                                             "only (the operator can map a host to a local "
                                             "server with BURROW_GIT_HOSTS)")
    if not addresses:
        raise ApiError(503, "unavailable", f"{host} has no address; retry later")
    address = addresses[0]
    shown = f"[{address}]" if address.version == 6 else str(address)
    return Upstream(f"https://{shown}", host)


async def relay(request: Request, client: httpx.AsyncClient, box_git: dict[str, Any] | None,
                box_dir: Path, hosts: GitHosts, host: str, path: str) -> StreamingResponse:
    _check(box_git, host, path, request)
    token = load_token(box_dir)
    if token is None:
        raise ApiError(403, "forbidden", "this box's git credentials are gone")
    target = await upstream(hosts, host)
    credentials = base64.b64encode(f"x-access-token:{token}".encode()).decode()
    headers = {k: v for k, v in request.headers.items() if k.lower() in _FORWARD}
    headers["authorization"] = f"Basic {credentials}"
    extensions = {}
    if target.name is not None:  # connect to the address checked, speak to the host named
        headers["host"] = target.name
        extensions["sni_hostname"] = target.name

    async def body() -> AsyncIterator[bytes]:
        async for piece in request.stream():
            yield piece

    upstream_request = client.build_request(
        request.method, f"{target.base}/{path}", params=request.query_params, headers=headers,
        content=body() if request.method == "POST" else None, extensions=extensions)
    try:
        response = await client.send(upstream_request, stream=True)
    except httpx.HTTPError as exc:
        raise ApiError(503, "unavailable", f"{host} did not answer ({type(exc).__name__}); "
                                           "retry later") from exc
    out = {k: v for k, v in response.headers.items()
           if k.lower() in ("content-type", "content-encoding", "cache-control")}
    if response.status_code in (401, 403):
        await response.aclose()
        raise ApiError(403, "forbidden", f"{host} refused the box's git credentials "
                                         f"(HTTP {response.status_code}); ask whoever created "
                                         "the box for a token with access")
    return StreamingResponse(response.aiter_raw(), status_code=response.status_code,
                             headers=out, background=BackgroundTask(response.aclose))
