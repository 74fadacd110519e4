"""The knowledge base through its public surface (contribute, search, vote, withdraw, browse),
with the real embedder, the real name detector, real Redis and both real Qdrant engines:
paraphrases from different tenants become one insight, a tenant sees only what k tenants
stated, one tenant's words never reach others (also after a tenant is deleted), personal data
and small talk are never stored, search has a floor and filters, votes fade insights."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from core.keys import Keys
from knowledge.base import KnowledgeBase
from knowledge.embedder import SentenceTransformerEmbedder
from knowledge.ner import PresidioNames
from knowledge.vectors import EdgeVectorStore, QdrantClientStore, VectorStore
from knowledge.words import content_words


@pytest.fixture(scope="module")
def names() -> PresidioNames:
    finder = PresidioNames()
    finder.load()
    return finder


@pytest.fixture(params=["edge", "client-memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[VectorStore]:
    opened: VectorStore = (EdgeVectorStore(tmp_path / "kb", 384) if request.param == "edge"
                           else QdrantClientStore(384, url=":memory:"))
    yield opened
    opened.close()


@pytest.fixture
async def kb(store: VectorStore, redis: Redis,
             names: PresidioNames) -> AsyncIterator[KnowledgeBase]:
    yield KnowledgeBase(store, SentenceTransformerEmbedder(), redis, b"s" * 32, k=2,
                        keys=Keys(), names=names)


def said(*texts: str) -> list[dict[str, str]]:
    return [{"kind": "fact", "text": t} for t in texts]


async def clusters(kb: KnowledgeBase) -> list[dict[str, Any]]:
    page, _ = await asyncio.to_thread(kb.store.scroll, 1000, None)
    return [h.payload for h in page]


def assert_no_minority_words(cluster: dict[str, Any], k: int) -> None:
    """No content word of the shown text was used by some but fewer than k tenants."""
    users: dict[str, set[str]] = {}
    for member in cluster["members"]:
        for word in content_words(member["t"]):
            users.setdefault(word, set()).add(member["c"])
    for word in content_words(cluster["text"]):
        assert not 0 < len(users.get(word, set())) < k, (word, cluster)


SHARED = "Postgres needs a full restart after changing shared_buffers."


async def test_paraphrased_framings_from_two_tenants_become_one_visible_insight(
        kb: KnowledgeBase) -> None:
    await kb.contribute("a", said(f"We learned the hard way that {SHARED[0].lower()}"
                                  f"{SHARED[1:]}"), ["a"])
    assert await kb.search("Do I have to restart Postgres after editing shared_buffers?") == []
    await kb.contribute("b", said(f"TIL: {SHARED}"), ["b"])
    [found] = await kb.search("Do I have to restart Postgres after editing shared_buffers?")
    assert found.text == SHARED and found.support == 2 and found.visible
    [cluster] = await clusters(kb)
    assert cluster["support"] == 2 and len(cluster["members"]) == 2


async def test_one_tenant_is_never_visible_to_others_only_to_the_operator(
        kb: KnowledgeBase) -> None:
    await kb.contribute("a", said(SHARED, SHARED), ["a"])
    await kb.contribute("a", said(f"Pro tip: {SHARED}"), ["a"])
    assert await kb.search("restart Postgres shared_buffers") == []
    [seen] = await kb.search("restart Postgres shared_buffers", everyone=True)
    assert seen.support == 1 and not seen.visible


async def test_shown_text_carries_no_word_that_fewer_than_k_tenants_used(
        kb: KnowledgeBase) -> None:
    await kb.contribute("a", said("Redis caches should evict keys with allkeys-lru on "
                                  "Hetzner boxes."), ["a"])
    await kb.contribute("b", said("Redis caches should evict keys with allkeys-lru, "
                                  "because volatile-lru misses keys without a TTL."), ["b"])
    await kb.contribute("c", said("In our experience, Redis caches should quickly evict "
                                  "keys with allkeys-lru."), ["c"])
    [cluster] = await clusters(kb)
    assert cluster["visible"] and cluster["support"] == 3
    assert cluster["text"] == "Redis caches should evict keys with allkeys-lru."
    assert_no_minority_words(cluster, kb.k)


async def test_after_a_tenant_is_deleted_each_cluster_it_was_in_is_recomputed(
        kb: KnowledgeBase) -> None:
    older = "Redis caches should evict older keys with allkeys-lru."
    plain = "Redis caches should evict keys with allkeys-lru."
    await kb.contribute("a", said(older, "Kafka consumers rebalance after max.poll.interval.ms "
                                  "passes without a poll.",
                                  "Terraform state locking on S3 needs a DynamoDB table."), ["a"])
    await kb.contribute("b", said(older, "Kafka consumers rebalance after max.poll.interval.ms "
                                  "passes without a poll."), ["b"])
    await kb.contribute("c", said(plain), ["c"])
    [redis_before] = await kb.search("Which eviction policy for a Redis cache?")
    assert redis_before.text == older  # stated by a and b
    a_words = {w for c in await clusters(kb) for m in c["members"]
               if m["c"] == kb.contributor("a") for w in content_words(m["t"])}

    removed, weakened = await kb.withdraw("a")

    assert (removed, weakened) == (1, 2)
    left = await clusters(kb)
    assert len(left) == 2 and all(kb.contributor("a") not in c["contributors"] for c in left)
    for cluster in left:
        assert_no_minority_words(cluster, kb.k)
        users: dict[str, set[str]] = {}
        for member in cluster["members"]:
            for word in content_words(member["t"]):
                users.setdefault(word, set()).add(member["c"])
        for word in content_words(cluster["text"]) & a_words:
            assert len(users.get(word, set())) >= kb.k, (word, cluster)  # still the group's
    [redis_after] = await kb.search("Which eviction policy for a Redis cache?")
    assert redis_after.text == plain and redis_after.support == 2
    assert await kb.search("Why do Kafka consumers rebalance?") == []  # b alone now
    assert all("Terraform" not in c["text"] + c["members"][0]["t"] for c in left)


async def test_personal_data_small_talk_and_statements_about_the_tenant_are_never_stored(
        kb: KnowledgeBase) -> None:
    for tenant in ("a", "b"):
        await kb.contribute(tenant, said(
            "Maria Gonzalez from accounting approved the refund.",
            "Please call me at 415-555-0123.", "Our wifi password is sunshine.",
            "Thanks, that helped a lot!", "Good morning!", "I live in Springfield.",
            "Hi! Thanks for using Acme Assistant. How can I help you today?",
            f"Acme Corp learned that {SHARED}"), ["Acme Corp", tenant])
    stored = [m["t"] for c in await clusters(kb) for m in c["members"]]
    assert stored == [SHARED, SHARED]
    for secret in ("Maria", "Gonzalez", "555", "sunshine", "Springfield", "Acme", "Thanks"):
        assert all(secret not in text for text in stored)


async def test_search_has_a_relevance_floor_and_filters_by_kind_and_time(
        kb: KnowledgeBase) -> None:
    tip = {"kind": "tip", "text": "Rinse rice in cold water until it runs clear."}
    for tenant in ("a", "b"):
        await kb.contribute(tenant, [*said(SHARED), tip], [tenant])
    assert await kb.search("What is the capital of Mongolia?") == []
    assert len(await kb.search("What is the capital of Mongolia?", floor=-1.0)) == 2
    [only_tip] = await kb.search("How should I cook rice and Postgres?", kinds=["tip"],
                                 floor=0.0)
    assert only_tip.kind == "tip"
    assert await kb.search("rice", since=time.time() + 60, floor=0.0) == []
    assert len(await kb.search("rice", until=time.time() + 60, floor=0.0)) == 2


async def test_votes_count_once_per_tenant_and_unhelpful_insights_fade(
        kb: KnowledgeBase) -> None:
    for tenant in ("a", "b"):
        await kb.contribute(tenant, said(SHARED), [tenant])
    [insight] = await kb.search("restart Postgres shared_buffers")
    for _ in range(5):  # one box hammering: still one vote
        voted = await kb.vote("x", insight.id, helpful=False)
    assert voted is not None and (voted.helpful, voted.unhelpful) == (0, 1)
    await kb.vote("y", insight.id, helpful=False)
    assert await kb.search("restart Postgres shared_buffers")  # two votes do not fade it
    await kb.vote("z", insight.id, helpful=False)
    assert await kb.search("restart Postgres shared_buffers") == []  # faded for tenants
    [still] = await kb.search("restart Postgres shared_buffers", everyone=True)
    assert (still.unhelpful, still.visible) == (3, False)
    assert await kb.vote("w", insight.id, helpful=True) is None  # cannot vote what it can't see
    await kb.withdraw("z")  # a deleted tenant's votes go too
    [back] = await kb.search("restart Postgres shared_buffers")
    assert (back.helpful, back.unhelpful) == (0, 2)
    assert await kb.vote("x", "not-an-id", helpful=True) is None


async def test_remove_and_browse_are_the_operators_view(kb: KnowledgeBase) -> None:
    await kb.contribute("a", said(SHARED), ["a"])
    page, next_offset = await kb.browse(10, None)
    assert [i.text for i in page] == [SHARED] and next_offset is None
    assert await kb.size() == 1
    assert await kb.remove(page[0].id) and not await kb.remove(page[0].id)
    assert await kb.remove("nope") is False and await kb.size() == 0


def test_insights_serialise_with_the_search_contract_fields() -> None:
    from knowledge.base import Insight

    data = Insight("i", "t", "fact", 2, 0.5, True).to_dict()
    assert {"id", "text", "kind", "score", "support"} <= set(data)
    json.dumps(data)


@pytest.mark.parametrize("seed", [1, 2])
async def test_no_visible_insight_carries_a_minority_word_whatever_tenants_say(
        kb: KnowledgeBase, seed: int) -> None:
    import random

    rng = random.Random(seed)
    cores = ["Postgres needs a restart after changing shared_buffers",
             "Redis caches should evict keys with allkeys-lru",
             "Rinse rice in cold water until the water runs clear"]
    extras = ["quickly", "on staging", "in production", "every time", "reliably",
              "according to the docs", "without exception", "for big tables"]
    tenants = [f"t{i}" for i in range(6)]
    for tenant in tenants:
        texts = []
        for core in rng.sample(cores, 2):
            words = core.split()
            words.insert(rng.randrange(1, len(words)), rng.choice(extras))
            framing = rng.choice(["{}.", "TIL: {}.", "We learned that {}.", "{}, at least for us."])
            texts.append(framing.format(" ".join(words) if rng.random() < 0.7 else core))
        await kb.contribute(tenant, said(*texts), [tenant])
    shown = [c for c in await clusters(kb) if c["visible"]]
    assert shown, "some insight is shared"
    for cluster in shown:
        assert cluster["support"] >= kb.k
        assert_no_minority_words(cluster, kb.k)
    for tenant in tenants[:3]:
        await kb.withdraw(tenant)
    for cluster in await clusters(kb):
        assert_no_minority_words(cluster, kb.k)
        assert not cluster["visible"] or cluster["support"] >= kb.k
