"""The shared knowledge base through the gateway: search filters, votes from tenants and from
boxes (through the host services socket), and the server's own knowledge model on the operator's
budget. The knowledge base's quality is tests/knowledge/test_knowledge_base.py's; this is the
surface, and what a tenant key holder or code in a box could try with it."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from core.embedded_redis import EmbeddedRedis
from tests.conftest import Gateway, gateway_settings, running_gateway
from tests.fakes import FakeOpenAI

SHARED = "Postgres 16 vacuums large tables faster than Postgres 12 does."
SOLO = "Zig cross compiles to every target without extra toolchains."
QUESTION = "Which Postgres version vacuums faster?"

# Run inside a box: one call to the host socket with the box's token, as the tenant agent makes.
HOST_CALL = r"""
import json, sys
sys.path.insert(0, "/opt/burrow")
from tenant_agent.common import host
try:
    print(json.dumps([200, host.call(sys.argv[1], json.loads(sys.argv[2]), 30)]))
except host.HostError as exc:
    print(json.dumps([exc.status, str(exc)]))
"""


@pytest.fixture
async def gw(tmp_path: Path, redis: Redis, redis_server: EmbeddedRedis) -> AsyncIterator[Gateway]:
    async with running_gateway(gateway_settings(tmp_path / "gw", redis_server.url,
                                                run_worker=False)) as gateway:
        yield gateway


async def told(gw: Gateway, tenants: list[str], text: str, kind: str = "fact") -> None:
    for tenant in tenants:
        await gw.core.kb.contribute(tenant, [{"text": text, "kind": kind}], [])


async def search(gw: Gateway, headers: dict[str, str], **body: Any) -> list[dict[str, Any]]:
    r = await gw.client.post("/v1/knowledge/search", json={"query": QUESTION, **body},
                             headers=headers)
    assert r.status_code == 200, r.text
    hits: list[dict[str, Any]] = r.json()
    return hits


async def from_box(gw: Gateway, headers: dict[str, str], box: str, path: str,
                   body: dict[str, Any]) -> tuple[int, Any]:
    r = await gw.client.post(f"/v1/boxes/{box}/exec", headers=headers, json={
        "command": ["python3", "-c", HOST_CALL, path, json.dumps(body)], "timeout_s": 60})
    assert r.json()["exit_code"] == 0, r.json()["stderr"]
    status, answer = json.loads(r.json()["stdout"])
    return status, answer


@pytest.mark.boxes
async def test_search_filters_by_kind_and_time_and_refuses_a_bad_window(gw: Gateway) -> None:
    keys = {t: (await gw.tenant(t))[0] for t in ("ana", "ben", "new")}
    before = time.time() - 1
    await told(gw, ["ana", "ben"], SHARED)
    [hit] = await search(gw, keys["new"])
    assert hit["text"] and hit["support"] == 2 and hit["kind"] == "fact"
    # a tenant sees time to the day (tests/test_attacks.py says why)
    assert before - 86400 < hit["updated_at"] <= time.time() and hit["updated_at"] % 86400 == 0
    assert hit["helpful"] == hit["unhelpful"] == 0
    assert await search(gw, keys["new"], kinds=["tip"]) == []
    assert len(await search(gw, keys["new"], kinds=["fact", "tip"])) == 1
    assert await search(gw, keys["new"], since=time.time() + 2 * 86400) == []
    assert await search(gw, keys["new"], until=time.time() - 2 * 86400) == []
    assert len(await search(gw, keys["new"], since=before, until=time.time() + 60)) == 1
    for bad in ({"since": 10, "until": 5}, {"kinds": ["secret"]}, {"since": -1},
                {"kinds": ["fact"] * 4}):
        r = await gw.client.post("/v1/knowledge/search", json={"query": "x", **bad},
                                 headers=keys["new"])
        assert r.status_code == 422, (bad, r.text)
        assert "Traceback" not in r.text


@pytest.mark.boxes
async def test_votes_count_once_per_tenant_and_fade_only_what_several_tenants_reject(
        gw: Gateway) -> None:
    keys = {t: (await gw.tenant(t))[0] for t in ("t1", "t2", "t3", "t4", "new")}
    await told(gw, ["t1", "t2"], SHARED)
    [hit] = await search(gw, keys["new"])
    url = f"/v1/knowledge/insights/{hit['id']}/vote"
    for _ in range(5):  # one tenant voting again and again is one vote
        r = await gw.client.post(url, json={"helpful": False}, headers=keys["new"])
        assert r.status_code == 200, r.text
    assert r.json()["unhelpful"] == 1
    assert await search(gw, keys["new"]), "one tenant cannot fade an insight for everyone"
    r = await gw.client.post(url, json={"helpful": True}, headers=keys["new"])
    assert (r.json()["helpful"], r.json()["unhelpful"]) == (1, 0)  # the latest vote counts
    for tenant in ("t3", "t4", "new"):
        r = await gw.client.post(url, json={"helpful": False}, headers=keys[tenant])
        assert r.status_code == 200, r.text
    assert r.json()["unhelpful"] == 3
    assert await search(gw, keys["new"]) == []  # faded for tenants
    everything = await search(gw, gw.operator)
    assert [h["id"] for h in everything] == [hit["id"]] and not everything[0]["visible"]


@pytest.mark.boxes
async def test_a_vote_reveals_nothing_and_needs_a_tenant(gw: Gateway) -> None:
    keys = {t: (await gw.tenant(t))[0] for t in ("solo", "other")}
    await told(gw, ["solo"], SOLO)
    [hidden] = (await gw.client.get("/v1/knowledge/insights",
                                    headers=gw.operator)).json()["items"]
    assert not hidden["visible"]
    unknown = "00000000-0000-4000-8000-000000000000"
    answers = []
    for insight in (hidden["id"], unknown, "not-a-uuid", "../../etc"):
        r = await gw.client.post(f"/v1/knowledge/insights/{insight}/vote",
                                 json={"helpful": True}, headers=keys["other"])
        answers.append((r.status_code, r.json()["error"]["code"]))
    # an insight one tenant told and one that does not exist answer alike
    assert answers == [(404, "not_found")] * 4
    r = await gw.client.post(f"/v1/knowledge/insights/{hidden['id']}/vote",
                             json={"helpful": True}, headers=gw.operator)
    assert r.status_code == 403 and "tenant key" in r.json()["error"]["message"]
    r = await gw.client.post(f"/v1/knowledge/insights/{hidden['id']}/vote",
                             json={"helpful": "very"}, headers=keys["other"])
    assert r.status_code == 422
    r = await gw.client.post(f"/v1/knowledge/insights/{hidden['id']}/vote",
                             json={"helpful": True})
    assert r.status_code == 401


@pytest.mark.boxes
async def test_boxes_search_and_vote_through_the_host_socket_as_their_tenant(
        gw: Gateway) -> None:
    keys, homes = {}, {}
    for tenant in ("p1", "p2", "voter"):
        keys[tenant], homes[tenant] = await gw.tenant(tenant)
    await told(gw, ["p1", "p2"], SHARED)
    await told(gw, ["voter"], SOLO)
    status, hits = await from_box(gw, keys["voter"], homes["voter"], "/v1/knowledge/search",
                                  {"query": QUESTION, "kinds": ["fact"]})
    assert status == 200 and len(hits) == 1 and hits[0]["support"] == 2
    # a second box of the same tenant votes as the same tenant: still one vote
    second = (await gw.client.post("/v1/boxes", json={}, headers=keys["voter"])).json()["id"]
    for box in (homes["voter"], second, homes["voter"]):
        status, voted = await from_box(gw, keys["voter"], box,
                                       f"/v1/knowledge/insights/{hits[0]['id']}/vote",
                                       {"helpful": False})
        assert status == 200, voted
    assert voted["unhelpful"] == 1
    # a box cannot see or vote on what only its own tenant told
    status, solo = await from_box(gw, keys["voter"], homes["voter"], "/v1/knowledge/search",
                                  {"query": "How do I cross compile Zig?"})
    assert (status, solo) == (200, [])
    hidden = [i for i in (await gw.client.get("/v1/knowledge/insights", headers=gw.operator))
              .json()["items"] if not i["visible"]]
    status, message = await from_box(gw, keys["voter"], homes["voter"],
                                     f"/v1/knowledge/insights/{hidden[0]['id']}/vote",
                                     {"helpful": True})
    assert status == 404, message
    # at the very end of a shutdown (its knowledge base closed) a box is told to retry
    gw.core.closed = True
    try:
        status, message = await from_box(gw, keys["voter"], homes["voter"],
                                         "/v1/knowledge/search", {"query": QUESTION})
    finally:
        gw.core.closed = False
    assert status == 503 and "shutting down" in message, message
    # and so is a call in flight when the knowledge base closed under it
    search = gw.core.insights.search

    async def closed_under_it(*args: object, **kwargs: object) -> object:
        gw.core.closed = True
        raise RuntimeError("QdrantLocal instance is closed. Please create a new instance.")

    gw.core.insights.search = closed_under_it  # type: ignore[method-assign]
    try:
        status, message = await from_box(gw, keys["voter"], homes["voter"],
                                         "/v1/knowledge/search", {"query": QUESTION})
    finally:
        gw.core.closed = False
        gw.core.insights.search = search  # type: ignore[method-assign]
    assert status == 503 and "shutting down" in message, message


@pytest.mark.boxes
async def test_the_knowledge_model_is_asked_on_the_operators_budget(
        tmp_path: Path, redis: Redis, redis_server: EmbeddedRedis, fake: FakeOpenAI) -> None:
    settings = gateway_settings(tmp_path / "gw", redis_server.url, run_worker=False,
                                openai_api_key="sk-knowledge-test-0123456789",
                                openai_url=fake.url, knowledge_model="openai/kb-model")
    async with running_gateway(settings) as gw:
        await gw.tenant("m1")
        await gw.tenant("m2")
        await told(gw, ["m1", "m2"], SHARED)
        assert fake.requests, "the knowledge model was never asked"
        for request in fake.requests:
            assert request["model"] == "kb-model"
            assert request["response_format"]["type"] == "json_schema"
            assert request["temperature"] == 0
        usage = await gw.core.redis.hgetall(gw.core.budgets.usage_key("operator"))
        assert int(usage[b"openai:calls"]) == len(fake.requests)
        for tenant in ("m1", "m2"):  # the tenants pay nothing for it
            assert not await gw.core.redis.exists(gw.core.budgets.usage_key(tenant))


def test_a_knowledge_model_that_names_no_provider_is_refused_at_start(tmp_path: Path) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="BURROW_KNOWLEDGE_MODEL must be provider/name"):
        gateway_settings(tmp_path, "redis://unused", knowledge_model="gemma")
