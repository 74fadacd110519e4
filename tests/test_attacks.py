"""Attacks on Burrow, written as the attacker would try them: a tenant key holder, and code
running inside a box, are both hostile. Each test fails if the attack works."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from boxes import BoxManager, BoxSpec, BoxState, ExecRequest, Limits, WakeFailedError
from tests.conftest import (
    ECHO_AGENT,
    Gateway,
    box_processes,
    gateway_settings,
    make_config,
    running_gateway,
    until,
)
from tests.fakes import FakeOpenAI
from tests.served import Served, stop_and_check
from workers.embedded_redis import EmbeddedRedis

SECRETS = {
    "BURROW_OPERATOR_KEY": "op-secret-" + "o" * 40,
    "ANTHROPIC_API_KEY": "sk-ant-secret-" + "a" * 30,
    "OPENAI_API_KEY": "sk-openai-secret-" + "b" * 30,
    "OPENROUTER_API_KEY": "sk-or-secret-" + "c" * 30,
}


@pytest.fixture
def secret_server(tmp_path: Path) -> Iterator[Served]:
    """`burrow serve` started the way an operator does: provider keys in its environment."""
    server = Served(tmp_path / "data", operator_key=SECRETS["BURROW_OPERATOR_KEY"],
                    env={k: v for k, v in SECRETS.items() if k != "BURROW_OPERATOR_KEY"})
    server.start()
    yield server
    stop_and_check(server)


def _tenant(c: httpx.Client, server: Served, name: str) -> tuple[dict[str, str], str]:
    r = c.post("/v1/tenants", json={"id": name}, headers=server.operator)
    assert r.status_code == 201, r.text
    return {"Authorization": f"Bearer {r.json()['api_key']}"}, r.json()["home_box_id"]


def test_no_process_of_a_box_holds_a_server_secret(secret_server: Served) -> None:
    """Inside the box: every /proc/*/environ and /proc/*/cmdline. On the host: every process
    running as a box uid (bwrap, the daemon, the agent, slirp4netns)."""
    with httpx.Client(base_url=secret_server.url, timeout=60) as c:
        tenant, home = _tenant(c, secret_server, "spy")
        assert c.get("/v1/tenants/spy/agent/health", headers=tenant).status_code == 200
        egress = c.post("/v1/boxes", json={"network": "egress"}, headers=tenant).json()["id"]
        for box in (home, egress):
            r = c.post(f"/v1/boxes/{box}/exec", headers=tenant, json={
                "command": "for f in /proc/[0-9]*/environ /proc/[0-9]*/cmdline; do "
                           "tr '\\0' '\\n' < $f; done 2>/dev/null; env"})
            assert r.json()["exit_code"] == 0, r.json()
            seen = r.json()["stdout"]
            assert "BURROW_BOX_TOKEN=" in seen  # the listing did read the box's processes
            for name, value in SECRETS.items():
                assert value not in seen, f"{name} is readable inside box {box}"
        pids = box_processes()
        assert len(pids) >= 4  # two sandboxes, the home box's agent, slirp4netns
        for pid in pids:
            for part in ("environ", "cmdline"):
                try:
                    data = Path(f"/proc/{pid}/{part}").read_bytes().decode(errors="replace")
                except OSError:
                    continue  # it exited meanwhile
                for name, value in SECRETS.items():
                    assert value not in data, f"{name} in /proc/{pid}/{part} (a box uid)"


async def test_box_env_cannot_change_how_programs_load(gateway: Gateway) -> None:
    headers, _ = await gateway.tenant("loader")
    for name in ("LD_PRELOAD", "LD_LIBRARY_PATH", "GCONV_PATH", "GLIBC_TUNABLES",
                 "BURROW_BOX_TOKEN", "ld_audit"):
        r = await gateway.client.post("/v1/boxes", headers=headers,
                                      json={"env": {name: "/workspace/x.so"}})
        assert r.status_code == 422, (name, r.text)
        assert name in r.json()["error"]["message"]
        assert "for one command" in r.json()["error"]["message"]
    assert (await gateway.client.get("/v1/boxes", headers=headers)).json() == [] or all(
        b["name"] != "x" for b in (await gateway.client.get("/v1/boxes", headers=headers)).json())


async def test_box_env_reaches_execs_and_never_the_daemon(gateway: Gateway) -> None:
    headers, _ = await gateway.tenant("envs")
    r = await gateway.client.post("/v1/boxes", headers=headers,
                                  json={"env": {"GREETING": "hello", "PATH": "/nowhere"}})
    assert r.status_code == 201, r.text
    box = r.json()["id"]
    r = await gateway.client.post(f"/v1/boxes/{box}/exec", headers=headers,
                                  json={"command": ["/bin/sh", "-c", "echo $GREETING $PATH"]})
    assert r.json()["stdout"] == "hello /nowhere\n", r.json()
    # (read on the host: the code a box runs does not see its daemon)
    daemon = _daemon_of((await gateway.manager.get(box)).uid)
    daemon_env = Path(f"/proc/{daemon}/environ").read_bytes().decode()
    assert "BURROW_BOX_ID=" in daemon_env  # found the daemon's environment
    lines = daemon_env.split("\0")  # (BURROW_BOX_ENV, the JSON it reads them from, is there)
    assert not [v for v in lines if v.startswith(("GREETING=", "PATH=/nowhere"))], lines


async def test_a_tenant_cannot_ask_for_more_than_the_ceilings(gateway: Gateway) -> None:
    headers, _ = await gateway.tenant("greedy")
    for limits, ceiling in (({"disk_mb": 1048576}, "max_box_disk_mb"),
                            ({"memory_mb": 1048576}, "max_box_memory_mb"),
                            ({"pids": 65536}, "max_box_pids"),
                            ({"cpus": 64}, "max_box_cpus")):
        r = await gateway.client.post("/v1/boxes", headers=headers, json={"limits": limits})
        assert r.status_code == 422, (limits, r.text)
        assert ceiling in r.json()["error"]["message"]
    r = await gateway.client.post("/v1/boxes", headers=headers, json={"keep_alive": True})
    assert r.status_code == 422 and "tenant_keep_alive" in r.json()["error"]["message"]
    # the operator is not bound by them
    r = await gateway.client.post("/v1/boxes", headers=gateway.operator,
                                  json={"limits": {"memory_mb": 8192}, "keep_alive": True})
    assert r.status_code == 201, r.text
    await gateway.client.delete(f"/v1/boxes/{r.json()['id']}", headers=gateway.operator)


async def test_box_count_and_total_disk_per_tenant_are_bounded(gateway: Gateway) -> None:
    r = await gateway.client.put("/v1/policy", headers=gateway.operator,
                                 json={"max_boxes_per_tenant": 3, "max_tenant_disk_mb": 4096})
    assert r.status_code == 200, r.text
    headers, _ = await gateway.tenant("many")  # its home box is the first (2048 MB)
    r = await gateway.client.post("/v1/boxes", headers=headers,
                                  json={"limits": {"disk_mb": 4096}})
    assert r.status_code == 422 and "max_tenant_disk_mb" in r.json()["error"]["message"]
    results = await asyncio.gather(*(gateway.client.post(
        "/v1/boxes", headers=headers, json={"limits": {"disk_mb": 64}}) for _ in range(4)))
    assert sorted(r.status_code for r in results) == [201, 201, 422, 422], [
        r.text for r in results]
    listed = (await gateway.client.get("/v1/boxes", headers=headers)).json()
    assert len(listed) == 3
    refused = next(r for r in results if r.status_code == 422)
    assert "max_boxes_per_tenant" in refused.json()["error"]["message"]


async def test_a_lowered_ceiling_clamps_existing_boxes_at_their_next_wake(
        gateway: Gateway) -> None:
    headers, _ = await gateway.tenant("clamped")
    r = await gateway.client.post("/v1/boxes", headers=headers,
                                  json={"limits": {"memory_mb": 2048, "pids": 512}})
    box = r.json()["id"]
    r = await gateway.client.put("/v1/policy", headers=gateway.operator,
                                 json={"max_box_memory_mb": 256, "max_box_pids": 64})
    assert r.status_code == 200, r.text
    assert (await gateway.manager.get(box)).limits.memory_mb == 2048  # running: left alone
    await gateway.client.post(f"/v1/boxes/{box}/freeze", headers=headers)
    await gateway.client.post(f"/v1/boxes/{box}/wake", headers=headers)
    limits = (await gateway.manager.get(box)).limits
    assert (limits.memory_mb, limits.pids) == (256, 64)
    r = await gateway.client.post(f"/v1/boxes/{box}/exec", headers=headers, json={
        "command": ["python3", "-c", "import resource; "
                    "print(resource.getrlimit(resource.RLIMIT_NPROC)[0])"]})
    assert r.status_code == 200, r.text
    assert str(64 + 16) in r.json()["stdout"].split(), r.json()  # the pids rlimit follows


# -- the host services socket ---------------------------------------------------------------------

RAW = r"""
import json, os, socket, sys, time
spec = json.loads(sys.argv[1])
s = socket.socket(socket.AF_UNIX)
s.connect(os.environ["BURROW_HOST_SOCKET"])
s.settimeout(30)
token = spec.get("token", os.environ["BURROW_BOX_TOKEN"])
head = f"POST {spec['path']} HTTP/1.1\r\nHost: h\r\n"
if token:
    head += f"Authorization: Bearer {token}\r\n"
head += spec.get("extra", "")
head += f"Content-Type: application/json\r\nContent-Length: {spec['length']}\r\n\r\n"
started = time.monotonic()
reply = b""
try:
    s.sendall(head.encode())
    sent, chunk = 0, b"x" * 65536
    while sent < spec["send"]:
        sent += s.send(chunk[:spec["send"] - sent])
except OSError:
    pass
try:
    while part := s.recv(65536):
        reply += part
except OSError:
    pass
status = int(reply.split()[1]) if reply.startswith(b"HTTP/1.1") else 0
print(json.dumps([status, round(time.monotonic() - started, 2),
                  reply[-300:].decode(errors="replace")]))
"""


async def raw(gw: Gateway, headers: dict[str, str], box: str, **spec: object) -> list[object]:
    r = await gw.client.post(f"/v1/boxes/{box}/exec", headers=headers, json={
        "command": ["python3", "-c", RAW, json.dumps(spec)], "timeout_s": 120})
    assert r.json()["exit_code"] == 0, r.json()
    result: list[object] = json.loads(r.json()["stdout"])
    return result


def _rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


async def test_the_host_socket_reads_nothing_before_the_token(gateway: Gateway) -> None:
    """600 MB with no token: answered 401 at the headers, without the gateway holding it."""
    headers, home = await gateway.tenant("flood")
    before = _rss()
    status, _, body = await raw(gateway, headers, home, path="/v1/model/chat", token="",
                                length=600 << 20, send=600 << 20)
    assert status == 401 and "box token" in str(body)
    assert _rss() - before < 32 << 20
    # a valid token with a body over the cap: refused by its length, nothing read
    status, _, body = await raw(gateway, headers, home, path="/v1/model/chat",
                                length=600 << 20, send=8 << 20)
    assert status == 413, body
    assert _rss() - before < 32 << 20


async def test_a_token_works_only_from_its_own_box(gateway: Gateway) -> None:
    headers, home = await gateway.tenant("thief")
    other = (await gateway.client.post("/v1/boxes", headers=headers, json={})).json()["id"]
    stolen = (await gateway.client.post(f"/v1/boxes/{other}/exec", headers=headers, json={
        "command": "echo $BURROW_BOX_TOKEN"})).json()["stdout"].strip()
    status, _, body = await raw(gateway, headers, home, path="/whoami", token=stolen,
                                length=0, send=0)
    assert status == 403 and "another box" in str(body)
    status, _, body = await raw(gateway, headers, other, path="/whoami", length=0, send=0)
    assert status == 405 or status == 200, body  # its own token is accepted (GET only route)


async def test_slow_or_huge_headers_cannot_hold_the_socket(tmp_path: Path,
                                                           redis_server: EmbeddedRedis) -> None:
    settings = gateway_settings(tmp_path / "gw", redis_server.url, run_worker=False,
                                agent_command=ECHO_AGENT, host_header_timeout_s=1.0)
    async with running_gateway(settings) as gw:
        headers, home = await gw.tenant("slow")
        slow = (r"import os, socket, time; s = socket.socket(socket.AF_UNIX); "
                r"s.connect(os.environ['BURROW_HOST_SOCKET']); s.sendall(b'POST /whoami HT'); "
                r"t = time.monotonic(); r = s.recv(4096); "
                r"print(round(time.monotonic() - t, 1), r.split()[1].decode())")
        r = await gw.client.post(f"/v1/boxes/{home}/exec", headers=headers,
                                 json={"command": ["python3", "-c", slow], "timeout_s": 30})
        seconds, status = r.json()["stdout"].split()
        assert status == "408" and float(seconds) < 5
        status, _, _ = await raw(gw, headers, home, path="/whoami", length=0, send=0,
                                 extra="X-Pad: " + "a" * 40000 + "\r\n")
        assert status == 431


async def test_a_box_cannot_open_unbounded_requests(gateway: Gateway) -> None:
    headers, home = await gateway.tenant("hog")
    many = r"""
import json, os, socket
socks = []
for _ in range(12):
    s = socket.socket(socket.AF_UNIX); s.connect(os.environ["BURROW_HOST_SOCKET"])
    s.sendall(("POST /v1/model/chat HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer "
               + os.environ["BURROW_BOX_TOKEN"] + "\r\nContent-Length: 100\r\n\r\n").encode())
    socks.append(s)
statuses = []
for s in socks:
    s.settimeout(5)
    try:
        statuses.append(int(s.recv(4096).split()[1]))
    except OSError:
        statuses.append(0)  # still waiting for its body: holding one of the box's slots
print(json.dumps(statuses))
"""
    r = await gateway.client.post(f"/v1/boxes/{home}/exec", headers=headers,
                                  json={"command": ["python3", "-c", many], "timeout_s": 120})
    statuses = json.loads(r.json()["stdout"])
    # 8 held (still waiting for a body, or timed out for it since), 4 refused at once
    assert statuses.count(429) == 4 and statuses.count(0) + statuses.count(408) == 8, statuses


# -- model budgets ------------------------------------------------------------------------------

CHAT = r"""
import json, os, socket, sys
out = []
for arg in sys.argv[2:]:
    s = socket.socket(socket.AF_UNIX)
    s.connect(os.environ["BURROW_HOST_SOCKET"])
    data = arg.encode()
    s.sendall((f"POST {sys.argv[1]} HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer "
               f"{os.environ['BURROW_BOX_TOKEN']}\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n").encode() + data)
    reply = b""
    while chunk := s.recv(65536):
        reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    retry = [l for l in head.decode().split("\r\n") if l.lower().startswith("retry-after")]
    out.append([int(head.split()[1]), json.loads(body), retry])
print(json.dumps(out))
"""


@pytest.fixture
async def model_gateway(tmp_path: Path, redis_server: EmbeddedRedis,
                        redis: Redis) -> AsyncIterator[tuple[Gateway, FakeOpenAI]]:
    fake = FakeOpenAI()
    settings = gateway_settings(tmp_path / "gw", redis_server.url, run_worker=False,
                                agent_command=ECHO_AGENT, openai_api_key="sk-real-" + "k" * 30,
                                openai_url=fake.url)
    try:
        async with running_gateway(settings) as gw:
            yield gw, fake
    finally:
        fake.close()


async def chat(gw: Gateway, headers: dict[str, str], box: str,
               *bodies: dict[str, object]) -> list[list[object]]:
    return await host_calls(gw, headers, box, "/v1/model/chat", *bodies)


async def host_calls(gw: Gateway, headers: dict[str, str], box: str, path: str,
                     *bodies: dict[str, object]) -> list[list[object]]:
    """POST each body to `path` on the host socket from inside the box: [status, body,
    Retry-After lines] each."""
    r = await gw.client.post(f"/v1/boxes/{box}/exec", headers=headers, json={
        "command": ["python3", "-c", CHAT, path, *map(json.dumps, bodies)], "timeout_s": 60})
    assert r.json()["exit_code"] == 0, r.json()
    result: list[list[object]] = json.loads(r.json()["stdout"])
    return result


def _ask(model: str = "openai/gpt-x", max_tokens: int | None = None) -> dict[str, object]:
    body: dict[str, object] = {"model": model,
                               "messages": [{"role": "user", "content": "hi"}]}
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    return body


async def test_model_calls_stay_within_the_operators_allowlist_and_ceiling(
        model_gateway: tuple[Gateway, FakeOpenAI]) -> None:
    gw, fake = model_gateway
    await gw.client.put("/v1/policy", headers=gw.operator, json={
        "model_allowlist": ["openai/gpt-*"], "model_max_tokens": 256})
    headers, home = await gw.tenant("spender")
    (ok, _, _), (refused, error, _) = await chat(
        gw, headers, home, _ask(max_tokens=100_000), _ask("openai/o9-expensive"))
    assert ok == 200 and refused == 403
    assert "allowlist" in error["error"]["message"]  # type: ignore[index]
    assert fake.requests[-1]["max_completion_tokens"] == 256  # clamped, not refused
    assert len(fake.requests) == 1


async def test_a_tenant_cannot_spend_more_than_its_token_budget(
        model_gateway: tuple[Gateway, FakeOpenAI]) -> None:
    gw, _ = model_gateway
    await gw.client.put("/v1/policy", headers=gw.operator, json={
        "tenant_token_budget": 600, "model_max_tokens": 200, "token_budget_period_s": 3600})
    headers, home = await gw.tenant("budget")
    replies = await chat(gw, headers, home, *[_ask()] * 6)
    statuses = [r[0] for r in replies]
    # each call reserves ~200 tokens and uses 18 (the fake's usage): the budget is spent by
    # reservations only while calls run; one at a time, all fit
    assert statuses == [200] * 6, replies
    spent = await gw.services.budgets.spent("budget", (await gw.services.policies.get()).policy)
    assert spent == 6 * 18
    await gw.client.put("/v1/policy", headers=gw.operator, json={"tenant_token_budget": 120})
    (status, error, retry), = await chat(gw, headers, home, _ask())
    assert status == 429 and "resets at" in error["error"]["message"]  # type: ignore[index]
    assert retry and int(str(retry[0]).split(":")[1]) > 0
    stats = (await gw.client.get("/v1/stats", headers=gw.operator)).json()
    assert stats["models"]["openai:calls"] == 6
    metrics = (await gw.client.get("/metrics", headers=gw.operator)).text
    assert 'burrow_model_usage{provider="openai",what="calls"} 6.0' in metrics
    # a deleted tenant's usage and budget go with it
    redis = gw.services.redis
    assert await redis.keys("burrow:model:budget:budget:*")  # there, before the delete
    assert (await gw.client.delete("/v1/tenants/budget", headers=gw.operator)).status_code == 204
    assert await redis.keys("burrow:model:*:budget:*") == []
    assert not await gw.services.redis.exists(gw.services.budgets.usage_key("budget"))


async def test_model_calls_are_rate_limited_per_tenant(
        model_gateway: tuple[Gateway, FakeOpenAI]) -> None:
    gw, _ = model_gateway
    await gw.client.put("/v1/policy", headers=gw.operator, json={"model_calls_per_minute": 3})
    headers, home = await gw.tenant("chatty")
    statuses = [r[0] for r in await chat(gw, headers, home, *[_ask()] * 5)]
    assert statuses.count(200) <= 3 and statuses.count(429) >= 2, statuses


async def test_host_embeddings_are_counted_and_rate_limited_per_tenant(
        gateway: Gateway) -> None:
    """The host's embedder is shared: a tenant's boxes may have it embed
    embed_texts_per_minute texts a minute, counted in the tenant's usage; a refused call
    counts nothing, and another tenant still embeds."""
    gw = gateway
    await gw.client.put("/v1/policy", headers=gw.operator, json={"embed_texts_per_minute": 5})
    headers, home = await gw.tenant("embedder")
    if (second := time.time() % 60) > 45:  # all three calls within one minute
        await asyncio.sleep(61 - second)
    replies = await host_calls(gw, headers, home, "/v1/embed", {"texts": ["a", "b", "c"]},
                               {"texts": ["d", "e", "f"]}, {"texts": ["g"]})
    assert [r[0] for r in replies] == [200, 429, 200], replies
    assert "embed_texts_per_minute" in replies[1][1]["error"]["message"]  # type: ignore[index]
    assert replies[1][2], "no Retry-After"
    usage = await gw.services.redis.hgetall(gw.services.budgets.usage_key("embedder"))
    assert int(usage[b"embed:texts"]) == 4
    other, box = await gw.tenant("other")
    assert [r[0] for r in await host_calls(gw, other, box, "/v1/embed",
                                           {"texts": ["x"]})] == [200]


# -- gateway memory -----------------------------------------------------------------------------

def _peak_rss(pid: int, stop: threading.Event, peak: list[int]) -> None:
    while not stop.is_set():
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                peak[0] = max(peak[0], int(line.split()[1]) * 1024)
        time.sleep(0.02)


def test_a_gigabyte_moves_through_the_gateway_in_bounded_memory(served: Served) -> None:
    with httpx.Client(base_url=served.url, timeout=300) as c:
        tenant, _ = _tenant(c, served, "bulk")
        box = c.post("/v1/boxes", headers=tenant, json={}).json()["id"]
        r = c.post(f"/v1/boxes/{box}/exec", headers=tenant,
                   json={"command": "truncate -s 1G big && echo made"})
        assert r.json()["stdout"] == "made\n"
        assert served.proc is not None
        stop, peak = threading.Event(), [0]
        base = _rss_of(served.proc.pid)
        watcher = threading.Thread(target=_peak_rss, args=(served.proc.pid, stop, peak))
        watcher.start()
        try:
            received = 0
            with c.stream("GET", f"/v1/boxes/{box}/files", params={"path": "big"},
                          headers=tenant) as response:
                assert response.status_code == 200
                assert response.headers["content-length"] == str(1 << 30)
                for piece in response.iter_bytes(1 << 20):
                    received += len(piece)
            assert received == 1 << 30

            def body() -> Iterator[bytes]:
                piece = b"u" * (1 << 20)
                for _ in range(90):
                    yield piece
            r = c.put(f"/v1/boxes/{box}/files", params={"path": "up"}, headers={
                **tenant, "content-length": str(90 << 20)}, content=body())
            assert r.status_code == 204, r.text
        finally:
            stop.set()
            watcher.join()
        assert peak[0] - base < 64 << 20, f"the gateway grew by {(peak[0] - base) >> 20} MB"
        size = c.post(f"/v1/boxes/{box}/exec", headers=tenant, json={
            "command": "stat -c %s up"}).json()["stdout"]
        assert size.strip() == str(90 << 20)
        r = c.post(f"/v1/boxes/{box}/exec", headers=tenant, json={
            "command": "head -c 3000000 /dev/zero | tr '\\0' a", "max_output_chars": 1000})
        assert r.json()["truncated"] is True and len(r.json()["stdout"]) == 1000


def _rss_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


async def test_a_tenant_whose_agent_takes_nothing_cannot_fill_redis(
        tmp_path: Path, redis_server: EmbeddedRedis) -> None:
    """No worker delivers here, as with an agent that refuses every delivery."""
    settings = gateway_settings(tmp_path / "gw", redis_server.url, run_worker=False,
                                agent_command=ECHO_AGENT, observe_backlog_max=5)
    async with running_gateway(settings) as gw:
        headers, _ = await gw.tenant("mute")
        for i in range(8):
            r = await gw.client.post("/v1/tenants/mute/agent/ask", headers=headers,
                                     json={"question": f"q{i}"})
            assert r.status_code == 200
        await gw.services.pipeline.drain()
        backlog = gw.services.observations.backlog_key("mute")
        assert await gw.services.redis.llen(backlog) == 5
        tenant = (await gw.client.get("/v1/tenants/mute", headers=gw.operator)).json()
        assert tenant["observations"] == {"size": 5, "max": 5, "dropped": 3,
                                           "unanswered": 0}
        stats = (await gw.client.get("/v1/stats", headers=gw.operator)).json()
        assert stats["observations"]["dropped"] == 3
        assert "burrow_observation_dropped 3.0" in (
            await gw.client.get("/metrics", headers=gw.operator)).text


# -- snapshots: never lose a box's files, never outgrow its quota ----------------------------------

SPARSE_AND_LINKS = ("echo precious > precious.txt && truncate -s 60M a && "
                    "printf head | dd of=a conv=notrunc status=none && "
                    "printf tail | dd of=a bs=1 seek=50000000 conv=notrunc status=none && "
                    "ln a b && mkdir -p links && for i in $(seq 100); do ln a links/$i; done")
CHECK = ("cat precious.txt; head -c 4 a; echo; stat -c '%h %i' a b | sort -u; "
         "du -k a | cut -f1; dd if=a bs=1 skip=50000000 count=4 status=none; echo")


async def test_sparse_files_and_hard_links_archive_and_wake_within_a_small_disk(
        manager: BoxManager) -> None:
    box = await manager.create(BoxSpec(limits=Limits(disk_mb=64)))
    r = await manager.exec(box.id, ExecRequest(command=SPARSE_AND_LINKS))
    assert r.exit_code == 0, r
    before = (await manager.exec(box.id, ExecRequest(command=CHECK))).stdout.splitlines()
    await manager.freeze(box.id)
    await manager.archive(box.id)
    await manager.wake(box.id)
    after = (await manager.exec(box.id, ExecRequest(command=CHECK))).stdout
    lines = after.splitlines()
    assert lines[0:2] == ["precious", "head"], after
    assert len(lines) == 5 and lines[2].split()[0] == "102", after  # one file, 102 names
    assert int(lines[3]) < 1024, after  # holes stayed holes
    assert lines[4] == "tail"
    assert before[:2] + before[3:] == lines[:2] + lines[3:]


async def test_a_failed_wake_keeps_the_last_snapshot_and_no_partial_layer(
        manager: BoxManager) -> None:
    box = await manager.create(BoxSpec())
    await manager.exec(box.id, ExecRequest(command="echo kept > kept.txt && "
                                                   "head -c 300000 /dev/urandom > noise"))
    await manager.freeze(box.id)
    await manager.archive(box.id)
    record = await manager.get(box.id)
    assert record.snapshot_id is not None
    # a blob of the snapshot goes bad (a disk error; or the disk would be full)
    blobs = sorted((manager.config.store_dir / "blobs").glob("*/*"),
                   key=lambda b: b.stat().st_size)
    damaged = blobs[-1]
    saved = damaged.read_bytes()
    damaged.write_bytes(saved[: len(saved) // 2])
    for _ in range(2):  # and again: nothing ever reads half its files
        with pytest.raises(WakeFailedError, match="last snapshot is kept"):
            # `noise` is written after the box starts: then the first exec waits for it
            await manager.wake(box.id)
            await manager.exec(box.id, ExecRequest(command="cat noise > /dev/null"))
        record = await manager.get(box.id)
        assert record.state == BoxState.FAILED and not manager.backend.has_layer(record)
        assert record.snapshot_id is not None
    damaged.write_bytes(saved)  # the disk is fixed
    await manager.wake(box.id)
    r = await manager.exec(box.id, ExecRequest(command="cat kept.txt; stat -c %s noise"))
    assert r.stdout == "kept\n300000\n"


async def test_a_failed_wake_answers_as_the_servers_failure(gateway: Gateway) -> None:
    headers, _ = await gateway.tenant("broken")
    box = (await gateway.client.post("/v1/boxes", headers=headers, json={})).json()["id"]
    await gateway.client.post(f"/v1/boxes/{box}/exec", headers=headers,
                              json={"command": "head -c 200000 /dev/urandom > noise"})
    await gateway.client.post(f"/v1/boxes/{box}/freeze", headers=headers)
    await gateway.client.post(f"/v1/boxes/{box}/archive", headers=headers)
    for blob in (gateway.manager.config.store_dir / "blobs").glob("*/*"):
        blob.write_bytes(b"not zstd")
    r = await gateway.client.post(f"/v1/boxes/{box}/wake", headers=headers)
    assert r.status_code == 503 and r.json()["error"]["code"] == "wake_failed", r.text
    assert "last snapshot is kept" in r.json()["error"]["message"]
    assert str(gateway.manager.config.data_dir) not in r.text


async def test_a_named_snapshot_of_an_archived_box_restores_nothing(
        manager: BoxManager, tmp_path: Path) -> None:
    box = await manager.create(BoxSpec(limits=Limits(disk_mb=64)))
    await manager.exec(box.id, ExecRequest(command=SPARSE_AND_LINKS))
    await manager.freeze(box.id)
    await manager.archive(box.id)
    used = shutil.disk_usage(manager.config.data_dir).used
    snap = await manager.snapshot(box.id, "archived-state")
    assert shutil.disk_usage(manager.config.data_dir).used - used < 8 << 20
    twin = await manager.create(BoxSpec(from_snapshot=snap.id, limits=Limits(disk_mb=64)))
    r = await manager.exec(twin.id, ExecRequest(command=CHECK))
    assert r.stdout.splitlines()[0:2] == ["precious", "head"]


FREEZER = r"""
import asyncio, os, signal, sys
from pathlib import Path
from redis.asyncio import Redis
from boxes import BoxManager, RuntimeConfig
async def main():
    config = RuntimeConfig(data_dir=Path(sys.argv[1]), uid_base=int(sys.argv[4]),
                           launcher_pool=0)
    manager = await BoxManager.open(config, Redis.from_url(sys.argv[2]))
    def stop_at(box_id, phase):
        if phase == sys.argv[3]:
            os.kill(os.getpid(), signal.SIGKILL)
    manager.on_phase = stop_at
    box = (await manager.list())[0]
    await manager.wake(box.id)
    await manager.exec(box.id, __import__("boxes").ExecRequest(command="echo v2 > file"))
    print("acknowledged", flush=True)
    await manager.freeze(box.id)
asyncio.run(main())
"""


@pytest.mark.parametrize("phase", ["freezing", "prefreeze", "stopped", "packed", "recorded"])
async def test_sigkill_at_each_freeze_step_leaves_the_box_wakeable(
        tmp_path: Path, redis_server: EmbeddedRedis, redis: Redis, phase: str) -> None:
    config = make_config(tmp_path / "data")
    manager = await BoxManager.open(config, redis)
    box = await manager.create(BoxSpec())
    await manager.exec(box.id, ExecRequest(command="echo v1 > file"))
    await manager.freeze(box.id)
    await manager.close()
    done = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-c", FREEZER, str(config.data_dir),
                         redis_server.url, phase, str(config.uid_base)],
        capture_output=True, text=True, timeout=120, cwd=Path(__file__).parent.parent)
    assert done.returncode == -signal.SIGKILL and "acknowledged" in done.stdout, done.stderr
    await asyncio.sleep(0.5)  # the killed process's box dies with it (--die-with-parent)
    manager = await BoxManager.open(config, redis)
    try:
        await manager.wake(box.id)
        r = await manager.exec(box.id, ExecRequest(command="cat file"))
        assert r.stdout == "v2\n", (phase, r)
    finally:
        await manager.close()
        shutil.rmtree(config.run_dir, ignore_errors=True)


async def test_a_redis_that_lost_the_end_of_its_log_is_corrected_from_the_data_dir(
        tmp_path: Path) -> None:
    redis_dir = tmp_path / "redis"
    server = EmbeddedRedis(redis_dir, appendonly=True)
    server.start()
    redis = Redis.from_url(server.url)
    config = make_config(tmp_path / "data")
    manager = await BoxManager.open(config, redis)
    aof = redis_dir / "appendonly.aof"
    cut: list[int] = []
    try:
        box = await manager.create(BoxSpec())
        await manager.exec(box.id, ExecRequest(command="echo v1 > file"))
        await manager.freeze(box.id)
        await manager.wake(box.id)
        await manager.exec(box.id, ExecRequest(command="echo v2 > file"))
        manager.on_phase = lambda _box, phase: cut.append(aof.stat().st_size) \
            if phase == "packed" else None
        await manager.freeze(box.id)  # acknowledged: v2 is the box's state
        await manager.archive(box.id)  # and only the store holds it now
        await manager.close()
    finally:
        await redis.aclose()
        server.stop()
    # a power loss: the AOF's last second never reached the disk
    await asyncio.to_thread(os.truncate, aof, cut[0])
    server = EmbeddedRedis(redis_dir, appendonly=True)
    server.start()
    redis = Redis.from_url(server.url)
    lost = await redis.hget(f"burrow:box:{box.id}", "state")
    assert json.loads(lost) == "freezing"  # Redis forgot the freeze it acknowledged ...
    manager = await BoxManager.open(config, redis)
    try:
        record = await manager.get(box.id)  # ... the box's dir remembers it
        assert record.state == BoxState.ARCHIVED and record.freezes == 2
        await manager.wake(box.id)
        r = await manager.exec(box.id, ExecRequest(command="cat file"))
        assert r.stdout == "v2\n"
    finally:
        await manager.close()
        await redis.aclose()
        server.stop()
        shutil.rmtree(config.run_dir, ignore_errors=True)


# -- smaller doors ------------------------------------------------------------------------------

async def test_no_spelling_of_a_path_reaches_the_agents_own_routes(gateway: Gateway) -> None:
    headers, _ = await gateway.tenant("sneaky")
    for path in ("_burrow/observe", "./_burrow/observe", "x/../_burrow/observe",
                 "%5fburrow/observe", "%255fburrow/observe", "_BURROW/observe",
                 "%2e/_burrow/log", "x%2f..%2f_burrow/log", "/_burrow/log"):
        r = await gateway.client.post(f"/v1/tenants/sneaky/agent/{path}", headers=headers,
                                      json={"pairs": []})
        assert r.status_code == 404, (path, r.text)
    assert (await gateway.client.get("/v1/tenants/sneaky/agent/health",
                                     headers=headers)).status_code == 200


async def test_no_spelling_of_the_agents_own_routes_is_taken_as_an_observed_pair(
        gateway: Gateway) -> None:
    """A tenant key holder cannot make its agent "learn" its own protocol (or a pair for
    Burrow's /_burrow/ routes) through POST /observations, however the path is spelled."""
    headers, _ = await gateway.tenant("sneaky")
    for path in ("/_burrow/observe", "/./_burrow/observe", "/x/../_burrow/observe",
                 "/%5fburrow/observe", "/%255fburrow/observe", "/_BURROW/observe",
                 "/%2e/_burrow/log", "/x%2f..%2f_burrow/log", "//_burrow/log", "/recall",
                 "/ASK", "/ask/context", "\\memories", "/profile?x=1", "/health",
                 "/%72ecall", "/a/b/../../memories/m_1"):
        pair = {"request": {"path": path, "body": {"pairs": []}}}
        r = await gateway.client.post("/v1/tenants/sneaky/observations", headers=headers,
                                      json={"pairs": [pair]})
        assert r.status_code == 422 and "pairs.0.request.path" in r.text, (path, r.text)
    assert (await gateway.services.observations.backlog_of("sneaky"))["size"] == 0


async def test_host_files_of_boxes_are_roots_alone(gateway: Gateway) -> None:
    _, home = await gateway.tenant("private")
    config = gateway.manager.config
    assert os.stat(config.boxes_dir).st_mode & 0o777 == 0o700
    box_dir = config.box_dir(home)
    assert os.stat(box_dir).st_mode & 0o777 == 0o700
    for name in ("disk.img", "box.json"):
        assert os.stat(box_dir / name).st_mode & 0o777 == 0o600, name
    observations = gateway.services.observations
    observations._spool("private", home, {"id": "x"})
    assert os.stat(observations.spool).st_mode & 0o777 == 0o600
    assert os.stat(observations.spool.parent).st_mode & 0o777 == 0o700


async def test_deleting_a_tenant_revokes_its_key_before_anything_else(
        gateway: Gateway) -> None:
    headers, _ = await gateway.tenant("leaving")
    for _ in range(3):
        await gateway.client.post("/v1/boxes", headers=headers, json={})
    # Hold the deletion at its first box, so what follows happens while it is under way.
    manager, stopping, release = gateway.manager, asyncio.Event(), asyncio.Event()
    delete_box = manager.delete

    async def held(box_id: str) -> None:
        stopping.set()
        await release.wait()
        await delete_box(box_id)

    manager.delete = held  # type: ignore[method-assign]
    deleting = asyncio.create_task(gateway.client.delete("/v1/tenants/leaving",
                                                         headers=gateway.operator))
    await asyncio.wait_for(stopping.wait(), 10)
    during = await gateway.client.get("/v1/boxes", headers=headers)
    create = await gateway.client.post("/v1/boxes", headers=gateway.operator,
                                       json={"tenant": "leaving"})
    assert not deleting.done()
    release.set()
    assert during.status_code == 401
    assert create.status_code in (404, 409), create.text
    assert (await deleting).status_code == 204
    assert await gateway.manager.list(owner="leaving") == []


def test_box_cp_writes_only_below_its_destination(tmp_path: Path) -> None:
    """A server (or whatever answers at BURROW_URL) that lists '../x' or '/x' entries."""
    class Lying(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if "/list" in self.path:
                body = json.dumps([{"name": "../escaped", "path": "/workspace/d/e",
                                    "type": "file", "size": 1, "mtime": 0}]).encode()
                status = 200
            else:
                body = json.dumps({"error": {"code": "is_a_directory",
                                             "message": "a directory"}}).encode()
                status = 409
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Lying)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        dest = tmp_path / "dest"
        done = subprocess.run(
            [str(Path(sys.executable).parent / "burrow"), "box", "cp", "b_x:/workspace/d",
             str(dest)], capture_output=True, text=True, timeout=60,
            env={**os.environ, "BURROW_URL": f"http://127.0.0.1:{server.server_address[1]}",
                 "BURROW_API_KEY": "k"})
    finally:
        server.shutdown()
        server.server_close()
    assert done.returncode != 0 and "cannot be a file name" in done.stderr, done
    assert not (tmp_path / "escaped").exists()


# -- git credentials stay on the host -------------------------------------------------------------

GIT_TOKEN = "ghp_" + "s3cr3t" * 6


class FakeGitHost:
    """git's smart HTTP on loopback (`git http-backend` behind a tiny CGI bridge), accepting
    only the right Basic credentials, like a forge would."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.auth: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _cgi(self) -> None:
                fake.auth.append(self.headers.get("authorization", ""))
                expected = "Basic " + base64.b64encode(
                    f"x-access-token:{GIT_TOKEN}".encode()).decode()
                if self.headers.get("authorization") != expected:
                    self.send_response(401)
                    self.send_header("www-authenticate", 'Basic realm="git"')
                    self.send_header("content-length", "0")
                    self.end_headers()
                    return
                path, _, query = self.path.partition("?")
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                env = {"GIT_PROJECT_ROOT": str(fake.root), "GIT_HTTP_EXPORT_ALL": "1",
                       "PATH_INFO": path, "QUERY_STRING": query, "REMOTE_USER": "bot",
                       "REQUEST_METHOD": self.command, "PATH": os.environ["PATH"],
                       "CONTENT_TYPE": self.headers.get("content-type", ""),
                       "CONTENT_LENGTH": str(len(body))}
                out = subprocess.run(["git", "http-backend"], input=body, env=env,
                                     capture_output=True, check=True).stdout
                head, _, payload = out.partition(b"\r\n\r\n")
                status = 200
                headers = []
                for line in head.decode().split("\r\n"):
                    name, _, value = line.partition(":")
                    if name.lower() == "status":
                        status = int(value.split()[0])
                    elif name:
                        headers.append((name, value.strip()))
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = _cgi

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _bare_repo(root: Path, name: str) -> None:
    work = root / f"{name}-work"
    subprocess.run(["git", "init", "-q", "-b", "main", str(work)], check=True)
    (work / "README").write_text(f"{name}\n")
    run = {"cwd": work, "check": True, "capture_output": True}
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@e", "add", "."], **run)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@e", "commit", "-qm", "1"],
                   **run)
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(root / "acme" /
                    f"{name}.git")], check=True, capture_output=True)


async def test_git_works_through_the_host_and_its_token_never_enters_the_box(
        tmp_path: Path, redis_server: EmbeddedRedis) -> None:
    forge = tmp_path / "forge"
    for name in ("app", "other"):
        await asyncio.to_thread(_bare_repo, forge, name)
    fake = FakeGitHost(forge)
    settings = gateway_settings(tmp_path / "gw", redis_server.url, run_worker=False,
                                agent_command=ECHO_AGENT,
                                git_hosts={"github.com": fake.url})
    try:
        async with running_gateway(settings) as gw:
            headers, _ = await gw.tenant("coder")
            r = await gw.client.post("/v1/boxes", headers=headers, json={"git": {
                "token": GIT_TOKEN, "user_name": "Bot", "user_email": "bot@example.com",
                "repos": ["https://github.com/acme/app"]}})
            assert r.status_code == 201, r.text
            box = r.json()["id"]

            async def sh(command: str) -> dict[str, Any]:
                out = await gw.client.post(f"/v1/boxes/{box}/exec", headers=headers, json={
                    "command": command, "timeout_s": 60})
                result: dict[str, Any] = out.json()
                return result

            r1 = await sh("git clone -q https://github.com/acme/app && cd app && "
                          "echo change >> README && git commit -qam change && "
                          "git push -q origin main && git log --oneline | wc -l")
            assert r1["exit_code"] == 0 and r1["stdout"].strip() == "2", r1
            r2 = await sh("git clone -q https://github.com/acme/other other 2>&1; echo rc=$?")
            assert "error: 403" in r2["stdout"] and "rc=128" in r2["stdout"], r2
            r3 = await sh("python3 -c \"import urllib.request as u; "
                          "print(u.urlopen('http://127.0.0.1:7171/git/github.com/acme/app/"
                          "HEAD').status)\" 2>&1")
            assert "403" in r3["stdout"], r3
            seen = await sh("grep -rs . /workspace /tmp 2>/dev/null; env; "
                            "for f in /proc/[0-9]*/environ /proc/[0-9]*/cmdline; do "
                            "tr '\\0' '\\n' < $f; done 2>/dev/null")
            assert GIT_TOKEN not in seen["stdout"]
            assert "s3cr3t" not in json.dumps((await gw.manager.get(box)).to_dict())
            assert all(a.startswith("Basic ") for a in fake.auth)  # no box token upstream
    finally:
        fake.close()
    log = (await asyncio.to_thread(
        subprocess.run, ["git", "--git-dir", str(forge / "acme" / "app.git"), "log",
                         "--oneline"], capture_output=True, text=True, check=True)).stdout
    assert len(log.splitlines()) == 2  # the push reached the forge


# --- sec-boxes: 6, 10, 11 ---

def _processes_of(uid: int) -> dict[int, tuple[int, str, str]]:
    """The host's processes running as `uid`: pid -> (parent pid, state letter, command)."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            status = Path(f"/proc/{entry}/status").read_text()
            command = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
        if int(fields["Uid"].split()[0]) == uid:
            found[int(entry)] = (int(fields["PPid"]), fields["State"][0],
                                 command.decode(errors="replace"))
    return found


def _daemon_of(uid: int) -> int:
    """A box's daemon, as the host sees it."""
    return next(pid for pid, (_, _, command) in _processes_of(uid).items()
                if command.startswith("/usr/bin/python3 -I -S /opt/burrow/boxd.pyc"))


def _daemon_and_agent(uid: int) -> tuple[int, int]:
    """A box's daemon and its service (the tenant agent), as the host sees them."""
    daemon = _daemon_of(uid)
    agent = next(pid for pid, (parent, _, command) in _processes_of(uid).items()
                 if parent == daemon and command.startswith("/usr/bin/python3"))
    return daemon, agent


# Run detached in the box, so that the exec that starts it answers first: everything a
# process of the box can reach is traced, its memory opened, stopped. Then it says so.
TRACE_AND_STOP = r"""
import ctypes, os, signal, time
time.sleep(0.3)
libc = ctypes.CDLL(None, use_errno=True)
me, seen = os.getpid(), []
for name in os.listdir("/proc"):
    if not name.isdigit() or int(name) == me:
        continue
    pid = int(name)
    try:
        command = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode()
    except OSError:
        continue
    seen.append(f"visible {pid} {command[:80]}")
    if libc.ptrace(16, pid, None, None) == 0:  # PTRACE_ATTACH
        seen.append(f"traced {pid}")
    try:
        open(f"/proc/{pid}/mem", "rb").close()
        seen.append(f"mem {pid}")
    except OSError:
        pass
os.kill(-1, signal.SIGSTOP)  # every process this one may signal
open("/tmp/attack.done", "w").write("\n".join(seen) + "\n")
time.sleep(1)  # keep what it traces traced while the host looks
"""


async def test_box_code_cannot_stop_kill_or_trace_its_daemon_or_agent(
        gateway: Gateway) -> None:
    headers, home = await gateway.tenant("puppeteer")
    assert (await gateway.client.get("/v1/tenants/puppeteer/agent/health",
                                     headers=headers)).status_code == 200
    box = await gateway.manager.get(home)
    daemon, agent = _daemon_and_agent(box.uid)
    done = gateway.manager.config.box_run_dir(home) / "disk" / "upper" / "tmp" / "attack.done"
    try:
        r = await gateway.client.post(f"/v1/boxes/{home}/exec", headers=headers, json={
            "command": ["/bin/sh", "-c", 'nohup python3 -c "$0" >/dev/null 2>&1 &',
                        TRACE_AND_STOP]})
        assert r.json()["exit_code"] == 0, r.json()
        deadline = time.monotonic() + 20
        while not done.exists():
            assert time.monotonic() < deadline, "the attack did not run"
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.2)
        processes = _processes_of(box.uid)
        for name, pid in (("daemon", daemon), ("agent", agent)):
            assert pid in processes, f"box code killed its {name}"
            assert processes[pid][1] not in "Tt", f"box code stopped or traced its {name}"
        seen = done.read_text()  # what box code found: neither of them
        assert "boxd.pyc" not in seen and "echo agent" not in seen, seen
        r = await gateway.client.post(f"/v1/boxes/{home}/exec", headers=headers,
                                      json={"command": "kill -9 -1; true"})
        assert r.json()["exit_code"] == 0, r.json()
    finally:  # so that the box can be stopped after an attack that worked
        for pid in (daemon, agent):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
    assert daemon in _processes_of(box.uid) and agent in _processes_of(box.uid)
    r = await gateway.client.post(f"/v1/boxes/{home}/exec", headers=headers,
                                  json={"command": "echo still serving"})
    assert r.json()["stdout"] == "still serving\n", r.json()
    assert (await gateway.client.get("/v1/tenants/puppeteer/agent/health",
                                     headers=headers)).status_code == 200
    assert _daemon_and_agent(box.uid) == (daemon, agent)  # neither was restarted


def _as_nobody(paths: list[Path]) -> list[str]:
    """What uid 65534 (any local user) can read, list or connect to among `paths`."""
    probe = ("import json, os, socket, sys\n"
             "for path in json.load(sys.stdin):\n"
             "    try:\n"
             "        if os.path.isdir(path):\n"
             "            os.listdir(path)\n"
             "        elif path.endswith('.sock'):\n"
             "            socket.socket(socket.AF_UNIX).connect(path)\n"
             "        else:\n"
             "            open(path, 'rb').read(1)\n"
             "        print(path)\n"
             "    except OSError:\n"
             "        pass\n")
    out = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--",
                          "/usr/bin/python3", "-I", "-S", "-c", probe],
                         input=json.dumps([str(p) for p in paths]), capture_output=True,
                         text=True, check=True)
    return out.stdout.splitlines()


def _everything_under(*roots: Path) -> list[Path]:
    found = []
    for root in roots:
        for parent, dirs, files in os.walk(root):
            found += [Path(parent) / name for name in dirs + files]
    return found


async def test_no_other_local_user_reads_a_box_or_lists_box_ids(
        redis: Redis, redis_server: EmbeddedRedis) -> None:
    # An operator's data dir, under directories every user may enter (/var/lib/burrow…).
    root = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="burrow-peek-", dir="/tmp"))
    os.chmod(root, 0o755)
    settings = gateway_settings(root / "data", redis_server.url, run_worker=False,
                                agent_command=ECHO_AGENT)
    try:
        async with running_gateway(settings) as gw:
            headers, home = await gw.tenant("peeked")
            r = await gw.client.post(f"/v1/boxes/{home}/exec", headers=headers, json={
                "command": "echo top-secret > /workspace/secret.txt"})
            assert r.json()["exit_code"] == 0, r.json()
            assert (await gw.client.post(f"/v1/boxes/{home}/freeze",
                                         headers=headers)).status_code == 200
            assert (await gw.client.post(f"/v1/boxes/{home}/wake",
                                         headers=headers)).status_code == 200
            config = gw.manager.config
            secret = config.box_run_dir(home) / "disk" / "upper" / "workspace" / "secret.txt"
            assert secret.read_text() == "top-secret\n"  # where the box's files are
            listings = [config.data_dir, config.boxes_dir, config.run_dir,
                        config.run_dir / "boxes", config.run_dir.parent,
                        *map(Path, gw.manager.backend.cgroups.instance_dirs())]
            exposed = await asyncio.to_thread(_as_nobody, [
                secret, *listings,
                *_everything_under(config.data_dir, config.box_run_dir(home))])
            assert not exposed, f"uid 65534 reads or lists {len(exposed)}: {exposed[:4]}"
            # the box works as before: exec, files both ways, freeze and wake
            put = await gw.client.put(f"/v1/boxes/{home}/files", headers=headers,
                                      params={"path": "/workspace/up.txt"}, content=b"up")
            assert put.status_code == 204, put.text
            got = await gw.client.get(f"/v1/boxes/{home}/files", headers=headers,
                                      params={"path": "/workspace/secret.txt"})
            assert got.content == b"top-secret\n", got.text
            assert (await gw.client.post(f"/v1/boxes/{home}/freeze",
                                         headers=headers)).status_code == 200
            r = await gw.client.post(f"/v1/boxes/{home}/exec", headers=headers,
                                     json={"command": "cat up.txt secret.txt"})
            assert r.json()["stdout"] == "uptop-secret\n", r.json()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _chat(text: str) -> dict[str, Any]:
    return {"request": {"method": "POST", "path": "/chat", "body": {"message": text},
                        "headers": {"X-Burrow-User-Text": "message"}},
            "response": {"status": 200, "body": {"reply": "ok"}}}


async def test_a_tenant_whose_agent_hangs_cannot_stall_other_tenants_deliveries(
        tmp_path: Path, redis: Redis, redis_server: EmbeddedRedis) -> None:
    """The agent stops answering (stopped from the host: box code cannot stop it); the
    worker gives up on it at its deadline and skips it while it backs off."""
    settings = gateway_settings(tmp_path / "gw", redis_server.url, run_worker=True,
                                observe_deadline_s=3.0, observe_backoff_max_s=3.0,
                                observe_embeddings=False)
    async with running_gateway(settings) as gw:
        keys = {name: (await gw.tenant(name))[0] for name in ("hung", "fine")}

        async def observed(name: str) -> int:
            r = await gw.client.get(f"/v1/tenants/{name}/agent/profile", headers=keys[name])
            return int(r.json()["observed"])

        async def unanswered() -> int:
            r = await gw.client.get("/v1/tenants/hung", headers=gw.operator)
            return int(r.json()["observations"].get("unanswered", 0))

        for name in keys:
            r = await gw.client.post(f"/v1/tenants/{name}/observations", headers=keys[name],
                                     json={"pairs": [_chat("I live in Porto.")]})
            assert r.status_code == 202, r.text
            await until(lambda n=name: _is(observed(n), 1), 30, f"{name}'s first pair")
        home = await gw.services.tenants.home_box("hung")
        _, agent = _daemon_and_agent((await gw.manager.get(home)).uid)
        os.kill(agent, signal.SIGSTOP)
        try:
            r = await gw.client.post("/v1/tenants/hung/observations", headers=keys["hung"],
                                     json={"pairs": [_chat(f"note {i}") for i in range(3)]})
            assert r.status_code == 202, r.text
            await until(lambda: _at_least(unanswered(), 1), 15, "the hung agent marked")
            started = time.monotonic()
            r = await gw.client.post("/v1/tenants/fine/observations", headers=keys["fine"],
                                     json={"pairs": [_chat("I like tea.")]})
            assert r.status_code == 202, r.text
            await until(lambda: _is(observed("fine"), 2), 15, "another tenant's delivery")
            assert time.monotonic() - started < 15
            # once its wait is over the agent is tried again, the sweep's try included
            await until(lambda: _is(gw.services.observations.stalled_for("hung"), 0), 10)
            box = await gw.manager.get(home)
            started = time.monotonic()
            await asyncio.wait_for(gw.services.pipeline.before_freeze(gw.manager, box), 15)
            assert time.monotonic() - started < 3 + 2 + 2 + 1, "the pre-freeze delivery's bound"
        finally:
            os.kill(agent, signal.SIGCONT)
        await until(lambda: _is(observed("hung"), 4), 30, "the hung tenant's pairs")
        await until(lambda: _is(unanswered(), 0), 10, "the mark lifted")
        await gw.services.pipeline.drain()
        assert await observed("hung") == 4  # each pair once, however often it was sent


async def _is(value: Any, expected: int) -> bool:
    return bool(await value == expected)


async def _at_least(value: Any, expected: int) -> bool:
    return bool(await value >= expected)
