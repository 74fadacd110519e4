"""The model's extraction pass with a scripted model behind a fake host socket: every
utterance of issue 14 learned by the model alone (rules off), what the agent refuses to take
from a model, one call per batch, and what happens when the model is refused."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tenant_agent.memory import extract
from tenant_agent.memory.memory import Memory
from tenant_agent.memory.owner import delete_all, list_items
from tenant_agent.memory.recall import recall
from tests.fakes import FakeHost, memory_operations
from tests.tenant_agent.test_agent_memory_rules import pair

MODEL = "fake/extractor"


@pytest.fixture
def host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHost]:
    fake = FakeHost(str(tmp_path / "host.sock"))
    for key, value in fake.env.items():
        monkeypatch.setenv(key, value)
    yield fake
    fake.close()


@pytest.fixture
def memory(tmp_path: Path) -> Memory:
    mem = Memory(str(tmp_path / "memory.db"), rules=False)
    mem.use_model(MODEL)
    return mem


def alias(request: dict[str, Any], text: str) -> str:
    """The alias the prompt gave a held memory ("m1") or a turn ("t1")."""
    prompt = request["messages"][-1]["content"]
    match = re.search(r"\[(\w+)\] [^\n]*" + re.escape(text), prompt)
    assert match, f"{text!r} is not in the prompt:\n{prompt}"
    return match.group(1)


def learn(memory: Memory, host: FakeHost, text: str, *ops: dict[str, Any]) -> dict[str, Any]:
    """The tenant says `text`; the model answers with `ops` (callables get the request)."""
    n = memory.last_seq() + 1
    memory.observe([pair(n, text)])

    def answer(request: dict[str, Any]) -> str:
        return memory_operations(*[op(request) if callable(op) else op for op in ops])

    host.script.append(answer)
    return extract.drain(memory, MODEL)


def now(memory: Memory) -> dict[str, str]:
    return {m["text"]: m["kind"] for m in list_items(memory, status="current")["items"]}


def every(memory: Memory) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = list_items(memory, status="all")["items"]
    return items


def add(kind: str, text: str) -> dict[str, Any]:
    return {"op": "add", "kind": kind, "text": text, "turns": ["t1"]}


def update(old: str, kind: str, text: str) -> Any:
    return lambda r: {"op": "update", "id": alias(r, old), "kind": kind, "text": text,
                      "turns": ["t1"]}


def delete(old: str) -> Any:
    return lambda r: {"op": "delete", "id": alias(r, old), "turns": ["t1"]}


def test_like_then_unlike_is_an_update_that_keeps_history(memory: Memory,
                                                          host: FakeHost) -> None:
    learn(memory, host, "I like dark mode", add("preference", "Likes dark mode"))
    report = learn(memory, host, "I don't like dark mode",
                   update("Likes dark mode", "preference", "Does not like dark mode"))
    assert report["operations"] == {"update": 1}
    assert now(memory) == {"Does not like dark mode": "preference"}
    old = next(m for m in every(memory) if m["text"] == "Likes dark mode")
    assert not old["current"] and old["superseded_by"]
    assert "[m1] preference: Likes dark mode" in host.requests[-1]["messages"][-1]["content"]


def test_now_prefer_light_mode(memory: Memory, host: FakeHost) -> None:
    learn(memory, host, "I like dark mode", add("preference", "Likes dark mode"))
    learn(memory, host, "Actually I now prefer light mode",
          update("Likes dark mode", "preference", "Prefers light mode"))
    assert now(memory) == {"Prefers light mode": "preference"}


def test_answers_in_french(memory: Memory, host: FakeHost) -> None:
    learn(memory, host, "I'd like answers in French from now on",
          add("preference", "Wants answers in French"))
    assert now(memory) == {"Wants answers in French": "preference"}


def test_moved_from_berlin_to_paris(memory: Memory, host: FakeHost) -> None:
    learn(memory, host, "I live in Berlin", add("fact", "Lives in Berlin"))
    learn(memory, host, "I moved from Berlin to Paris",
          update("Lives in Berlin", "fact", "Lives in Paris"))
    assert now(memory) == {"Lives in Paris": "fact"}
    assert recall(memory, "Berlin", kinds=["fact"])[0]["valid_to"] is not None


def test_allergic_to_peanuts(memory: Memory, host: FakeHost) -> None:
    learn(memory, host, "I'm allergic to peanuts", add("fact", "Allergic to peanuts"))
    assert now(memory) == {"Allergic to peanuts": "fact"}


def test_a_delete_when_asked_to_forget_removes_else_it_ends(memory: Memory,
                                                            host: FakeHost) -> None:
    learn(memory, host, "I live in Berlin", add("fact", "Lives in Berlin"))
    learn(memory, host, "Forget that I live in Berlin", delete("Lives in Berlin"))
    assert every(memory) == []
    assert recall(memory, "Berlin") == []  # the turn it came from went with it
    learn(memory, host, "I work at Siemens", add("fact", "Works at Siemens"))
    learn(memory, host, "I stopped working at Siemens", delete("Works at Siemens"))
    (siemens,) = every(memory)
    assert not siemens["current"] and siemens["valid_to"]


def test_confused_about_an_invoice_teaches_nothing(memory: Memory, host: FakeHost) -> None:
    learn(memory, host, "I'm a bit confused about the invoice",
          {"op": "none", "kind": "fact", "text": "", "turns": ["t1"]})
    assert every(memory) == []


def test_google_data_scientist_is_two_facts(memory: Memory, host: FakeHost) -> None:
    learn(memory, host, "I work at Google as a data scientist",
          add("fact", "Works at Google"), add("fact", "Works as a data scientist"))
    assert now(memory) == {"Works at Google": "fact", "Works as a data scientist": "fact"}


def test_an_email_address(memory: Memory, host: FakeHost) -> None:
    learn(memory, host, "My email is a@b.com", add("fact", "Email is a@b.com"))
    assert now(memory) == {"Email is a@b.com": "fact"}


def test_what_a_model_invents_or_reads_into_a_question_is_refused(memory: Memory,
                                                                  host: FakeHost) -> None:
    report = learn(memory, host, "Do I prefer dark mode?", add("preference", "Prefers dark mode"),
                   add("fact", "Owns a yacht in Monaco"),
                   {"op": "update", "id": "m9", "kind": "fact", "text": "Lives in Rome",
                    "turns": ["t1"]},
                   {"op": "delete", "id": "m1", "turns": ["t7"]})
    assert report["operations"] == {"rejected": 4}
    assert every(memory) == []


def test_one_model_call_per_batch_never_per_pair(memory: Memory, host: FakeHost) -> None:
    memory.observe([pair(n, f"I visited museum number {n} today") for n in range(1, 20)])
    host.script.extend([memory_operations()] * 3)
    report = extract.drain(memory, MODEL)
    assert report["batches"] == 3 and report["turns"] == 19 and report["pending"] == 0
    assert len(host.requests) == 3 == extract.stats(memory)["model_calls"]
    prompt = host.requests[0]["messages"][-1]["content"]
    assert prompt.count("user: I visited museum") == extract.BATCH_TURNS
    assert "Tuesday 14 November 2023" in prompt  # each turn with the date it was said
    assert host.requests[0]["response_format"]["type"] == "json_schema"


@pytest.mark.parametrize("status", [429, 503])
def test_a_refused_model_leaves_the_turns_queued_for_later(memory: Memory, host: FakeHost,
                                                           status: int) -> None:
    memory.observe([pair(1, "I'm allergic to peanuts")])
    host.script.append(status)
    report = extract.drain(memory, MODEL)
    assert report["errors"] and report["errors"][0].startswith(str(status))
    assert report["pending"] == 1
    learn(memory, host, "I'm allergic to cats", add("fact", "Allergic to peanuts"),
          {"op": "add", "kind": "fact", "text": "Allergic to cats", "turns": ["t2"]})
    assert now(memory) == {"Allergic to peanuts": "fact", "Allergic to cats": "fact"}


def test_an_unreadable_answer_is_retried_then_dropped(memory: Memory, host: FakeHost) -> None:
    memory.observe([pair(1, "I'm allergic to peanuts")])
    host.script.extend(["not json at all", "{\"operations\": 7}"])
    first = extract.drain(memory, MODEL, max_batches=1)
    assert first["pending"] == 1 and "unreadable" in first["errors"][0]
    second = extract.drain(memory, MODEL, max_batches=1)
    assert second["pending"] == 0 and extract.stats(memory)["model_failures"] == 2


def test_delete_all_while_the_model_thinks_discards_its_answer(memory: Memory,
                                                               host: FakeHost) -> None:
    memory.observe([pair(1, "I'm allergic to peanuts")])

    def answer(request: dict[str, Any]) -> str:
        delete_all(memory)  # the tenant deletes everything while the call is out
        return memory_operations(add("fact", "Allergic to peanuts"))

    host.script.append(answer)
    report = extract.drain(memory, MODEL)
    assert every(memory) == [] and report["pending"] == 0
    assert "deleted during the call" in report["errors"][0]


def test_the_prompt_shows_held_memories_like_the_new_turns(memory: Memory,
                                                           host: FakeHost) -> None:
    learn(memory, host, "I live in Berlin", add("fact", "Lives in Berlin"))
    learn(memory, host, "I love sushi", add("preference", "Loves sushi"))
    learn(memory, host, "I moved from Berlin to Paris", {"op": "none", "turns": ["t1"]})
    prompt = host.requests[-1]["messages"][-1]["content"]
    assert "Lives in Berlin" in prompt and "sushi" not in prompt
    assert json.loads(json.dumps(host.requests[-1]))["model"] == MODEL


def test_the_model_named_is_remembered_and_an_empty_name_ends_it(tmp_path: Path) -> None:
    path = str(tmp_path / "m.db")
    memory = Memory(path)
    memory.use_model("openai/gpt-4o-mini")
    memory.observe([pair(1, "I'm allergic to peanuts")])
    memory.close()
    again = Memory(path)  # as after a wake: the model is known before any request
    assert again.model == "openai/gpt-4o-mini" and again.profile()["pending"] == 1
    again.use_model(None)  # a request that does not say keeps it
    assert again.model == "openai/gpt-4o-mini"
    again.use_model("")
    again.observe([pair(2, "I'm allergic to cats")])
    assert again.model is None and again.profile()["pending"] == 1  # no new queued turns


def test_the_model_queue_is_bounded(memory: Memory, monkeypatch: pytest.MonkeyPatch) -> None:
    from tenant_agent.memory import memory as memory_module

    monkeypatch.setattr(memory_module, "MAX_PENDING", 5)
    memory.observe([pair(n, f"I visited museum number {n}") for n in range(1, 9)])
    assert memory.profile()["pending"] == 5
    oldest = memory.db.execute("SELECT min(e.user) FROM pending p JOIN episodes e "
                               "ON e.n = p.episode").fetchone()[0]
    assert oldest == "I visited museum number 4"  # the newest five wait


def test_the_models_memories_get_subjects_so_a_new_location_supersedes_the_old(
        memory: Memory, host: FakeHost) -> None:
    """The model adds "Lives in Paris" without naming what it replaces: its subject (a
    location, one at a time, as the rules read it) supersedes "Lives in Berlin"."""
    learn(memory, host, "I live in Berlin", add("fact", "Lives in Berlin"))
    learn(memory, host, "We've relocated, I live in Paris", add("fact", "Lives in Paris"))
    assert now(memory) == {"Lives in Paris": "fact"}
    berlin = next(m for m in every(memory) if m["text"] == "Lives in Berlin")
    assert berlin["subject"] == "location" and berlin["superseded_by"]


def unit(i: int, dim: int = 8) -> list[float]:
    return [1.0 if j == i else 0.05 for j in range(dim)]


def test_the_models_memories_supersede_by_meaning_with_the_hosts_vectors(
        memory: Memory, host: FakeHost) -> None:
    """One POST /v1/embed a batch gives the model's texts vectors; a new attribute the same
    thing as a held one by meaning supersedes it, another thing does not."""
    host.embeddings.update({"Eats only plants": unit(0), "Is a meat eater": unit(0),
                            "Is a cello player": unit(3)})
    with memory.lock:  # the model of the vectors the tenant's turns came with
        memory.set_meta("vector_model", host.embed_model)
    learn(memory, host, "I eat only plants", add("fact", "Eats only plants"))
    learn(memory, host, "I'm a cello player", add("fact", "Is a cello player"))
    learn(memory, host, "I'm a meat eater", add("fact", "Is a meat eater"))
    assert now(memory) == {"Is a meat eater": "fact", "Is a cello player": "fact"}
    embeds = [r for r in host.requests if "texts" in r]
    assert embeds == []  # /v1/embed requests are not model calls (FakeHost keeps only those)


def test_the_model_may_not_ground_a_memory_in_what_a_reply_quoted(memory: Memory,
                                                                   host: FakeHost) -> None:
    quoted = ("Other users' notes (quoted as they shared them, unchecked): "
              '"Prefers dark mode with large fonts."')
    memory.observe([pair(1, "ok thanks", reply=quoted)])
    host.script.append(memory_operations(add("preference", "Prefers dark mode with large fonts")))
    extract.drain(memory, MODEL)
    assert now(memory) == {}
    # ...but a bare yes accepts what the reply offered
    learn(memory, host, "yes please", add("preference", "Wants answers in French"))
    memory.observe([pair(memory.last_seq() + 1, "Sure",
                         reply="Would you like answers in Italian from now on?")])
    offered = pair(memory.last_seq() + 1, "yes")
    memory.observe([offered])
    host.script.append(memory_operations(
        {"op": "add", "kind": "preference", "text": "Wants answers in Italian",
         "turns": ["t1", "t2"]}))
    extract.drain(memory, MODEL)
    assert "Wants answers in Italian" in now(memory)
