"""AsyncTenant: a tenant of a Burrow server (an end user of the product), its key, its home
box, and its own agent — the route a product's backend sends its users' requests through.
Creating, listing and deleting tenants needs the operator key; a tenant's own key reaches its
agent."""

# ruff: noqa: ASYNC109

from __future__ import annotations

import builtins
from collections.abc import Sequence
from types import TracebackType
from typing import Any
from urllib.parse import quote

from burrow._async.http import AsyncHttp
from burrow._async.memory import AsyncMemories
from burrow._config import resolve
from burrow._errors import InvalidRequestError
from burrow._models import AgentAnswer, TenantInfo


class AsyncTenantAgent:
    """The tenant's agent, in its home box (woken on the first request if frozen). Every
    request and answer is observed: the agent learns the tenant from them."""

    def __init__(self, http: AsyncHttp, tenant_id: str) -> None:
        self._http = http
        self._path = f"/v1/tenants/{quote(tenant_id, safe='')}/agent"

    async def request(self, method: str, path: str, *, json: Any = None,
                      headers: dict[str, str] | None = None,
                      timeout: float | None = None) -> AgentAnswer:
        """Any request to the agent (`path` is the agent's own, e.g. "/ask"); its answer, or
        the BurrowError of an error status. X-Request-Id in `headers` names the request in
        what the agent learns from it (its provenance)."""
        response = await self._http.request(method, f"{self._path}/{path.lstrip('/')}",
                                            json=json, headers=headers, wait_s=timeout)
        try:
            body = response.json() if response.content else None
        except ValueError:
            body = response.text
        return AgentAnswer(status=response.status_code, body=body,
                           request_id=response.headers.get("x-request-id"))

    async def _json(self, method: str, path: str, json: Any = None) -> dict[str, Any]:
        body = (await self.request(method, path, json=json)).body
        return body if isinstance(body, dict) else {"body": body}

    async def ask(self, question: str, **extra: Any) -> dict[str, Any]:
        """POST /ask {"question"}: the agent's answer, and what it used to give it."""
        return await self._json("POST", "/ask", {"question": question, **extra})

    async def profile(self) -> dict[str, Any]:
        """GET /profile: what the agent has learned of the tenant."""
        return await self._json("GET", "/profile")

    async def recall(self, query: str, *, limit: int = 10, since: float | str | None = None,
                     until: float | str | None = None,
                     kinds: Sequence[str] | None = None) -> builtins.list[dict[str, Any]]:
        """POST /recall: memories and the tenant's own turns for `query`, most relevant
        first, each with `request_ids` (the X-Request-Ids it came from); `since`/`until`
        (unix seconds or ISO 8601) bound when it was said; not learned from."""
        body: dict[str, Any] = {"query": query, "limit": limit}
        for name, value in (("since", since), ("until", until)):
            if value is not None:
                body[name] = value
        if kinds is not None:
            body["kinds"] = list(kinds)
        answer = await self.request("POST", "/recall", json=body)
        if answer.status != 200 or not isinstance(answer.body, dict):
            raise InvalidRequestError(f"the agent's /recall answered {answer.status}: "
                                      f"{str(answer.body)[:200]}")
        results: builtins.list[dict[str, Any]] = answer.body.get("results", [])
        return results


class AsyncTenant:
    """A tenant. `AsyncTenant.create()` (operator key) returns it with `api_key`, its own key,
    shown once; `tenant.agent` talks to its agent."""

    def __init__(self, info: TenantInfo, http: AsyncHttp) -> None:
        self.info = info
        self._http = http
        self.agent = AsyncTenantAgent(http, info.id)
        self.memories = AsyncMemories(http, info.id)

    @property
    def id(self) -> str:
        return self.info.id

    @property
    def api_key(self) -> str | None:
        """The tenant's key: only on the object create() returned (it is stored hashed)."""
        return self.info.api_key

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id}>"

    @classmethod
    async def create(cls, id: str | None = None, *, policy: dict[str, Any] | None = None,
                     api_key: str | None = None, base_url: str | None = None,
                     timeout: float | None = None) -> AsyncTenant:
        """A new tenant with its home box and key (operator key). `policy`: overrides of the
        operator's policy for this tenant."""
        http = AsyncHttp(resolve(api_key, base_url, timeout))
        body: dict[str, Any] = {}
        if id is not None:
            body["id"] = id
        if policy is not None:
            body["policy"] = policy
        try:
            info = TenantInfo.model_validate(await http.json("POST", "/v1/tenants", json=body))
        except BaseException:
            await http.aclose()
            raise
        return cls(info, http)

    @classmethod
    async def get(cls, tenant_id: str, *, api_key: str | None = None,
                  base_url: str | None = None, timeout: float | None = None) -> AsyncTenant:
        """A tenant by id (operator key): its state, last activity, storage."""
        http = AsyncHttp(resolve(api_key, base_url, timeout))
        try:
            info = TenantInfo.model_validate(
                await http.json("GET", f"/v1/tenants/{quote(tenant_id, safe='')}"))
        except BaseException:
            await http.aclose()
            raise
        return cls(info, http)

    @classmethod
    def connect(cls, tenant_id: str, *, api_key: str | None = None,
                base_url: str | None = None, timeout: float | None = None) -> AsyncTenant:
        """A handle on a tenant without asking the server (for a tenant key, which cannot
        read the tenant record): what a product's backend uses to reach a user's agent."""
        return cls(TenantInfo(id=tenant_id), AsyncHttp(resolve(api_key, base_url, timeout)))

    @classmethod
    async def list(cls, *, api_key: str | None = None, base_url: str | None = None,
                   timeout: float | None = None) -> builtins.list[TenantInfo]:
        """Every tenant (operator key)."""
        http = AsyncHttp(resolve(api_key, base_url, timeout))
        try:
            return [TenantInfo.model_validate(t) for t in await http.json("GET", "/v1/tenants")]
        finally:
            await http.aclose()

    async def delete(self) -> None:
        """Delete the tenant: its key stops working at once; its boxes, snapshots and support
        of shared insights go (operator key)."""
        await self._http.request("DELETE", f"/v1/tenants/{quote(self.id, safe='')}")

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncTenant:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.aclose()
