"""The operator dashboard: one page served as it is (gateway/dashboard/), signed in with the
operator key, which is exchanged for a signed session cookie; the page then uses the /v1 API.
Its scripts and styles (its charts' and the pinned chart library's, vendor/) are served from
here too, since its Content-Security-Policy loads scripts from this origin only."""

from __future__ import annotations

import hashlib
import hmac
import time
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from core.security import (
    SESSION_COOKIE,
    SESSION_TTL_S,
    dashboard_session,
    valid_session,
)
from core.services import Core
from gateway.deps import CoreDep
from gateway.errors import error_response
from gateway.frontdoor import DASHBOARD_ASSETS

router = APIRouter(tags=["dashboard"], include_in_schema=False)
PAGES = Path(__file__).resolve().parent.parent / "dashboard"
# The page has no inline event handlers from data and loads nothing from elsewhere.
_HEADERS = {"Content-Security-Policy": "default-src 'self'; script-src 'self' 'unsafe-inline'; "
                                       "style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
                                       "frame-ancestors 'none'; form-action 'self'",
            "X-Frame-Options": "DENY", "Cache-Control": "no-store",
            "Referrer-Policy": "no-referrer"}


_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}


def _assets() -> dict[str, Path]:
    """The files /dashboard/assets/ serves, by their path under gateway/dashboard/: the scripts
    and styles there, and nothing else (a name is looked up here, never joined to a path)."""
    return {p.relative_to(PAGES).as_posix(): p for p in sorted(PAGES.rglob("*"))
            if p.is_file() and p.suffix in _TYPES}


ASSETS = _assets()


def _signed_in(request: Request, core: Core) -> bool:
    token = request.cookies.get(SESSION_COOKIE)
    return token is not None and valid_session(core.secret, core.operator_key, token,
                                               time.time())


@router.get("/dashboard")
async def dashboard(request: Request, core: CoreDep) -> HTMLResponse:
    """The dashboard once signed in, the sign-in form before (which shows no data)."""
    page = "index.html" if _signed_in(request, core) else "login.html"
    return HTMLResponse((PAGES / page).read_text(), headers=_HEADERS)


@router.post("/dashboard/login")
async def login(request: Request, core: CoreDep,
                key: Annotated[str, Form(max_length=4096)] = "") -> Response:
    if not hmac.compare_digest(key.strip().encode(), core.operator_key.encode()):
        return RedirectResponse("/dashboard?error=bad_key", status_code=303)
    response = RedirectResponse("/dashboard", status_code=303)
    response.set_cookie(SESSION_COOKIE, dashboard_session(core.secret,
                                                          core.operator_key, time.time()),
                        max_age=SESSION_TTL_S, httponly=True, samesite="strict",
                        secure=request.url.scheme == "https", path="/")
    return response


@router.post("/dashboard/logout")
async def logout() -> Response:
    response = RedirectResponse("/dashboard", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get(DASHBOARD_ASSETS + "{name:path}")
async def asset(name: str, request: Request) -> Response:
    """A script or style of the page; they hold no data, so no session is needed."""
    path = ASSETS.get(name)
    if path is None:
        return error_response(404, "not_found", f"the dashboard has no file {name[:100]!r}")
    body = path.read_bytes()
    tag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    headers = {"ETag": tag, "Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff",
               "Cross-Origin-Resource-Policy": "same-origin"}
    if request.headers.get("if-none-match") == tag:
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=_TYPES[path.suffix], headers=headers)
