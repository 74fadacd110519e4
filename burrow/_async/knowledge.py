"""AsyncKnowledge: the shared knowledge base, as the key may see it (a tenant key sees only
insights enough tenants support; the operator sees everything)."""

# ruff: noqa: ASYNC109

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import quote

from burrow._async.http import AsyncHttp
from burrow._config import resolve
from burrow._models import Insight


class AsyncKnowledge:
    @staticmethod
    async def search(query: str, *, limit: int = 5, kinds: Sequence[str] = (),
                     since: float | None = None, until: float | None = None,
                     api_key: str | None = None, base_url: str | None = None,
                     timeout: float | None = None) -> list[Insight]:
        """Insights like `query`, most relevant first, above the server's relevance floor:
        only of `kinds` ("fact", "preference", "tip") and updated within [since, until]
        (unix seconds) when given."""
        body: dict[str, object] = {"query": query, "limit": limit, "kinds": list(kinds)}
        if since is not None:
            body["since"] = since
        if until is not None:
            body["until"] = until
        http = AsyncHttp(resolve(api_key, base_url, timeout))
        try:
            found = await http.json("POST", "/v1/knowledge/search", json=body)
            return [Insight.model_validate(i) for i in found]
        finally:
            await http.aclose()

    @staticmethod
    async def vote(insight_id: str, helpful: bool, *, api_key: str | None = None,
                   base_url: str | None = None, timeout: float | None = None) -> Insight:
        """The key's tenant found an insight helpful or not (one vote per tenant; the latest
        counts); the insight with its tallies. Insights enough tenants reject fade."""
        http = AsyncHttp(resolve(api_key, base_url, timeout))
        try:
            voted = await http.json("POST", f"/v1/knowledge/insights/{quote(insight_id, safe='')}"
                                            "/vote", json={"helpful": helpful})
            return Insight.model_validate(voted)
        finally:
            await http.aclose()
