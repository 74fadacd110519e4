"""The SDK's exceptions, and the one place where HTTP statuses and transport failures become
them: no httpx exception reaches a user."""

from __future__ import annotations

import builtins
import json
from typing import Any

import httpx


class BurrowError(Exception):
    """Root of every error the SDK raises.

    BurrowError
    ├── AuthenticationError ........ 401: missing or wrong key (BURROW_API_KEY / api_key=)
    ├── PermissionDeniedError ...... 403: this key may not do that
    ├── NotFoundError .............. 404: no such box, snapshot, file or run (or not yours)
    ├── ConflictError .............. 409: conflicts with the current state
    │   └── BoxStateError .......... 409: the box's state does not allow it
    ├── InvalidRequestError ........ 400, 413, 422: bad parameters, body too large
    ├── RateLimitError ............. 429: slow down; retry after `retry_after` seconds
    ├── ServiceUnavailableError .... 503: busy or a dependency is down; retry later
    ├── TimeoutError ............... no answer in time (also a builtins.TimeoutError)
    ├── ConnectionError ............ the server cannot be reached (also a builtins.ConnectionError)
    └── GitError ................... a git command in the box failed (`stderr`, `exit_code`)

    Every error has `message`, `code` (the server's snake_case code, or the SDK's own) and
    `status` (the HTTP status, None when there was no answer).
    """

    def __init__(self, message: str, *, code: str = "error", status: int | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status
        self.retry_after = retry_after

    def __str__(self) -> str:
        return self.message


class AuthenticationError(BurrowError):
    """401: the key is missing or not valid."""


class PermissionDeniedError(BurrowError):
    """403: the key is valid but may not do this."""


class NotFoundError(BurrowError):
    """404: no such resource, or it belongs to another tenant."""


class ConflictError(BurrowError):
    """409: the request conflicts with the current state (a file exists, a path is a
    directory, the box has no agent configured, ...)."""


class BoxStateError(ConflictError):
    """409: the box's state does not allow this (for example it is being deleted)."""


class InvalidRequestError(BurrowError):
    """400, 413 or 422: the request is malformed, too large or has invalid parameters."""


class RateLimitError(BurrowError):
    """429: too many requests; wait `retry_after` seconds."""


class ServiceUnavailableError(BurrowError):
    """503: the server is busy or a dependency (a model provider, storage) is unavailable."""


class TimeoutError(BurrowError, builtins.TimeoutError):
    """The server did not answer in time."""


class ConnectionError(BurrowError, builtins.ConnectionError):
    """The server cannot be reached."""


class GitError(BurrowError):
    """A git command in the box exited non-zero."""

    def __init__(self, message: str, *, stderr: str = "", exit_code: int | None = None) -> None:
        super().__init__(message, code="git_failed")
        self.stderr = stderr
        self.exit_code = exit_code


_BY_STATUS: dict[int, type[BurrowError]] = {
    400: InvalidRequestError, 401: AuthenticationError, 403: PermissionDeniedError,
    404: NotFoundError, 409: ConflictError, 413: InvalidRequestError,
    422: InvalidRequestError, 429: RateLimitError, 503: ServiceUnavailableError,
}


def _detail(body: bytes, reason: str) -> tuple[str, str]:
    """The server's {"error": {"code", "message"}}, or something readable if it sent other."""
    try:
        error: Any = json.loads(body)["error"]
        return str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        text = body.decode("utf-8", "replace").strip()[:300]
        return "http_error", text or reason


def from_response(response: httpx.Response) -> BurrowError:
    """The exception for an answer with an error status (its body already read)."""
    status = response.status_code
    code, message = _detail(response.content, response.reason_phrase)
    cls = _BY_STATUS.get(status, BurrowError)
    if status == 409 and code == "conflict":
        cls = BoxStateError
    retry = response.headers.get("retry-after")
    try:
        retry_after = float(retry) if retry is not None else None
    except ValueError:
        retry_after = None
    return cls(message, code=code, status=status, retry_after=retry_after)


def from_transport(exc: httpx.HTTPError | httpx.InvalidURL, url: str) -> BurrowError:
    """The exception for a request that got no (complete) answer."""
    if isinstance(exc, httpx.InvalidURL | httpx.UnsupportedProtocol):
        return InvalidRequestError(f"{url!r} is not a usable Burrow URL ({exc}); set BURROW_URL "
                                   "or base_url= to something like http://127.0.0.1:8420",
                                   code="invalid_url")
    if isinstance(exc, httpx.TimeoutException):
        return TimeoutError(f"Burrow at {url} did not answer in time ({type(exc).__name__}); "
                            "pass a larger timeout= or timeout_s=", code="timeout")
    if isinstance(exc, httpx.ConnectError | httpx.NetworkError | httpx.RemoteProtocolError):
        return ConnectionError(f"cannot reach Burrow at {url} ({exc or type(exc).__name__}); "
                               "start it with `burrow serve`, or set BURROW_URL (or pass "
                               "base_url=) to its address", code="unreachable")
    return BurrowError(f"request to Burrow at {url} failed: {exc or type(exc).__name__}",
                       code="transport_error")


_BY_CLOSE: dict[int, type[BurrowError]] = {
    4400: InvalidRequestError, 4401: AuthenticationError, 4403: PermissionDeniedError,
    4404: NotFoundError, 4429: RateLimitError, 1011: ServiceUnavailableError,
    1013: ServiceUnavailableError,
}


def from_close(code: int | None, reason: str) -> BurrowError:
    """The exception for a WebSocket (a terminal) the server closed before its end: its close
    code 44xx is the HTTP status it stands for (4404: 404)."""
    cls = _BY_CLOSE.get(code or 0, BurrowError)
    status = code - 4000 if code is not None and 4400 <= code < 4600 else None
    return cls(reason or f"the server closed the terminal (code {code})",
               code="terminal_closed", status=status)
