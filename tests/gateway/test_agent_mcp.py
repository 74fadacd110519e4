"""MCP servers for agent runs with the built-in harness, in real boxes: a stdio server the run
starts inside the box (tests/mcp_server.py, written into it), its tool called by the scripted
model and the result in the model's next request; servers set on the box and on the run;
hostile servers that shadow, stall or flood; URL servers reached from the box's own network —
its loopback, never the host's addresses or a metadata IP, which the host never reaches for it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from boxes.egress import host_addresses
from tests.conftest import Gateway
from tests.fakes import FakeOpenAI, text_reply, tool_reply
from tests.gateway.test_agent_runs import KEY, fake_openai, gw
from tests.mcp_server import SOURCE

SERVER_PATH = "/workspace/mcp_server.py"

pytestmark = pytest.mark.boxes
__all__ = ["fake_openai", "gw"]  # the fixtures, shared with the runs' tests


def stdio(*args: str, **extra: Any) -> dict[str, Any]:
    return {"command": "python3", "args": [SERVER_PATH, *args], **extra}


async def _box(gw: Gateway, mcp_servers: dict[str, Any] | None = None, **extra: Any) -> str:
    agent: dict[str, Any] = {"harness": "burrow", "model": "openai/gpt-test"}
    if mcp_servers is not None:
        agent["mcp_servers"] = mcp_servers
    r = await gw.client.post("/v1/boxes", headers=gw.operator, json={"agent": agent, **extra})
    assert r.status_code == 201, r.text
    box = str(r.json()["id"])
    w = await gw.client.put(f"/v1/boxes/{box}/files", params={"path": SERVER_PATH},
                            content=SOURCE.encode(), headers=gw.operator)
    assert w.status_code < 300, w.text
    return box


async def _stream(gw: Gateway, box: str, **body: Any) -> list[dict[str, Any]]:
    chunks = []
    async with gw.client.stream("POST", f"/v1/boxes/{box}/agent/runs/stream",
                                headers=gw.operator, json={"prompt": "go", **body}) as r:
        assert r.status_code == 200, await r.aread()
        async for line in r.aiter_lines():
            chunks.append(json.loads(line))
    return chunks


def _tool_messages(request: dict[str, Any]) -> list[str]:
    return [m["content"] for m in request["messages"] if m["role"] == "tool"]


async def test_a_run_calls_a_stdio_mcp_tool_in_the_box_and_the_model_reads_its_result(
        gw: Gateway, fake_openai: FakeOpenAI) -> None:
    fake_openai.script = [tool_reply("mcp__calc__add", a=2, b=40),
                          tool_reply("mcp__calc__whoami"), text_reply("It is 42.")]
    box = await _box(gw, {"calc": stdio(env={"MCP_OWN": "tenant-value"})}, env={"BOXED": "1"})
    chunks = await _stream(gw, box)
    run = chunks[-1]["run"]
    assert run["status"] == "completed" and run["result"] == "It is 42.", run
    assert run["usage"]["tool_calls"] == 2
    offered = [t["function"]["name"] for t in fake_openai.requests[0]["tools"]]
    assert offered == ["shell", "write_file", "read_file", "list_dir", "mcp__calc__add",
                       "mcp__calc__whoami"]
    assert _tool_messages(fake_openai.requests[1]) == ["42"]
    assert [(c["type"], c.get("name")) for c in chunks[1:5]] == [
        ("tool_call", "mcp__calc__add"), ("tool_result", "mcp__calc__add"),
        ("tool_call", "mcp__calc__whoami"), ("tool_result", "mcp__calc__whoami")]
    # the server ran in the box, in /workspace, with the box's env and its own, no box token
    seen = json.loads(_tool_messages(fake_openai.requests[2])[1])
    assert seen["cwd"] == "/workspace"
    assert seen["env"]["MCP_OWN"] == "tenant-value" and seen["env"]["BOXED"] == "1"
    assert "BURROW_BOX_TOKEN" not in seen["env"] and KEY not in json.dumps(seen)
    # nothing of the run is left running in the box
    ps = await gw.client.post(f"/v1/boxes/{box}/exec", headers=gw.operator,
                              json={"command": "ps -eo args | grep -c '[m]cp_server' || true"})
    assert ps.json()["stdout"].strip() == "0"
    # the box's listing shows the servers without their env values
    shown = (await gw.client.get(f"/v1/boxes/{box}", headers=gw.operator)).json()
    assert shown["agent"]["mcp_servers"]["calc"]["env"] == {"MCP_OWN": "***"}
    assert shown["agent"]["mcp_servers"]["calc"]["args"] == [SERVER_PATH]


async def test_a_runs_servers_join_the_boxs_and_hostile_ones_cannot_stall_or_shadow(
        gw: Gateway, fake_openai: FakeOpenAI) -> None:
    fake_openai.script = [tool_reply("shell", command="echo the harness shell"),
                          tool_reply("mcp__evil__shell", command="rm -rf /workspace"),
                          tool_reply("mcp__slow__add", a=1, b=2),
                          tool_reply("mcp__huge__add", a=1, b=2),
                          tool_reply("mcp__calc__add", a=3, b=4), text_reply("done")]
    box = await _box(gw, {"calc": stdio(), "slow": stdio("good")})
    chunks = await _stream(gw, box, max_turns=8, timeout_s=120, mcp_servers={
        "evil": stdio("shadow"), "slow": stdio("silent", timeout_s=2), "huge": stdio("huge")})
    run = chunks[-1]["run"]
    assert run["status"] == "completed", run
    results = _tool_messages(fake_openai.requests[5])
    assert results[0] == "exit code 0\nthe harness shell\n"  # the harness's own shell
    assert results[1] == "the server's shell"  # the server's, under its prefix
    assert results[2] == "error: MCP server 'slow': no answer to tools/call within 2 s"
    assert results[3] == ("error: MCP server 'huge': the server sent a message over 1048576 "
                          "bytes; it was stopped")
    assert results[4] == "7"
    names = {t["function"]["name"] for t in fake_openai.requests[0]["tools"]}
    assert {"mcp__calc__add", "mcp__evil__shell", "mcp__slow__add", "mcp__huge__add"} <= names
    assert [c["is_error"] for c in chunks if c["type"] == "tool_result"] == [
        False, False, True, True, False]


async def test_a_server_that_does_not_start_is_reported_and_the_run_goes_on(
        gw: Gateway, fake_openai: FakeOpenAI) -> None:
    fake_openai.script = [text_reply("I could not use it.")]
    box = await _box(gw)
    chunks = await _stream(gw, box, mcp_servers={
        "gone": {"command": "/workspace/no-such-server"}, "mute": stdio("mute", timeout_s=1)},
        timeout_s=8)
    run = chunks[-1]["run"]
    assert run["status"] == "completed", run
    failed = [c for c in chunks if c["type"] == "tool_result"]
    assert [c["name"] for c in failed] == ["mcp__gone", "mcp__mute"]
    assert "cannot start '/workspace/no-such-server'" in failed[0]["output"]
    assert "no answer to initialize" in failed[1]["output"]
    system = fake_openai.requests[0]["messages"][0]["content"]
    assert "These MCP servers are unavailable: gone (cannot start" in system


async def test_a_url_server_on_the_boxs_own_loopback_is_reached(
        gw: Gateway, fake_openai: FakeOpenAI) -> None:
    fake_openai.script = [tool_reply("mcp__web__add", a=30, b=12), text_reply("42")]
    box = await _box(gw)
    started = await gw.client.post(f"/v1/boxes/{box}/exec", headers=gw.operator, json={
        "command": f"setsid python3 {SERVER_PATH} http 8765 sse > /tmp/web.log 2>&1 & "
                   "for i in $(seq 50); do grep -q listening /tmp/web.log && break; "
                   "sleep 0.1; done; cat /tmp/web.log"})
    assert "listening on 8765" in started.json()["stdout"], started.json()
    chunks = await _stream(gw, box, mcp_servers={
        "web": {"url": "http://127.0.0.1:8765/mcp", "headers": {"Authorization": "Bearer t"}}})
    assert chunks[-1]["run"]["status"] == "completed", chunks[-1]
    assert _tool_messages(fake_openai.requests[1]) == ["42"]


class HostMcp:
    """An MCP server on every address of the host, counting the requests it gets."""

    def __init__(self) -> None:
        self.requests = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                outer.requests += 1
                self.send_response(500)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("0.0.0.0", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def host_mcp() -> Iterator[HostMcp]:
    server = HostMcp()
    yield server
    server.close()


@pytest.mark.parametrize("network", ["none", "egress"])
async def test_a_url_the_boxs_network_forbids_fails_clearly_and_the_host_never_reaches_it(
        gw: Gateway, fake_openai: FakeOpenAI, host_mcp: HostMcp, network: str) -> None:
    port = host_mcp.port
    targets = {"loopback": f"http://127.0.0.1:{port}/mcp",  # the box's own: nothing there
               "gateway": f"http://10.0.2.2:{port}/mcp",  # slirp's way to the host
               "metadata": "http://169.254.169.254/latest/meta-data"}
    targets.update({f"host{i}": f"http://{address}:{port}/mcp"
                    for i, address in enumerate(host_addresses()[:3])})
    fake_openai.script = [text_reply("none of them answered")]
    box = await _box(gw, network=network)
    chunks = await _stream(gw, box, timeout_s=60, mcp_servers={
        name: {"url": url, "timeout_s": 5} for name, url in targets.items()})
    assert chunks[-1]["run"]["status"] == "completed", chunks[-1]
    failed = {c["name"]: c["output"] for c in chunks if c["type"] == "tool_result"}
    assert set(failed) == {f"mcp__{name}" for name in targets}
    for name, output in failed.items():
        assert "from this box" in output and "a box reaches what its network allows" in output, (
            name, output)
    assert host_mcp.requests == 0


async def test_bad_mcp_servers_are_refused_with_what_to_do(gw: Gateway) -> None:
    base = {"harness": "burrow", "model": "openai/gpt-test"}
    cases = [
        ({"Bad Name": stdio()}, "1 to 32 of a-z, 0-9, _ and -"),
        ({"x" * 33: stdio()}, "1 to 32 of a-z"),
        ({"a": {"command": "python3", "url": "http://x/"}}, "one of the two"),
        ({"a": {}}, "one of the two"),
        ({"a": {"command": "python3", "args": "server.py --flag"}}, "valid list"),
        ({"a": {"command": "python3", "args": [1]}}, "valid string"),
        ({"a": {"command": "python3", "env": {"K": 1}}}, "valid string"),
        ({"a": {"command": "python3", "env": {"1K": "v"}}}, "not a variable name"),
        ({"a": {"url": "file:///etc/passwd"}}, "http(s)://host"),
        ({"a": {"url": "http://user:pw@example.com/"}}, "put credentials in headers"),
        ({"a": {"url": "http://example.com/", "headers": {"X": "a\r\nHost: b"}}},
         "line breaks"),
        ({"a": {"url": "http://example.com/", "env": {"K": "v"}}}, "a url server takes headers"),
        ({f"s{i}": stdio() for i in range(17)}, "at most 16"),
        ({"a": {"command": "x", "args": ["y" * 4000] * 9}}, "at most 32768"),
    ]
    for servers, expected in cases:
        r = await gw.client.post("/v1/boxes", headers=gw.operator,
                                 json={"agent": {**base, "mcp_servers": servers}})
        assert r.status_code == 422 and expected in r.json()["error"]["message"], (servers,
                                                                                   r.text)
    # the run's servers are checked alone and with the box's
    box = await _box(gw, {f"s{i}": stdio() for i in range(10)})
    r = await gw.client.post(f"/v1/boxes/{box}/agent/runs", headers=gw.operator, json={
        "prompt": "x", "mcp_servers": {"Nope": stdio()}})
    assert r.status_code == 422 and "1 to 32 of a-z" in r.json()["error"]["message"]
    r = await gw.client.post(f"/v1/boxes/{box}/agent/runs", headers=gw.operator, json={
        "prompt": "x", "mcp_servers": {f"t{i}": stdio() for i in range(7)}})
    assert r.status_code == 422, r.text
    assert "the box's and the run's together: 17 MCP servers; at most 16" in r.json()[
        "error"]["message"]
    assert (await gw.client.get(f"/v1/boxes/{box}/agent/runs", headers=gw.operator)).json() \
        == []
