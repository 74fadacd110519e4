"""What operators watch and steer with: /metrics, /v1/stats, request ids in responses, boxes
and logs, and the CLI against a real `burrow serve`."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from core.logs import JsonFormatter, request_id
from tests.conftest import Gateway
from tests.served import Served, stop_and_check

BIN = Path(sys.executable).parent


def scrape(text: str) -> dict[str, float]:
    """Every sample of a Prometheus text page, by name and labels."""
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            samples[f"{s.name}{{{labels}}}"] = s.value
    return samples


async def test_metrics_parse_and_count_the_wakes_and_freezes_this_test_caused(
        gateway: Gateway) -> None:
    gw, op = gateway, gateway.operator
    assert (await gw.client.get("/metrics")).status_code == 401
    r = await gw.client.post("/v1/boxes", json={}, headers=op)
    box = r.json()["id"]
    before = scrape((await gw.client.get("/metrics", headers=op)).text)
    for _ in range(3):
        assert (await gw.client.post(f"/v1/boxes/{box}/freeze", headers=op)).status_code == 200
        assert (await gw.client.post(f"/v1/boxes/{box}/wake", headers=op)).status_code == 200
    await gw.client.post(f"/v1/boxes/{box}/freeze", headers=op)
    r = await gw.client.get("/metrics", headers=op)
    assert r.headers["content-type"].startswith("text/plain")
    after = scrape(r.text)
    assert after["burrow_box_wake_seconds_count{}"] - before["burrow_box_wake_seconds_count{}"] == 3
    assert after["burrow_box_freeze_seconds_count{}"] - before[
        "burrow_box_freeze_seconds_count{}"] == 4
    assert after["burrow_boxes{state=frozen}"] == 1 and after["burrow_boxes{state=running}"] == 0
    assert after["burrow_storage_bytes{kind=stored}"] > 0
    assert after["burrow_storage_bytes{kind=logical}"] >= 0
    wake_route = "method=POST,route=/v1/boxes/{box_id}/wake,status=200"
    assert after[f"burrow_http_request_duration_seconds_count{{{wake_route}}}"] == 3
    for name in ("burrow_observation_queue_depth{}", "burrow_observation_backlog{}",
                 "burrow_knowledge_insights{}", "burrow_tenants{}"):
        assert name in after


async def test_stats_count_boxes_memory_and_storage(gateway: Gateway) -> None:
    gw, op = gateway, gateway.operator
    await gw.tenant("s1")
    r = await gw.client.post("/v1/boxes", json={}, headers=op)
    frozen = r.json()["id"]
    await gw.client.post(f"/v1/boxes/{frozen}/freeze", headers=op)
    stats = (await gw.client.get("/v1/stats", headers=op)).json()
    assert stats["tenants"] == 1
    assert stats["boxes"]["running"] == 1 and stats["boxes"]["frozen"] == 1
    assert stats["warm_memory_bytes"] > 0
    assert stats["storage"]["stored_bytes"] > 0 and stats["storage"]["local_layer_bytes"] > 0
    assert set(stats["observations"]) == {"queue_depth", "backlog", "dropped"}
    boxes = (await gw.client.get("/v1/boxes", headers=op)).json()
    running = next(b for b in boxes if b["state"] == "running")
    assert running["memory_bytes"] > 0 and running["disk_bytes"] > 0 and running["idle_s"] >= 0


async def test_a_request_id_follows_the_request_into_the_box(gateway: Gateway) -> None:
    gw = gateway
    headers, home = await gw.tenant("traced")
    r = await gw.client.post(f"/v1/boxes/{home}/exec", json={"command": "echo $BURROW_REQUEST_ID"},
                             headers={**headers, "X-Request-Id": "req-42"})
    assert r.headers["x-request-id"] == "req-42" and r.json()["stdout"] == "req-42\n"
    r = await gw.client.post("/v1/tenants/traced/agent/x", headers={**headers,
                                                                    "X-Request-Id": "req-43"})
    assert r.headers["x-request-id"] == "req-43"
    assert r.json()["echo"]["headers"]["x-request-id"] == "req-43"  # what the agent received
    r = await gw.client.get("/healthz", headers={"X-Request-Id": "bad id with spaces"})
    assert r.headers["x-request-id"] != "bad id with spaces" and r.headers["x-request-id"]
    await gw.core.pipeline.drain()  # pairs are recorded after the response
    pairs = await gw.core.redis.lrange(gw.core.observations.backlog_key("traced"),
                                            0, -1)
    assert "req-43" in [json.loads(p)["request_id"] for p in pairs]


def test_json_logs_carry_the_request_id() -> None:
    record = logging.LogRecord("burrow.test", logging.INFO, __file__, 1, "froze %s", ("b_1",),
                               None)
    token = request_id.set("req-7")
    try:
        line = json.loads(JsonFormatter().format(record))
    finally:
        request_id.reset(token)
    assert line["message"] == "froze b_1" and line["request_id"] == "req-7"
    assert line["level"] == "info" and line["logger"] == "burrow.test"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    server = Served(tmp_path / "data", env={"BURROW_SWEEP_INTERVAL_S": "1"}).start()
    yield server
    stop_and_check(server)


def cli(served: Served, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BURROW_URL": served.url,
           "BURROW_API_KEY": served.operator["Authorization"].split()[1]}
    return subprocess.run([str(BIN / "burrow"), *args], env=env, capture_output=True,
                          text=True, timeout=60)


def test_a_policy_set_through_the_cli_applies_on_the_next_sweep(served: Served) -> None:
    r = httpx.post(f"{served.url}/v1/tenants", json={"id": "cli-t"}, headers=served.operator,
                   timeout=60)
    assert r.status_code == 201, r.text
    listed = json.loads(cli(served, "tenant", "ls", "--json").stdout)
    assert [(t["id"], t["state"]) for t in listed] == [("cli-t", "running")]

    bad = cli(served, "policy", "set", "--freeze-after", "1s")
    assert bad.returncode != 0 and len(bad.stderr.strip().splitlines()) == 1
    assert "between 2 s" in bad.stderr and "Traceback" not in bad.stderr
    assert cli(served, "policy", "set", "--freeze-after", "soon").returncode == 2

    done = cli(served, "policy", "set", "--freeze-after", "2s", "--archive-after", "never")
    assert done.returncode == 0, done.stderr
    deadline = time.monotonic() + 10
    while json.loads(cli(served, "tenant", "ls", "--json").stdout)[0]["state"] != "frozen":
        assert time.monotonic() < deadline, "the CLI's policy was not applied"
        time.sleep(0.3)

    shown = cli(served, "policy", "show", "--history")
    assert shown.returncode == 0 and "freeze_after_s             2s" in shown.stdout
    assert "cli:" in shown.stdout  # the history names the CLI user
    stats = json.loads(cli(served, "stats", "--json").stdout)
    assert stats["boxes"]["frozen"] == 1 and stats["sweep"]["last_actions"]["frozen"] >= 0
    assert "tenants" in cli(served, "stats").stdout
