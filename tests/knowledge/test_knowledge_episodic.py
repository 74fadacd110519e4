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


# A teller's own experience that carries practical knowledge (a symptom they had, the cause
# they found, the fix that worked), and personal anecdotes told the same way. Not from any
# bench set.
TOLD_PARTS = [
    ("My dishwasher leaves a gritty film on every glass.", "symptom"),
    ("The drain hose was kinked behind the unit, so the water couldn't get out.", "cause"),
    ("I cleared the filter at the bottom and now it drains in seconds.", "fix"),
    ("Now I soak the grill pan overnight in hot soapy water.", "fix"),
]
PERSONAL = [
    "I need a long holiday somewhere warm.",
    "I had a boiled egg and toast for lunch.",
    "The trams were off because of the strike so I got a taxi.",
    "The quiz is on Thursday at the pub.",
]


def test_a_tellers_practical_experience_is_a_told_part_and_anecdotes_are_refused(
        reader: SpacyReader) -> None:
    texts = [t for t, _ in TOLD_PARTS]
    readings = reader.read(texts)
    assert [(r.episode, r.part) for r in readings] == [(None, p) for _, p in TOLD_PARTS]
    assert all(r.told for r in readings)
    refused = reader.read(PERSONAL)
    assert [t for t, r in zip(PERSONAL, refused, strict=True) if r.episode is None] == []


def test_a_complaint_about_particular_things_is_told_and_general_advice_is_not(
        reader: SpacyReader) -> None:
    [complaint, habit, someone, advice] = reader.read([
        "The lift in our block has always been slow.",
        "The dog across the road howls whenever the postman comes.",
        "My manager is off with the flu.",
        "Lifts in older blocks are slow because their motors are small."])
    assert complaint.told and complaint.episode is None
    assert habit.told and habit.episode is None
    assert someone.told  # never shown alone
    assert not advice.told


async def test_a_complaint_many_tenants_tell_stays_invisible_and_a_told_fact_shows(
        kb: KnowledgeBase) -> None:
    for tenant in ("a", "b", "c", "d"):
        await kb.contribute(tenant, said("The lift in our block has always been slow."),
                            [tenant])
    assert await visible(kb) == []
    for tenant, part in (("e", "My dishwasher leaves a gritty film on every glass."),
                         ("f", "The dishwasher filter was clogged with grit, so the water "
                               "couldn't drain."),
                         ("g", "I cleared the dishwasher filter and now every glass comes "
                               "out clean.")):
        await kb.contribute(tenant, said(part), [tenant])
    [shown] = await visible(kb)
    assert "dishwasher" in shown["text"].lower()
    assert {m["r"] for m in shown["members"]} > {"told:symptom"}  # a part beside the symptom
    assert not {"i", "my", "we", "our"} & set(shown["text"].lower().split())


def test_local_news_and_a_named_day_are_episodes_and_what_the_teller_did_is_a_fix(
        reader: SpacyReader) -> None:
    [bakery, hail, action, kind] = reader.read([
        "Heard the bakery on Harbour Street is closing after forty years.",
        "Tuesday's hail dented half the cars on the road.",
        "Switched the app's location setting off and turned off background refresh for it.",
        "Tomatoes lose flavour in the fridge, the cold ruins them."])
    assert bakery.episode == "news"
    assert hail.episode == "now"
    assert (action.episode, action.part, action.told) == (None, "fix", True)
    assert not kind.told  # a clause said of a kind: general, not a teller's story


async def test_a_fact_told_in_parts_is_found_by_a_question_about_its_symptom(
        kb: KnowledgeBase) -> None:
    for tenant, part in (("e", "My dishwasher leaves a gritty film on every glass."),
                         ("f", "The dishwasher filter was clogged with grit, so the water "
                               "couldn't drain."),
                         ("g", "I cleared the dishwasher filter and now every glass comes "
                               "out clean.")):
        await kb.contribute(tenant, said(part), [tenant])
    [shown] = await visible(kb)
    assert set(shown["parts"]) == {m["r"].removeprefix("told:") for m in shown["members"]}
    found = await kb.search("Why are my glasses gritty when they come out of the dishwasher?")
    assert [i.text for i in found] == [shown["text"]]
    assert await kb.search("How do I get a sourdough loaf to rise?") == []


def test_a_complaint_gets_no_fix_from_the_tellers_guesses_plans_or_others_doings(
        reader: SpacyReader) -> None:
    """A complaint many tenants tell must not look like a fact in parts: what the teller
    guesses or plans is no order (a clause of the teller beside it, a modal, a hedge), what
    someone else did is no result of the teller's action, what the teller did in a
    subordinate clause is no fix, and a noun phrase alone is as particular as a sentence.
    (An aside the parser hangs on a noun, "Put it down to the heat I suppose", still reads
    as an order.)"""
    texts = ["Reckon I'm coming down with the flu the kids brought home.",
             "Could go to the match with my brother.",
             "Perhaps grab the early train tomorrow.",
             "My sister's caught the flu and she's moaning about it all day.",
             "The cat next door followed me down the lane when I crossed their drive.",
             "The cat in the flat below, cries whenever the kettle boils."]
    readings = reader.read(texts)
    assert [t for t, r in zip(texts, readings, strict=True)
            if r.part == "fix" and r.episode is None] == []
    assert all(r.told for r in readings if r.episode is None)  # never shown alone
    [fix, action] = reader.read(["I rinsed the filter and now the water drains quickly.",
                                 "Had to replace the worn chain on the bike."])
    assert (fix.part, action.part) == ("fix", "fix")  # the teller's action still is
