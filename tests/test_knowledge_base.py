"""KnowledgeBase merging: near-duplicates count as support for one insight, within a batch as
well as across batches, and each text joins the nearest insight it is close enough to."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from knowledge.base import KnowledgeBase
from knowledge.embedder import SentenceTransformerEmbedder
from knowledge.vectors import EdgeVectorStore

# cosine under all-MiniLM-L6-v2 (the merge threshold is 0.92):
SETUP_0 = "Postgres restarts cleanly after a config reload in setup 0."
SETUP_1 = "Postgres restarts cleanly after a config reload in setup 1."  # 0.97 to SETUP_0
KAFKA = "Kafka slows down under a burst of writes."  # far from all the others
CONFIGURATION = "Postgres restarts cleanly after a configuration reload."  # 0.93 to SETUP_0
SERVER = "The Postgres server restarts cleanly after a config reload."  # 0.97 to CONFIGURATION,
#                                                                        0.91 to SETUP_0


@pytest.fixture
async def kb(tmp_path: Path, redis: Redis) -> AsyncIterator[KnowledgeBase]:
    store = EdgeVectorStore(tmp_path / "kb", 384)
    yield KnowledgeBase(store, SentenceTransformerEmbedder(), redis, b"s" * 32, k=2)
    store.close()


def fact(text: str) -> dict[str, str]:
    return {"kind": "fact", "text": text}


async def support(kb: KnowledgeBase) -> dict[str, int]:
    hits, _ = await kb.browse(100, None)
    return {h.text: h.support for h in hits}


async def test_near_duplicates_in_one_batch_become_one_insight(kb: KnowledgeBase) -> None:
    ids = await kb.contribute("a", [fact(SETUP_0), fact(KAFKA), fact(SETUP_1)], [])
    assert ids[2] == ids[0] != ids[1]
    assert await support(kb) == {SETUP_0: 1, KAFKA: 1}


async def test_support_counts_tenants_not_contributions(kb: KnowledgeBase) -> None:
    await kb.contribute("a", [fact(SETUP_0)], [])
    await kb.contribute("a", [fact(SETUP_1), fact(SETUP_0)], [])
    assert await support(kb) == {SETUP_0: 1}
    await kb.contribute("b", [fact(SETUP_1)], [])
    assert await support(kb) == {SETUP_0: 2}
    assert [i.text for i in await kb.search("Postgres config reload")] == [SETUP_0]


async def test_a_text_joins_the_nearest_of_stored_and_new_insights(kb: KnowledgeBase) -> None:
    [stored] = await kb.contribute("b", [fact(SERVER)], [])
    # SETUP_0 is too far from SERVER: new. CONFIGURATION is close to both SETUP_0 (new in
    # this batch) and SERVER (stored); SERVER is nearer.
    new, joined = await kb.contribute("a", [fact(SETUP_0), fact(CONFIGURATION)], [])
    assert joined == stored != new
    assert await support(kb) == {SERVER: 2, SETUP_0: 1}
