"""Liveness and readiness (open: no key needed)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    """Ready to serve: Redis answers and the box runtime started."""
    checks: dict[str, str] = {}
    core = getattr(request.app.state, "core", None)  # None while starting
    try:
        if core is None:
            raise ConnectionError("starting")
        await core.redis.ping()
        checks["redis"] = "ok"
    except Exception as exc:  # any failure means "not ready"; say which
        checks["redis"] = f"unreachable: {type(exc).__name__}"
    checks["boxes"] = "ok" if core is not None else "starting"
    ready = all(v == "ok" for v in checks.values())
    body: dict[str, Any] = {"status": "ready" if ready else "not ready", "checks": checks}
    if core is not None:
        # Informative too: with the snapshot store down this process still serves every
        # running box; freezes fail and their boxes keep running until it answers again.
        # What failed (an endpoint, a bucket) is the operator's to read, in the log.
        failure = core.manager.store_failure
        body["store"] = {"status": "ok"} if failure is None else {
            "status": "unavailable", "code": "store_unavailable", "since": failure.since}
    local = core.local_models if core is not None else None
    if local is not None:
        # Informative, not a readiness condition: the gateway serves without them, and a
        # dead server is restarted (its log says why it died).
        body["local_models"] = local.status()
    return JSONResponse(body, status_code=200 if ready else 503)
