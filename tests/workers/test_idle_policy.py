"""The idle freeze policy as operators use it: validated and versioned through the API, applied
by the worker's real sweep cron (every second here) to real boxes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from boxes import BoxState
from core.embedded_redis import EmbeddedRedis
from core.observations import Observations
from tests.conftest import ECHO_AGENT, Gateway, gateway_settings, running_gateway, until


@pytest.fixture
async def swept(tmp_path: Path, redis: Redis,
                redis_server: EmbeddedRedis) -> AsyncIterator[Gateway]:
    """The gateway with its in-process worker sweeping every second, and a policy that never
    idles anything until a test says otherwise. The echo agent reads no vectors, parse or
    judgement of episodes: the worker prepares none (spaCy's first load on a busy machine held
    a delivery before a freeze past its bound)."""
    settings = gateway_settings(tmp_path / "gw", redis_server.url, agent_command=ECHO_AGENT,
                                sweep_interval_s=1, observe_embeddings=False,
                                observe_parses=False, observe_episodes=False)
    async with running_gateway(settings) as gw:
        r = await gw.client.put("/v1/policy", json={"freeze_after_s": None,
                                                    "archive_after_s": None},
                                headers=gw.operator)
        assert r.status_code == 200, r.text
        yield gw


async def state(gw: Gateway, box_id: str) -> str:
    r = await gw.client.get(f"/v1/boxes/{box_id}", headers=gw.operator)
    return str(r.json()["state"])


def state_is(gw: Gateway, box_id: str, expected: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return await state(gw, box_id) == expected
    return check


async def set_policy(gw: Gateway, **values: object) -> None:
    r = await gw.client.put("/v1/policy", json=values, headers=gw.operator)
    assert r.status_code == 200, r.text


async def test_policy_is_validated_versioned_and_its_history_names_who_changed_it(
        gateway: Gateway) -> None:
    gw, op = gateway, gateway.operator
    start = (await gw.client.get("/v1/policy", headers=op)).json()
    bad = [({"pause_after_s": 600, "freeze_after_s": 300}, "must be longer than pause_after_s"),
           ({"freeze_after_s": -5}, "between"), ({"freeze_after_s": 1e12}, "between"),
           ({"freeze_after_s": 1}, "between 2 s"),
           ({"freeze_after_s": 600, "archive_after_s": 60}, "at least freeze_after_s"),
           ({"max_warm_boxes": -1}, "between 0"), ({"max_warm_boxes": 2.5}, ""),
           ({"freeze_after_s": "soon"}, ""), ({"sleep_after_s": 5}, "")]
    for body, words in bad:
        r = await gw.client.put("/v1/policy", json=body, headers=op)
        assert r.status_code == 422, (body, r.text)
        assert words in r.json()["error"]["message"], (body, r.text)
    assert (await gw.client.get("/v1/policy", headers=op)).json() == start, "a bad PUT changed it"

    r = await gw.client.put("/v1/policy", json={"pause_after_s": 60, "freeze_after_s": 600},
                            headers={**op, "X-Burrow-Actor": "alice"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["version"] == start["version"] + 1 and body["updated_by"] == "operator (alice)"
    assert body["policy"]["pause_after_s"] == 60 and body["policy"]["freeze_after_s"] == 600
    assert body["policy"]["archive_after_s"] == start["policy"]["archive_after_s"]  # untouched

    await gw.tenant("t1")
    r = await gw.client.put("/v1/tenants/t1/policy", json={"max_warm_boxes": 3}, headers=op)
    assert r.status_code == 422 and "only be set globally" in r.json()["error"]["message"]
    r = await gw.client.put("/v1/tenants/t1/policy", json={"freeze_after_s": 30}, headers=op)
    assert r.status_code == 422, "30 s freeze under a 60 s global pause is a freeze before pause"
    r = await gw.client.put("/v1/tenants/t1/policy", json={"keep_alive": True}, headers=op)
    assert r.status_code == 200 and r.json()["policy"]["keep_alive"] is True
    r = await gw.client.put("/v1/policy", json={"pause_after_s": 300}, headers=op)
    assert r.status_code == 200, "keep_alive alone does not conflict with any global change"
    r = await gw.client.put("/v1/tenants/t1/policy", json={"keep_alive": None}, headers=op)
    assert r.json()["policy"] is None

    history = (await gw.client.get("/v1/policy/history", headers=op)).json()
    assert [h["scope"] for h in history[:4]] == ["tenant:t1", "global", "tenant:t1", "global"]
    assert history[3]["changes"]["freeze_after_s"] == {
        "from": start["policy"]["freeze_after_s"], "to": 600}
    assert history[3]["by"] == "operator (alice)"


@pytest.mark.boxes
async def test_idle_tenant_is_frozen_but_one_running_an_exec_is_not(swept: Gateway) -> None:
    gw = swept
    _, idle = await gw.tenant("idle")
    _, busy = await gw.tenant("busy")
    running = asyncio.create_task(gw.client.post(
        f"/v1/boxes/{busy}/exec", json={"command": "sleep 10; echo done"}, headers=gw.operator))
    await asyncio.sleep(0.5)
    await set_policy(gw, freeze_after_s=2)
    started = time.monotonic()
    await until(state_is(gw, idle, "frozen"), 30, "the idle tenant frozen")
    while not running.done():
        assert await state(gw, busy) == "running", "frozen while its exec ran"
        await asyncio.sleep(0.5)
    assert time.monotonic() - started > 7
    result = (await running).json()
    assert result["stdout"] == "done\n" and result["exit_code"] == 0
    # idle time counts from the end of the exec
    await until(state_is(gw, busy, "frozen"), 30, "the busy tenant frozen once its exec ended")


@pytest.mark.boxes
async def test_at_most_max_warm_boxes_stay_warm_least_recently_used_frozen_first(
        swept: Gateway) -> None:
    gw = swept
    tenants = [await gw.tenant(f"t{i}") for i in range(5)]
    for i, (headers, _) in enumerate(tenants):  # t0 is the least recently used
        r = await gw.client.post(f"/v1/tenants/t{i}/agent/hi", headers=headers)
        assert r.status_code == 200
        await asyncio.sleep(0.05)
    await asyncio.sleep(1.2)  # activity reaches Redis in batches, once a second
    await set_policy(gw, max_warm_boxes=3)

    expected = ["frozen", "frozen", "running", "running", "running"]

    async def settled() -> bool:
        return [await state(gw, home) for _, home in tenants] == expected

    await until(settled, 30, "the two least recently used frozen, three left warm")
    await asyncio.sleep(2.5)  # later sweeps leave it so
    assert [await state(gw, home) for _, home in tenants] == expected


@pytest.mark.boxes
async def test_archive_after_archives_a_frozen_box_which_wakes_with_its_files(
        swept: Gateway) -> None:
    gw = swept
    r = await gw.client.post("/v1/boxes", json={}, headers=gw.operator)
    box = r.json()["id"]
    r = await gw.client.put(f"/v1/boxes/{box}/files", params={"path": "/workspace/keep.txt"},
                            content=b"still here", headers=gw.operator)
    assert r.status_code in (200, 201, 204), r.text
    await set_policy(gw, freeze_after_s=2, archive_after_s=3)
    await until(state_is(gw, box, "archived"), 30, "the box archived")
    record = await gw.manager.get(box)
    assert not record.layer_local and record.snapshot_id is not None
    r = await gw.client.get(f"/v1/boxes/{box}/files", params={"path": "/workspace/keep.txt"},
                            headers=gw.operator)
    assert r.status_code == 200 and r.content == b"still here"


@pytest.mark.boxes
async def test_keep_alive_and_tenant_overrides_beat_the_global_policy(swept: Gateway) -> None:
    gw, op = swept, swept.operator
    _, plain = await gw.tenant("plain")
    _, kept = await gw.tenant("kept")
    _, patient = await gw.tenant("patient")
    _, eager = await gw.tenant("eager")
    r = await gw.client.post("/v1/boxes", json={"keep_alive": True}, headers=op)
    kept_box = r.json()["id"]
    for tenant, override in (("kept", {"keep_alive": True}), ("patient", {"freeze_after_s": 3600}),
                             ("eager", {"freeze_after_s": 2})):
        r = await gw.client.put(f"/v1/tenants/{tenant}/policy", json=override, headers=op)
        assert r.status_code == 200, r.text
    await until(state_is(gw, eager, "frozen"), 30, "the override freezes it; global never would")
    assert await state(gw, plain) == "running"
    await set_policy(gw, freeze_after_s=2)
    await until(state_is(gw, plain, "frozen"), 30, "the plain tenant frozen")
    await asyncio.sleep(2)  # two more sweeps
    assert await state(gw, kept) == "running", "a keep_alive tenant was frozen"
    assert await state(gw, kept_box) == "running", "a keep_alive box was frozen"
    assert await state(gw, patient) == "running", "the tenant's longer override was ignored"


async def test_a_request_after_the_sweeper_looked_keeps_the_box_running(
        gateway: Gateway) -> None:
    gw = gateway
    headers, home = await gw.tenant("racer")
    seen = await gw.manager.get(home)
    await asyncio.sleep(0.05)
    r = await gw.client.post("/v1/tenants/racer/agent/hi", headers=headers)
    assert r.status_code == 200
    await gw.manager.activity.flush()
    assert await gw.manager.cool(home, BoxState.FROZEN, idle_since=seen.last_active_at) is None
    assert await state(gw, home) == "running"


@pytest.mark.boxes
async def test_an_idle_box_is_paused_first_then_frozen_and_a_request_resumes_it(
        swept: Gateway) -> None:
    gw = swept
    headers, home = await gw.tenant("tiers")
    await set_policy(gw, pause_after_s=2, freeze_after_s=6)
    await until(state_is(gw, home, "paused"), 30, "the idle box paused")
    r = await gw.client.post("/v1/tenants/tiers/agent/hi", headers=headers)
    assert r.status_code == 200 and await state(gw, home) == "running"
    await until(state_is(gw, home, "paused"), 30, "paused again")
    await until(state_is(gw, home, "frozen"), 30, "frozen after freeze_after_s")
    r = await gw.client.post("/v1/tenants/tiers/agent/hi", headers=headers)
    assert r.status_code == 200 and r.json()["requests"] == 2  # its counter survived


@pytest.mark.boxes
async def test_an_idle_home_box_is_told_what_it_missed_before_it_is_frozen(
        swept: Gateway) -> None:
    """A pair recorded after the worker's last delivery (no job of its own left) is delivered
    by the sweep that freezes the box: the snapshot holds it, the next wake has nothing to
    catch up."""
    gw = swept
    _, box_id = await gw.tenant("missed")
    observations = gw.core.observations
    pair = Observations.pair("POST", "/chat", "", b'{"text": "I live in Lyon"}', 200, b"{}",
                             1.0)
    assert await observations.record("missed", box_id, pair) is not None  # and no job
    assert await observations.has_backlog("missed")
    await set_policy(gw, freeze_after_s=2)
    await until(state_is(gw, box_id, "frozen"), 30, "the idle home box frozen")
    assert not await observations.has_backlog("missed")
    assert not await observations.awaits("missed", box_id)


@pytest.mark.boxes
async def test_the_delivery_before_a_freeze_waits_for_one_already_under_way(
        swept: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    """The sweep's delivery before the freeze finds the tenant's lease held by another
    delivery (as the worker's would be): it waits for that one to end and delivers what is
    left, rather than freezing the box under it with the pair still waiting."""
    gw = swept
    _, box_id = await gw.tenant("busy")
    observations = gw.core.observations
    pair = Observations.pair("POST", "/chat", "", b'{"text": "I live in Oslo"}', 200, b"{}",
                             1.0)
    assert await observations.record("busy", box_id, pair) is not None
    lease = observations.redis.lock(observations.keys.delivery_lease("busy"), timeout=30)
    assert await lease.acquire(blocking=False)
    tries: list[int] = []
    deliver = observations.deliver

    async def counted(*args: Any, **kwargs: Any) -> Any:
        delivery = await deliver(*args, **kwargs)
        tries.append(delivery.pairs)
        return delivery

    async def tried() -> bool:
        return bool(tries)

    monkeypatch.setattr(observations, "deliver", counted)
    await set_policy(gw, freeze_after_s=2)
    await until(tried, 30, "the sweep's delivery before the freeze")
    assert tries[0] == 0  # the lease was held: nothing delivered yet
    assert await state(gw, box_id) == "running"  # and the freeze waits
    await lease.release()
    await until(state_is(gw, box_id, "frozen"), 30, "the idle home box frozen")
    assert 1 in tries  # by the sweep, or by the worker's catch-up if it came first
    assert not await observations.has_backlog("busy")
    assert not await observations.awaits("busy", box_id)
