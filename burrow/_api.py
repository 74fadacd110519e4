"""The HTTP calls behind the CLI: where the server is, which key to send, streamed and raw
bodies, and errors as one line that says what to do."""

from __future__ import annotations

import getpass
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

DEFAULT_URL = "http://127.0.0.1:8420"


class ApiCallError(Exception):
    """A call that failed; the message is meant for the user as it is. `status` and `code`
    are the HTTP status and the API's error code when the server answered."""

    def __init__(self, message: str, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def _key() -> str:
    key = os.environ.get("BURROW_API_KEY")
    if key:
        return key.strip()
    # `burrow serve` on this machine keeps its generated operator key in its data dir.
    stored = Path(os.environ.get("BURROW_DATA_DIR", ".burrow")) / "operator.key"
    try:
        return stored.read_text().strip()
    except OSError:
        raise ApiCallError("no key: set BURROW_API_KEY (the operator key `burrow serve` "
                           f"printed, also in {stored})") from None


def _error(r: httpx.Response) -> ApiCallError:
    code = None
    try:
        detail = r.json()["error"]
        message, code = str(detail["message"]), str(detail["code"])
    except (ValueError, KeyError, TypeError):
        message = r.text[:200].strip() or r.reason_phrase
    return ApiCallError(f"{message} (HTTP {r.status_code})", r.status_code, code)


class Api:
    def __init__(self, url: str | None = None, key: str | None = None,
                 timeout_s: float = 300.0) -> None:
        self.url = (url or os.environ.get("BURROW_URL") or DEFAULT_URL).rstrip("/")
        self.key = key or _key()
        # Named in the policy history as the operator's client.
        self.actor = f"cli:{getpass.getuser()}@{socket.gethostname()}"
        # Box starts, freezes and snapshots of big boxes take a while; connecting does not.
        self.timeout = httpx.Timeout(timeout_s, connect=10.0)

    @property
    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}", "X-Burrow-Actor": self.actor}

    def _unreachable(self, exc: httpx.HTTPError) -> ApiCallError:
        if isinstance(exc, httpx.TimeoutException):
            return ApiCallError(f"Burrow at {self.url} did not answer in time ({exc or 'timeout'})")
        return ApiCallError(f"cannot reach Burrow at {self.url} ({exc}); is `burrow serve` "
                            "running? Set BURROW_URL to its address")

    def request(self, method: str, path: str, *, json: Any = None,
                params: dict[str, Any] | None = None, content: bytes | None = None,
                ) -> httpx.Response:
        """The response of a successful call (status below 400), or ApiCallError."""
        try:
            r = httpx.request(method, self.url + path, json=json, params=params,
                              content=content, headers=self._headers, timeout=self.timeout)
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None
        if r.status_code >= 400:
            raise _error(r)
        return r

    def call(self, method: str, path: str, json: Any = None,
             params: dict[str, Any] | None = None) -> Any:
        """A JSON call: the decoded answer, or None for an empty one."""
        r = self.request(method, path, json=json, params=params)
        return r.json() if r.content else None

    def stream(self, path: str, json: Any) -> Iterator[dict[str, Any]]:
        """POST and yield each line of the NDJSON answer as it arrives. No read timeout: a
        command may stay quiet for as long as it likes."""
        timeout = httpx.Timeout(None, connect=10.0)
        try:
            with httpx.stream("POST", self.url + path, json=json, headers=self._headers,
                              timeout=timeout) as r:
                if r.status_code >= 400:
                    r.read()
                    raise _error(r)
                for line in r.iter_lines():
                    if line.strip():
                        yield _decode(line)
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None


def _decode(line: str) -> dict[str, Any]:
    try:
        chunk = json.loads(line)
    except ValueError:
        raise ApiCallError(f"the server sent a line that is not JSON: {line[:100]!r}") from None
    if not isinstance(chunk, dict):
        raise ApiCallError(f"the server sent an unexpected line: {line[:100]!r}")
    return chunk
