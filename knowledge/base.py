"""The shared knowledge base: what tenants' agents propose, distilled into general statements,
scrubbed of personal data, clustered by meaning across tenants, and shown to other tenants
only as a canonical text that at least k distinct tenants stated (k-anonymity).

    contribute(tenant, candidates, identifiers)  refuse -> scrub -> distil -> scrub
                                                 -> refuse episodes -> embed -> cluster
    search(query, limit, everyone, kinds, since, until)   visible insights above the floor
    vote(tenant, insight_id, helpful)            one vote per tenant; unhelpful ones fade
    withdraw(tenant)                             a deleted tenant's statements and votes go,
                                                 and each cluster it was in is recomputed
    browse / remove / size                       the operator's view

Invariants: a tenant never sees a cluster that fewer than k tenants support, nor text that is
one tenant's words (`knowledge.clusters`); no statement with personal data is stored (a
statement in which the scrubber finds anything is dropped); nothing `knowledge.refusals`
refuses is stored (an instruction to an assistant, text to every user, a link, a command
line), nor any episodic statement (what happened around the time it was said, a mood:
`knowledge.episodic`), and each refusal is counted by reason (`refused`); the base names no
tenant (an HMAC of its id), and every tenant's clusters and votes are indexed in Redis, so a
withdrawal touches only them. Writes that merge are serialised by one Redis lock across
workers; model calls run outside it, and their answer is applied only if the cluster did not
change meanwhile.

Thresholds (`bench/knowledge_quality.py` measures them with all-MiniLM-L6-v2): statements
join a cluster at cosine >= MERGE_THRESHOLD; search drops hits under RELEVANCE_FLOOR. A fact
told in parts is scored by its closest part (each part's centroid is in the payload,
PART_VECTORS): a newcomer asks about the symptom, and the mean of symptom, cause and fix is
far from it; a part may be PART_MARGIN under the floor.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from redis.asyncio import Redis

from knowledge.canonical import OMITTED, by_model, role_of
from knowledge.child import off_loop
from knowledge.clusters import Cluster, Told, compatible
from knowledge.distill import KINDS, MAX_TEXT, Statement, distill, distill_with_model
from knowledge.embedder import Embedder
from knowledge.keys import KnowledgeKeys
from knowledge.model import ChatModel
from knowledge.ner import NameFinder, ProcessNames
from knowledge.parts import TOLD, WORDS_THRESHOLD, joins_as_part
from knowledge.reading import Reader, beside
from knowledge.refusals import REASONS, refusal
from knowledge.scrub import scrub
from knowledge.vectors import Hit, VectorStore, Where
from knowledge.votes import FADE_VOTES, Votes, weight

MERGE_THRESHOLD = 0.50
RELEVANCE_FLOOR = 0.48
EPISODIC = "episodic"  # the reason counted for statements `knowledge.episodic` refuses
MIN_TEXT = 12
_NEIGHBOURS = 5  # stored clusters each new statement is compared with
_CENTROID_TEXTS = 24  # statements a cluster's vector is the centroid of (the latest)


@dataclass(frozen=True)
class Item:
    """A statement ready to cluster: its kind, text, and what makes it a part of a fact
    (`knowledge.parts`): its role (marked when told: `knowledge.reading`) and the named things
    it names."""

    kind: str
    text: str
    role: str
    names: tuple[str, ...] = ()


@dataclass(frozen=True)
class Insight:
    id: str
    text: str
    kind: str
    support: int
    score: float = 0.0
    visible: bool = False
    helpful: int = 0
    unhelpful: int = 0
    updated_at: float = 0.0

    @classmethod
    def of(cls, hit: Hit, operator: bool = False) -> Insight:
        p = hit.payload
        text = str(p.get("text", ""))
        if not text and operator and p.get("members"):
            text = str(p["members"][0].get("t", ""))  # the operator may read what is not shown
        return cls(id=hit.id, text=text, kind=str(p.get("kind", "fact")),
                   support=int(p.get("support", 0)), score=round(hit.score, 4),
                   visible=bool(p.get("visible", 0)), helpful=int(p.get("helpful", 0)),
                   unhelpful=int(p.get("unhelpful", 0)),
                   updated_at=float(p.get("updated_at", 0.0)))

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "text": self.text, "kind": self.kind, "score": self.score,
                "support": self.support, "visible": self.visible, "helpful": self.helpful,
                "unhelpful": self.unhelpful, "updated_at": self.updated_at}


def screen(candidates: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], Counter[str]]:
    """The candidates `knowledge.refusals` finds nothing in, and how many it refused by reason.
    A candidate is judged whole and as it was proposed, before anything is taken off it."""
    kept: list[dict[str, Any]] = []
    refused: Counter[str] = Counter()
    for candidate in candidates:
        text = candidate.get("text")
        reason = refusal(text[:2 * MAX_TEXT]) if isinstance(text, str) else None
        if reason is None:
            kept.append(candidate)
        else:
            refused[reason] += 1
    return kept, refused


PART_VECTORS = "parts"  # payload: the centroid of each part's statements, {role: vector}
PART_MARGIN = 0.1  # how far below the floor a question may be from a fact's closest part: a
                   # newcomer's conversational question about a symptom is 0.38-0.79 from it
                   # on the dev facts (bench/data/heldout2/facts_in_parts.json)


def _centre(rows: Sequence[np.ndarray]) -> list[float]:
    centre = np.mean(rows, axis=0)
    return [float(x) for x in centre / max(float(np.linalg.norm(centre)), 1e-12)]


def _part_vectors(cluster: Cluster, vector_of: dict[str, np.ndarray]) -> dict[str, list[float]]:
    """The centroid of each part's statements, rounded (they live in the payload): a
    newcomer asks about the symptom, and finds the fact by it, not by the mean of symptom,
    cause and fix."""
    by_role: dict[str, list[np.ndarray]] = {}
    for member in cluster.members:
        if member.text in vector_of:
            by_role.setdefault(role_of(member.role), []).append(vector_of[member.text])
    return {role: [round(x, 4) for x in _centre(rows)] for role, rows in by_role.items()}


def _closest_part(unit: np.ndarray, payload: Mapping[str, Any]) -> float:
    """The cosine of a unit vector with the closest part of a cluster (-1 without parts)."""
    parts = payload.get(PART_VECTORS)
    if not isinstance(parts, dict) or not parts:
        return -1.0
    rows = [v for v in parts.values() if isinstance(v, list) and len(v) == len(unit)]
    return float(np.max(_unit(rows) @ unit)) if rows else -1.0


def _unit(vectors: Sequence[Sequence[float]]) -> np.ndarray:
    rows = np.asarray(vectors, dtype=np.float32)
    unit: np.ndarray = rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
    return unit


class KnowledgeBase:
    def __init__(self, store: VectorStore, embedder: Embedder, redis: Redis, secret: bytes,
                 k: int = 2, merge_threshold: float = MERGE_THRESHOLD, *,
                 keys: KnowledgeKeys, relevance_floor: float = RELEVANCE_FLOOR,
                 names: NameFinder | None = None, reader: Reader | None = None,
                 model: ChatModel | None = None, model_distils: bool = True,
                 fade_votes: int = FADE_VOTES) -> None:
        """`names` finds people's names (default: Presidio in a child process, started on first
        use; `PresidioNames()` runs it in this process); `reader` parses statements (which are
        episodic, their part in a fact told in parts; default: with the name detector's spaCy
        pipeline, where it runs); `model` is
        the host-side model for canonical text and, unless `model_distils` is False (one call
        per contribution is the expensive part), for distillation (None: rules only)."""
        self.store = store
        self.embedder = embedder
        self.redis = redis
        self.secret = secret
        self.k = k
        self.merge_threshold = merge_threshold
        self.relevance_floor = relevance_floor
        self.keys = keys
        self.names: NameFinder = names if names is not None else ProcessNames()
        self.reader = reader if reader is not None else beside(self.names)
        self.model = model
        self.model_distils = model_distils
        self.fade_votes = fade_votes
        self.votes = Votes(redis, keys)

    def contributor(self, tenant: str) -> str:
        """A tenant's opaque contributor id: stable, not reversible without the server key."""
        return hmac.new(self.secret, f"contributor:{tenant}".encode(),
                        hashlib.sha256).hexdigest()[:24]

    def _index(self, tenant: str) -> str:
        return self.keys.kb_tenant(tenant)

    def _lock(self) -> Any:
        # merging is search-then-write: one writer at a time across all workers
        return self.redis.lock(self.keys.kb_lock(), timeout=60, blocking_timeout=120)

    # --- contributing ------------------------------------------------------------------------

    def _scrubbed(self, candidates: list[dict[str, Any]],
                  identifiers: list[str]) -> list[tuple[str, str]]:
        out = []
        for candidate in candidates:
            text, kind = candidate.get("text"), candidate.get("kind", "fact")
            if isinstance(text, str) and kind in KINDS:
                out.append((str(kind), scrub(text[:MAX_TEXT], identifiers, self.names).text))
        return out

    def _clean(self, statements: list[Statement],
               identifiers: list[str]) -> tuple[list[Item], int]:
        """Statements in which the scrubber finds nothing and that are not episodic, once
        each, with their parts in a fact told in parts; and how many were episodic."""
        out: dict[str, Statement] = {}
        for s in statements:
            result = scrub(s.text, identifiers, self.names)
            if not result.findings and "[" not in s.text and len(s.text) >= MIN_TEXT:
                out.setdefault(s.text, s)
        readings = self.reader.read(list(out)) if out else []
        kept = [Item(s.kind, text, TOLD + reading.role if s.told and not reading.told
                     else reading.role, reading.names)
                for (text, s), reading in zip(out.items(), readings, strict=True)
                if reading.episode is None]
        return kept, len(out) - len(kept)

    def _prepared(self, candidates: list[dict[str, Any]],
                  identifiers: list[str]) -> tuple[list[Item], int]:
        scrubbed = self._scrubbed(screen(candidates)[0], identifiers)
        return self._clean(distill(scrubbed), identifiers)

    def prepare(self, candidates: list[dict[str, Any]],
                identifiers: list[str]) -> list[tuple[str, str]]:
        """Candidates distilled by the rules into general, durable statements without
        personal data and without anything refused: (kind, text) pairs."""
        return [(item.kind, item.text) for item in self._prepared(candidates, identifiers)[0]]

    async def distil(self, candidates: list[dict[str, Any]],
                     identifiers: list[str]) -> tuple[list[Item], int]:
        """`prepare`, through the model when there is one (it sees only scrubbed text); and
        how many statements were episodic."""
        if self.model is None or not self.model_distils:
            return await asyncio.to_thread(self._prepared, candidates, identifiers)
        candidates = screen(candidates)[0]
        scrubbed = await asyncio.to_thread(self._scrubbed, candidates, identifiers)
        statements = await distill_with_model(self.model, scrubbed)
        return await asyncio.to_thread(self._clean, statements, identifiers)

    async def contribute(self, tenant: str, candidates: list[dict[str, Any]],
                         identifiers: list[str]) -> list[str]:
        """Add the tenant's statements to the clusters they belong to (or new ones); return
        the ids of the clusters it now supports. What the refusals find is counted, not
        stored."""
        candidates, refused = screen(candidates)
        items, refused[EPISODIC] = await self.distil(candidates, identifiers)
        await self.count_refused(refused)
        if not items:
            return []
        vectors = await off_loop(self.embedder.embed, [item.text for item in items])
        me = self.contributor(tenant)
        async with self._lock():
            touched = await asyncio.to_thread(self._merge_all, items, vectors, me)
        if touched:
            await self.redis.sadd(self._index(tenant), *touched)  # type: ignore[misc]
            await self._refine(list(dict.fromkeys(touched)))
        return touched

    def _fits(self, cluster: Cluster, item: Item, score: float) -> bool:
        """Whether a statement `score` close to a cluster joins it: as a paraphrase (at the
        merge threshold, numbers and negation agreeing), or as a part of a fact told in parts
        (`knowledge.parts`: closer than the part threshold, but not a paraphrase of the
        cluster's statements of its role, which would have to agree)."""
        if score >= self.merge_threshold and compatible(item.text, cluster.representative):
            return True
        if score >= self.merge_threshold and role_of(item.role) in cluster.roles \
                and not item.role.startswith(TOLD):
            return False  # a told statement's role is the parse's guess at a story's part
        return joins_as_part(item.text, item.names, [m.text for m in cluster.members],
                             cluster.names, score)

    def _merge_all(self, items: list[Item], vectors: list[list[float]], me: str) -> list[str]:
        """Each statement joins the nearest cluster it fits (`_fits`), stored or new in this
        batch, or starts one. One batched search, then one write per cluster touched."""
        now = time.time()
        stored = self.store.search_many(vectors, _NEIGHBOURS,
                                        threshold=min(self.merge_threshold, WORDS_THRESHOLD))
        unit = _unit(vectors)
        clusters: dict[str, Cluster] = {}
        vector_of: dict[str, list[float]] = {}
        fresh: list[tuple[int, str]] = []  # (statement index, cluster id) of new clusters
        touched: list[str] = []
        for i, (item, hits) in enumerate(zip(items, stored, strict=True)):
            options: list[tuple[float, str]] = []
            for hit in hits:
                cluster = clusters.setdefault(hit.id, Cluster.of(hit.id, hit.payload))
                score = max(hit.score, _closest_part(unit[i], cluster.extra))
                if self._fits(cluster, item, score):
                    options.append((score, hit.id))
            for j, cluster_id in fresh:
                score = float(unit[i] @ unit[j])
                if self._fits(clusters[cluster_id], item, score):
                    options.append((score, cluster_id))
            told = Told(me, item.text, now, item.role, item.names)
            if options:
                _, cluster_id = max(options)
                clusters[cluster_id].add(told)
            else:
                cluster_id = str(uuid.uuid4())
                clusters[cluster_id] = Cluster.new(cluster_id, item.kind, told)
                vector_of[cluster_id] = vectors[i]
                fresh.append((i, cluster_id))
            touched.append(cluster_id)
        self._write([clusters[c] for c in dict.fromkeys(touched)], vector_of)
        return touched

    def _write(self, clusters: list[Cluster], vector_of: dict[str, list[float]]) -> None:
        """Recompute each cluster's text and store it with its vector: the centroid of its
        statements and its shown text (unless in pieces), so a paraphrase of any member finds
        the cluster."""
        for cluster in clusters:
            cluster.recompute(self.k)
        texts = [[*dict.fromkeys([*([c.text] if c.text and OMITTED not in c.text else []),
                                  *(m.text for m in c.statements)])][-_CENTROID_TEXTS:]
                 for c in clusters if c.id not in vector_of]  # a text in pieces ("… the
                 # pads … oil …") embeds as no sentence does: its members stand for it
        flat = [t for group in texts for t in group]
        embedded = iter(_unit(self.embedder.embed(flat)) if flat else [])
        points = []
        for cluster in clusters:
            vector = vector_of.get(cluster.id)
            cluster.extra.pop(PART_VECTORS, None)
            if vector is None:
                group = texts.pop(0)
                rows = [next(embedded) for _ in group]
                vector = _centre(rows)
                if len(cluster.roles) > 1:
                    cluster.extra[PART_VECTORS] = _part_vectors(cluster, dict(zip(group, rows,
                                                                                  strict=True)))
            points.append((cluster.id, vector, cluster.payload(self.k, self.fade_votes)))
        self.store.upsert(points)

    async def _refine(self, ids: list[str]) -> None:
        """With a model: rewrite the canonical text of clusters that reached k tenants, or
        doubled their support since the model was last asked (so a popular cluster does not
        cost a call per contribution, whether the model's answers are used or not). Applied
        only if the cluster did not change meanwhile, the text keeps the invariant, holds no
        personal data and means what the members mean."""
        if self.model is None:
            return
        for hit in await asyncio.to_thread(self.store.get, ids):
            cluster = Cluster.of(hit.id, hit.payload)
            if cluster.support < max(self.k, 2 * cluster.model_support) or len(cluster.roles) > 1:
                continue  # not shown yet, or asked at half this support already; or parts,
                          # which the rules compose
            text = await by_model(self.model, cluster.statements, self.k)
            if text is not None and not await asyncio.to_thread(self._meaning_kept, text,
                                                                 cluster):
                text = None
            async with self._lock():
                now = await asyncio.to_thread(self.store.get, [cluster.id])
                if not now or Cluster.of(now[0].id, now[0].payload).digest() != cluster.digest():
                    continue
                cluster.model_support = cluster.support  # asked, whatever it answered
                if text is None:
                    await asyncio.to_thread(self.store.set_payload, cluster.id,
                                            cluster.payload(self.k, self.fade_votes))
                    continue
                cluster.text, cluster.canonical_by = text, "model"
                [vector] = await off_loop(self.embedder.embed, [text])
                await asyncio.to_thread(self.store.upsert, [
                    (cluster.id, vector, cluster.payload(self.k, self.fade_votes))])

    def _meaning_kept(self, text: str, cluster: Cluster) -> bool:
        if scrub(text, (), self.names).findings or "[" in text:
            return False
        vectors = self.embedder.embed([text, *(m.text for m in cluster.statements)])
        unit = _unit(vectors)
        centre = unit[1:].mean(axis=0)
        centre /= max(float(np.linalg.norm(centre)), 1e-12)
        return float(unit[0] @ centre) >= self.merge_threshold

    # --- reading -----------------------------------------------------------------------------

    async def search(self, query: str, limit: int = 5, everyone: bool = False, *,
                     kinds: Sequence[str] = (), since: float | None = None,
                     until: float | None = None, floor: float | None = None) -> list[Insight]:
        """Insights like `query`, most relevant first: only those tenants may see unless
        `everyone` (the operator); only scores at or above the relevance floor (`floor`, else
        the base's); only of `kinds` and last updated within [since, until], when given."""
        [vector] = await off_loop(self.embedder.embed, [query])
        where = Where(visible=None if everyone else True, kinds=tuple(kinds), since=since,
                      until=until)
        threshold = self.relevance_floor if floor is None else floor
        hits = await asyncio.to_thread(self.store.search, vector, limit * 4,
                                       None if everyone else self.k,
                                       threshold - 2 * PART_MARGIN, where)
        query_unit = _unit([vector])[0]
        scored = [(h, _closest_part(query_unit, h.payload)) for h in hits]
        found = [Insight.of(Hit(h.id, max(h.score, part), h.payload), operator=everyone)
                 for h, part in scored
                 if h.score >= threshold or part >= threshold - PART_MARGIN]
        found.sort(key=lambda i: -i.score * weight(i.helpful, i.unhelpful))
        return found[:limit]

    async def browse(self, limit: int, offset: str | None) -> tuple[list[Insight], str | None]:
        """A page of all insights; ValueError for an offset this base did not give out."""
        if offset is not None:
            uuid.UUID(offset)
        hits, next_offset = await asyncio.to_thread(self.store.scroll, limit, offset)
        return [Insight.of(h, operator=True) for h in hits], next_offset

    async def size(self) -> int:
        return await asyncio.to_thread(self.store.count)

    async def count_refused(self, refused: Mapping[str, int]) -> None:
        """Count contributions refused, by reason: the rules' (`knowledge.refusals.REASONS`,
        candidates), "episodic" (statements: `knowledge.episodic`) and the caller's (the
        worker's policy: "young_tenant", "few_turns")."""
        counts = {reason: n for reason, n in refused.items() if n > 0}
        if not counts:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for reason, n in counts.items():
                pipe.hincrby(self.keys.kb_refused(), reason, n)
            await pipe.execute()

    async def refused(self) -> dict[str, int]:
        """Contributions refused so far, by reason (every rule's reason, 0 when none)."""
        raw = await self.redis.hgetall(self.keys.kb_refused())  # type: ignore[misc]
        counts = dict.fromkeys((*REASONS, EPISODIC), 0)
        counts.update({k.decode(): int(v) for k, v in raw.items()})
        return counts

    # --- votes, removal, withdrawal ----------------------------------------------------------

    async def vote(self, tenant: str, insight_id: str, helpful: bool) -> Insight | None:
        """The tenant finds a visible insight helpful or not; its latest vote counts. The
        insight as it is now, or None when the tenant cannot see such an insight."""
        try:
            insight_id = str(uuid.UUID(insight_id))
        except ValueError:
            return None
        found = await asyncio.to_thread(self.store.get, [insight_id])
        if not found or not found[0].payload.get("visible"):
            return None
        up, down = await self.votes.cast(insight_id, tenant, self.contributor(tenant), helpful)
        return await self._tallied(insight_id, up, down)

    async def _tallied(self, insight_id: str, up: int, down: int) -> Insight | None:
        async with self._lock():
            found = await asyncio.to_thread(self.store.get, [insight_id])
            if not found:
                return None
            cluster = Cluster.of(insight_id, found[0].payload)
            cluster.helpful, cluster.unhelpful = up, down
            payload = cluster.payload(self.k, self.fade_votes)
            await asyncio.to_thread(self.store.set_payload, insight_id, payload)
        return Insight.of(Hit(insight_id, 0.0, payload))

    async def remove(self, insight_id: str) -> bool:
        try:
            uuid.UUID(insight_id)
        except ValueError:
            return False  # not an id this base ever gave out
        found = await asyncio.to_thread(self.store.get, [insight_id])
        if not found:
            return False
        await asyncio.to_thread(self.store.delete, [insight_id])
        await self.votes.drop(found[0].id)
        return True

    async def withdraw(self, tenant: str) -> tuple[int, int]:
        """Take the tenant's statements and votes out everywhere: clusters only it supported
        go, every other cluster it was in is recomputed (text, support, visibility) from the
        statements that remain. Returns (insights removed, insights weakened)."""
        ids = [m.decode() for m in await self.redis.smembers(self._index(tenant))]  # type: ignore[misc]
        me = self.contributor(tenant)
        removed = weakened = 0
        survivors: list[str] = []
        async with self._lock():
            clusters = [Cluster.of(h.id, h.payload)
                        for h in await asyncio.to_thread(self.store.get, ids)]
            gone = [c.id for c in clusters if c.remove(me) and not c.members]
            kept = [c for c in clusters if c.members and me not in c.contributors]
            for cluster in kept:
                if cluster.canonical_by == "model":  # it saw the tenant's words: ask again
                    cluster.canonical_by, cluster.model_support = "", 0
            await asyncio.to_thread(self.store.delete, gone)
            await asyncio.to_thread(self._write, kept, {})
            removed, weakened = len(gone), len(kept)
            survivors = [c.id for c in kept]
        for insight_id in gone:
            await self.votes.drop(insight_id)
        await self.redis.delete(self._index(tenant))
        for insight_id in await self.votes.withdraw(tenant, me):
            await self._tallied(insight_id, *await self.votes.tally(insight_id))
        await self._refine(survivors)
        return removed, weakened
