"""The tenant owns its memory, through the gateway: list, get, export, delete one, delete all
(also across a freeze and a wake), recall with provenance; another tenant's key finds
nothing; an agent without the memory API is a clear 501. Real HTTP handling, Redis, the
in-process worker, boxes and the built-in tenant agent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from tests.conftest import Gateway, until


async def say(gw: Gateway, tenant: str, key: dict[str, str], text: str,
              request_id: str) -> None:
    r = await gw.client.post(f"/v1/tenants/{tenant}/agent/ask", json={"question": text},
                             headers={**key, "X-Request-Id": request_id})
    assert r.status_code == 200, r.text


async def memories(gw: Gateway, tenant: str, key: dict[str, str],
                   query: str = "") -> dict[str, Any]:
    r = await gw.client.get(f"/v1/tenants/{tenant}/memories{query}", headers=key)
    assert r.status_code == 200, r.text
    page: dict[str, Any] = r.json()
    return page


async def recall(gw: Gateway, tenant: str, key: dict[str, str], query: str
                 ) -> list[dict[str, Any]]:
    r = await gw.client.post(f"/v1/tenants/{tenant}/agent/recall", headers=key,
                             json={"query": query, "limit": 10})
    assert r.status_code == 200, r.text
    results: list[dict[str, Any]] = r.json()["results"]
    return results


async def test_a_tenant_lists_gets_exports_and_deletes_its_memories(learning: Gateway) -> None:
    gw = learning
    ana, _ = await gw.tenant("ana")
    ben, _ = await gw.tenant("ben")
    await say(gw, "ana", ana, "I'm allergic to peanuts.", "req-peanuts")
    await say(gw, "ana", ana, "I moved from Berlin to Paris.", "req-paris")

    async def learned() -> bool:
        return (await memories(gw, "ana", ana))["total"] >= 2

    await until(learned)
    page = await memories(gw, "ana", ana, "?limit=1")
    assert len(page["items"]) == 1 and page["next_cursor"]
    rest = await memories(gw, "ana", ana, f"?limit=50&cursor={page['next_cursor']}")
    items = page["items"] + rest["items"]
    texts = " | ".join(i["text"] for i in items)
    assert "peanut" in texts and "Paris" in texts, texts
    peanuts = next(i for i in items if "peanut" in i["text"])
    assert peanuts["request_ids"] == ["req-peanuts"]

    # the memory cites the request it came from, and recall finds it
    hits = await recall(gw, "ana", ana, "What am I allergic to?")
    assert hits and "req-peanuts" in hits[0]["request_ids"], hits
    one = await gw.client.get(f"/v1/tenants/ana/memories/{peanuts['id']}", headers=ana)
    assert one.status_code == 200 and one.json()["id"] == peanuts["id"]
    episodes = await memories(gw, "ana", ana, "?kind=episode")
    assert {e["request_ids"][0] for e in episodes["items"]} >= {"req-peanuts", "req-paris"}

    exported = await gw.client.get("/v1/tenants/ana/memories/export", headers=ana)
    assert exported.status_code == 200
    assert exported.json()["format"] == "burrow.memory/1"
    assert any("peanut" in m["text"] for m in exported.json()["memories"])

    # another tenant's key: nothing there, exactly like a tenant that does not exist
    for method, path in [("GET", "/v1/tenants/ana/memories"),
                         ("GET", f"/v1/tenants/ana/memories/{peanuts['id']}"),
                         ("GET", "/v1/tenants/ana/memories/export"),
                         ("DELETE", f"/v1/tenants/ana/memories/{peanuts['id']}"),
                         ("DELETE", "/v1/tenants/ana/memories"),
                         ("POST", "/v1/tenants/ana/agent/recall")]:
        r = await gw.client.request(method, path, headers=ben,
                                    json={"query": "peanuts"} if method == "POST" else None)
        missing = await gw.client.request(method, path.replace("/ana/", "/nobody/"),
                                          headers=ben,
                                          json={"query": "x"} if method == "POST" else None)
        assert r.status_code == missing.status_code == 404, (method, path, r.text)
        assert "peanut" not in r.text
    assert (await memories(gw, "ana", ana))["total"] >= 2  # ben deleted nothing

    # the operator reaches it too; delete one: gone from the list, get and recall
    r = await gw.client.delete(f"/v1/tenants/ana/memories/{peanuts['id']}",
                               headers=gw.operator)
    assert r.status_code == 200 and peanuts["id"] in r.json()["deleted"]
    gone = await gw.client.get(f"/v1/tenants/ana/memories/{peanuts['id']}", headers=ana)
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "not_found"
    assert not any("peanut" in h["text"] for h in await recall(gw, "ana", ana, "peanuts"))
    again = await gw.client.delete(f"/v1/tenants/ana/memories/{peanuts['id']}", headers=ana)
    assert again.status_code == 404


async def test_after_delete_all_recall_finds_nothing_also_after_freeze_and_wake(
        learning: Gateway) -> None:
    gw = learning
    ana, home = await gw.tenant("ana")
    await say(gw, "ana", ana, "I'm allergic to peanuts.", "req-1")
    await say(gw, "ana", ana, "My favourite city is Lisbon.", "req-2")

    async def learned() -> bool:
        return (await memories(gw, "ana", ana))["total"] >= 2

    await until(learned)
    grep = {"command": "grep -rlai -e peanut -e lisbon /workspace/.burrow-agent; true"}
    r = await gw.client.post(f"/v1/boxes/{home}/exec", headers=gw.operator, json=grep)
    assert ".db" in r.json()["stdout"], r.text  # the check below can see them
    await gw.client.post(f"/v1/boxes/{home}/freeze", headers=gw.operator)
    before = (await gw.client.get(f"/v1/boxes/{home}", headers=gw.operator)).json()
    assert before["state"] == "frozen"
    old_snapshot = (await gw.manager.registry.get(home)).snapshot_id  # type: ignore[union-attr]

    wiped = await gw.client.delete("/v1/tenants/ana/memories", headers=ana)  # wakes the box
    assert wiped.status_code == 200, wiped.text
    body = wiped.json()
    assert body["replace_snapshot"] is True and body["deleted"]["memories"] >= 2
    assert await recall(gw, "ana", ana, "peanuts") == []
    assert await recall(gw, "ana", ana, "Lisbon") == []
    assert (await memories(gw, "ana", ana))["total"] == 0
    export = (await gw.client.get("/v1/tenants/ana/memories/export", headers=ana)).json()
    assert export["memories"] == [] and export["episodes"] == []
    # no readable remains in the agent's files (secure_delete, vacuum, WAL truncated)
    r = await gw.client.post(f"/v1/boxes/{home}/exec", headers=gw.operator, json=grep)
    assert r.status_code == 200 and r.json()["stdout"] == "", r.text

    await gw.client.post(f"/v1/boxes/{home}/freeze", headers=gw.operator)
    record = await gw.manager.registry.get(home)
    assert record is not None and record.snapshot_id not in (None, old_snapshot)
    assert old_snapshot not in {s.id for s in await gw.manager.list_snapshots()}
    assert await recall(gw, "ana", ana, "peanuts") == []  # woken by the request
    assert await recall(gw, "ana", ana, "Lisbon") == []
    # and it learns again from what comes next
    await say(gw, "ana", ana, "I prefer tea.", "req-3")

    async def relearned() -> bool:
        return any("tea" in h["text"] for h in await recall(gw, "ana", ana, "tea"))

    await until(relearned)


async def test_an_agent_without_the_memory_api_is_a_clear_501(gateway: Gateway) -> None:
    """The `gateway` fixture's tenants run an echo agent (BURROW_AGENT_COMMAND)."""
    key, _ = await gateway.tenant("ana")
    r = await gateway.client.post("/v1/tenants/ana/agent/ask", json={"question": "hi"},
                                  headers=key)
    assert r.status_code == 200
    await gateway.core.pipeline.drain()  # recorded; no worker here delivers it
    for method, path in [("GET", "/v1/tenants/ana/memories"),
                         ("GET", "/v1/tenants/ana/memories/export"),
                         ("GET", "/v1/tenants/ana/memories/m_1"),
                         ("DELETE", "/v1/tenants/ana/memories/m_1"),
                         ("DELETE", "/v1/tenants/ana/memories")]:
        r = await gateway.client.request(method, path, headers=key)
        assert r.status_code == 501, (method, path, r.text)
        error = r.json()["error"]
        assert error["code"] == "agent_lacks_memory_api"
        assert "BURROW_AGENT_COMMAND" in error["message"]
    # a refused "delete all" drops nothing the agent has yet to receive
    assert (await gateway.core.observations.backlog_of("ana"))["size"] == 1


async def test_bad_memory_requests_are_4xx(learning: Gateway) -> None:
    gw = learning
    ana, _ = await gw.tenant("ana")
    for method, path, body in [
            ("GET", "/v1/tenants/ana/memories?limit=0", None),
            ("GET", "/v1/tenants/ana/memories?kind=nonsense", None),
            ("GET", "/v1/tenants/ana/memories?cursor=abc", None),
            ("GET", "/v1/tenants/ana/memories/..%2F..%2Fetc", None),
            ("POST", "/v1/tenants/ana/memories", {"text": ""}),
            ("PATCH", "/v1/tenants/ana/memories/m_00", {"text": 3}),
            ("POST", "/v1/tenants/ana/agent/recall", {"query": 3}),
            ("POST", "/v1/tenants/ana/agent/recall", {"query": "x", "limit": 1000})]:
        r = await gw.client.request(method, path, headers=ana, json=body)
        assert 400 <= r.status_code < 500, (method, path, r.status_code, r.text)
        assert "Traceback" not in r.text
    missing = await gw.client.get("/v1/tenants/ana/memories/m_0000000000000000", headers=ana)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


async def test_recall_finds_by_meaning_with_the_hosts_vectors(learning: Gateway) -> None:
    """The worker embeds the tenant's words in each pair it delivers and the host socket
    embeds the query: a recall with no word in common still finds the turn."""
    gw = learning
    ana, _ = await gw.tenant("ana")
    await say(gw, "ana", ana, "We adopted two kittens last spring.", "req-kittens")
    await say(gw, "ana", ana, "The quarterly invoice was sent on Monday.", "req-invoice")

    async def delivered() -> bool:
        page = await memories(gw, "ana", ana, "?kind=episode")
        return page["total"] >= 2

    await until(delivered)
    hits = await recall(gw, "ana", ana, "Which pets does my family own?")
    assert hits and hits[0]["request_ids"][0] == "req-kittens", hits


async def test_chat_bodies_through_the_gateway_learn_the_newest_turn_at_its_time(
        learning: Gateway) -> None:
    """A chat longer than the pair's excerpt: its newest user message is learned (the tail is
    kept); X-Burrow-Said-At dates it; X-Burrow-User-Text names the field in another shape."""
    gw = learning
    ana, _ = await gw.tenant("ana")
    history = [{"role": "user" if i % 2 else "assistant", "content": f"Filler turn {i}. " * 40}
               for i in range(12)]
    body = {"messages": [*history, {"role": "user", "content": "I'm allergic to peanuts."}]}
    assert len(str(body)) > 4096
    r = await gw.client.post("/v1/tenants/ana/agent/v1/chat/completions", json=body,
                             headers={**ana, "X-Request-Id": "req-chat",
                                      "X-Burrow-Said-At": "2023-05-08T13:56:00Z"})
    assert r.status_code == 404  # the built-in agent serves no chat; it learns all the same
    r = await gw.client.post("/v1/tenants/ana/agent/v1/notes", json={
        "meta": {"kind": "note"}, "input": {"text": "My favourite city is Lisbon."}},
        headers={**ana, "X-Request-Id": "req-note", "X-Burrow-User-Text": "input.text"})

    async def learned() -> bool:
        return (await memories(gw, "ana", ana, "?kind=episode"))["total"] >= 2

    await until(learned)
    episodes = {e["request_ids"][0]: e for e in
                (await memories(gw, "ana", ana, "?kind=episode"))["items"]}
    assert episodes["req-chat"]["text"] == "I'm allergic to peanuts."
    assert episodes["req-chat"]["at"] == "2023-05-08T13:56:00Z"
    assert episodes["req-note"]["text"] == "My favourite city is Lisbon."


def test_the_extraction_model_is_the_agents_unless_set_apart(tmp_path: Path) -> None:
    from pydantic import ValidationError

    from core.settings import Settings

    def chosen(**models: str) -> str | None:
        return Settings(dev=True, data_dir=tmp_path, **models).extraction_model  # type: ignore[arg-type]

    assert chosen() is None
    assert chosen(agent_model="openai/gpt-x") == "openai/gpt-x"
    assert chosen(agent_model="openai/gpt-x", agent_extract_model="none") is None
    # a local model answers but does not extract unless it is named for that
    assert chosen(agent_model="local/gemma-3-270m") is None
    assert chosen(agent_model="local/gemma-3-270m",
                  agent_extract_model="local/gemma-3-270m") == "local/gemma-3-270m"
    assert chosen(agent_extract_model="openai/gpt-x") == "openai/gpt-x"
    with pytest.raises(ValidationError, match="BURROW_AGENT_EXTRACT_MODEL"):
        chosen(agent_extract_model="gpt-x")


async def test_a_tenants_policy_names_its_ownextraction_model(tmp_path: Path,
                                                               redis: Redis) -> None:
    """The extraction model each delivery names: the tenant's agent_model override, else the
    global policy's, else BURROW_AGENT_MODEL; a local/ one extracts only when named apart."""
    from core.keys import Keys
    from core.policy import Policies, PolicyError
    from core.services import extraction_model
    from core.settings import Settings

    policies = Policies(redis, Keys("t14"))
    settings = Settings(dev=True, data_dir=tmp_path, agent_model="openai/gpt-x")
    assert await extraction_model(settings, policies, "ana") == "openai/gpt-x"
    await policies.set_override("ana", {"agent_model": "anthropic/claude-haiku-4-5"}, "op")
    await policies.set_override("bob", {"agent_model": "local/gemma-3-270m"}, "op")
    assert await extraction_model(settings, policies, "ana") == "anthropic/claude-haiku-4-5"
    assert await extraction_model(settings, policies, "bob") is None  # answers, no extraction
    await policies.update({"agent_model": "openrouter/m"}, "op")
    assert await extraction_model(settings, policies, "cy") == "openrouter/m"
    apart = Settings(dev=True, data_dir=tmp_path, agent_extract_model="none")
    assert await extraction_model(apart, policies, "ana") is None
    with pytest.raises(PolicyError, match="not on model_allowlist"):
        await policies.update({"model_allowlist": ["openrouter/*"]}, "op")  # ana's is not
    with pytest.raises(PolicyError, match="provider/name"):
        await policies.set_override("cy", {"agent_model": "no-provider"}, "op")
    assert await policies.agent_model("cy") == "openrouter/m"  # the refused changes changed nothing


async def test_the_agents_own_protocol_leaves_no_backlog(learning: Gateway) -> None:
    """/health, /recall, /profile and the memory API are not learned from, so they are not
    recorded: a wake after them has nothing to deliver before its first answer."""
    gw = learning
    key, _ = await gw.tenant("quiet")
    for method, path in (("GET", "health"), ("POST", "recall"), ("GET", "profile"),
                         ("GET", "Recall/../profile"), ("GET", "%2Fhealth")):
        await gw.client.request(method, f"/v1/tenants/quiet/agent/{path}", headers=key,
                                json={"query": "x"} if method == "POST" else None)
    await gw.core.pipeline.drain()
    assert not await gw.core.observations.has_backlog("quiet")
    r = await gw.client.post("/v1/tenants/quiet/agent/notes", json={"text": "I like tea"},
                             headers=key)
    assert r.status_code == 404  # a product path: recorded (then delivered by the worker)
    await gw.core.pipeline.drain()
    await until(lambda: _episodes(gw, key))


async def _episodes(gw: Gateway, key: dict[str, str]) -> bool:
    return (await memories(gw, "quiet", key, "?kind=episode"))["total"] == 1


async def test_the_worker_attaches_a_parse_so_what_the_tenant_says_is_read_by_structure(
        learning: Gateway) -> None:
    """"I grew up in Porto" fits no phrasing of the rules: the host's parse, attached by the
    worker, finds it; a count said again, changed, supersedes the old one."""
    gw = learning
    ana, _ = await gw.tenant("ana")
    await say(gw, "ana", ana, "Honestly, I grew up in Porto.", "req-porto")
    await say(gw, "ana", ana, "I have two dogs.", "req-two")
    await say(gw, "ana", ana, "We've got three dogs now.", "req-three")

    async def learned() -> bool:
        return any("three dogs" in i["text"] for i in (await memories(gw, "ana", ana))["items"])

    await until(learned, 120)
    texts = [i["text"] for i in (await memories(gw, "ana", ana))["items"]]
    assert "Grew up in Porto" in texts and "Has three dogs" in texts, texts
    assert "Has two dogs" not in texts
    hits = await recall(gw, "ana", ana, "Where was the user raised?")
    assert hits and "req-porto" in hits[0]["request_ids"], hits


@pytest.mark.timeout(240)
async def test_replies_quoting_other_tenants_are_not_ranked_as_the_tenants_words(
        learning: Gateway) -> None:
    """The issue's failure, served: once the knowledge base holds insights, an /ask reply
    quotes those relevant to what was said ("Other users' notes: …"), and "the user" in a
    question matched "users" in every such reply; the tenant's own fact, said in other words,
    came after them."""
    gw = learning
    await gw.client.put("/v1/policy", headers=gw.operator,
                        json={"contribute_min_age_s": 0, "contribute_min_turns": 0})
    for other in ("bo", "cy"):
        key, _ = await gw.tenant(other)
        await say(gw, other, key, "Dark mode saves battery on phones with OLED screens.",
                  f"{other}-1")

    async def visible() -> bool:
        r = await gw.client.post("/v1/knowledge/search", headers=gw.operator,
                                 json={"query": "Does dark mode save battery?"})
        return any(i["support"] >= 2 for i in r.json())

    await until(visible, 120, "the insight is visible")
    ana, _ = await gw.tenant("ana")
    for n, text in enumerate(("My phone battery drains so fast with the bright theme.",
                              "The night shift was quiet.")):
        await say(gw, "ana", ana, text, f"chat-{n}")
    await say(gw, "ana", ana, "I write firmware for pacemakers at a device company.", "req-job")

    async def delivered() -> bool:
        return (await memories(gw, "ana", ana, "?kind=episode"))["total"] >= 3

    await until(delivered, 120)
    episodes = (await memories(gw, "ana", ana, "?kind=episode"))["items"]
    assert any("users" in e["reply"] for e in episodes), "no reply quoted an insight"
    hits = await recall(gw, "ana", ana, "What does the user do for work?")
    assert hits and hits[0]["request_ids"][0] == "req-job", hits
