"""Two Burrow instances on one Redis (BURROW_REDIS_PREFIX apart): each one's records, job
queue, jobs and crons are its own, and no key of either lies outside its prefix."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from core.embedded_redis import EmbeddedRedis
from core.keys import Keys
from tests.conftest import Gateway, gateway_settings, running_gateway, until
from tests.fakes import FakeOpenAI, text_reply
from tests.hosts import TEST_UID_BASE, box_processes

# What each instance's tenant says: a fact its agent proposes to the knowledge base.
FACTS = {"alpha": "Postgres 16 vacuums faster than Postgres 12.",
         "beta": "Kafka brokers recover faster with tiered storage enabled."}


async def tour(gw: Gateway, fact: str) -> None:
    """What an instance does in a day: a tenant, its agent learning from a request and
    proposing what it heard, a search, a policy change, a box frozen and woken, a model
    call. The tenant has the same id in both instances."""
    r = await gw.client.put("/v1/policy", headers=gw.operator,
                            json={"contribute_min_age_s": 0, "contribute_min_turns": 0})
    assert r.status_code == 200, r.text
    key, _ = await gw.tenant("t")
    r = await gw.client.post("/v1/tenants/t/agent/ask", headers=key, json={"question": fact})
    assert r.status_code == 200, r.text

    async def contributed() -> bool:  # delivered to the agent, proposed, in the base
        r = await gw.client.get("/v1/knowledge/insights", headers=gw.operator)
        return any(fact[:20] in i["text"] for i in r.json()["items"])

    await until(contributed, 60, "the fact in the instance's knowledge base")
    r = await gw.client.post("/v1/knowledge/search", headers=key, json={"query": fact})
    assert r.status_code == 200, r.text
    r = await gw.client.post("/v1/boxes", headers=key, json={
        "agent": {"harness": "burrow", "model": "openai/gpt-test"}})
    assert r.status_code == 201, r.text
    box = r.json()["id"]
    for step in ("freeze", "wake"):
        r = await gw.client.post(f"/v1/boxes/{box}/{step}", headers=key)
        assert r.status_code == 200, r.text
    r = await gw.client.post(f"/v1/boxes/{box}/agent/runs", headers=key,
                             json={"prompt": "say done"})
    assert r.status_code == 200 and r.json()["status"] == "completed", r.text


@contextlib.asynccontextmanager
async def instance(prefix: str, tmp_path: Path, redis_url: str, fake: FakeOpenAI,
                   uid_base: int) -> AsyncIterator[Gateway]:
    settings = gateway_settings(tmp_path / prefix, redis_url, redis_prefix=prefix,
                                uid_base=uid_base, run_worker=True, sweep_interval_s=1.0,
                                openai_api_key="sk-test-" + "k" * 24, openai_url=fake.url)
    async with running_gateway(settings, others_running=True) as gw:
        yield gw


@pytest.mark.boxes
@pytest.mark.timeout(240)  # two servers, each with its worker, models and boxes
async def test_two_instances_on_one_redis_keep_their_jobs_crons_and_keys_apart(
        tmp_path: Path, redis: Redis, redis_server: EmbeddedRedis) -> None:
    fake = FakeOpenAI()
    fake.script = [text_reply("done"), text_reply("done")]
    keys = {name: Keys(name) for name in FACTS}
    try:
        async with (instance("alpha", tmp_path, redis_server.url, fake, TEST_UID_BASE) as a,
                    instance("beta", tmp_path, redis_server.url, fake,
                             TEST_UID_BASE + 200_000) as b):
            gateways = {"alpha": a, "beta": b}
            await asyncio.gather(*(tour(gw, FACTS[name]) for name, gw in gateways.items()))
            # Each instance's worker took its own jobs: its base holds its tenant's fact and
            # not the other's (a contribution job carries the insights themselves).
            for name, gw in gateways.items():
                r = await gw.client.get("/v1/knowledge/insights", headers=gw.operator)
                texts = " ".join(i["text"] for i in r.json()["items"])
                other = next(f for n, f in FACTS.items() if n != name)
                assert FACTS[name][:20] in texts and other[:20] not in texts, (name, texts)
            await asyncio.sleep(2.5)  # two more runs of the every-second sweep cron
            names = [k.decode() for k in await redis.keys("*")]
            # No key is outside the instances' prefixes, and none is both's.
            assert [k for k in names if sum(ks.owns(k) for ks in keys.values()) != 1] == []
            ticks = {}
            for name, ks in keys.items():
                mine = [k for k in names if ks.owns(k)]
                assert ks.tenant("t") in mine and ks.worker_health() in mine
                assert any(k.startswith("arq:result:" + ks.job("contribute")) for k in mine)
                # a cron's run keeps its in-progress key for a minute: one per run
                ticks[name] = {k.rpartition(":")[2] for k in mine if k.startswith(
                    "arq:in-progress:" + ks.cron("sweep") + ":")}
            # Each instance's sweep ran every second, the same seconds as the other's: none
            # took the other's place.
            assert len(ticks["alpha"] & ticks["beta"]) >= 2, ticks
            homes = [await redis.hget(ks.tenant("t"), "data") for ks in keys.values()]
            assert homes[0] != homes[1]  # one tenant "t" per instance
        assert box_processes() == [], "box processes outlived the test"
    finally:
        fake.close()
