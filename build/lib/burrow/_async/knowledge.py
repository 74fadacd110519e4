"""AsyncKnowledge: the shared knowledge base, as the key may see it (a tenant key sees only
insights enough tenants support; the operator sees everything)."""

# ruff: noqa: ASYNC109

from __future__ import annotations

from burrow._async.http import AsyncHttp
from burrow._config import resolve
from burrow._models import Insight


class AsyncKnowledge:
    @staticmethod
    async def search(query: str, *, limit: int = 5, api_key: str | None = None,
                     base_url: str | None = None, timeout: float | None = None
                     ) -> list[Insight]:
        """Insights like `query`, most relevant first."""
        http = AsyncHttp(resolve(api_key, base_url, timeout))
        try:
            found = await http.json("POST", "/v1/knowledge/search",
                                    json={"query": query, "limit": limit})
            return [Insight.model_validate(i) for i in found]
        finally:
            await http.aclose()
