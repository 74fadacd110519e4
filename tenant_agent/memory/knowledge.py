"""Shared knowledge, reached through the host services socket with this box's token (a box
without network has no other way out)."""

from __future__ import annotations

from tenant_agent.common import host

TIMEOUT_S = 5.0


def search(query: str, limit: int = 5) -> list[dict[str, object]]:
    """Insights that match `query` (only those enough tenants share); [] if unreachable."""
    try:
        hits = host.call("/v1/knowledge/search", {"query": query, "limit": limit}, TIMEOUT_S)
    except host.HostError:
        return []
    return [h for h in hits if isinstance(h, dict)] if isinstance(hits, list) else []
