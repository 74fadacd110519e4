"""Claude Code, Codex and OpenCode as agent runs in real boxes, through the gateway: the CLIs
installed on the host and bound read-only into the box, their model calls relayed through the
host services socket to a scripted provider (tests/fakes.py) that holds the only real key.

What the issue asks for: each CLI creates a file in the box through its own tool call; the
provider receives the server's key and nothing in the box ever holds it; the relay refuses
what is not inference; a dead endpoint fails the run within its timeout, naming the cause."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from core.embedded_redis import EmbeddedRedis
from models.relay import harnesses
from tests.conftest import ECHO_AGENT, Gateway, gateway_settings, running_gateway
from tests.fakes import FakeOpenAI
from tests.tenant_agent.test_relay_clis import SHELL, WRITE, reply

KEY_ANTHROPIC = "sk-ant-gateway-relay-0a1b2c3d4e5f6071"
KEY_OPENAI = "sk-openai-gateway-relay-9f8e7d6c5b4a"
MODELS = {"claude-code": "anthropic/claude-test", "codex": "openai/gpt-test",
          "opencode": "openai/test-model"}

pytestmark = [pytest.mark.timeout(300), pytest.mark.boxes, pytest.mark.agent_clis]


@pytest.fixture(scope="module", autouse=True)
def installed() -> None:
    """The three CLIs on this host (the test command installs them: make harnesses)."""
    missing = [n for n in harnesses.HARNESSES if harnesses.installed(n) is None]
    assert not missing, f"not installed: {missing}; run `burrow harness install`"


@pytest.fixture
async def relayed(tmp_path: Path, redis: Redis, redis_server: EmbeddedRedis,
                  fake: FakeOpenAI) -> AsyncIterator[Gateway]:
    settings = gateway_settings(
        tmp_path / "gw", redis_server.url, run_worker=False, agent_command=ECHO_AGENT,
        anthropic_api_key=KEY_ANTHROPIC, anthropic_url=fake.root_url,
        openai_api_key=KEY_OPENAI, openai_url=fake.url)
    async with running_gateway(settings) as gw:
        yield gw


async def run(gw: Gateway, headers: dict[str, str], box: str,
              **body: Any) -> dict[str, Any]:
    r = await gw.client.post(f"/v1/boxes/{box}/agent/runs", headers=headers,
                             json={"prompt": "create hello.txt containing hi", **body},
                             timeout=240)
    assert r.status_code == 200, r.text
    result: dict[str, Any] = r.json()
    return result


async def sh(gw: Gateway, headers: dict[str, str], box: str, command: str) -> str:
    r = await gw.client.post(f"/v1/boxes/{box}/exec", headers=headers,
                             json={"command": command, "timeout_s": 60})
    return str(r.json()["stdout"])


@pytest.mark.parametrize("harness", ["claude-code", "codex", "opencode"])
async def test_each_cli_creates_a_file_in_its_box_through_its_own_tool(
        relayed: Gateway, fake: FakeOpenAI, harness: str) -> None:
    gw, model = relayed, MODELS[harness]
    headers, _ = await gw.tenant("cli")
    box = (await gw.client.post("/v1/boxes", headers=headers, json={
        "runtime": "node", "agent": {"harness": harness, "model": model}})).json()["id"]
    shell, write = SHELL[harness], WRITE[harness]
    fake.script = [reply(model, shell[0], **shell[1]("/workspace")),
                   reply(model, write[0], **write[1]("/workspace")),
                   reply(model, text="Done.")]
    result = await run(gw, headers, box)
    assert result["status"] == "completed", result
    assert result["result"] == "Done." and result["usage"]["turns"] == 3
    assert await sh(gw, headers, box, "cat hello.txt") == "hi"
    key = KEY_ANTHROPIC if model.startswith("anthropic/") else KEY_OPENAI
    sent = [h.get("x-api-key") or h.get("authorization", "") for h in fake.headers]
    assert len(sent) == 3 and all(key in s for s in sent)  # the provider got the real key
    assert all(r["model"] == model.partition("/")[2] for r in fake.requests)
    env = await sh(gw, headers, box, "cat env.txt")
    assert "BURROW_BOX_TOKEN" not in env and key not in env  # what the CLI's tools saw
    usage = await gw.core.redis.hgetall(gw.core.budgets.usage_key("cli"))
    assert int(usage[f"{model.partition('/')[0]}:calls".encode()]) == 3


async def test_nothing_in_a_box_holds_the_key_while_claude_code_runs(
        relayed: Gateway, fake: FakeOpenAI) -> None:
    gw, model = relayed, MODELS["claude-code"]
    headers, _ = await gw.tenant("watched")
    box = (await gw.client.post("/v1/boxes", headers=headers, json={
        "agent": {"harness": "claude-code", "model": model}})).json()["id"]
    fake.delay_s = 2.0  # the run stays in flight while the box is searched
    fake.script = [reply(model, text="Done.")]
    running = asyncio.create_task(run(gw, headers, box))
    await asyncio.sleep(1.5)
    # the key is searched for in two halves, so that this command never holds it whole
    half = len(KEY_ANTHROPIC) // 2
    seen = await sh(gw, headers, box, (
        "ps -eo args | grep -c claude; for f in /proc/[0-9]*/environ /proc/[0-9]*/cmdline; "
        "do tr '\\0' '\\n' < $f; done 2>/dev/null; "
        f"grep -rs -l \"$(printf %s%s '{KEY_ANTHROPIC[:half]}' '{KEY_ANTHROPIC[half:]}')\" "
        "/workspace /tmp /opt/burrow/tenant_agent 2>/dev/null; env"))
    result = await running
    assert result["status"] == "completed", result
    assert int(seen.split()[0]) >= 1, "the search ran while Claude Code was running"
    assert KEY_ANTHROPIC not in seen


async def test_the_relay_refuses_what_is_not_inference_and_other_models(
        relayed: Gateway, fake: FakeOpenAI) -> None:
    gw = relayed
    headers, _ = await gw.tenant("probe")
    box = (await gw.client.post("/v1/boxes", headers=headers, json={
        "agent": {"harness": "claude-code", "model": MODELS["claude-code"]}})).json()["id"]
    probe = (
        "import json, os, socket, sys\n"
        "def call(method, path, body):\n"
        "    s = socket.socket(socket.AF_UNIX); s.connect(os.environ['BURROW_HOST_SOCKET'])\n"
        "    data = json.dumps(body).encode()\n"
        "    s.sendall((f'{method} {path} HTTP/1.1\\r\\nHost: h\\r\\nAuthorization: Bearer '\n"
        "               + os.environ['BURROW_BOX_TOKEN'] + '\\r\\nContent-Type: application/'\n"
        "               f'json\\r\\nContent-Length: {len(data)}\\r\\nConnection: close\\r\\n'\n"
        "               '\\r\\n').encode() + data)\n"
        "    r = b''\n"
        "    while c := s.recv(65536): r += c\n"
        "    return int(r.split()[1])\n"
        "msg = {'model': 'claude-opus-expensive', 'max_tokens': 50000, 'messages': "
        "[{'role': 'user', 'content': 'hi'}]}\n"
        "print(json.dumps([call('GET', '/v1/relay/anthropic/v1/models', {}),\n"
        "                  call('POST', '/v1/relay/anthropic/v1/files', {}),\n"
        "                  call('POST', '/v1/relay/openai/v1/embeddings', {}),\n"
        "                  call('POST', '/v1/relay/anthropic/v1/messages', msg)]))\n")
    fake.script = [reply(MODELS["claude-code"], text="hello")]
    r = await gw.client.post(f"/v1/boxes/{box}/exec", headers=headers,
                             json={"command": ["python3", "-c", probe]})
    statuses = json.loads(r.json()["stdout"])
    assert statuses[:3] == [404, 404, 404], statuses
    assert statuses[3] == 200
    # the call that named another model and a huge max_tokens reached the provider pinned
    # to the box's model, its output clamped to the operator's ceiling
    assert fake.requests[-1]["model"] == "claude-test"
    assert fake.requests[-1]["max_tokens"] <= 4096


async def test_a_run_whose_endpoint_is_down_fails_within_its_timeout(
        tmp_path: Path, redis: Redis, redis_server: EmbeddedRedis) -> None:
    settings = gateway_settings(tmp_path / "gw", redis_server.url, run_worker=False,
                                agent_command=ECHO_AGENT, openai_api_key=KEY_OPENAI,
                                openai_url="http://127.0.0.1:9/v1")  # nothing listens there
    async with running_gateway(settings) as gw:
        headers, _ = await gw.tenant("down")
        box = (await gw.client.post("/v1/boxes", headers=headers, json={
            "agent": {"harness": "codex", "model": "openai/gpt-test"}})).json()["id"]
        started = asyncio.get_running_loop().time()
        result = await run(gw, headers, box, timeout_s=60)
        took = asyncio.get_running_loop().time() - started
    assert result["status"] == "failed", result
    assert "cannot reach openai" in result["error"] or "endpoint" in result["error"], result
    assert took < 60


async def test_a_run_stops_at_max_turns_counted_on_the_host(
        relayed: Gateway, fake: FakeOpenAI) -> None:
    gw, model = relayed, MODELS["codex"]
    headers, _ = await gw.tenant("turns")
    box = (await gw.client.post("/v1/boxes", headers=headers, json={
        "agent": {"harness": "codex", "model": model}})).json()["id"]
    shell = SHELL["codex"]
    fake.script = [reply(model, shell[0], **shell[1]("/workspace"))] * 8
    result = await run(gw, headers, box, max_turns=2)
    assert result["status"] == "failed" and "max_turns" in result["error"], result
    assert result["usage"]["turns"] <= 2 + 1 and len(fake.requests) <= 3
