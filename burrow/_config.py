"""Where the server is and which key to send: BURROW_URL and BURROW_API_KEY, or per call."""

from __future__ import annotations

import os
from dataclasses import dataclass

from burrow._errors import AuthenticationError

DEFAULT_URL = "http://127.0.0.1:8420"
DEFAULT_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Config:
    url: str
    api_key: str
    timeout: float
    headers: tuple[tuple[str, str], ...] = ()  # sent with every request (the CLI's actor)


def resolve(api_key: str | None, base_url: str | None, timeout: float | None,
            headers: dict[str, str] | None = None) -> Config:
    """The settings of one client; arguments win over the environment, read at call time."""
    url = (base_url or os.environ.get("BURROW_URL") or DEFAULT_URL).rstrip("/")
    key = (api_key or os.environ.get("BURROW_API_KEY") or "").strip()
    if not key:
        raise AuthenticationError(
            "no API key: set BURROW_API_KEY (a tenant key from `burrow tenant create`, or the "
            "operator key `burrow serve` printed) or pass api_key=", code="no_api_key")
    return Config(url=url, api_key=key,
                  timeout=DEFAULT_TIMEOUT_S if timeout is None else timeout,
                  headers=tuple((headers or {}).items()))
