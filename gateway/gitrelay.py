"""Git over HTTPS for boxes, with the credentials kept on the host.

A box created with `git: {token, repos?}` gets a .gitconfig that sends `https://<host>/…` to
its daemon's loopback relay (127.0.0.1:$BURROW_RELAY_PORT), which passes each request to the
host socket under /v1/relay/git/<host>/…. Here the box is known (its token and uid), so the
request is checked — git's smart-HTTP paths only, the box's own git host, one of the
repositories it was created for (all of that host's when it named none) — and sent on with
the box's credentials added. The token is never written into the box: a box can use it only
for what it was created for, and only while it exists.
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from fastapi import Request
from fastapi.responses import StreamingResponse
from starlette.background import BackgroundTask

from gateway.errors import ApiError

RELAY_PORT = 7171  # inside each box, on its loopback
DEFAULT_HOST = "github.com"
_REPO = r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+?"
_SMART_HTTP = re.compile(rf"^(?P<repo>{_REPO})(?:\.git)?/"
                         r"(?P<what>info/refs|git-upload-pack|git-receive-pack)$")
_SERVICES = ("git-upload-pack", "git-receive-pack")
_FORWARD = ("content-type", "accept", "content-encoding", "accept-encoding", "git-protocol",
            "user-agent", "content-length", "transfer-encoding")


TOKEN_FILE = "git-token"  # in the box's own dir on the host, root's alone


def save_token(box_dir: Path, token: str) -> None:
    """Kept beside the box's disk image (0600), not in Redis or box.json: only the relay
    reads it, and it goes with the box."""
    fd = os.open(box_dir / TOKEN_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token)


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
    lines = [f'[url "http://127.0.0.1:{RELAY_PORT}/git/{host}/"]',
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


async def relay(request: Request, client: httpx.AsyncClient, box_git: dict[str, Any] | None,
                box_dir: Path, hosts: dict[str, str], host: str,
                path: str) -> StreamingResponse:
    _check(box_git, host, path, request)
    token = load_token(box_dir)
    if token is None:
        raise ApiError(403, "forbidden", "this box's git credentials are gone")
    base = hosts.get(host, f"https://{host}").rstrip("/")
    credentials = base64.b64encode(f"x-access-token:{token}".encode()).decode()
    headers = {k: v for k, v in request.headers.items() if k.lower() in _FORWARD}
    headers["authorization"] = f"Basic {credentials}"

    async def body() -> AsyncIterator[bytes]:
        async for piece in request.stream():
            yield piece

    upstream = client.build_request(request.method, f"{base}/{path}",
                                    params=request.query_params, headers=headers,
                                    content=body() if request.method == "POST" else None)
    try:
        response = await client.send(upstream, stream=True)
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
