"""The HTTP calls behind the operator commands of the CLI: where the server is, which key to
send, and errors as one line that says what to do."""

from __future__ import annotations

import getpass
import os
import socket
from pathlib import Path
from typing import Any

import httpx

DEFAULT_URL = "http://127.0.0.1:8420"


class ApiCallError(Exception):
    """A call that failed; the message is meant for the user as it is."""


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


class Api:
    def __init__(self, url: str | None = None, key: str | None = None,
                 timeout_s: float = 60.0) -> None:
        self.url = (url or os.environ.get("BURROW_URL") or DEFAULT_URL).rstrip("/")
        self.key = key or _key()
        # Named in the policy history as the operator's client.
        self.actor = f"cli:{getpass.getuser()}@{socket.gethostname()}"
        self.timeout_s = timeout_s

    def call(self, method: str, path: str, json: Any = None) -> Any:
        headers = {"Authorization": f"Bearer {self.key}", "X-Burrow-Actor": self.actor}
        try:
            r = httpx.request(method, self.url + path, json=json, headers=headers,
                              timeout=self.timeout_s)
        except httpx.HTTPError as exc:
            raise ApiCallError(f"cannot reach Burrow at {self.url} ({exc}); is `burrow serve` "
                               "running? Set BURROW_URL to its address") from None
        if r.status_code >= 400:
            try:
                message = r.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = r.text[:200] or r.reason_phrase
            raise ApiCallError(f"{message} (HTTP {r.status_code})")
        return r.json() if r.content else None
