"""The shared knowledge base: insights that tenants' agents contribute, scrubbed, embedded,
merged with their near-duplicates, and visible to other tenants only once enough distinct
tenants support them (k-anonymity).

Each insight keeps its support and the set of its contributors, as hashes of tenant ids (so
the base never names a tenant). Every tenant's contributions are also indexed in Redis, so
deleting a tenant withdraws its support without scanning the base.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np
from redis.asyncio import Redis

from knowledge.embedder import Embedder
from knowledge.scrub import scrub
from knowledge.vectors import Hit, VectorStore

MIN_TEXT = 12
MAX_TEXT = 500
KINDS = ("fact", "preference", "tip")


@dataclass(frozen=True)
class Insight:
    id: str
    text: str
    kind: str
    support: int
    score: float = 0.0

    @classmethod
    def of(cls, hit: Hit) -> Insight:
        p = hit.payload
        return cls(id=hit.id, text=str(p.get("text", "")), kind=str(p.get("kind", "fact")),
                   support=int(p.get("support", 0)), score=round(hit.score, 4))

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "text": self.text, "kind": self.kind, "score": self.score,
                "support": self.support}


def _placeholders_only(text: str) -> bool:
    """A scrubbed text with little but placeholders left says nothing general."""
    words = [w for w in text.split() if not (w.startswith("[") and w.rstrip(".,;:").endswith("]"))]
    return len(" ".join(words)) < MIN_TEXT


class KnowledgeBase:
    def __init__(self, store: VectorStore, embedder: Embedder, redis: Redis, secret: bytes,
                 k: int = 2, merge_threshold: float = 0.92, prefix: str = "burrow") -> None:
        self.store = store
        self.embedder = embedder
        self.redis = redis
        self.secret = secret
        self.k = k
        self.merge_threshold = merge_threshold
        self.prefix = prefix

    def contributor(self, tenant: str) -> str:
        """A tenant's opaque contributor id: stable, not reversible without the server key."""
        return hmac.new(self.secret, f"contributor:{tenant}".encode(),
                        hashlib.sha256).hexdigest()[:24]

    def _index(self, tenant: str) -> str:
        return f"{self.prefix}:kb:tenant:{tenant}"

    def _lock(self) -> Any:
        # merging is search-then-write: one writer at a time across all workers
        return self.redis.lock(f"{self.prefix}:lock:kb", timeout=60, blocking_timeout=120)

    def prepare(self, candidates: list[dict[str, Any]],
                identifiers: list[str]) -> list[tuple[str, str]]:
        """Candidates made safe to share: scrubbed of PII, secrets and the tenant's own
        identifiers; (kind, text), without duplicates or texts that are only placeholders."""
        out: dict[str, str] = {}
        for candidate in candidates:
            text, kind = candidate.get("text"), candidate.get("kind", "fact")
            if not isinstance(text, str) or kind not in KINDS:
                continue
            cleaned = " ".join(scrub(text[:MAX_TEXT], identifiers).text.split())
            if len(cleaned) >= MIN_TEXT and not _placeholders_only(cleaned):
                out.setdefault(cleaned, str(kind))
        return [(kind, text) for text, kind in out.items()]

    async def contribute(self, tenant: str, candidates: list[dict[str, Any]],
                         identifiers: list[str]) -> list[str]:
        """Add the tenant's support to each candidate (a near-duplicate of an existing insight
        counts for that insight); return the ids of the insights it now supports."""
        items = self.prepare(candidates, identifiers)
        if not items:
            return []
        vectors = await asyncio.to_thread(self.embedder.embed, [text for _, text in items])
        me = self.contributor(tenant)
        async with self._lock():
            touched = await asyncio.to_thread(self._merge_all, items, vectors, me)
        if touched:
            await self.redis.sadd(self._index(tenant), *touched)  # type: ignore[misc]
        return touched

    def _merge_all(self, items: list[tuple[str, str]], vectors: list[list[float]],
                   me: str) -> list[str]:
        """Merge a batch: each text joins the nearest insight at or above the threshold,
        stored before or new in this batch, or becomes a new insight. One batched search,
        one upsert, one payload write per existing insight touched."""
        now = time.time()
        stored = self.store.search_many(vectors, 1, threshold=self.merge_threshold)
        unit = np.asarray(vectors, dtype=np.float32)
        unit /= np.maximum(np.linalg.norm(unit, axis=1, keepdims=True), 1e-12)
        similar = unit @ unit.T  # cosine between the batch's own texts
        touched: list[str] = []
        fresh: list[int] = []  # indexes of the texts that became new insights
        new_points: list[tuple[str, list[float], dict[str, Any]]] = []
        changed: dict[str, dict[str, Any]] = {}
        for i, ((kind, text), hits) in enumerate(zip(items, stored, strict=True)):
            best = max(fresh, key=lambda j: similar[i, j], default=None)
            if best is not None and similar[i, best] >= self.merge_threshold and (
                    not hits or similar[i, best] > hits[0].score):
                touched.append(new_points[fresh.index(best)][0])
            elif hits:
                hit = hits[0]
                payload = changed.get(hit.id) or dict(hit.payload)
                contributors = list(payload.get("contributors", []))
                if me not in contributors:
                    contributors.append(me)
                    payload.update(contributors=contributors, support=len(contributors),
                                   updated_at=now)
                    changed[hit.id] = payload
                touched.append(hit.id)
            else:
                insight_id = str(uuid.uuid4())
                fresh.append(i)
                new_points.append((insight_id, vectors[i], {
                    "text": text, "kind": kind, "support": 1, "contributors": [me],
                    "created_at": now, "updated_at": now}))
                touched.append(insight_id)
        self.store.upsert(new_points)
        for insight_id, payload in changed.items():
            self.store.set_payload(insight_id, payload)
        return touched

    async def search(self, query: str, limit: int = 5,
                     everyone: bool = False) -> list[Insight]:
        """Insights like `query`; only those with support >= k unless `everyone` (operator)."""
        [vector] = await asyncio.to_thread(self.embedder.embed, [query])
        hits = await asyncio.to_thread(self.store.search, vector, limit,
                                       None if everyone else self.k)
        return [Insight.of(h) for h in hits]

    async def browse(self, limit: int, offset: str | None) -> tuple[list[Insight], str | None]:
        """A page of all insights; ValueError for an offset this base did not give out."""
        if offset is not None:
            uuid.UUID(offset)
        hits, next_offset = await asyncio.to_thread(self.store.scroll, limit, offset)
        return [Insight.of(h) for h in hits], next_offset

    async def remove(self, insight_id: str) -> bool:
        try:
            uuid.UUID(insight_id)
        except ValueError:
            return False  # not an id this base ever gave out
        found = await asyncio.to_thread(self.store.get, [insight_id])
        if not found:
            return False
        await asyncio.to_thread(self.store.delete, [insight_id])
        return True

    async def withdraw(self, tenant: str) -> tuple[int, int]:
        """Take back the tenant's support everywhere; delete what only it supported.
        Returns (insights removed, insights weakened)."""
        ids = [m.decode() for m in await self.redis.smembers(self._index(tenant))]  # type: ignore[misc]
        me = self.contributor(tenant)
        removed = weakened = 0
        async with self._lock():
            for hit in await asyncio.to_thread(self.store.get, ids):
                contributors = [c for c in hit.payload.get("contributors", []) if c != me]
                if not contributors:
                    await asyncio.to_thread(self.store.delete, [hit.id])
                    removed += 1
                elif len(contributors) != len(hit.payload.get("contributors", [])):
                    payload = {**hit.payload, "contributors": contributors,
                               "support": len(contributors), "updated_at": time.time()}
                    await asyncio.to_thread(self.store.set_payload, hit.id, payload)
                    weakened += 1
        await self.redis.delete(self._index(tenant))
        return removed, weakened

    async def size(self) -> int:
        return await asyncio.to_thread(self.store.count)
