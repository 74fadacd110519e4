"""Recall ranks the tenant's own words: not the replies (an /ask reply is the context the agent
assembled, other tenants' insights quoted in it), not one stemmed word against meaning; a
question about "the user" is the tenant asking about itself. In process, on the agent's real
SQLite store; vectors are small hand-made ones (what is compared is the point, not a model)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tenant_agent.memory import store
from tenant_agent.memory.answer import SHARED_LEAD
from tenant_agent.memory.memory import Memory
from tenant_agent.memory.recall import first_person, recall

T0 = 1_700_000_000.0
ASK_REPLY = ("No model is configured for this agent, so this answer is assembled from what it "
             "knows. What you said before: The bus was late again. " + SHARED_LEAD +
             ' "Some users prefer dark mode."; "Most users of the app work from home."')


def pair(n: int, text: str, reply: str = "Noted.", vector: list[float] | None = None,
         at: float | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": f"p{n}", "seq": n, "at": T0 + 7200 * n if at is None else at,
        "request_id": f"req-{n}",
        "request": {"method": "POST", "path": "/v1/tenants/t/agent/ask",
                    "body": json.dumps({"question": text})},
        "response": {"status": 200, "body": json.dumps({"answer": reply})}}
    if vector is not None:
        out["embedding"] = {"model": "m", "user": vector}
    return out


def unit(i: int, dim: int = 8, rest: float = 0.05) -> list[float]:
    return [1.0 if j == i else rest for j in range(dim)]


@pytest.fixture
def memory(tmp_path: Path) -> Memory:
    return Memory(str(tmp_path / "memory.db"))


def ids(results: list[dict[str, Any]]) -> list[str]:
    return [r["request_ids"][0] for r in results]


def test_a_reply_is_kept_with_its_turn_but_never_ranked_as_the_tenants_words(
        memory: Memory) -> None:
    memory.observe([pair(1, "Ugh, what a day.", reply=ASK_REPLY),
                    pair(2, "I write firmware for pacemakers.")])
    # "users", "work", "home": only in the reply, which quotes other tenants' notes
    assert recall(memory, "Where do users work from home?") == []
    found = recall(memory, "pacemakers")
    assert ids(found) == ["req-2"] and found[0]["reply"] == "Noted."
    assert recall(memory, "what a day")[0]["reply"] == ASK_REPLY  # kept, as context


def test_a_question_about_the_user_finds_the_fact_not_the_turns_whose_replies_say_users(
        memory: Memory) -> None:
    """The issue's failure: "What does the user do for work?" matched "users" in every /ask
    reply that quoted an insight, and BM25 divided by the best match made that a full score."""
    job = unit(0)
    memory.observe([*[pair(n, f"Small talk number {n}.", reply=ASK_REPLY, vector=unit(n % 7 + 1))
                      for n in range(1, 30)],
                    pair(30, "I write firmware for pacemakers at a device company.", vector=job)])
    query = [0.8 if j == 0 else 0.3 for j in range(8)]  # near the fact by meaning
    assert ids(recall(memory, "What does the user do for work?", 5, vector=query))[0] == "req-30"


def test_one_stemmed_word_never_outranks_meaning(memory: Memory) -> None:
    """"live" matches "living room" in a turn far from the question's meaning; the turn that
    means it shares no word with it."""
    memory.observe([pair(1, "I'm thinking of rearranging the living room.", vector=unit(1)),
                    pair(2, "I share a flat with four other students.", vector=unit(0))])
    query = [0.7 if j == 0 else (0.35 if j == 1 else 0.05) for j in range(8)]
    assert ids(recall(memory, "Who do I live with?", vector=query)) == ["req-2", "req-1"]
    # without a vector, full text still finds the word
    assert ids(recall(memory, "Who do I live with?")) == ["req-1"]


def test_full_text_is_scored_against_what_the_query_could_match(memory: Memory) -> None:
    """A turn holding every word of the query outscores one holding a single common word, and
    the scores are not stretched to the best match found: a weak match stays weak."""
    memory.observe([pair(n, f"The weather was fine on day {n}.") for n in range(1, 20)] +
                   [pair(20, "Our kayak trip on the fjord was the best weather of the year.")])
    found = recall(memory, "kayak fjord weather")
    assert ids(found)[0] == "req-20"
    assert found[1]["score"] < 0.5  # the others share only "weather"


@pytest.mark.parametrize(("question", "asked"), [
    ("What pets does the user have?", "What pets do I have?"),
    ("Where is the user originally from?", "Where am I originally from?"),
    ("What is the user's occupation?", "What is my occupation?"),
    ("Which city does the user live in?", "Which city do I live in?"),
    ("The user studies what?", "I study what?"),
    ("Tell the user a joke", "Tell me a joke"),
    ("How many users signed up today?", "How many users signed up today?"),
])
def test_a_question_about_the_user_is_the_tenant_asking_about_itself(question: str,
                                                                    asked: str) -> None:
    assert first_person(question) == asked


def test_recall_reads_the_user_as_the_speaker(memory: Memory) -> None:
    memory.observe([pair(1, "I live in Oslo."), pair(2, "Our users live all over Europe.")])
    found = recall(memory, "Where does the user live?")
    assert found[0]["text"] == "Lives in Oslo"


def test_a_schema_2_store_is_migrated_to_an_index_of_the_words_alone(tmp_path: Path) -> None:
    path = tmp_path / "memory.db"
    old = sqlite3.connect(path)
    old.executescript(store._TABLES.replace(
        "user, content='episodes'", "user, reply, content='episodes'").replace(
        "INSERT INTO episodes_fts(rowid, user) VALUES (new.n, new.user);",
        "INSERT INTO episodes_fts(rowid, user, reply) VALUES (new.n, new.user, new.reply);"
    ).replace("VALUES ('delete', old.n, old.user);",
              "VALUES ('delete', old.n, old.user, old.reply);").replace(
        "updated REAL NOT NULL,\n    vec BLOB);", "updated REAL NOT NULL);"))
    old.execute("INSERT INTO meta VALUES ('schema', '2')")
    old.execute("INSERT INTO episodes (id, pair_id, request_id, at, user, reply) VALUES "
                "('e_1', 'p1', 'req-1', 1.0, 'I repair harpsichords', 'Users love that')")
    old.commit()
    assert old.execute("SELECT count(*) FROM episodes_fts WHERE episodes_fts MATCH "
                       "'users'").fetchone()[0] == 1
    old.close()
    memory = Memory(str(path))
    assert store.version(memory.db) == 3
    assert recall(memory, "users") == []
    assert ids(recall(memory, "harpsichords")) == ["req-1"]
    columns = {row[1] for row in memory.db.execute("PRAGMA table_info(memories)")}
    assert "vec" in columns


def test_a_host_too_busy_to_embed_in_time_is_asked_again_next_time(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A query's embedding that does not come within the timeout means full text this time,
    not for the next ten minutes (only a host without the route, or no host, is not asked
    again for a while)."""
    import socket

    from tenant_agent.memory import embed

    path = str(tmp_path / "host.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(8)  # accepts connections, never answers: a host too busy
    monkeypatch.setenv("BURROW_HOST_SOCKET", path)
    monkeypatch.setenv("BURROW_BOX_TOKEN", "t")
    monkeypatch.setattr(embed, "TIMEOUT_S", 0.2)
    monkeypatch.setattr(embed, "_unavailable_until", [0.0])
    try:
        assert embed.query_vector("where do I live", "m") is None
        assert embed._unavailable_until[0] == 0.0
        listener.close()
        Path(path).unlink()
        assert embed.query_vector("where do I live", "m") is None  # no host: not asked again
        assert embed._unavailable_until[0] > 0.0
    finally:
        listener.close()



def test_a_turn_returned_as_context_is_still_listed_when_it_ranks_itself(
        memory: Memory) -> None:
    memory.observe([pair(1, "We adopted a greyhound called Comet.", at=T0),
                    pair(2, "Comet the greyhound sleeps on the sofa now.", at=T0 + 600),
                    pair(3, "The weather was grey all week.", at=T0 + 86400)])
    found = recall(memory, "greyhound Comet")
    assert ids(found) == ["req-1", "req-2"] or ids(found) == ["req-2", "req-1"]
    assert found[0]["request_ids"][1:] == [ids(found)[1]]  # the other is its context too
