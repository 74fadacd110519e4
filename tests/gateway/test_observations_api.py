"""A product sends the pairs it served itself (POST /v1/tenants/{id}/observations): the agent
learns them as if they had come through the agent route, at their own times and request ids,
through the real worker; a frozen box is not woken and learns them at its next wake. Hostile
callers: no key, another tenant's key, too many or too large pairs, malformed pairs, the
agent's own protocol as a path; a refused call stores nothing and loses nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from core.embedded_redis import EmbeddedRedis
from gateway.schemas import MAX_OBSERVED_PAIRS
from tests.conftest import ECHO_AGENT, Gateway, gateway_settings, running_gateway, until
from tests.gateway.test_memory_api import memories, recall


@pytest.fixture
async def recording(tmp_path: Path, redis: Redis,
                    redis_server: EmbeddedRedis) -> AsyncIterator[Gateway]:
    """No worker (pairs stay in the backlog, where the test can see them), an echo agent, a
    backlog of 4 pairs at most and a 64 KiB body cap."""
    async with running_gateway(gateway_settings(
            tmp_path / "gw", redis_server.url, run_worker=False, agent_command=ECHO_AGENT,
            observe_backlog_max=4, max_body_bytes=64 << 10)) as gw:
        yield gw


def chat(user: str, reply: str, at: object, request_id: str | None = None,
         path: str = "/chat") -> dict[str, Any]:
    pair: dict[str, Any] = {
        "request": {"method": "POST", "path": path, "body": {"message": user},
                    "headers": {"X-Burrow-User-Text": "message"}},
        "response": {"status": 200, "body": {"reply": reply}}, "at": at}
    if request_id:
        pair["request_id"] = request_id
    return pair


async def observe(gw: Gateway, tenant: str, key: dict[str, str], pairs: list[dict[str, Any]],
                  **headers: str) -> dict[str, Any]:
    r = await gw.client.post(f"/v1/tenants/{tenant}/observations", json={"pairs": pairs},
                             headers={**key, **headers})
    assert r.status_code == 202, r.text
    answer: dict[str, Any] = r.json()
    return answer


async def test_imported_pairs_are_learned_at_their_time_with_their_request_ids(
        learning: Gateway) -> None:
    gw = learning
    ana, _ = await gw.tenant("ana")
    answer = await observe(gw, "ana", ana, [
        chat("I'm allergic to peanuts.", "Noted.", "2023-05-08T13:56:00Z", "conv-1/D1:1"),
        chat("My favourite city is Lisbon.", "Lovely.", 1683561600, "conv-1/D1:3"),
        {"request": {"path": "/v1/notes?draft=1", "body": "I keep bees on the roof."},
         "at": 1683565200.5}], **{"X-Request-Id": "import-1"})
    assert answer == {"accepted": 3, "dropped": 0}

    async def learned() -> bool:
        return (await memories(gw, "ana", ana, "?kind=episode"))["total"] >= 3

    await until(learned)
    episodes = {e["request_ids"][0]: e for e in
                (await memories(gw, "ana", ana, "?kind=episode"))["items"]}
    assert set(episodes) == {"conv-1/D1:1", "conv-1/D1:3", "import-1/2"}
    assert episodes["conv-1/D1:1"]["text"] == "I'm allergic to peanuts."
    assert episodes["conv-1/D1:1"]["at"] == "2023-05-08T13:56:00Z"
    assert episodes["conv-1/D1:3"]["at"] == "2023-05-08T16:00:00Z"
    assert episodes["import-1/2"]["text"] == "I keep bees on the roof."
    hits = await recall(gw, "ana", ana, "What am I allergic to?")
    assert hits and "conv-1/D1:1" in hits[0]["request_ids"], hits


async def test_a_frozen_box_is_not_woken_and_learns_them_at_its_next_wake(
        learning: Gateway) -> None:
    gw = learning
    ana, home = await gw.tenant("ana")
    await gw.client.post(f"/v1/boxes/{home}/freeze", headers=gw.operator)
    # the operator may send them too
    answer = await observe(gw, "ana", gw.operator,
                           [chat("I prefer green tea.", "OK.", 1683561600, "r-tea")])
    assert answer == {"accepted": 1, "dropped": 0}
    box = (await gw.client.get(f"/v1/boxes/{home}", headers=gw.operator)).json()
    assert box["state"] == "frozen"
    hits = await recall(gw, "ana", ana, "tea")  # wakes the box, which catches up first
    assert hits and hits[0]["request_ids"] == ["r-tea"], hits


async def refused(gw: Gateway, key: dict[str, str], status: int, body: Any = None,
                  content: bytes | None = None, tenant: str = "ana") -> str:
    kwargs: dict[str, Any] = {"json": body} if content is None else {
        "content": content, "headers": {**key, "Content-Type": "application/json"}}
    r = await gw.client.post(f"/v1/tenants/{tenant}/observations",
                             **{"headers": key, **kwargs})
    assert r.status_code == status, (body if content is None else content[:80], r.text)
    assert "Traceback" not in r.text
    message: str = r.json()["error"]["message"]
    return message


@pytest.mark.boxes
async def test_callers_without_the_tenant_are_refused(recording: Gateway) -> None:
    gw = recording
    ana, _ = await gw.tenant("ana")
    _, ben_home = await gw.tenant("ben")
    good = {"pairs": [chat("I'm ben's enemy.", "", 1683561600)]}
    assert "Bearer" in await refused(gw, {}, 401, good)
    assert "not valid" in await refused(gw, {"Authorization": "Bearer brw_t_nope"}, 401, good)
    # another tenant's key finds nothing there, exactly like a tenant that does not exist
    theirs = await refused(gw, ana, 404, good, tenant="ben")
    assert theirs == (await refused(gw, ana, 404, good, tenant="nobody")).replace(
        "nobody", "ben")
    from core.security import box_token
    token = {"Authorization": f"Bearer {box_token(gw.core.secret, ben_home)}"}
    await refused(gw, token, 403, good, tenant="ben")  # code in the box cannot feed itself
    assert (await gw.core.observations.backlog_of("ben"))["size"] == 0


@pytest.mark.boxes
async def test_bad_pairs_are_a_clear_422_and_store_nothing(recording: Gateway) -> None:
    gw = recording
    ana, _ = await gw.tenant("ana")
    await observe(gw, "ana", ana, [chat("I like jazz.", "", 1683561600, "keep-1")])
    ok = chat("fine", "", 1683561600)
    cases: list[tuple[dict[str, Any], str]] = [
        (chat("x", "", "2999-01-01T00:00:00Z"), "pairs.1.at: Value error, this time is in "
                                                "the future"),
        (chat("x", "", -5), "after 1970"),
        (chat("x", "", "yesterday"), "ISO 8601"),
        (chat("x", "", 1, "bad id with spaces"), "pairs.1.request_id"),
        (chat("x", "", 1, "a" * 200), "pairs.1.request_id"),
        (chat("x", "", 1, path="/recall"), "the agent's own protocol"),
        (chat("x", "", 1, path="/ask"), "the agent's own protocol"),
        (chat("x", "", 1, path="/%255F%255Fburrow/../_burrow/observe"), "own protocol"),
        (chat("x", "", 1, path="//Memories/m_1"), "own protocol"),
        (chat("x", "", 1, path="\\profile"), "own protocol"),
        (chat("x", "", 1, path="/chat\r\nX-Evil: 1"), "control characters"),
        ({**ok, "request": {"method": "GET", "path": "/chat"}}, "pairs.1.request.method"),
        ({**ok, "request": {"body": "x", "headers": {"Authorization": "Bearer k"}}},
         "only x-burrow-user-text, x-burrow-said-at"),
        ({**ok, "request": {"body": "x", "headers": {"x-burrow-said-at": "2999-01-01"}}},
         "in the future"),
        ({**ok, "response": {"status": 99}}, "pairs.1.response.status"),
        ({**ok, "extra": 1}, "pairs.1.extra"),
        ({"response": {"status": 200}}, "pairs.1.request: Field required")]
    for bad, says in cases:
        message = await refused(gw, ana, 422, {"pairs": [ok, bad]})
        assert says in message, (bad, message)
    # NaN and Infinity: the JSON parser takes them, the route does not
    for raw in (b'{"pairs": [{"request": {"body": "x"}, "at": NaN}]}',
                b'{"pairs": [{"request": {"body": "x"}, "at": Infinity}]}',
                b'{"pairs": [{"request": {"body": {"n": NaN}}}]}'):
        message = await refused(gw, ana, 422, content=raw)
        assert "pairs.0." in message, message
    assert "at least 1" in await refused(gw, ana, 422, {"pairs": []})
    assert "not valid JSON" in await refused(gw, ana, 400, content=b"{not json")
    # too many pairs, or too large a body
    many = await refused(gw, ana, 422, {"pairs": [ok] * (MAX_OBSERVED_PAIRS + 1)})
    assert f"send at most {MAX_OBSERVED_PAIRS} per call" in many
    huge = {"pairs": [chat("x" * (2 << 20), "", 1)]}
    assert "over" in await refused(gw, ana, 413, huge)
    # nothing of the refused calls was stored, nothing stored before was lost
    backlog = await gw.core.redis.lrange(
        gw.core.observations.backlog_key("ana"), 0, -1)  # type: ignore[misc]
    assert len(backlog) == 1 and b"keep-1" in backlog[0]


@pytest.mark.boxes
async def test_a_full_backlog_drops_and_says_so(recording: Gateway) -> None:
    gw = recording
    ana, _ = await gw.tenant("ana")
    pairs = [chat(f"fact {i}", "", 1683561600 + i, f"r-{i}") for i in range(6)]
    assert await observe(gw, "ana", ana, pairs) == {"accepted": 4, "dropped": 2}
    backlog = await gw.core.observations.backlog_of("ana")
    assert backlog == {"size": 4, "max": 4, "dropped": 2, "unanswered": 0}
