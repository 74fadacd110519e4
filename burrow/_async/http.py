"""One pooled HTTP connection per box object: requests, NDJSON streams, errors mapped."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Mapping
from typing import Any

import httpx

from burrow._config import Config
from burrow._errors import BurrowError, from_response, from_transport

Params = Mapping[str, str | bool | list[str]]


def _timeout(config: Config, wait_s: float | None, unbounded: bool) -> httpx.Timeout:
    """The HTTP timeout of a call that may take `wait_s` seconds on the server (an exec or run
    timeout); `unbounded`: the server itself bounds it (an exec without timeout_s)."""
    if unbounded and wait_s is None:
        return httpx.Timeout(config.timeout, read=None)
    return httpx.Timeout(config.timeout + (wait_s or 0.0))


class AsyncHttp:
    def __init__(self, config: Config) -> None:
        self.config = config
        self._client: httpx.AsyncClient | None = None

    def _pool(self) -> httpx.AsyncClient:
        # Made on first use, so boxes from list() cost nothing until one is used.
        if self._client is None:
            self._client = httpx.AsyncClient(
                base_url=self.config.url, timeout=self.config.timeout,
                headers={"Authorization": f"Bearer {self.config.api_key}",
                         "User-Agent": "burrow-python", **dict(self.config.headers)})
        return self._client

    async def request(self, method: str, path: str, *, json: Any = None,
                      params: Params | None = None, content: bytes | None = None,
                      headers: dict[str, str] | None = None, wait_s: float | None = None,
                      unbounded: bool = False) -> httpx.Response:
        try:
            response = await self._pool().request(
                method, path, json=json, params=params, content=content, headers=headers,
                timeout=_timeout(self.config, wait_s, unbounded))
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise from_transport(exc, self.config.url) from None
        if response.status_code >= 400:
            raise from_response(response)
        return response

    async def json(self, method: str, path: str, *, json: Any = None,
                   params: Params | None = None, wait_s: float | None = None,
                   unbounded: bool = False) -> Any:
        response = await self.request(method, path, json=json, params=params, wait_s=wait_s,
                                      unbounded=unbounded)
        return response.json() if response.content else None

    async def lines(self, path: str, body: Any = None, *, method: str = "POST",
                    params: Params | None = None,
                    wait_s: float | None = None) -> AsyncGenerator[dict[str, Any], None]:
        """Send `body` (POST unless told) and yield each NDJSON line of the answer as it
        arrives."""
        try:
            async with self._pool().stream(
                    method, path, json=body, params=params,
                    timeout=_timeout(self.config, wait_s, unbounded=True)) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise from_response(response)
                async for line in response.aiter_lines():
                    if line.strip():
                        yield _decode(line)
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise from_transport(exc, self.config.url) from None

    async def aclose(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()


def _decode(line: str) -> dict[str, Any]:
    try:
        value = json.loads(line)
    except ValueError:
        raise BurrowError(f"the server sent a stream line that is not JSON: {line[:200]!r}",
                          code="bad_stream") from None
    if not isinstance(value, dict):
        raise BurrowError(f"the server sent a stream line that is not an object: {line[:200]!r}",
                          code="bad_stream")
    return value
