"""The model path of the knowledge base, through the `ChatModel` protocol with a scripted fake:
what the model writes is used only when the rules accept it (grounded, general, no personal
data, no minority words), and a failing or rambling model leaves the rules' result."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from core.keys import Keys
from knowledge.base import KnowledgeBase
from knowledge.canonical import Member, by_model
from knowledge.distill import Statement, distill_with_model
from knowledge.embedder import SentenceTransformerEmbedder
from knowledge.ner import PresidioNames
from knowledge.vectors import EdgeVectorStore


class FakeChatModel:
    """A model that answers from a script: one function per call, given the messages and the
    schema; keeps every call. An exception in the script is raised, as a provider's would be."""

    def __init__(self, *script: Callable[[list[dict[str, str]], dict[str, Any]], str]) -> None:
        self.script = list(script)
        self.calls: list[tuple[list[dict[str, str]], dict[str, Any]]] = []

    async def chat(self, messages: list[dict[str, str]], json_schema: dict[str, Any]) -> str:
        self.calls.append((messages, json_schema))
        if not self.script:
            raise RuntimeError("the fake model's script ended")
        return self.script.pop(0)(messages, json_schema)


def answer(value: Any) -> Callable[[list[dict[str, str]], dict[str, Any]], str]:
    return lambda messages, schema: json.dumps(value)


def fails(messages: list[dict[str, str]], schema: dict[str, Any]) -> str:
    raise ConnectionError("provider unreachable")


NOTES = [("fact", "We learned the hard way that Postgres needs a full restart after changing "
                  "shared_buffers on our staging cluster."),
         ("fact", "Thanks, that helped a lot!")]


async def test_the_model_rewrites_first_person_reports_and_the_rules_keep_what_is_general(
        ) -> None:
    model = FakeChatModel(answer({"statements": [
        {"kind": "fact", "text": "Postgres needs a full restart after changing shared_buffers."},
        {"kind": "tip", "text": "We restarted our staging cluster."},          # about the tenant
        {"kind": "fact", "text": "Bitcoin will reach a million dollars."},     # not in the notes
        {"kind": "fact", "text": "Thanks for the help."},                      # small talk
    ]}))
    kept = await distill_with_model(model, NOTES)
    assert kept == [Statement("fact",
                              "Postgres needs a full restart after changing shared_buffers.")]
    [(messages, schema)] = model.calls
    assert "shared_buffers" in messages[-1]["content"] and "statements" in schema["properties"]


@pytest.mark.parametrize("reply", [fails, answer({"statements": []}), lambda m, s: "not json",
                                   answer({"statements": [{"text": "I love it."}]})])
async def test_a_failing_or_useless_model_leaves_the_rules_result(
        reply: Callable[[list[dict[str, str]], dict[str, Any]], str]) -> None:
    kept = await distill_with_model(FakeChatModel(reply), [("fact", "TIL: Redis caches should "
                                                            "evict with allkeys-lru.")])
    assert kept == [Statement("fact", "Redis caches should evict with allkeys-lru.")]


MEMBERS = [Member("a", "Refrigerating tomatoes makes them mealy and bland."),
           Member("b", "Cold storage in the fridge ruins the flavour of tomatoes."),
           Member("c", "Tomatoes lose flavour in the fridge.")]


async def test_a_model_canonical_text_must_say_only_what_k_tenants_said() -> None:
    good = "Tomatoes have less flavour after the fridge."
    assert await by_model(FakeChatModel(answer({"statement": good})), MEMBERS, 2) == good
    # "mealy" is one tenant's word; "bananas" and "ripen" are nobody's and most of the text
    for text in ("Tomatoes turn mealy in the fridge.", "Bananas ripen faster in a bag."):
        assert await by_model(FakeChatModel(answer({"statement": text})), MEMBERS, 2) is None
    assert await by_model(FakeChatModel(fails), MEMBERS, 2) is None


@pytest.mark.parametrize("text", [
    "Tomatoes have less flavour after the fridge. - Tomatoes have less flavour after the fridge.",
    "Tomatoes have less flavour after the fridge. Tomatoes have less flavour.",
    "Tomatoes have less flavour after the fridge, and less flavour after the fridge, and more."])
async def test_a_model_text_that_repeats_itself_or_runs_on_is_not_used(text: str) -> None:
    # every word is the group's, so only its shape gives it away
    assert await by_model(FakeChatModel(answer({"statement": text})), MEMBERS, 2) is None
    one = "Tomatoes have less flavour after the fridge."
    assert await by_model(FakeChatModel(answer({"statement": one})), MEMBERS, 2) == one


@pytest.fixture
async def kb_with(tmp_path: Path, redis: Redis) -> AsyncIterator[Callable[[FakeChatModel],
                                                                          KnowledgeBase]]:
    stores: list[EdgeVectorStore] = []
    names = PresidioNames()

    def build(model: FakeChatModel) -> KnowledgeBase:
        stores.append(EdgeVectorStore(tmp_path / f"kb{len(stores)}", 384))
        return KnowledgeBase(stores[-1], SentenceTransformerEmbedder(), redis, b"s" * 32, k=2,
                             keys=Keys(), names=names, model=model)
    yield build
    for store in stores:
        store.close()


def canonical(text: str) -> Callable[[list[dict[str, str]], dict[str, Any]], str]:
    return answer({"statement": text})


def echo_statements(messages: list[dict[str, str]], schema: dict[str, Any]) -> str:
    """A distillation answer that keeps each note's text after its "(kind) " mark."""
    notes = [line.split(") ", 1)[1] for line in messages[-1]["content"].splitlines()[1:]]
    return json.dumps({"statements": [{"kind": "fact", "text": n} for n in notes]})


async def test_the_base_shows_the_models_text_once_k_tenants_agree_and_rewrites_it_after_a_delete(
        kb_with: Callable[[FakeChatModel], KnowledgeBase]) -> None:
    model = FakeChatModel(echo_statements, echo_statements,
                          canonical("Cold in the fridge ruins tomato flavour."),
                          echo_statements, fails)
    kb = kb_with(model)
    await kb.contribute("a", [{"kind": "fact", "text": "Tomatoes lose flavour in the fridge, "
                                                       "the cold ruins them."}], ["a"])
    await kb.contribute("b", [{"kind": "fact", "text": MEMBERS[1].text}], ["b"])
    [shown] = await kb.search("Should tomatoes go in the fridge?")
    assert shown.text == "Cold in the fridge ruins tomato flavour."  # the model's, checked
    await kb.contribute("c", [{"kind": "fact", "text": "The fridge ruins the flavour of "
                                                       "tomatoes."}], ["c"])
    assert len(model.calls) == 4  # support 3 < twice 2: no new canonical call
    await kb.withdraw("a")  # the model's text saw a's words: the rules decide, the model fails
    assert len(model.calls) == 5
    [after] = await kb.search("Should tomatoes go in the fridge?")
    assert after.text == "The fridge ruins the flavour of tomatoes." and after.support == 2
    assert "cold" not in after.text.lower()  # a's word, which only b still uses


async def test_a_model_text_with_personal_data_or_another_meaning_is_not_shown(
        kb_with: Callable[[FakeChatModel], KnowledgeBase]) -> None:
    same = "Tomatoes lose flavour in the fridge."
    for reply in ("Tomatoes lose flavour in the fridge, says Maria Gonzalez.",
                  "Tomatoes last longer in the fridge."):
        kb = kb_with(FakeChatModel(echo_statements, echo_statements, canonical(reply)))
        for tenant in ("a", "b"):
            await kb.contribute(tenant, [{"kind": "fact", "text": same}], [tenant])
        [shown] = await kb.search("Should tomatoes go in the fridge?", floor=0.0)
        assert shown.text == same  # the rule's text: both tenants said exactly this


async def test_a_failing_model_is_not_asked_again_until_the_support_doubles(
        kb_with: Callable[[FakeChatModel], KnowledgeBase]) -> None:
    model = FakeChatModel(*[fails] * 10)
    kb = kb_with(model)
    kb.model_distils = False  # only canonical text goes to the model here
    for tenant in ("a", "b", "c"):
        await kb.contribute(tenant, [{"kind": "fact", "text": MEMBERS[2].text}], [tenant])
    assert len(model.calls) == 1  # at support 2; support 3 is less than twice that
    [shown] = await kb.search("Should tomatoes go in the fridge?")
    assert shown.text == MEMBERS[2].text  # the rule's text stands
    await kb.contribute("d", [{"kind": "fact", "text": MEMBERS[2].text}], ["d"])
    assert len(model.calls) == 2
