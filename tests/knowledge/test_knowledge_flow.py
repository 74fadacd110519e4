"""Tenants' agents learn from their traffic and fill the shared knowledge base: end to end
through real HTTP handling, Redis, arq, boxes and the embedded Qdrant."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from core.embedded_redis import EmbeddedRedis
from core.keys import Keys
from core.observations import Observations
from core.parsing import ProcessParser
from knowledge.child import off_loop
from tests.conftest import Gateway, gateway_settings, running_gateway, until

SECRET_EMAIL = "jane.secret@example.com"
SECRET_KEY = "sk-proj-Abc123Def456Ghi789Jkl012Mno345Pqr678"


async def say(gw: Gateway, tenant: str, key: dict[str, str], text: str) -> dict[str, Any]:
    r = await gw.client.post(f"/v1/tenants/{tenant}/agent/ask", json={"question": text},
                             headers=key)
    assert r.status_code == 200, r.text
    result: dict[str, Any] = r.json()
    return result


async def search(gw: Gateway, key: dict[str, str], query: str) -> list[dict[str, Any]]:
    r = await gw.client.post("/v1/knowledge/search", json={"query": query, "limit": 5},
                             headers=key)
    assert r.status_code == 200, r.text
    hits: list[dict[str, Any]] = r.json()
    return hits


async def applied(gw: Gateway, home: str) -> list[dict[str, Any]]:
    status, body = await gw.core.service_client.request(gw.manager.service_path(home), "GET",
                                                          "/_burrow/log")
    assert status == 200
    log: list[dict[str, Any]] = json.loads(body)["applied"]
    return log


FACT = "Postgres 16 vacuums faster than Postgres 12."


async def models_loaded(gw: Gateway) -> None:
    """Wait until the worker's models answer: the embedder, the parser and the name detector
    (whose pipeline also judges episodes) each load in a child process of their own, started
    with the worker, and every delivery to an agent waits for them (`core.episodes`). On a
    busy 2-core machine they take a minute or more, on main as on any branch: the waits that
    follow are for the pipeline, not for the loading. Each call here queues behind the child's
    warming call (`knowledge.child`)."""
    kb = gw.core.kb
    loading = [off_loop(kb.embedder.embed, ["warm up"]), off_loop(kb.reader.read, ["Warm up."])]
    if gw.core.settings.observe_parses:
        loading.append(off_loop(ProcessParser().parse, ["I warm up."]))
    await asyncio.gather(*loading)


async def trusting(gw: Gateway) -> None:
    """Count every tenant's contributions from its first turn (the default policy waits a day
    and 20 turns)."""
    r = await gw.client.put("/v1/policy", headers=gw.operator,
                            json={"contribute_min_age_s": 0, "contribute_min_turns": 0})
    assert r.status_code == 200, r.text


@pytest.mark.timeout(300)  # the models' loading, as models_loaded says, and then the test
async def test_agents_learn_privately_and_share_only_what_two_tenants_support(
        learning: Gateway) -> None:
    gw = learning
    await models_loaded(gw)
    await trusting(gw)
    keys = {}
    prefs = {"ana": "dark mode", "ben": "short answers", "cho": "metric units"}
    for tenant in [*prefs, "dee"]:
        keys[tenant], _ = await gw.tenant(tenant)
    await say(gw, "ana", keys["ana"], f"I prefer {prefs['ana']}. {FACT}")
    await say(gw, "ana", keys["ana"],
              f"Mail me at {SECRET_EMAIL}, the deploy key is {SECRET_KEY} and it expires "
              "every month.")
    await say(gw, "ben", keys["ben"], f"I prefer {prefs['ben']}.")
    await say(gw, "cho", keys["cho"], f"I prefer {prefs['cho']}.")

    async def profiled(tenant: str) -> bool:
        r = await gw.client.get(f"/v1/tenants/{tenant}/agent/profile", headers=keys[tenant])
        return any(p["value"] == prefs[tenant] for p in r.json()["preferences"])

    for tenant in prefs:
        await until(lambda t=tenant: profiled(t))
    for tenant in prefs:
        r = await gw.client.get(f"/v1/tenants/{tenant}/agent/profile", headers=keys[tenant])
        values = {p["value"] for p in r.json()["preferences"]}
        assert values == {prefs[tenant]}, (tenant, values)

    async def in_base(text: str) -> bool:
        r = await gw.client.get("/v1/knowledge/insights", headers=gw.operator)
        return any(text in i["text"] for i in r.json()["items"])

    await until(lambda: in_base("Postgres 16 vacuums"))
    assert not await search(gw, keys["dee"], "Which Postgres version vacuums faster?")
    await say(gw, "ben", keys["ben"], FACT)  # a second tenant supports the fact

    async def shared() -> bool:
        hits = await search(gw, keys["dee"], "Which Postgres version vacuums faster?")
        return any("Postgres 16" in h["text"] and h["support"] >= 2 for h in hits)

    await until(shared)
    everything = (await gw.client.get("/v1/knowledge/insights?limit=1000",
                                      headers=gw.operator)).text
    assert SECRET_EMAIL not in everything and SECRET_KEY not in everything
    answer = await say(gw, "dee", keys["dee"], "What do other users say about deploy keys?")
    assert SECRET_EMAIL not in json.dumps(answer) and SECRET_KEY not in json.dumps(answer)
    assert "Postgres 16" in (await say(gw, "dee", keys["dee"],
                                       "Which Postgres vacuums faster?"))["answer"]


@pytest.mark.timeout(300)
async def test_chit_chat_through_the_agents_is_never_shared_and_advice_is(
        learning: Gateway) -> None:
    """The agents propose no episode (the worker attaches the host's judgement of each
    delivered pair), the advice said among the chit-chat is shared, and what a box proposes
    against the host's judgement is refused and counted."""
    gw = learning
    await models_loaded(gw)
    await trusting(gw)
    advice = "Car batteries lose much of their capacity in cold weather."
    for tenant in ("c1", "c2", "c3"):
        key, _ = await gw.tenant(tenant)
        await say(gw, tenant, key, f"The bus was late again this morning. {advice}")
        await say(gw, tenant, key, "The power went out last night. I love lazy Sunday "
                                   "mornings. I prefer quiet evenings at home.")

    async def everything() -> list[dict[str, Any]]:
        r = await gw.client.get("/v1/knowledge/insights?limit=1000", headers=gw.operator)
        items: list[dict[str, Any]] = r.json()["items"]
        return items

    async def shared() -> bool:
        return any(i["text"] == advice and i["support"] == 3 for i in await everything())

    await until(shared)
    assert [i["text"] for i in await everything()] == [advice]  # nothing else, even stored

    async def refused() -> dict[str, int]:
        stats = (await gw.client.get("/v1/stats", headers=gw.operator)).json()
        counts: dict[str, int] = stats["knowledge"]["refused"]
        return counts

    assert (await refused())["episodic"] == 0  # the agents proposed none
    job = await gw.core.pipeline.queue.enqueue_job(  # a box that proposes them anyway
        "contribute", "c1", [{"kind": "fact", "text": "The bus was late again this morning."},
                             {"kind": "fact", "text": "Some users prefer lazy weekends."}],
        ["c1"])
    assert job is not None
    await job.result(timeout=60)
    assert (await refused())["episodic"] == 2
    metrics = (await gw.client.get("/metrics", headers=gw.operator)).text
    assert 'burrow_knowledge_refused_total{reason="episodic"} 2.0' in metrics
    assert [i["text"] for i in await everything()] == [advice]


@pytest.mark.timeout(300)
async def test_deleting_a_tenant_withdraws_its_support(learning: Gateway) -> None:
    gw = learning
    await models_loaded(gw)
    await trusting(gw)
    a, _ = await gw.tenant("a1")
    b, _ = await gw.tenant("b1")
    await say(gw, "a1", a, "Kubernetes pods restart when their liveness probe fails.")
    await say(gw, "a1", a, "Zig builds cross compile without extra toolchains.")
    await say(gw, "b1", b, "Kubernetes pods restart when their liveness probe fails.")

    async def insights() -> dict[str, int]:
        r = await gw.client.get("/v1/knowledge/insights", headers=gw.operator)
        return {i["text"]: i["support"] for i in r.json()["items"]}

    async def both_there() -> bool:
        found = await insights()
        return any("liveness" in t and s == 2 for t, s in found.items()) and \
            any("Zig" in t for t in found)

    await until(both_there)
    assert (await gw.client.delete("/v1/tenants/a1", headers=gw.operator)).status_code == 204
    left = await insights()
    assert not any("Zig" in t for t in left)  # only a1 supported it
    assert [s for t, s in left.items() if "liveness" in t] == [1]


@pytest.mark.boxes
async def test_a_frozen_tenant_is_not_woken_by_its_pending_observations(
        tmp_path: Path, redis: Redis, redis_server: EmbeddedRedis) -> None:
    async with running_gateway(gateway_settings(tmp_path / "gw", redis_server.url,
                                                run_worker=False)) as gw:
        app, client = gw.app, gw.client
        key, home = await gw.tenant("sleepy")
        for _ in range(3):
            await say(gw, "sleepy", key, "I prefer green tea.")
        await gw.client.post(f"/v1/boxes/{home}/freeze", headers=key)
        await app.state.core.pipeline.drain()
        observations: Observations = app.state.core.observations
        assert await redis.llen(observations.backlog_key("sleepy")) == 3
        delivery = await observations.deliver(gw.manager, "sleepy", home)  # as the worker would
        assert delivery.pairs == 0
        assert (await gw.manager.get(home)).state.value == "frozen"
        r = await client.get("/v1/tenants/sleepy/agent/profile", headers=key)
        green = [p for p in r.json()["preferences"] if p["value"] == "green tea"]
        assert green and green[0]["evidence"] == 3  # applied before this answer
        assert await redis.llen(observations.backlog_key("sleepy")) == 0


async def test_observations_are_spooled_while_redis_is_unreachable(
        tmp_path: Path, redis: Redis) -> None:
    down = Observations(Redis(unix_socket_path=str(tmp_path / "nothing.sock")),
                        tmp_path / "spool", keys=Keys())
    pair = Observations.pair("POST", "/ask", "", b"{}", 200, b"{}", 1.0)
    assert await down.record("t", "b_x", pair) is None
    assert down.spool.exists()
    up = Observations(redis, tmp_path / "spool", keys=Keys())
    assert await up.replay_spool() == 1
    assert not down.spool.exists()
    assert await redis.llen(up.backlog_key("t")) == 1
    await down.redis.aclose()


WORKER = """
import asyncio, sys
from pathlib import Path
import core
from core.settings import Settings
from workers.worker import make_worker

async def main(url, data_dir):
    settings = Settings(redis_url=url, data_dir=Path(data_dir), qdrant_url=":memory:",
                        operator_key="k" * 40)
    opened = await core.open(settings, runs_boxes=False)
    await make_worker(opened).async_run()

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


@pytest.mark.boxes
async def test_a_worker_killed_mid_run_loses_and_repeats_nothing(
        tmp_path: Path, redis: Redis, redis_server: EmbeddedRedis) -> None:
    async with running_gateway(gateway_settings(tmp_path / "gw", redis_server.url,
                                                run_worker=False)) as gw:
        app, client = gw.app, gw.client
        key, home = await gw.tenant("many")
        for i in range(1000):
            r = await client.post("/v1/tenants/many/agent/notes", json={"n": i},
                                  headers=key)
            assert r.status_code == 404  # the built-in agent serves no /notes; it is observed
        await app.state.core.pipeline.drain()
        data_dir = str(app.state.core.manager.config.data_dir)
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}

        def start() -> subprocess.Popen[bytes]:
            return subprocess.Popen([sys.executable, "-c", WORKER, redis_server.url, data_dir],
                                    env=env, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)

        worker = start()
        deadline = time.monotonic() + 60
        while not await _more_than(gw, home, 0):  # kill it as soon as it is at work
            assert time.monotonic() < deadline, "the worker never delivered"
            await asyncio.sleep(0.002)
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        count = len(await applied(gw, home))
        assert count < 1000, "the worker finished before it could be killed"
        worker = start()
        try:
            await until(lambda: _more_than(gw, home, 999), 120)
        finally:
            worker.terminate()
            worker.wait(30)
        log = await applied(gw, home)
        assert [e["seq"] for e in log] == list(range(1, 1001))
        assert len({e["id"] for e in log}) == 1000


async def _more_than(gw: Gateway, home: str, n: int) -> bool:
    return len(await applied(gw, home)) > n


async def test_a_worker_closed_while_a_job_runs_closes_cleanly_and_keeps_the_job(
        redis: Redis, redis_server: EmbeddedRedis) -> None:
    """Shutting down mid-job (a gateway stopped while its worker delivers) is not an error,
    and the job stays queued for the next worker."""
    from arq import create_pool
    from arq.connections import RedisSettings
    from arq.worker import Worker, func

    from workers.worker import close_worker

    started = asyncio.Event()

    async def slow(ctx: dict[str, Any]) -> None:
        started.set()
        await asyncio.sleep(60)

    queue = "test-close-mid-job"
    settings = RedisSettings.from_dsn(redis_server.url)
    worker = Worker(functions=[func(slow, name="slow")], redis_settings=settings,
                    handle_signals=False, poll_delay=0.01, queue_name=queue)
    pool = await create_pool(settings, default_queue_name=queue)
    running = asyncio.create_task(worker.async_run())
    try:
        job = await pool.enqueue_job("slow")
        assert job is not None
        await asyncio.wait_for(started.wait(), 30)
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        await close_worker(worker)  # Worker.close() alone raised CancelledError here
        assert not worker.tasks
        assert await redis.zscore(queue, job.job_id) is not None  # still queued
    finally:
        await pool.aclose()
