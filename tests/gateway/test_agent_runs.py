"""Agent runs with the built-in harness: the loop inside the box, its tools, structured results
and their retries, streaming, and the provider key that never reaches the box.

The model here is `FakeOpenAI`, a scripted OpenAI-compatible server, so each step of the
harness protocol is exact; runs against a real local model are in test_local_runs.py.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from core.embedded_redis import EmbeddedRedis
from tests.conftest import ECHO_AGENT, Gateway, gateway_settings, running_gateway
from tests.fakes import FakeOpenAI, text_reply, tool_reply

KEY = "sk-test-4b1d0e5f9a8c7e6d5c4b3a29"


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI()
    yield fake
    fake.close()


@pytest.fixture
async def gw(tmp_path: Path, redis: Redis, redis_server: EmbeddedRedis,
             fake_openai: FakeOpenAI) -> AsyncIterator[Gateway]:
    settings = gateway_settings(tmp_path / "gw", redis_server.url, run_worker=False,
                                agent_command=ECHO_AGENT, openai_api_key=KEY,
                                openai_url=fake_openai.url)
    async with running_gateway(settings) as gateway:
        yield gateway


async def _box(gw: Gateway, **extra: Any) -> str:
    r = await gw.client.post("/v1/boxes", headers=gw.operator, json={
        "agent": {"harness": "burrow", "model": "openai/gpt-test"}, **extra})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


@pytest.mark.boxes
async def test_run_writes_a_file_through_its_tools_and_returns_the_final_answer(
        gw: Gateway, fake_openai: FakeOpenAI) -> None:
    fake_openai.script = [tool_reply("write_file", path="notes/hello.txt", content="hi there"),
                          tool_reply("shell", command="wc -c < notes/hello.txt"),
                          text_reply("I wrote notes/hello.txt.")]
    box = await _box(gw)
    r = await gw.client.post(f"/v1/boxes/{box}/agent/runs", headers=gw.operator,
                             json={"prompt": "write hi there to notes/hello.txt"})
    assert r.status_code == 200, r.text
    run = r.json()
    assert run["status"] == "completed", run
    assert run["result"] == "I wrote notes/hello.txt."
    assert run["usage"]["turns"] == 3 and run["usage"]["tool_calls"] == 2
    assert run["usage"]["input_tokens"] == 33 and run["usage"]["output_tokens"] == 21
    f = await gw.client.get(f"/v1/boxes/{box}/files", params={"path": "/workspace/notes/hello.txt"},
                            headers=gw.operator)
    assert f.content == b"hi there"
    # The model saw each tool's result, and got the key on the host side only.
    tool_messages = [m for m in fake_openai.requests[2]["messages"] if m["role"] == "tool"]
    assert "wrote 8 bytes" in tool_messages[0]["content"]
    assert tool_messages[1]["content"].startswith("exit code 0\n8")
    assert fake_openai.headers[0]["authorization"] == f"Bearer {KEY}"
    assert fake_openai.requests[0]["model"] == "gpt-test"
    listed = (await gw.client.get(f"/v1/boxes/{box}/agent/runs", headers=gw.operator)).json()
    assert [x["id"] for x in listed] == [run["id"]]
    one = await gw.client.get(f"/v1/boxes/{box}/agent/runs/{run['id']}", headers=gw.operator)
    assert one.json()["status"] == "completed"


@pytest.mark.boxes
async def test_response_schema_is_retried_until_the_result_matches(
        gw: Gateway, fake_openai: FakeOpenAI) -> None:
    fake_openai.script = [text_reply("There are three."), text_reply('{"count": "three"}'),
                          text_reply('```json\n{"count": 3, "names": ["a", "b", "c"]}\n```')]
    schema = {"type": "object", "properties": {
        "count": {"type": "integer"}, "names": {"type": "array", "items": {"type": "string"}}},
        "required": ["count"]}
    box = await _box(gw)
    r = await gw.client.post(f"/v1/boxes/{box}/agent/runs", headers=gw.operator,
                             json={"prompt": "count them", "response_schema": schema})
    run = r.json()
    assert run["status"] == "completed", run
    assert run["result"] == {"count": 3, "names": ["a", "b", "c"]}
    retry = fake_openai.requests[2]["messages"][-1]["content"]
    assert "$.count: expected integer" in retry
    assert fake_openai.requests[1]["response_format"]["json_schema"]["schema"] == schema


@pytest.mark.boxes
async def test_a_result_that_never_matches_fails_the_run_with_the_reason(
        gw: Gateway, fake_openai: FakeOpenAI) -> None:
    fake_openai.script = [text_reply("done"), *[text_reply('{"wrong": true}')] * 3]
    box = await _box(gw)
    r = await gw.client.post(f"/v1/boxes/{box}/agent/runs", headers=gw.operator, json={
        "prompt": "x", "response_schema": {"type": "object", "required": ["count"]}})
    run = r.json()
    assert run["status"] == "failed"
    assert "did not match response_schema after 3 attempts" in run["error"]
    assert "'count' is required" in run["error"]


@pytest.mark.boxes
async def test_stream_sends_each_step_as_it_happens_and_finishes_with_the_run(
        gw: Gateway, fake_openai: FakeOpenAI) -> None:
    fake_openai.script = [tool_reply("read_file", path="missing.txt"), text_reply("No such file.")]
    box = await _box(gw)
    chunks = []
    async with gw.client.stream("POST", f"/v1/boxes/{box}/agent/runs/stream",
                                headers=gw.operator, json={"prompt": "read missing.txt"}) as r:
        assert r.headers["content-type"].startswith("application/x-ndjson")
        async for line in r.aiter_lines():
            chunks.append(json.loads(line))
    assert [c["type"] for c in chunks] == ["start", "tool_call", "tool_result", "text", "finish"]
    assert chunks[1] == {"type": "tool_call", "name": "read_file", "input": {"path": "missing.txt"}}
    assert chunks[2]["is_error"] and "No such file" in chunks[2]["output"]
    assert chunks[-1]["run"]["id"] == chunks[0]["run_id"]
    assert chunks[-1]["run"]["status"] == "completed"


@pytest.mark.boxes
async def test_a_run_stops_at_its_timeout(gw: Gateway, fake_openai: FakeOpenAI) -> None:
    fake_openai.delay_s = 3.0
    box = await _box(gw)
    r = await gw.client.post(f"/v1/boxes/{box}/agent/runs", headers=gw.operator,
                             json={"prompt": "slow", "timeout_s": 1})
    run = r.json()
    assert run["status"] == "timed_out", run
    assert run["usage"]["duration_ms"] < 3000


@pytest.mark.boxes
async def test_the_turn_limit_ends_a_run_that_never_answers(
        gw: Gateway, fake_openai: FakeOpenAI) -> None:
    fake_openai.script = [tool_reply("list_dir")] * 3
    box = await _box(gw)
    run = (await gw.client.post(f"/v1/boxes/{box}/agent/runs", headers=gw.operator,
                                json={"prompt": "loop", "max_turns": 2})).json()
    assert run["status"] == "failed"
    assert "no final answer after 2 turns" in run["error"]


@pytest.mark.boxes
async def test_a_repeated_tool_call_asks_for_the_answer_instead_of_looping(
        gw: Gateway, fake_openai: FakeOpenAI) -> None:
    fake_openai.script = [tool_reply("list_dir", path="."), tool_reply("list_dir", path="."),
                          text_reply("The folder holds only dotfiles.")]
    box = await _box(gw)
    run = (await gw.client.post(f"/v1/boxes/{box}/agent/runs", headers=gw.operator,
                                json={"prompt": "what is here?", "max_turns": 5})).json()
    assert run["status"] == "completed", run
    assert run["result"] == "The folder holds only dotfiles."
    assert run["usage"]["tool_calls"] == 1 and run["usage"]["turns"] == 3
    assert "tools" not in fake_openai.requests[2]  # the answer is asked for without tools


@pytest.mark.boxes
async def test_the_box_never_sees_the_provider_key(gw: Gateway, fake_openai: FakeOpenAI) -> None:
    dump = "env > /workspace/env.txt; cat /proc/*/environ > /workspace/environ.bin; true"
    fake_openai.script = [tool_reply("shell", command=dump), text_reply("saved")]
    box = await _box(gw, env={"VISIBLE": "yes"})
    run = (await gw.client.post(f"/v1/boxes/{box}/agent/runs", headers=gw.operator,
                                json={"prompt": "dump env"})).json()
    assert run["status"] == "completed", run
    env = await gw.client.get(f"/v1/boxes/{box}/files", params={"path": "/workspace/env.txt"},
                              headers=gw.operator)
    assert b"VISIBLE=yes" in env.content and b"BURROW_BOX_TOKEN" in env.content
    found = await gw.client.post(f"/v1/boxes/{box}/exec", headers=gw.operator, json={
        "command": f"grep -rlF '{KEY}' /workspace /tmp /opt /proc/*/environ 2>/dev/null; true"})
    assert found.json()["stdout"] == ""
    layer = gw.core.manager.config.data_dir
    leaks = [p for p in layer.rglob("*") if p.is_file() and KEY.encode() in _read(p)]
    assert leaks == [], f"the provider key was written under the data dir: {leaks}"


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""


@pytest.mark.boxes
async def test_runs_refuse_what_cannot_start_with_a_reason(
        gw: Gateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BURROW_HARNESS_DIR", str(tmp_path / "no-harnesses"))
    plain = (await gw.client.post("/v1/boxes", headers=gw.operator, json={})).json()["id"]
    r = await gw.client.post(f"/v1/boxes/{plain}/agent/runs", headers=gw.operator,
                             json={"prompt": "hi"})
    assert r.status_code == 409 and r.json()["error"]["code"] == "agent_not_configured"
    r = await gw.client.post(f"/v1/boxes/{plain}/agent/runs", headers=gw.operator,
                             json={"prompt": "hi", "model": "gpt-4"})
    assert r.status_code == 422 and "provider/name" in r.text
    r = await gw.client.post(f"/v1/boxes/{plain}/agent/runs", headers=gw.operator,
                             json={"prompt": "hi", "model": "openai/x", "harness": "claude-code"})
    assert r.status_code == 409 and r.json()["error"]["code"] == "harness_not_installed"
    assert "burrow harness install claude-code" in r.json()["error"]["message"]
    r = await gw.client.post("/v1/boxes", headers=gw.operator, json={
        "agent": {"harness": "burrow", "model": "anthropic/claude", "api_key": "sk-ant-x"}})
    assert r.status_code == 422 and "never go into a box" in r.json()["error"]["message"]
    r = await gw.client.get(f"/v1/boxes/{plain}/agent/runs/run_nope", headers=gw.operator)
    assert r.status_code == 404
    # no key for the provider on this server: refused before the harness starts, saying which
    r = await gw.client.post(f"/v1/boxes/{plain}/agent/runs", headers=gw.operator,
                             json={"prompt": "hi", "model": "anthropic/claude-sonnet-4-5"})
    assert r.status_code == 503 and "ANTHROPIC_API_KEY" in r.json()["error"]["message"]
    assert (await gw.client.get(f"/v1/boxes/{plain}/agent/runs", headers=gw.operator)).json() \
        == []
