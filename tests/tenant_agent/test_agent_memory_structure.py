"""What the agent learns from what its tenant says about itself, read by structure from the
host's parse, and how a new memory updates what it holds: by subject, by a changed count, by
meaning; forgetting only when the tenant addresses its memory. Real parts: spaCy's English
pipeline and the all-MiniLM-L6-v2 embedder in this process, attached to the pairs by the
host's own code (core/parsing.py, core/vectors.py), delivered to the agent's real store."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.parsing import PairParses, SpacyParser
from core.vectors import PairVectors
from knowledge.embedder import SentenceTransformerEmbedder
from tenant_agent.memory.memory import Memory
from tenant_agent.memory.owner import list_items
from tenant_agent.memory.structure import forgetting, read, said, statements, subject_of

T0 = 1_700_000_000.0


class Host:
    """What the worker attaches to each pair: the parse, the memories' vectors, the words'."""

    def __init__(self) -> None:
        embedder = SentenceTransformerEmbedder()
        self.parser = SpacyParser()
        self.parses = PairParses(self.parser, embedder)
        self.unparsed = PairParses(NoParse(), embedder)
        self.vectors = PairVectors(embedder, None)

    def prepare(self, pairs: list[dict[str, Any]], parse: bool | None = True) -> None:
        """`parse`: True, the host's parse; None, a parse that reads nothing (the rules'
        memories still get their vectors); False, no parse and no memory vectors."""
        if parse is not False:
            asyncio.run((self.parses if parse else self.unparsed).attach(pairs))
        asyncio.run(self.vectors.attach(pairs))

    def parse(self, text: str) -> dict[str, Any]:
        return self.parser.parse([text])[0]


class NoParse:
    """A parser that finds no sentence (the words cut away, another language)."""

    def parse(self, texts: list[str]) -> list[dict[str, Any]]:
        return [{"model": "none", "text": t, "tokens": [], "sents": []} for t in texts]


@pytest.fixture(scope="module")
def host() -> Host:
    return Host()


@pytest.fixture
def memory(tmp_path: Path) -> Iterator[Memory]:
    held = Memory(str(tmp_path / "memory.db"))
    yield held
    held.close()


def pair(n: int, text: str) -> dict[str, Any]:
    return {"id": f"p{n}", "seq": n, "at": T0 + 600 * n, "request_id": f"req-{n}",
            "request": {"method": "POST", "path": "/v1/tenants/t/agent/chat",
                        "body": json.dumps({"message": text})},
            "response": {"status": 200, "body": json.dumps({"reply": "Noted."})}}


def say(memory: Memory, host: Host, *texts: str, parse: bool | None = True) -> None:
    for text in texts:
        one = pair(memory.last_seq() + 1, text)
        host.prepare([one], parse)
        memory.observe([one])


def now(memory: Memory) -> list[str]:
    return [m["text"] for m in list_items(memory, "", "current", 500)["items"]]


def everything(memory: Memory) -> str:
    items = list_items(memory, "", "all", 500)["items"] + list_items(memory, "episode",
                                                                     "all", 500)["items"]
    return " | ".join(i["text"] for i in items).lower()


@pytest.mark.parametrize(("text", "expected"), [
    ("We've got three cats now.", [("cat", "three cats")]),
    ("Update: I have 3 kids, the baby arrived!", [("kid", "3 kids")]),
    ("My two daughters started school.", [("daughter", "two daughters")]),
    ("I have a sister and two brothers.", [("sister", "a sister"), ("brother", "two brothers")]),
    ("I grew up in Porto.", [("hometown", "Porto")]),
    ("I was born in Chennai and came over for university.", [("birthplace", "Chennai")]),
    ("I come from a small village in Wales.", [("hometown", "small village in Wales")]),
    ("I used to be a lawyer.", [("past role", "lawyer")]),
    ("I worked at Siemens for ten years.", [("past employer", "Siemens")]),
    ("I retired last year after thirty years as a train driver.",
     [("employment status", "retired"), ("past role", "train driver")]),
    ("I'm a nurse at St Mary's Hospital.", [("role", "nurse"), ("employer", "St Mary's Hospital")]),
    ("I'm a meat eater.", [("diet", "meat eater")]),
    ("Honestly, these days I mostly eat fish.", [("diet", "fish")]),
    ("I'm divorced.", [("marital status", "divorced")]),
    ("We got married in June!", [("marital status", "married")]),
    ("Actually, I go by Sam.", [("name", "Sam")]),
    ("We've moved to Portuguese.", [("answer language", "Portuguese")]),
    ("I used to live in Berlin.", [("past location", "Berlin")]),
    ("These days I prefer coffee instead.", [("coffee", "coffee")]),
])
def test_statements_about_oneself_are_read_by_structure(host: Host, text: str,
                                                        expected: list[tuple[str, str]]) -> None:
    parse = read(host.parse(text), text)
    assert parse is not None
    assert [(s.subject, s.value) for s in statements(parse) if s.op == "add"] == expected


@pytest.mark.parametrize("text", [
    "I'd love to live in Japan one day.",     # a wish
    "If I had two dogs I would walk more.",   # a condition
    "I have a question about my invoice.",    # no possession
    "I have two meetings today.",             # the day, not a lasting fact
    "My friend lives in Rome.",               # not the speaker
    "My sister has three kids.",              # not the speaker's count
    "Do I have three dogs?",                  # a question
    "I'm moving to Rome next month.",         # a plan
    "I'm a bit confused about the invoice.",  # no role, no status
])
def test_what_is_no_statement_about_oneself_is_not_read_as_one(host: Host, text: str) -> None:
    parse = read(host.parse(text), text)
    assert parse is not None
    assert [s.subject for s in statements(parse) if s.kind == "fact"] == []


def test_without_a_parse_the_rules_alone_read_the_words(host: Host, memory: Memory) -> None:
    say(memory, host, "I grew up in Porto.", parse=False)
    assert now(memory) == []  # the rules have no phrasing for it
    say(memory, host, "I grew up in Porto.")
    assert now(memory) == ["Grew up in Porto"]


def test_a_parse_of_other_words_or_a_malformed_one_is_ignored(host: Host) -> None:
    text = "I grew up in Porto."
    good = host.parse(text)
    assert read(good, "I grew up in Lisbon.") is None
    broken = {**good, "tokens": [[0, 99, "x", "NOUN", "NN", "ROOT", 7, ""]]}
    assert read(broken, text) is None
    cyclic = {**good, "tokens": [[*t[:6], 0 if t[6] else 1, t[7]] for t in good["tokens"]]}
    assert said(text, T0, "", cyclic).statements is not None  # reads, or falls back: no raise
    assert said("I live in Oslo.", T0, "", broken).facts == [("location", "Oslo")]


def test_a_changed_count_supersedes_the_old_one(host: Host, memory: Memory) -> None:
    say(memory, host, "I have two dogs.", "We've got three dogs now.")
    assert now(memory) == ["Has three dogs"]
    say(memory, host, "I have a cat too.")  # another thing: both hold
    assert sorted(now(memory)) == ["Has a cat", "Has three dogs"]


def test_a_count_changes_without_a_parse_too(host: Host, memory: Memory) -> None:
    say(memory, host, "I have two dogs.", "I have three dogs.", parse=False)
    assert now(memory) == ["Has three dogs"]


def test_the_same_thing_by_meaning_supersedes_and_another_thing_does_not(
        host: Host, memory: Memory) -> None:
    # read by the rules alone, the first are a role and an identity; the parse calls the new
    # one a diet: another subject, the same thing as the identity by meaning (MiniLM: 0.66),
    # not as the role (0.10)
    say(memory, host, "I'm a student.", "I'm a vegetarian.", parse=None)
    say(memory, host, "I'm a meat eater.")
    held = now(memory)
    assert "Is a meat eater" in held and "Is a vegetarian" not in held
    assert "Works as a student" in held  # a meat eater is no job


def test_a_statement_said_as_a_change_supersedes_what_it_changes(host: Host,
                                                                 memory: Memory) -> None:
    say(memory, host, "I prefer tea.", "I like jazz.")
    say(memory, host, "These days I prefer coffee instead.")
    assert sorted(now(memory)) == ["Likes jazz", "Prefers coffee"]


def test_likes_and_kin_accumulate(host: Host, memory: Memory) -> None:
    say(memory, host, "I like jazz.", "I like rock music.", "I have a sister.",
        "I have two brothers.", "I speak French.", "I speak German.")
    assert sorted(now(memory)) == ["Has a sister", "Has two brothers", "Likes jazz",
                                   "Likes rock music", "Speaks French", "Speaks German"]


def test_past_work_and_home_are_history_beside_the_present(host: Host, memory: Memory) -> None:
    say(memory, host, "I work as a nurse.", "I used to be a teacher.", "I live in Paris.",
        "I used to live in Rome.")
    assert sorted(now(memory)) == ["Lives in Paris", "Used to live in Rome",
                                   "Used to work as a teacher", "Works as a nurse"]


def test_a_new_name_and_a_new_answer_language_supersede(host: Host, memory: Memory) -> None:
    say(memory, host, "My name is Samantha.", "Please answer in English.")
    say(memory, host, "Actually, I go by Sam.", "We've moved to Portuguese.")
    assert sorted(now(memory)) == ["Name is Sam", "Wants answers in Portuguese"]


@pytest.mark.parametrize(("first", "forget", "gone"), [
    ("I work as a nurse.", "Please delete what you know about my job.", "nurse"),
    ("I'm allergic to peanuts.", "Remove my peanut allergy from your memory.", "peanut"),
    ("My ex is called Tom.", "Forget I mentioned my ex.", "tom"),
    ("I'm allergic to shellfish.", "Please delete the note about my shellfish allergy.",
     "shellfish"),
    ("I live in Berlin.", "Forget that I live in Berlin.", "berlin"),
])
def test_forgetting_asked_of_the_memory_removes_it_and_its_turns(
        host: Host, memory: Memory, first: str, forget: str, gone: str) -> None:
    say(memory, host, first, "The weather is nice.")
    say(memory, host, forget)
    assert gone not in everything(memory)
    assert "the weather is nice." in everything(memory)


@pytest.mark.parametrize(("first", "request_", "kept"), [
    ("I'm allergic to peanuts.", "Here is my satay recipe. Remove the peanuts.", "peanuts"),
    ("I live in Berlin.", "Delete Berlin.", "berlin"),
    ("I live in Berlin.", "Remove the duplicates from this list: Berlin, Berlin, Paris.",
     "berlin"),
    ("I work at Acme.", "Drop the users table from Acme's staging database.", "acme"),
    ("I work as a photographer.", "Remove the background from this photo of my studio.",
     "photographer"),
])
def test_an_ordinary_request_that_starts_with_remove_forgets_nothing(
        host: Host, memory: Memory, first: str, request_: str, kept: str) -> None:
    say(memory, host, first)
    before = now(memory)
    say(memory, host, request_)
    assert now(memory) == before and kept in " ".join(before).lower()
    episodes = [e["text"] for e in list_items(memory, "episode", "all", 50)["items"]]
    assert first in episodes and request_ in episodes


@pytest.mark.parametrize(("text", "subject", "exclusive"), [
    ("Lives in Paris", "location", True),
    ("Has two dogs", "dog", True),
    ("Works as a nurse", "role", True),
    ("Is married", "marital status", True),
    ("Is a vegetarian", "diet", True),
    ("Prefers light mode", "light mode", False),
    ("Allergic to peanuts", "allergy", False),
    ("Enjoyed a quiet weekend", "", False),
])
def test_the_models_memories_get_the_subjects_the_rules_give(text: str, subject: str,
                                                             exclusive: bool) -> None:
    assert subject_of(text) == (subject, exclusive)


@pytest.mark.parametrize(("said_before", "change", "current", "not_current"), [
    # a change said by implication: the object of a verb of acquiring, starting or moving
    (["I live in Hull."], "We got the keys to our new place in Beverley yesterday.",
     "Beverley", "Hull"),
    (["I work as a cashier at the supermarket."],
     "Started at the county library on Monday, no more tills for me!", "county library",
     "cashier"),
    (["We have two kids."], "Our third was born on Sunday, a little girl.", "three kids",
     "two kids"),
    # facts of other kinds, in the tenant's own words, superseded by meaning when changed
    (["I do all my coding in Vim."], "Moved to VS Code last month and I'm not going back.",
     "VS Code", "Vim"),
    (["I drink green tea every morning."],
     "I've gone off green tea, it's black coffee in the mornings now.", "black coffee",
     "green tea every"),
    (["I drive an old blue Volvo."], "Sold the Volvo, it's the bus for me from now on.", "bus",
     "blue Volvo"),
    (["My boyfriend Theo and I share a flat in Leeds."], "Theo and I broke up.",
     "Broke up with Theo", "boyfriend is Theo"),
])
def test_a_change_said_by_implication_or_in_other_words_supersedes(
        host: Host, memory: Memory, said_before: list[str], change: str, current: str,
        not_current: str) -> None:
    say(memory, host, *said_before)
    held = " | ".join(now(memory)).lower()
    assert not_current.lower() in held
    say(memory, host, change)
    held = " | ".join(now(memory)).lower()
    assert current.lower() in held and not_current.lower() not in held


@pytest.mark.parametrize(("text", "targets"), [
    ("scrap what I said about my salary, I shouldn't have shared it", ["my salary"]),
    ("Can you not remember the therapy thing?", ["therapy"]),
    ("Don't keep my partner's name on file, thanks.", ["my partner's name"]),
    ("Forget everything you know about me, clean slate.", ["*"]),
    ("Hey, drop that job-hunting thing from your notes, ok?", ["job hunting"]),
    ("wipe my phone number from your memory please", ["my phone number"]),
    # ordinary requests and remarks: nothing to forget
    ("Remove the duplicates from this list: apples, pears, apples.", []),
    ("Delete the email I drafted to my landlord, I won't send it.", []),
    ("Drop the users table from Acme's staging database.", []),
    ("Clear the table formatting and start again.", []),
    ("I keep forgetting my password.", []),
    ("Don't forget my nut allergy when you suggest recipes.", []),
    ("Forget it, the restaurant's fully booked anyway.", []),
])
def test_forgetting_is_read_by_structure_when_it_addresses_the_memory(
        host: Host, text: str, targets: list[str]) -> None:
    parse = read(host.parse(text), text)
    assert parse is not None
    assert [t for a, b in parse.sents for t in (forgetting(parse, a, b) or [])] == targets
    assert [s.value for s in said(text, T0, "", host.parse(text)).statements
            if s.op == "forget"] == targets


@pytest.mark.parametrize(("first", "forget", "gone"), [
    ("My salary is 41,000 a year.", "scrap what I said about my salary", "41,000"),
    ("I've been seeing a therapist for my anxiety.",
     "Can you not remember the therapy thing? I'd rather you didn't keep that.", "therapist"),
    ("My partner's name is Oskar.", "Don't keep my partner's name on file, thanks.", "oskar"),
    ("My dog is called Rua.", "Forget everything you know about me.", "rua"),
])
def test_forgetting_asked_in_other_words_removes_it_and_its_turns(
        host: Host, memory: Memory, first: str, forget: str, gone: str) -> None:
    say(memory, host, first, "I live in Cork.")
    assert gone.lower() in everything(memory)
    say(memory, host, forget)
    assert gone.lower() not in everything(memory)
    assert ("cork" in everything(memory)) == ("everything" not in forget)


def test_someone_elses_fact_is_not_the_tenants(host: Host, memory: Memory) -> None:
    say(memory, host, "My dog's name is Nutmeg.", "My neighbour's new puppy is called Biscuit.",
        "My friend just moved to Lisbon, I'm so jealous.", "My sister's second baby was born.")
    held = " | ".join(now(memory)).lower()
    assert "nutmeg" in held
    assert "biscuit" not in held and "lisbon" not in held and "two" not in held


def test_ordinary_remarks_in_the_tenants_words_supersede_nothing(host: Host,
                                                                 memory: Memory) -> None:
    say(memory, host, "I prefer tea to coffee.", "I live in Westharbour.")
    before = now(memory)
    assert sorted(before) == ["Lives in Westharbour", "Prefers tea"]
    say(memory, host, "We'd run out of tea at work so I had a coffee, it was awful.",
        "I'm moving the sofa to the other wall this weekend.", "I have three meetings today.")
    after = now(memory)
    assert all(b in after for b in before)
    assert not any("meetings" in a or "sofa" in a or a.startswith("Prefers coffee")
                   for a in after)
