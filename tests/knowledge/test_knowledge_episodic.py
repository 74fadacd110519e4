"""Knowledge is durable and general: what happened to someone around the time they said it
(today, last night, again; traffic, weather, moods) is never an insight however many tenants
say it, while advice and facts in the same everyday topics still are. Judged on the host by
spaCy's parse (knowledge/episodic.py), with the real pipeline, embedder, Redis and Qdrant
Edge; the agent in the box proposes none of it either, by the host's judgement attached to
the pairs it is delivered."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from core.episodes import PairEpisodes
from core.keys import Keys
from knowledge.base import EPISODIC, KnowledgeBase
from knowledge.embedder import SentenceTransformerEmbedder
from knowledge.ner import PresidioNames
from knowledge.reading import SpacyReader
from knowledge.vectors import EdgeVectorStore
from tenant_agent.memory.episodes import proposable
from tenant_agent.memory.learn import learn

# Everyday talk, none of it written to match a rule's words: past events, times that point at
# the moment of speaking, what is going on as it is said, moods, the air, tastes for a time.
EPISODES = [
    "The bus was late again this morning.",
    "Traffic on the bypass was a nightmare tonight.",
    "The power went out for two hours yesterday evening.",
    "A tree came down across the road after the storm.",
    "The lift in the building broke down.",
    "Someone finally fixed the photocopier.",
    "The heating is broken again.",
    "The trains are running late because of the snow.",
    "It has been drizzling since breakfast time this morning.",
    "Everyone at the office seems exhausted lately.",
    "It is so humid.",
    "Mondays are the worst.",
    "Another cold and windy day.",
    "Stuck in a queue at the post office.",
    "The library is closed for repairs until April.",
    "Some users prefer lazy Sunday mornings.",
    "Some users prefer quiet evenings at home.",
]
# Durable advice and facts, many in the same everyday topics, some with times that recur.
GENERAL = [
    "Car batteries lose much of their capacity in cold weather.",
    "During a power cut keep the freezer shut, food stays frozen for about a day.",
    "On icy roads brake gently and early.",
    "Bright screens late in the evening make it harder to fall asleep.",
    "Trains are usually less crowded in the first carriage.",
    "Postgres needs a full restart after changing shared_buffers.",
    "Python 3.12 removed the distutils module.",
    "Index funds usually beat active funds over time because of lower fees.",
    "Rinsing rice before cooking removes surface starch.",
    "Raising the poll interval stopped the consumer rebalances.",
    "Water tomatoes in the morning, not at night.",
    "Commuters save money with a season ticket if they travel four days a week.",
    "Some users prefer dark mode.",
    "Give potted tomatoes a liquid fertiliser weekly.",
    "Kafka consumers keep rebalancing when processing takes too long.",
]


@pytest.fixture(scope="module")
def names() -> PresidioNames:
    finder = PresidioNames()
    finder.load()
    return finder


@pytest.fixture(scope="module")
def reader(names: PresidioNames) -> SpacyReader:
    return SpacyReader(names=names)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EdgeVectorStore]:
    opened = EdgeVectorStore(tmp_path / "kb", 384)
    yield opened
    opened.close()


@pytest.fixture
async def kb(store: EdgeVectorStore, redis: Redis, names: PresidioNames,
             reader: SpacyReader) -> AsyncIterator[KnowledgeBase]:
    yield KnowledgeBase(store, SentenceTransformerEmbedder(), redis, b"s" * 32, k=2,
                        keys=Keys(), names=names, reader=reader)


def said(*texts: str) -> list[dict[str, str]]:
    return [{"kind": "fact", "text": t} for t in texts]


async def visible(kb: KnowledgeBase) -> list[dict[str, Any]]:
    page, _ = await asyncio.to_thread(kb.store.scroll, 1000, None)
    return [h.payload for h in page if h.payload.get("visible")]


def test_the_reader_tells_episodes_from_durable_statements(reader: SpacyReader) -> None:
    kinds = reader.read(EPISODES)
    assert [t for t, r in zip(EPISODES, kinds, strict=True) if r.episode is None] == []
    kept = reader.read(GENERAL)
    assert [(t, r.episode) for t, r in zip(GENERAL, kept, strict=True)
            if r.episode is not None] == []


def test_time_bound_advice_is_episodic_and_recurring_times_are_not(reader: SpacyReader) -> None:
    [today, weekly] = reader.read(["Avoid the ring road today.",
                                   "Avoid the ring road on Friday evenings."])
    assert today.episode == "now" and weekly.episode is None


async def test_episodes_from_many_tenants_never_become_visible_and_advice_does(
        kb: KnowledgeBase) -> None:
    for tenant in ("a", "b", "c", "d"):
        await kb.contribute(tenant, said(*EPISODES[:6], *GENERAL[:3]), [tenant])
    shown = [c["text"] for c in await visible(kb)]
    assert len(shown) == 3, shown
    for text in GENERAL[:3]:
        assert any(text.split()[0] in s for s in shown), (text, shown)
    assert (await kb.refused())[EPISODIC] == 4 * 6
    page, _ = await asyncio.to_thread(kb.store.scroll, 1000, None)
    stored = [m["t"] for h in page for m in h.payload["members"]]
    assert not any(e.rstrip(".") in s for e in EPISODES for s in stored)  # not even stored


async def test_a_framed_episode_is_still_an_episode(kb: KnowledgeBase) -> None:
    for tenant in ("a", "b"):
        await kb.contribute(tenant, said("TIL: the bus was late again this morning.",
                                         "We learned the hard way that the power went out "
                                         "last night."), [tenant])
    assert await visible(kb) == []
    assert (await kb.refused())[EPISODIC] == 4


async def test_the_worker_attaches_the_episodic_sentences_and_the_agent_proposes_none(
        reader: SpacyReader) -> None:
    text = ("The bus was late again this morning. Car batteries lose much of their capacity "
            "in cold weather. I prefer lazy Sunday mornings. I prefer dark mode.")
    pair: dict[str, Any] = {
        "id": "p1", "seq": 1,
        "request": {"method": "POST", "path": "/ask", "body": f'{{"question": "{text}"}}'},
        "response": {"status": 200, "body": "{}"}}
    await PairEpisodes(reader).attach([pair])
    assert pair["episodic"] == ["The bus was late again this morning.",
                                "I prefer lazy Sunday mornings."]
    candidates = [{"kind": k, "text": t} for k, t in learn(text, 0.0).insights]
    assert {c["text"] for c in candidates} >= {"The bus was late again this morning.",
                                               "Some users prefer lazy sunday mornings."}
    assert [c["text"] for c in proposable(candidates, [pair])] == [
        "Car batteries lose much of their capacity in cold weather.",
        "Some users prefer dark mode."]
    assert proposable(candidates, [{"id": "p2", "seq": 2}]) == candidates  # nothing judged


def test_the_agent_shares_a_taste_only_when_it_is_a_choice() -> None:
    assert learn("I prefer dark mode.", 0.0).insights == [
        ("preference", "Some users prefer dark mode.")]
    assert ("preference", "Some users avoid emoji.") in learn("Never use emoji.", 0.0).insights
    for feeling in ("I love rainy Sunday mornings.", "I hate being stuck in traffic.",
                    "I really enjoy lazy weekends.", "I like long walks on the beach."):
        assert learn(feeling, 0.0).insights == [], feeling
        assert learn(feeling, 0.0).preferences  # still the tenant's own preference
