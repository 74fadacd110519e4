# Generated from burrow/_async/knowledge.py by `python -m burrow._unasync`; do not edit.
# ruff: noqa: I001
"""Knowledge: the shared knowledge base, as the key may see it (a tenant key sees only
insights enough tenants support; the operator sees everything)."""


from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import quote

from burrow._sync.http import Http
from burrow._config import resolve
from burrow._models import Insight


class Knowledge:
    @staticmethod
    def search(query: str, *, limit: int = 5, kinds: Sequence[str] = (),
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
        http = Http(resolve(api_key, base_url, timeout))
        try:
            found = http.json("POST", "/v1/knowledge/search", json=body)
            return [Insight.model_validate(i) for i in found]
        finally:
            http.close()

    @staticmethod
    def vote(insight_id: str, helpful: bool, *, api_key: str | None = None,
             base_url: str | None = None, timeout: float | None = None) -> Insight:
        """The key's tenant found an insight helpful or not (one vote per tenant; the latest
        counts); the insight with its tallies. Insights enough tenants reject fade."""
        http = Http(resolve(api_key, base_url, timeout))
        try:
            voted = http.json("POST", f"/v1/knowledge/insights/{quote(insight_id, safe='')}"
                                            "/vote", json={"helpful": helpful})
            return Insight.model_validate(voted)
        finally:
            http.close()
