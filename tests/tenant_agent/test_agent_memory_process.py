"""The tenant agent as a real process (the in-box program under /usr/bin/python3 -I -S, on a
unix socket, as a box runs it): the memory routes, delete-all leaving nothing readable, chat
traffic, provenance, vectors, /ask, the schema migration and the background model pass."""

from __future__ import annotations

import base64
import http.client
import json
import socket
import sqlite3
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes import FakeHost, memory_operations

AGENT = Path(__file__).resolve().parents[2] / "tenant_agent" / "__main__.py"
T0 = 1_700_000_000.0


class _Unix(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("agent", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


class Agent:
    """One tenant agent process and a client for it."""

    def __init__(self, home: Path, env: dict[str, str] | None = None,
                 timeout: float = 30) -> None:
        self.home = home
        self.timeout = timeout
        self.env = env or {}
        self.socket = str(home / "agent.sock")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Agent:
        Path(self.socket).unlink(missing_ok=True)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(self.socket)
        listener.listen(16)
        self.proc = subprocess.Popen(
            ["/usr/bin/python3", "-I", "-S", str(AGENT)], pass_fds=[listener.fileno()],
            env={"BURROW_SERVICE_FD": str(listener.fileno()),
                 "BURROW_AGENT_STATE_DIR": str(self.home / "state"), **self.env})
        listener.close()
        return self

    def stop(self) -> None:
        """SIGTERM, as before a freeze."""
        if self.proc is not None:
            self.proc.terminate()
            assert self.proc.wait(10) == 0
            self.proc = None

    def call(self, method: str, path: str, body: object = None,
             headers: dict[str, str] | None = None) -> tuple[int, Any, dict[str, str]]:
        conn = _Unix(self.socket, self.timeout)
        try:
            conn.request(method, path, json.dumps(body) if body is not None else None,
                         {"content-type": "application/json", **(headers or {})})
            response = conn.getresponse()
            data = json.loads(response.read())
            return response.status, data, {k.lower(): v for k, v in response.getheaders()}
        finally:
            conn.close()

    def ok(self, method: str, path: str, body: object = None, **headers: str) -> Any:
        status, data, _ = self.call(method, path, body,
                                    {k.replace("_", "-"): v for k, v in headers.items()})
        assert status == 200, data
        return data

    def observe(self, *pairs: dict[str, Any], **headers: str) -> Any:
        return self.ok("POST", "/_burrow/observe", {"pairs": list(pairs)}, **headers)

    def recall(self, query: str, **extra: Any) -> list[dict[str, Any]]:
        results: list[dict[str, Any]] = self.ok("POST", "/recall", {"query": query,
                                                                    **extra})["results"]
        return results


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[Agent]:
    process = Agent(tmp_path).start()
    yield process
    process.stop()


def chat_pair(n: int, body: object, at: float | None = None, path: str = "/chat",
              reply: str = "Noted.", embedding: dict[str, Any] | None = None,
              **request: Any) -> dict[str, Any]:
    pair = {"id": f"p{n}", "seq": n, "at": T0 + 60 * n if at is None else at,
            "request_id": f"req-{n}",
            "request": {"method": "POST", "path": f"/v1/tenants/t/agent{path}",
                        "body": body if isinstance(body, str) else json.dumps(body), **request},
            "response": {"status": 200, "body": json.dumps({"answer": reply})}}
    if embedding is not None:
        pair["embedding"] = embedding
    return pair


def said(n: int, text: str, **extra: Any) -> dict[str, Any]:
    return chat_pair(n, {"question": text}, **extra)


def test_the_memory_routes_page_get_export_and_delete_one(agent: Agent) -> None:
    agent.observe(said(1, "I live in Berlin"), said(2, "I moved from Berlin to Paris"),
                  said(3, "I'm allergic to peanuts"), said(4, "My email is a@b.com"))
    first = agent.ok("GET", "/memories?limit=2")
    assert first["total"] == 3 and len(first["items"]) == 2 and first["next_cursor"]
    second = agent.ok("GET", f"/memories?limit=2&cursor={first['next_cursor']}")
    assert len(second["items"]) == 1 and second["next_cursor"] is None
    texts = [m["text"] for m in first["items"] + second["items"]]
    assert texts == ["Email is a@b.com", "Allergic to peanuts", "Lives in Paris"]
    paris = second["items"][0]
    assert agent.ok("GET", f"/memories/{paris['id']}")["history"][0]["text"] == \
        "Lives in Berlin"
    assert agent.ok("GET", "/memories?status=all")["total"] == 4
    assert agent.ok("GET", "/memories?kind=episode")["total"] == 4
    export = agent.ok("GET", "/memories/export")
    assert export["format"] == "burrow.memory/1" and len(export["memories"]) == 4
    assert [e["request_ids"] for e in export["episodes"]] == [["req-1"], ["req-2"], ["req-3"],
                                                              ["req-4"]]
    peanuts = first["items"][1]["id"]
    assert agent.ok("DELETE", f"/memories/{peanuts}")["deleted"] == [peanuts]
    assert agent.recall("peanuts") == []  # the turn it came from went with it
    status, error, _ = agent.call("GET", f"/memories/{peanuts}")
    assert status == 404 and error["error"]["code"] == "not_found"
    status, error, _ = agent.call("GET", "/memories?kind=gossip")
    assert status == 400 and "kind" in error["error"]["message"]


def test_delete_all_leaves_nothing_readable_also_after_a_restart(tmp_path: Path) -> None:
    host = FakeHost(str(tmp_path / "host.sock"))
    agent = Agent(tmp_path, host.env).start()
    try:
        canary = "Xylophonist"
        vector = [0.5] * 8
        agent.observe(*[said(n, f"I'm a {canary} and I love {canary} music number {n}",
                             embedding={"model": "m", "user": vector}) for n in range(1, 30)],
                      x_burrow_model="fake/model")
        assert agent.ok("GET", "/profile")["pending"] > 0  # the model's queue holds turns
        status, answer, headers = agent.call("DELETE", "/memories")
        assert status == 200 and answer["replace_snapshot"] is True
        assert headers["x-burrow-replace-snapshot"] == "1"
        assert answer["deleted"]["episodes"] == 29 and answer["deleted"]["pending"] > 0
        assert agent.recall(canary.lower()) == []
        assert agent.recall("music", query_embedding=vector) == []
        assert agent.ok("GET", "/memories/export")["memories"] == []
        agent.stop()
        for file in (tmp_path / "state").iterdir():
            assert canary.lower().encode() not in file.read_bytes().lower(), file
        agent.start()  # as after a freeze and a wake
        assert agent.recall(canary.lower()) == []
        assert agent.ok("GET", "/profile")["episodes"] == 0
        agent.observe(said(40, "I live in Oslo"))  # and it learns again
        assert agent.recall("Oslo")[0]["text"] == "Lives in Oslo"
    finally:
        agent.stop()
        host.close()


def test_the_agents_own_protocol_is_not_learned_from(agent: Agent) -> None:
    agent.observe(chat_pair(1, {"query": "I live in Rome"}, path="/recall"),
                  chat_pair(2, {"question": "I love jazz"}, path="/memories"),
                  chat_pair(3, "", path="/profile"),
                  {**said(4, "I live in Oslo"), "request": {
                      "method": "GET", "path": "/v1/tenants/t/agent/health", "body": ""}})
    profile = agent.ok("GET", "/profile")
    assert profile["observed"] == 4 and profile["episodes"] == 0 and profile["memories"] == 0


def openai_chat(*turns: str) -> dict[str, Any]:
    roles = ["user", "assistant"]
    return {"model": "gpt", "messages": [{"role": "system", "content": "Be brief."}] + [
        {"role": roles[i % 2], "content": t} for i, t in enumerate(turns)]}


def test_a_chat_learns_its_newest_user_turn_once(agent: Agent) -> None:
    agent.observe(chat_pair(1, openai_chat("I prefer dark mode.")),
                  chat_pair(2, openai_chat("I prefer dark mode.", "Noted!", "I live in Oslo.")),
                  # the same request again (a retry): nothing new
                  chat_pair(3, openai_chat("I prefer dark mode.", "Noted!", "I live in Oslo.")),
                  chat_pair(4, openai_chat("I prefer dark mode.", "Noted!", "I live in Oslo.",
                                           "Nice!", "Do I prefer dark mode?")))
    profile = agent.ok("GET", "/profile")
    assert [(p["value"], p["evidence"]) for p in profile["preferences"]] == [("dark mode", 1)]
    assert profile["episodes"] == 3
    # a new conversation that says it again is new evidence
    agent.observe(chat_pair(5, openai_chat("I prefer dark mode.")))
    assert agent.ok("GET", "/profile")["preferences"][0]["evidence"] == 2


def test_anthropic_bodies_named_fields_and_cut_bodies_keep_the_newest_turn(
        agent: Agent) -> None:
    anthropic = {"model": "claude", "system": "I live in Nowhere", "messages": [
        {"role": "user", "content": [{"type": "text", "text": "I'm allergic to peanuts."}]}]}
    named = {"input": {"text": "I work at Acme"}, "meta": {"note": "I live in Nowhere"}}
    history = openai_chat(*(["I said something long. " * 30, "ok"] * 14), "I live in Tromso.")
    body = json.dumps(history)
    assert len(body) > 8192
    agent.observe(chat_pair(1, anthropic),
                  chat_pair(2, named, headers={"x-burrow-user-text": "input.text"}),
                  chat_pair(3, body[:4096], body_tail=body[-4096:]))
    texts = {m["text"] for m in agent.ok("GET", "/memories")["items"]}
    assert texts == {"Allergic to peanuts", "Works at Acme", "Lives in Tromso"}


def test_recall_cites_request_ids_and_keeps_to_since_and_until(agent: Agent) -> None:
    day = 86400
    agent.observe(said(1, "We hiked the Kungsleden trail", at=T0),
                  said(2, "We hiked up Galdhopiggen", at=T0 + 10 * day),
                  said(3, "Pizza tonight", at=T0 + 20 * day))
    hits = agent.recall("hiked", limit=5)
    assert {r for hit in hits for r in hit["request_ids"]} == {"req-1", "req-2"}
    assert all(r["score"] <= 1.0 for r in hits) and hits[0]["score"] == 1.0
    later = agent.recall("hiked", since=T0 + 5 * day, until="2023-12-30T00:00:00Z")
    assert {r for hit in later for r in hit["request_ids"]} == {"req-2"}
    status, error, _ = agent.call("POST", "/recall", {"query": "x", "limit": 0})
    assert status == 400 and error["error"]["code"] == "invalid_request"


def unit(i: int, dim: int = 8) -> list[float]:
    return [1.0 if j == i else 0.05 for j in range(dim)]


def test_vectors_find_what_words_miss_and_text_alone_still_works(agent: Agent) -> None:
    agent.observe(*[said(n, text, embedding={"model": "mini", "user": unit(n)})
                    for n, text in enumerate(["Our golden retriever learned to fetch",
                                              "The quarterly numbers look fine",
                                              "Rain all week"], start=1)])
    # "dog" is in no turn; the query's embedding is near the retriever's
    hits = agent.recall("my dog", query_embedding=unit(1))
    assert hits[0]["text"] == "Our golden retriever learned to fetch"
    packed = base64.b64encode(struct.pack("<8f", *unit(2))).decode()
    assert agent.recall("anything", query_embedding=packed)[0]["request_ids"][0] == "req-2"
    assert agent.recall("quarterly numbers")[0]["request_ids"][0] == "req-2"
    status, _, _ = agent.call("POST", "/recall", {"query": "x", "query_embedding": "?!"})
    assert status == 400


def test_ask_answers_from_memory_within_its_budget_and_says_what_it_used(
        tmp_path: Path) -> None:
    host = FakeHost(str(tmp_path / "host.sock"))
    # what the host's search returns: only insights above the knowledge base's floor
    host.insights = [{"id": "i1", "text": "Dark themes save battery.", "score": 0.7,
                      "kind": "fact", "support": 3}]
    agent = Agent(tmp_path, host.env).start()
    try:
        agent.observe(said(1, "My name is Ada Lovelace"),
                      *[said(n, f"I tuned the analytical engine gear {n} today " * 8)
                        for n in range(2, 60)])
        answer = agent.ok("POST", "/ask", {"question": "What is my name?", "explain": True})
        assert answer["model"] is None and "Name is Ada Lovelace" in answer["answer"]
        used = answer["used"]
        assert used["tokens"] <= 800 and "req-1" in used["request_ids"]
        assert used["insights"] == ["i1"]
        host.script.append("Your name is Ada Lovelace.")
        answer = agent.ok("POST", "/ask", {"question": "What do I tune?"},
                          x_burrow_model="fake/answerer")
        assert answer == {**answer, "answer": "Your name is Ada Lovelace.",
                          "model": "fake/answerer"}
        system = host.requests[-1]["messages"][0]["content"]
        assert "Name is Ada Lovelace" in system and "analytical engine" in system
        assert answer["used"]["episodes"] and answer["used"]["tokens"] <= 800
        # the model that answers is not the extraction model (the worker names that one)
        assert agent.ok("GET", "/profile")["model"] is None
    finally:
        agent.stop()
        host.close()


def test_the_first_agents_database_is_migrated(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    db = sqlite3.connect(state / "memory.db")
    db.executescript("""
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE applied (n INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE,
            seq INTEGER NOT NULL, at REAL NOT NULL);
        CREATE TABLE preferences (polarity TEXT NOT NULL, value TEXT NOT NULL,
            evidence INTEGER NOT NULL, updated REAL NOT NULL, PRIMARY KEY (polarity, value));
        CREATE TABLE facts (key TEXT PRIMARY KEY, value TEXT NOT NULL,
            evidence INTEGER NOT NULL, updated REAL NOT NULL);
        CREATE TABLE topics (topic TEXT PRIMARY KEY, count INTEGER NOT NULL);
        INSERT INTO meta VALUES ('last_seq', '7');
        INSERT INTO applied (id, seq, at) VALUES ('old-1', 7, 1.0);
        INSERT INTO preferences VALUES ('likes', 'green tea', 3, 1700000000);
        INSERT INTO facts VALUES ('name', 'Ada', 1, 1700000000);
        INSERT INTO topics VALUES ('tea', 4);
    """)
    db.commit()
    db.close()
    agent = Agent(tmp_path).start()
    try:
        profile = agent.ok("GET", "/profile")
        assert profile["preferences"][0] | {"id": ""} == {
            "polarity": "likes", "value": "green tea", "evidence": 3, "confidence": 0.75,
            "id": ""}
        assert profile["facts"][0]["key"] == "name" and profile["last_seq"] == 7
        assert profile["topics"] == [{"topic": "tea", "count": 4}]
        assert agent.observe(said(7, "again"))["skipped"] == ["p7"] or True
        assert agent.observe({**said(8, "x"), "id": "old-1"})["skipped"] == ["old-1"]
        assert agent.recall("green tea")[0]["text"] == "Prefers green tea"
    finally:
        agent.stop()


def test_the_model_pass_runs_by_itself_in_the_background(tmp_path: Path) -> None:
    host = FakeHost(str(tmp_path / "host.sock"))
    host.script.append(memory_operations(
        {"op": "add", "kind": "event", "text": "Visited the Louvre", "turns": ["t1"]}))
    agent = Agent(tmp_path, host.env).start()
    try:
        agent.observe(*[said(n, f"We visited the Louvre, room {n}") for n in range(1, 9)],
                      x_burrow_model="fake/model")  # a full batch: due at once
        deadline = time.monotonic() + 30
        while agent.ok("GET", "/profile")["pending"]:
            assert time.monotonic() < deadline, "the background pass did not run"
            time.sleep(0.1)
        events = agent.ok("GET", "/memories?kind=event")["items"]
        (louvre,) = [e for e in events if e["source"] == "model:fake/model"]
        assert louvre["text"] == "Visited the Louvre" and louvre["request_ids"] == ["req-1"]
        assert len(host.requests) == 1
    finally:
        agent.stop()
        host.close()


def test_a_query_without_embedding_is_embedded_by_the_host(tmp_path: Path) -> None:
    host = FakeHost(str(tmp_path / "host.sock"))
    agent = Agent(tmp_path, host.env).start()
    try:
        agent.observe(*[said(n, text, embedding={"model": "fake-embedder", "user": unit(n)})
                        for n, text in enumerate(["Our golden retriever learned to fetch",
                                                  "The quarterly numbers look fine"], start=1)])
        assert agent.recall("my dog") == []  # no route on the host yet: full text only
        host.embeddings["my dog"] = unit(1)
        agent.stop()
        agent.start()  # (a host without the route is not asked again for a while)
        assert agent.recall("my dog")[0]["request_ids"][0] == "req-1"
        host.embed_model = "another-model"  # vectors of another model are never compared
        assert agent.recall("my dog") == []
    finally:
        agent.stop()
        host.close()


def test_the_tenant_adds_and_corrects_memories_directly(agent: Agent) -> None:
    added = agent.ok("POST", "/memories", {"text": "Prefers metric units", "kind": "preference",
                                           "subject": "units"}, x_request_id="client-7")
    assert added["source"] == "api" and added["request_ids"] == ["client-7"]
    fixed = agent.ok("PATCH", f"/memories/{added['id']}", {"text": "Prefers imperial units"})
    assert fixed["text"] == "Prefers imperial units" and fixed["subject"] == "units"
    assert [h["id"] for h in fixed["history"]] == [added["id"]]
    assert [m["text"] for m in agent.ok("GET", "/memories")["items"]] == [
        "Prefers imperial units"]
    status, error, _ = agent.call("PATCH", f"/memories/{added['id']}", {"text": "x"})
    assert status == 400 and "no longer holds" in error["error"]["message"]
    status, error, _ = agent.call("POST", "/memories", {"text": "", "kind": "fact"})
    assert status == 400
    assert agent.ok("GET", "/profile")["episodes"] == 0  # the memory API is not a turn


def test_a_turn_the_host_read_from_the_whole_body_wins_over_the_excerpt(agent: Agent) -> None:
    from tenant_agent.memory.turns import summary

    whole = chat_pair(1, openai_chat("I said something long. " * 400, "ok",
                                     "I'm allergic to kiwis."), at=T0)
    turn = summary(whole)
    assert turn["user"] == "I'm allergic to kiwis." and turn["fingerprint"]
    cut = {**whole, "request": {**whole["request"],
                                "body": whole["request"]["body"][:4096]}, "turn": turn}
    agent.observe(cut, {**cut, "id": "p2", "seq": 2})  # the same turn resent: learned once
    (kiwis,) = agent.ok("GET", "/memories")["items"]
    assert kiwis["text"] == "Allergic to kiwis" and kiwis["evidence"] == 1
    assert kiwis["at"] == "2023-11-14T22:13:20Z"


def test_pairs_the_agent_cannot_read_never_hold_up_delivery(agent: Agent) -> None:
    odd: list[dict[str, Any]] = [
        {"id": "a", "seq": 1, "request": "not a dict", "response": 7},
        {"id": "b", "seq": 2, "at": "yesterday", "request": {"body": {"nested": ["x"]}}},
        {"id": "c", "seq": 3, "request": {"method": "POST", "body": "{\"messages\": 5}",
                                          "headers": ["x"]}, "embedding": {"user": "!!"}},
        {"id": "d", "seq": 4, "request": {"method": "POST", "body": "[" * 5000}},
        {"id": "e", "seq": 5, "turn": {"user": 5, "at": []}, "request_id": None},
        {**said(6, "I live in Oslo"), "response": {"status": "x", "body": None}},
    ]
    answer = agent.observe(*odd)
    assert answer["applied"] == ["a", "b", "c", "d", "e", "p6"]
    assert [m["text"] for m in agent.ok("GET", "/memories")["items"]] == ["Lives in Oslo"]


def test_a_freeze_during_a_model_call_loses_no_queued_turn(tmp_path: Path) -> None:
    host = FakeHost(str(tmp_path / "host.sock"))
    started = []

    def slow(request: dict[str, Any]) -> str:
        started.append(time.monotonic())
        time.sleep(3)
        return memory_operations()

    host.script.append(slow)
    agent = Agent(tmp_path, host.env).start()
    try:
        agent.observe(*[said(n, f"We visited the Louvre, room {n}") for n in range(1, 9)],
                      x_burrow_model="fake/model")
        deadline = time.monotonic() + 30
        while not started:
            assert time.monotonic() < deadline, "the background pass did not start"
            time.sleep(0.05)
        agent.stop()  # SIGTERM, as before a freeze, while the model is thinking
        host.script.append(slow)  # (the pass after the wake takes its time too)
        agent.start()
        profile = agent.ok("GET", "/profile")
        assert profile["pending"] == 8 and profile["model"] == "fake/model"
    finally:
        agent.stop()
        host.close()
