"""The API's error format, and the one place where errors become HTTP status codes.

Every error is `{"error": {"code": "<snake_case>", "message": "<what to do>"}}`; no traceback
or library exception ever reaches a client.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError
from starlette.exceptions import HTTPException as StarletteHTTPException

from boxes import errors as box
from gateway.schemas import ErrorOut
from models.errors import StatusError

log = logging.getLogger("burrow.gateway")


_DESCRIPTIONS = {400: "malformed request (for example invalid JSON)",
                 401: "missing or invalid key", 403: "this key may not do that",
                 404: "no such resource (or not yours)", 409: "conflicts with the current state",
                 413: "body too large", 422: "invalid parameters",
                 503: "temporarily unavailable; retry after Retry-After seconds"}
COMMON_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorOut, "description": text} for status, text in _DESCRIPTIONS.items()}


def error_response(status: int, code: str, message: str,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status,
                        headers=headers)


_FILE_CODES = {"not_found": 404, "is_a_directory": 409, "not_a_directory": 409, "exists": 409,
               "not_empty": 409, "permission_denied": 403, "read_only": 403, "disk_full": 409,
               "too_large": 413, "invalid_path": 422}
_RETRY = {"Retry-After": "2"}


def box_error_response(exc: box.BoxError) -> JSONResponse:
    if isinstance(exc, box.BoxFileError):
        return error_response(_FILE_CODES.get(exc.code, 503), exc.code, exc.message)
    if isinstance(exc, box.WakeFailedError):  # the server's failure, not the caller's input
        return error_response(503, "wake_failed", exc.message)
    if isinstance(exc, box.ManifestFormatError):  # this host is older than the snapshot
        return error_response(503, "host_unsupported", exc.message)
    if isinstance(exc, box.InvalidRequestError | box.SnapshotError):
        return error_response(422, "invalid_request", exc.message)
    if isinstance(exc, box.BoxNotFoundError | box.SnapshotNotFoundError):
        return error_response(404, "not_found", exc.message)
    if isinstance(exc, box.BoxStateError):
        return error_response(409, "conflict", exc.message)
    if isinstance(exc, box.BoxBusyError | box.BoxUnavailableError | box.SandboxStartError):
        return error_response(503, "unavailable", exc.message, _RETRY)
    if isinstance(exc, box.HostUnsupportedError):
        return error_response(503, "host_unsupported", exc.message)
    log.error("unmapped box error %s: %s", type(exc).__name__, exc.message)
    return error_response(503, "unavailable", exc.message, _RETRY)


def _validation_message(exc: RequestValidationError) -> tuple[str, str]:
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        return "invalid_json", "the request body is not valid JSON"
    parts = []
    for e in errors[:5]:
        where = ".".join(str(p) for p in e.get("loc", ()) if p != "body")
        parts.append(f"{where or 'body'}: {e.get('msg', 'invalid')}")
    return "invalid_request", "; ".join(parts)


# What a caller is told while Redis (the registry, keys, the queue) does not answer.
REDIS_DOWN = "the registry does not answer right now (Redis is restarting?); retry shortly"


def install(app: FastAPI) -> None:
    @app.exception_handler(StatusError)  # the gateway's ApiError and the models' errors
    async def _api(request: Request, exc: StatusError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(box.BoxError)
    async def _box(request: Request, exc: box.BoxError) -> JSONResponse:
        return box_error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        code, message = _validation_message(exc)
        return error_response(400 if code == "invalid_json" else 422, code, message)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            return error_response(404, "not_found",
                                  f"no route {request.method} {request.url.path}; see /docs")
        if exc.status_code == 405:
            return error_response(405, "method_not_allowed",
                                  f"{request.method} is not allowed on {request.url.path}")
        return error_response(exc.status_code, "http_error", str(exc.detail))

    @app.exception_handler(RedisError)
    async def _redis(request: Request, exc: RedisError) -> JSONResponse:
        log.warning("Redis does not answer on %s %s: %s", request.method, request.url.path,
                    exc)
        return error_response(503, "unavailable", REDIS_DOWN, {"Retry-After": "2"})

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal", "an unexpected error occurred; it was logged")
