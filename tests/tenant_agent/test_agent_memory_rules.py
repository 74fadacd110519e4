"""What the tenant agent learns without a model: every utterance of issue 14, through the
write path (pairs delivered to the memory, as the worker delivers them), read back through
the profile, the memory items, recall and the /ask context."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tenant_agent.memory.answer import build
from tenant_agent.memory.learn import learn
from tenant_agent.memory.memory import Memory
from tenant_agent.memory.owner import get_item, list_items
from tenant_agent.memory.recall import recall

T0 = 1_700_000_000.0


def pair(n: int, text: str, at: float | None = None, reply: str = "Noted.",
         body: object = None, headers: dict[str, str] | None = None,
         path: str = "/v1/tenants/t/agent/chat") -> dict[str, Any]:
    request: dict[str, Any] = {"method": "POST", "path": path,
                               "body": json.dumps(body if body is not None else
                                                  {"message": text})}
    if headers:
        request["headers"] = headers
    return {"id": f"p{n}", "seq": n, "at": T0 + 600 * n if at is None else at,
            "request_id": f"req-{n}", "request": request,
            "response": {"status": 200, "body": json.dumps({"reply": reply})}}


@pytest.fixture
def memory(tmp_path: Path) -> Memory:
    return Memory(str(tmp_path / "memory.db"))


def say(memory: Memory, *texts: str) -> None:
    start = memory.last_seq() + 1
    memory.observe([pair(start + i, t) for i, t in enumerate(texts)])


def held(memory: Memory, kind: str = "") -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = list_items(memory, kind, "all", 500)["items"]
    return items


def current(memory: Memory) -> dict[str, str]:
    """text -> kind of what is held now."""
    return {m["text"]: m["kind"] for m in held(memory) if m["current"]}


def test_a_contradiction_supersedes_and_keeps_history(memory: Memory) -> None:
    say(memory, "I like dark mode", "I don't like dark mode")
    versions = [m for m in held(memory) if m["subject"] == "dark mode"]
    now = [m for m in versions if m["current"]]
    assert [m["polarity"] for m in now] == ["dislikes"]
    old = next(m for m in versions if not m["current"])
    assert old["polarity"] == "likes" and old["superseded_by"] == now[0]["id"]
    assert old["valid_to"] == now[0]["at"]
    assert [h["id"] for h in get_item(memory, now[0]["id"])["history"]] == [old["id"]]
    prefs = memory.profile()["preferences"]
    assert [(p["polarity"], p["value"]) for p in prefs] == [("dislikes", "dark mode")]
    context = build(memory, "Which theme should I use?").text()
    about = context.split("About the user now:")[1].split("\n\n")[0]
    assert "Does not like dark mode" in about and "Likes dark mode" not in about


def test_actually_i_now_prefer_light_mode_replaces_dark_mode(memory: Memory) -> None:
    say(memory, "I like dark mode", "Actually I now prefer light mode")
    assert current(memory) == {"Prefers light mode": "preference"}
    dark = next(m for m in held(memory) if m["subject"] == "dark mode")
    assert not dark["current"] and dark["superseded_by"]


def test_answers_in_french_from_now_on_is_an_answer_language(memory: Memory) -> None:
    say(memory, "I'd like answers in French from now on")
    assert current(memory) == {"Wants answers in French": "preference"}
    say(memory, "Please reply in German from now on")
    assert current(memory) == {"Wants answers in German": "preference"}


def test_moving_from_berlin_to_paris_ends_berlin(memory: Memory) -> None:
    say(memory, "I moved from Berlin to Paris")
    locations = {m["value"]: m for m in held(memory) if m["subject"] == "location"}
    assert locations["Paris"]["current"] and not locations["Berlin"]["current"]
    assert locations["Berlin"]["superseded_by"] == locations["Paris"]["id"]
    assert locations["Berlin"]["request_ids"] == ["req-1"]


def test_allergies_are_facts(memory: Memory) -> None:
    say(memory, "I'm allergic to peanuts")
    assert current(memory) == {"Allergic to peanuts": "fact"}
    assert memory.profile()["facts"][0]["key"] == "allergy"


def test_forget_removes_the_memory_its_history_and_the_turns_that_said_it(
        memory: Memory) -> None:
    say(memory, "I live in Berlin", "I love techno")
    say(memory, "Forget that I live in Berlin")
    assert current(memory) == {"Loves techno": "preference"}
    assert not [m for m in held(memory) if "Berlin" in m["text"]]
    assert recall(memory, "Berlin") == []
    episodes = list_items(memory, "episode")["items"]
    assert [e["text"] for e in episodes] == ["I love techno"]  # the forget turn is not kept


def test_no_longer_ends_a_fact_and_keeps_its_history(memory: Memory) -> None:
    say(memory, "I live in Berlin", "I no longer live in Berlin")
    berlin = [m for m in held(memory) if m["value"] == "Berlin"]
    assert len(berlin) == 1 and not berlin[0]["current"] and berlin[0]["superseded_by"] is None


def test_being_confused_about_an_invoice_is_not_a_role(memory: Memory) -> None:
    say(memory, "I'm a bit confused about the invoice")
    assert current(memory) == {}
    assert len(list_items(memory, "episode")["items"]) == 1  # still recallable as a turn


def test_working_at_google_as_a_data_scientist_is_employer_and_role(memory: Memory) -> None:
    say(memory, "I work at Google as a data scientist")
    facts = {f["key"]: f["value"] for f in memory.profile()["facts"]}
    assert facts == {"employer": "Google", "role": "data scientist"}
    say(memory, "I'm a software engineer at Stripe")
    facts = {f["key"]: f["value"] for f in memory.profile()["facts"]}
    assert facts == {"employer": "Stripe", "role": "software engineer"}


def test_an_email_address_is_kept_whole(memory: Memory) -> None:
    say(memory, "My email is a@b.com. Thanks!")
    assert {f["key"]: f["value"] for f in memory.profile()["facts"]} == {"email": "a@b.com"}


def test_questions_are_not_statements(memory: Memory) -> None:
    say(memory, "I prefer dark mode.")
    say(memory, "Do I prefer dark mode?", "Am I allergic to peanuts?", "What is my name?")
    prefs = memory.profile()["preferences"]
    assert [(p["value"], p["evidence"]) for p in prefs] == [("dark mode", 1)]
    assert memory.profile()["facts"] == []
    # ...but a request phrased as a question still says what the tenant wants
    say(memory, "Can you answer in Spanish from now on?")
    assert "Wants answers in Spanish" in current(memory)


@pytest.mark.parametrize(("text", "expected"), [
    ("I don't know if I like it", []),
    ("My friend lives in Rome", []),
    ("I want a refund", []),
    ("I prefer tea over coffee", [("preference", "tea")]),
    ("I like dark mode and short answers", [("preference", "dark mode"),
                                           ("preference", "short answers")]),
    ("I'm a huge fan of jazz", [("preference", "jazz")]),
    ("I'm a vegetarian", [("fact", "vegetarian")]),
    ("Remember that I'm allergic to shellfish and peanuts",
     [("fact", "shellfish"), ("fact", "peanuts")]),
    ("I have two dogs named Rex and Max", [("fact", "two dogs named Rex and Max")]),
])
def test_rules_read_what_is_said_and_only_that(text: str, expected: list[tuple[str, str]]
                                               ) -> None:
    found = [(s.kind, s.value) for s in learn(text, T0).statements]
    assert found == expected


def test_an_event_gets_the_date_yesterday_meant_when_it_was_said(memory: Memory) -> None:
    said = 1683554160.0  # 8 May 2023, 13:56 UTC
    memory.observe([pair(1, "I went to a LGBTQ support group yesterday and it was powerful.",
                         at=said)])
    event = held(memory, "event")[0]
    assert event["text"] == "Went to a LGBTQ support group (7 May 2023)"
    assert event["at"] == "2023-05-08T13:56:00Z" and event["valid_from"] == "2023-05-07T13:56:00Z"


def test_a_backlog_delivered_late_keeps_the_time_it_was_said(memory: Memory) -> None:
    memory.observe([pair(1, "I live in Lyon", at=T0)])  # delivered long after T0
    assert held(memory)[0]["at"] == "2023-11-14T22:13:20Z"
    said_at = {"x-burrow-said-at": "2021-03-04T05:06:07Z"}  # imported history
    memory.observe([pair(2, "I live in Nice", headers=said_at)])
    nice = next(m for m in held(memory) if m["value"] == "Nice")
    assert nice["at"] == "2021-03-04T05:06:07Z"


def test_saying_it_again_is_evidence_and_a_bare_yes_accepts_an_offer(memory: Memory) -> None:
    say(memory, "I prefer green tea.", "I prefer green tea.")
    (tea,) = memory.profile()["preferences"]
    assert tea["evidence"] == 2 and tea["confidence"] == 0.667
    assert held(memory)[0]["request_ids"] == ["req-1", "req-2"]
    memory.observe([pair(3, "Can you recommend a theme?",
                         reply="Sure. Would you like answers in Italian from now on?"),
                    pair(4, "yes please")])
    assert "Wants answers in Italian" in current(memory)


def test_recall_reads_dates_in_the_query(memory: Memory) -> None:
    may, june = 1683554160.0, 1686232560.0  # 8 May 2023, 8 June 2023
    memory.observe([pair(1, "We went to the lake with the kids", at=may),
                    pair(2, "We went to the lake again", at=june)])
    for query, wanted in (("What did we do at the lake on 8 June, 2023?", "req-2"),
                          ("What did we do at the lake in May 2023?", "req-1")):
        assert recall(memory, query)[0]["request_ids"][0] == wanted, query


def test_a_recalled_turn_comes_with_its_conversation(memory: Memory) -> None:
    """The turns just before and after it (within an hour) are its context, cited after it; a
    context turn is listed again only as a result of its own, after the one it came with, and
    no turn is any two results' own; a turn a day later, or outside since/until, is not its
    context."""
    memory.observe([pair(1, "Guess where we went?", reply="The lake?"),
                    pair(2, "Yes, last Friday, with the kayak!", reply="Fun!"),
                    pair(3, "The kids loved it", reply="I bet."),
                    pair(4, "Another kayak trip is planned", at=T0 + 86400 * 3)])
    results = recall(memory, "kayak trip last Friday")
    first = next(r for r in results if r["request_ids"][0] == "req-2")
    assert first["request_ids"] == ["req-2", "req-1", "req-3"]
    assert [(c["text"], c["before"]) for c in first["context"]] == [
        ("Guess where we went?", True), ("The kids loved it", False)]
    listed = [r["request_ids"][0] for r in results]
    assert len(listed) == len(set(listed)) and "req-4" in listed
    assert all(listed.index(n) > listed.index("req-2") for n in ("req-1", "req-3")
               if n in listed)
    lone = next(r for r in results if r["request_ids"][0] == "req-4")
    assert lone["request_ids"] == ["req-4"] and "context" not in lone
    bounded = recall(memory, "kayak trip last Friday", since=T0 + 600 * 2)
    assert next(r for r in bounded if r["request_ids"][0] == "req-2")["request_ids"] == [
        "req-2", "req-3"]


def test_a_large_memory_searches_vectors_through_sign_codes(memory: Memory,
                                                            monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    import random

    from tenant_agent.memory import vectors

    monkeypatch.setattr(vectors, "EXACT_MAX", 50)
    monkeypatch.setattr(vectors, "SHORTLIST", 20)
    rng = random.Random(1)
    vecs = [[rng.gauss(0, 1) for _ in range(32)] for _ in range(300)]
    memory.observe([{**pair(n + 1, f"note {n}"), "embedding": {"model": "m", "user": v}}
                    for n, v in enumerate(vecs)])
    target = 123
    query = [x + rng.gauss(0, 0.1) for x in vecs[target]]
    assert recall(memory, "zzz", vector=query)[0]["request_ids"][0] == f"req-{target + 1}"
    assert memory.codes is not None and len(memory.codes.codes) == 300
    memory.observe([{**pair(301, "late note"), "embedding": {"model": "m", "user": vecs[7]}}])
    assert len(memory.codes.codes) == 301  # kept up to date as turns arrive


def test_a_bare_no_declines_the_offer(memory: Memory) -> None:
    memory.observe([pair(1, "Hi", reply="Would you like answers in Italian from now on?"),
                    pair(2, "no thanks")])
    assert current(memory) == {}


def test_no_longer_being_something_ends_it(memory: Memory) -> None:
    say(memory, "I'm a vegetarian", "I'm a student")
    say(memory, "I'm no longer a vegetarian", "I'm not a student anymore")
    assert current(memory) == {}
    assert len(held(memory)) == 2  # both kept as history


def test_a_question_asked_of_the_agent_is_no_turn_of_the_history(memory: Memory) -> None:
    """/ask traffic is observed like any request: what it states is learned, but a bare
    question to the agent is not kept as an episode (recall would hand it back)."""
    ask = "/v1/tenants/t/agent/ask"
    memory.observe([pair(1, "We went to the lake on Sunday"),
                    pair(2, "When did we go to the lake?", path=ask,
                         body={"question": "When did we go to the lake?"}),
                    pair(3, "I'm a vegetarian. What should I cook?", path=ask,
                         body={"question": "I'm a vegetarian. What should I cook?"})])
    said = [e["text"] for e in list_items(memory, "episode")["items"]]
    assert "When did we go to the lake?" not in said
    assert "I'm a vegetarian. What should I cook?" in said
    found = recall(memory, "When did we go to the lake?")
    assert found and "req-2" not in {i for r in found for i in r["request_ids"]}
    assert any("vegetarian" in m.lower() for m in current(memory))
