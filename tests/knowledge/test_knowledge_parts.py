"""Facts told in parts: one tenant gives the symptom, another the cause, another the fix, each
in its own words; the knowledge base joins them into one insight that a newcomer's question
about the symptom finds, composed only of words k tenants used (knowledge/parts.py,
knowledge/canonical.py). Real embedder, name detector and parser, Redis and Qdrant Edge."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from core.keys import Keys
from knowledge.base import KnowledgeBase
from knowledge.canonical import Member, by_rule, leaks
from knowledge.embedder import SentenceTransformerEmbedder
from knowledge.ner import PresidioNames
from knowledge.reading import SpacyReader
from knowledge.vectors import EdgeVectorStore
from knowledge.words import content_words

SYMPTOM = "Kafka consumers keep rebalancing during long batches."
CAUSE = ("Kafka removes a consumer from the group when a batch takes longer than "
         "max.poll.interval.ms.")
FIX = "Raise max.poll.interval.ms for Kafka consumers with long batches."
QUESTION = "Why do my Kafka consumers keep rebalancing all the time?"


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


async def clusters(kb: KnowledgeBase) -> list[dict[str, Any]]:
    page, _ = await asyncio.to_thread(kb.store.scroll, 1000, None)
    return [h.payload for h in page]


def minority_words(cluster: dict[str, Any], k: int) -> set[str]:
    """Content words of the shown text that some but fewer than k of its tenants used."""
    users: dict[str, set[str]] = {}
    for member in cluster["members"]:
        for word in content_words(member["t"]):
            users.setdefault(word, set()).add(member["c"])
    return {w for w in content_words(cluster["text"]) if 0 < len(users.get(w, set())) < k}


def test_the_parse_tells_a_fix_a_cause_and_a_symptom(reader: SpacyReader) -> None:
    texts = [FIX, "Set PATH at the top of the crontab.", "Descale the kettle every month.",
             "Cron jobs fail because cron runs with a minimal PATH.",
             "Hard water causes the white film on glasses.", SYMPTOM,
             "Cast iron pans get rusty spots."]
    assert [r.role for r in reader.read(texts)] == [
        "fix", "fix", "fix", "cause", "cause", "symptom", "symptom"]


def test_parts_compose_in_order_from_words_k_tenants_used() -> None:
    members = [Member("a", SYMPTOM, "symptom"), Member("b", SYMPTOM, "symptom"),
               Member("c", FIX, "fix"), Member("d", FIX, "fix"),
               Member("e", "Kafka support at Initech says to restart the broker.", "fix")]
    text = by_rule(members, 2)
    assert text == ("Kafka consumers keep rebalancing during long batches \u2014 Raise "
                    "max.poll.interval.ms for Kafka consumers with long batches.")
    assert not leaks(text, members, 2)


def test_a_paraphrase_is_not_said_twice() -> None:
    members = [Member("a", "Postgres needs a full restart after changing shared_buffers.",
                      "symptom"),
               Member("b", "Postgres needs a full restart after changing shared_buffers.",
                      "symptom"),
               Member("c", "After changing shared_buffers Postgres needs a restart.",
                      "symptom")]
    assert by_rule(members, 2) == "Postgres needs a full restart after changing shared_buffers."


async def test_a_fact_told_in_parts_is_found_by_a_question_about_its_symptom(
        kb: KnowledgeBase) -> None:
    for tenant, part in (("a", SYMPTOM), ("b", SYMPTOM), ("c", CAUSE), ("d", CAUSE),
                         ("e", FIX), ("f", FIX)):
        await kb.contribute(tenant, said(part), [tenant])
    [cluster] = await clusters(kb)
    assert cluster["support"] == 6 and cluster["visible"]
    assert {m["r"] for m in cluster["members"]} >= {"symptom", "fix"}
    [found] = await kb.search(QUESTION, 3)
    assert found.text == cluster["text"] and "\u2014" in found.text  # the parts composed
    assert "Raise max.poll.interval.ms" in found.text  # the fix, found by the symptom
    assert minority_words(cluster, kb.k) == set()


async def test_told_once_each_the_parts_show_only_the_words_two_of_them_used(
        kb: KnowledgeBase) -> None:
    await kb.contribute("a", said(SYMPTOM), ["a"])
    await kb.contribute("b", said(CAUSE), ["b"])
    await kb.contribute("c", said(FIX), ["c"])
    [cluster] = await clusters(kb)
    assert cluster["support"] == 3 and cluster["visible"], cluster
    assert minority_words(cluster, kb.k) == set()
    assert "group" not in cluster["text"] and "rebalancing" not in cluster["text"]  # one said
    [found] = await kb.search(QUESTION, 3)
    assert found.text == cluster["text"] and "max.poll.interval.ms" in found.text


async def test_an_attacker_cannot_get_a_word_of_its_own_into_a_composed_statement(
        kb: KnowledgeBase) -> None:
    for tenant, part in (("a", SYMPTOM), ("b", SYMPTOM), ("c", FIX), ("d", FIX)):
        await kb.contribute(tenant, said(part), [tenant])
    own = {"zapkafka", "premium", "initech"}
    for attempt in ("Install ZapKafka Premium to stop Kafka consumers rebalancing in long "
                    "batches.",
                    "Kafka consumers keep rebalancing until you buy ZapKafka Premium.",
                    "Initech fixed Kafka consumers rebalancing during long batches with "
                    "ZapKafka."):
        await kb.contribute("mallory", said(attempt), ["mallory"])
    [cluster] = await clusters(kb)
    mallory = kb.contributor("mallory")
    assert any(m["c"] == mallory for m in cluster["members"]), "the attacker's parts joined"
    assert not own & content_words(cluster["text"]), cluster["text"]
    assert minority_words(cluster, kb.k) == set()
    await kb.contribute("eve", said("ZapKafka Premium stops Kafka consumer rebalances."),
                        ["eve"])  # a second tenant: now k of them said it, the rule allows it
    [cluster] = await clusters(kb)
    assert minority_words(cluster, kb.k) == set()
    await kb.withdraw("c")
    await kb.withdraw("mallory")
    for left in await clusters(kb):
        assert minority_words(left, kb.k) == set()
        assert "zapkafka" not in content_words(left["text"]), left["text"]


async def test_parts_about_different_named_things_stay_apart(kb: KnowledgeBase) -> None:
    for tenant in ("a", "b"):
        await kb.contribute(tenant, said("S3 reads are strongly consistent after a write."),
                            [tenant])
    for tenant in ("c", "d"):
        await kb.contribute(tenant, said("SQLite in WAL mode lets reads run while a write "
                                         "is in progress."), [tenant])
    shown = sorted(c["text"] for c in await clusters(kb))
    assert len(shown) == 2 and all("\u2014" not in t for t in shown), shown
