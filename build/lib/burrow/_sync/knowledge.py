# Generated from burrow/_async/knowledge.py by `python -m burrow._unasync`; do not edit.
# ruff: noqa: I001
"""Knowledge: the shared knowledge base, as the key may see it (a tenant key sees only
insights enough tenants support; the operator sees everything)."""


from __future__ import annotations

from burrow._sync.http import Http
from burrow._config import resolve
from burrow._models import Insight


class Knowledge:
    @staticmethod
    def search(query: str, *, limit: int = 5, api_key: str | None = None,
               base_url: str | None = None, timeout: float | None = None
               ) -> list[Insight]:
        """Insights like `query`, most relevant first."""
        http = Http(resolve(api_key, base_url, timeout))
        try:
            found = http.json("POST", "/v1/knowledge/search",
                              json={"query": query, "limit": limit})
            return [Insight.model_validate(i) for i in found]
        finally:
            http.close()
