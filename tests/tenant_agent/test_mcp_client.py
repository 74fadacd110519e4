"""The built-in harness's MCP client (tenant_agent/runs/mcp.py) against a real MCP server
process (tests/mcp_server.py), honest and hostile, over stdio and streamable HTTP: the tools
listed under their prefixed names, calls answered, and a server that never answers, floods,
sends too much, sends what is not JSON-RPC or falls over failing its own call in bounded time
with the reason — never the run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tenant_agent.runs.mcp import MAX_NAME, McpTools, tool_name

SERVER = Path(__file__).resolve().parents[1] / "mcp_server.py"


def stdio(mode: str = "good", **extra: Any) -> dict[str, Any]:
    return {"command": sys.executable, "args": [str(SERVER), mode], **extra}


class Opened:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.all: list[McpTools] = []

    def start(self, servers: dict[str, dict[str, Any]], seconds: float = 20) -> McpTools:
        found = McpTools(servers, str(self.workdir))
        self.all.append(found)
        found.start(time.monotonic() + seconds)
        return found


@pytest.fixture
def opened(tmp_path: Path) -> Iterator[Opened]:
    each = Opened(tmp_path)
    yield each
    for found in each.all:
        found.close()


def _call(found: McpTools, name: str, **args: Any) -> tuple[str, bool]:
    return found.call(name, args, time.monotonic() + 30)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] != "Z"


def test_a_stdio_servers_tools_are_listed_prefixed_and_called(opened: Opened) -> None:
    found = opened.start({"calc": stdio("shadow")})
    names = [d["function"]["name"] for d in found.definitions]
    assert names == ["mcp__calc__add", "mcp__calc__whoami", "mcp__calc__shell"]
    add = found.definitions[0]["function"]
    assert add["description"] == "[MCP server calc] Add two integers."
    assert add["parameters"]["required"] == ["a", "b"]
    assert _call(found, "mcp__calc__add", a=2, b=40) == ("42", False)
    # the server's own tool named shell is its own, under its prefix: never the harness's
    assert not found.owns("shell")
    assert _call(found, "mcp__calc__shell") == ("the server's shell", False)


def test_a_stdio_server_gets_the_runs_env_without_the_box_token_and_its_own(
        opened: Opened, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BURROW_BOX_TOKEN", "box-token-secret")
    monkeypatch.setenv("BURROW_HOST_SOCKET", "/run/burrow/host.sock")
    monkeypatch.setenv("VISIBLE", "yes")
    (opened.workdir / "sub").mkdir()
    found = opened.start({"calc": stdio(env={"MCP_OWN": "tenant-value"}, cwd="sub")})
    text, is_error = _call(found, "mcp__calc__whoami")
    seen = json.loads(text)
    assert not is_error and seen["cwd"] == str(opened.workdir / "sub")
    assert seen["env"]["MCP_OWN"] == "tenant-value" and seen["env"]["VISIBLE"] == "yes"
    assert "BURROW_BOX_TOKEN" not in seen["env"] and "BURROW_HOST_SOCKET" not in seen["env"]


def test_a_server_that_never_answers_a_call_fails_it_at_its_timeout(opened: Opened) -> None:
    found = opened.start({"slow": stdio("silent", timeout_s=1)})
    started = time.monotonic()
    text, is_error = _call(found, "mcp__slow__add", a=1, b=2)
    assert is_error and "no answer to tools/call within 1 s" in text
    assert time.monotonic() - started < 3
    # the run's own deadline bounds a call too, whatever the server's timeout says
    found = opened.start({"slow": stdio("silent", timeout_s=600)})
    started = time.monotonic()
    text, is_error = found.call("mcp__slow__add", {"a": 1, "b": 2}, time.monotonic() + 1)
    assert is_error and time.monotonic() - started < 3


def test_a_server_that_never_initializes_is_reported_and_offers_nothing(opened: Opened) -> None:
    found = McpTools({"mute": stdio("mute"), "calc": stdio()}, str(opened.workdir))
    opened.all.append(found)
    started = time.monotonic()
    failed = found.start(time.monotonic() + 2)  # the run has 2 s left
    assert time.monotonic() - started < 5
    assert [(s.name, s.error) for s in failed] == [("mute", "no answer to initialize within 2 s")]
    assert [d["function"]["name"] for d in found.definitions] == ["mcp__calc__add",
                                                                    "mcp__calc__whoami"]
    server = failed[0]
    assert server.transport is None  # stopped


def test_a_message_over_the_bound_stops_the_server_and_fails_the_call(opened: Opened) -> None:
    found = opened.start({"huge": stdio("huge")})
    pid = found.servers[0].transport.proc.pid  # type: ignore[union-attr]
    text, is_error = _call(found, "mcp__huge__add", a=1, b=2)
    assert is_error and "a message over 1048576 bytes; it was stopped" in text
    assert not _alive(pid)
    text, is_error = _call(found, "mcp__huge__add", a=1, b=2)  # and stays failed
    assert is_error and "over 1048576 bytes" in text


def test_a_long_text_is_passed_whole_for_the_harness_to_clip(opened: Opened) -> None:
    found = opened.start({"big": stdio("big")})
    text, is_error = _call(found, "mcp__big__add", a=1, b=2)
    assert not is_error and text == "y" * 300_000


def test_lines_that_are_not_json_rpc_are_skipped_and_a_bad_result_fails_the_call(
        opened: Opened) -> None:
    found = opened.start({"junk": stdio("junk")})
    text, is_error = _call(found, "mcp__junk__add", a=1, b=2)
    assert is_error and "not JSON-RPC (no result object)" in text


def test_a_server_that_exits_fails_the_call_with_its_code_and_stderr(opened: Opened) -> None:
    found = opened.start({"crash": stdio("crash")})
    text, is_error = _call(found, "mcp__crash__add", a=1, b=2)
    assert is_error and "exited with code 3: boom: the test server fell over" in text


def test_a_flood_of_notifications_and_stderr_is_read_past(opened: Opened) -> None:
    found = opened.start({"flood": stdio("flood")})
    assert _call(found, "mcp__flood__add", a=20, b=22) == ("42", False)


def test_a_command_that_is_not_there_is_reported(opened: Opened) -> None:
    found = McpTools({"gone": {"command": "/nonexistent/mcp-server"}}, str(opened.workdir))
    opened.all.append(found)
    failed = found.start(time.monotonic() + 5)
    assert failed[0].error is not None
    assert "cannot start '/nonexistent/mcp-server'" in failed[0].error
    assert "No such file or directory" in failed[0].error


def test_the_server_and_what_it_started_end_with_the_run(opened: Opened) -> None:
    found = opened.start({"spawn": stdio("spawn")})
    pid = found.servers[0].transport.proc.pid  # type: ignore[union-attr]
    child = int((opened.workdir / "child.pid").read_text())  # left the server's process group
    assert _alive(pid) and _alive(child)
    found.close()
    assert not _alive(pid) and not _alive(child)


def test_tool_names_are_kept_to_what_model_apis_take() -> None:
    assert tool_name("calc", "add") == "mcp__calc__add"
    assert tool_name("calc", "files.read/all") == "mcp__calc__files_read_all"
    long = tool_name("s" * 32, "t" * 100)
    assert len(long) == MAX_NAME and long != tool_name("s" * 32, "t" * 99 + "u")


@pytest.fixture
def http_server() -> Iterator[Any]:
    def start(mode: str = "good") -> str:
        proc = subprocess.Popen([sys.executable, str(SERVER), "http", "0", mode],
                                stdout=subprocess.PIPE, text=True)
        procs.append(proc)
        assert proc.stdout is not None
        port = proc.stdout.readline().split()[-1]
        return f"http://127.0.0.1:{port}/mcp"

    procs: list[subprocess.Popen[str]] = []
    yield start
    for proc in procs:
        proc.kill()
        proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()


@pytest.mark.parametrize("mode", ["good", "sse"])
def test_a_streamable_http_server_answers_in_json_or_an_event_stream(
        opened: Opened, http_server: Any, mode: str) -> None:
    found = opened.start({"web": {"url": http_server(mode), "headers": {"X-Test": "1"}}})
    assert [s.error for s in found.servers] == [None]
    assert [d["function"]["name"] for d in found.definitions] == ["mcp__web__add",
                                                                    "mcp__web__whoami"]
    assert _call(found, "mcp__web__add", a=40, b=2) == ("42", False)
    assert found.servers[0].transport.session == "session-1"  # type: ignore[union-attr]


def test_a_url_nobody_answers_is_reported_with_what_the_box_may_reach(opened: Opened) -> None:
    found = McpTools({"web": {"url": "http://127.0.0.1:9/mcp"}}, str(opened.workdir))
    opened.all.append(found)
    failed = found.start(time.monotonic() + 5)
    assert failed[0].error is not None
    assert failed[0].error.startswith("cannot reach 127.0.0.1:9 from this box (connection "
                                      "refused); a box reaches what its network allows")


# --- the agent CLIs' config formats (tenant_agent/runs/clis.py) ---------------------------------

def _spec(servers: dict[str, dict[str, Any]]) -> Any:
    from tenant_agent.runs.clis import RunSpec
    return RunSpec(prompt="p", model="openai/m", base_url="http://127.0.0.1:1", home="/h",
                   timeout_s=60, trim=False, mcp_servers=servers)


SERVERS = {"calc": {"command": "python3", "args": ["s.py", 'a "quoted"\nline 😀\\'],
                    "env": {"K": "v=1"}, "cwd": "tools", "timeout_s": 5},
           "web": {"url": "https://mcp.example.com/mcp?x=1",
                   "headers": {"Authorization": "Bearer t", "X-Odd.Name": "v"}}}


def test_each_cli_gets_the_servers_in_its_own_format() -> None:
    import tomllib

    from tenant_agent.runs.clis import CLIS, claude_mcp_config, codex_mcp_options

    spec = _spec(SERVERS)
    wrapped = ["/bin/sh", "-c", 'cd "$1" && shift && exec "$@"', "sh", "/workspace/tools",
               "python3", "s.py", 'a "quoted"\nline 😀\\']
    assert claude_mcp_config(spec) == {"mcpServers": {
        "calc": {"type": "stdio", "command": "/bin/sh", "args": wrapped[1:], "env": {"K": "v=1"}},
        "web": {"type": "http", "url": "https://mcp.example.com/mcp?x=1",
                "headers": {"Authorization": "Bearer t", "X-Odd.Name": "v"}}}}
    claude = CLIS["claude-code"].invocation(spec, "claude")
    assert claude.argv[claude.argv.index("--mcp-config") + 1:][:2] == [
        "/h/claude-mcp.json", "--strict-mcp-config"]
    assert "mcp__calc" in claude.argv[claude.argv.index("--allowedTools") + 1].split(",")
    assert json.loads(claude.files["claude-mcp.json"]) == claude_mcp_config(spec)
    # Codex: -c key=value, the value TOML (read back here with Python's own TOML reader)
    tables = {}
    for option in codex_mcp_options(spec):
        key, _, value = option.partition("=")
        tables[key] = tomllib.loads("v = " + value)["v"]
    assert tables == {
        "mcp_servers.calc": {"command": "python3", "args": SERVERS["calc"]["args"],
                             "env": {"K": "v=1"}, "cwd": "/workspace/tools",
                             "startup_timeout_sec": 5.0, "tool_timeout_sec": 5.0},
        "mcp_servers.web": {"url": "https://mcp.example.com/mcp?x=1",
                            "http_headers": SERVERS["web"]["headers"],
                            "startup_timeout_sec": 30.0, "tool_timeout_sec": 60.0}}
    codex = CLIS["codex"].invocation(spec, "codex").argv
    assert all(f"-c {o}" in " ".join(codex) for o in codex_mcp_options(spec))
    opencode = json.loads(CLIS["opencode"].invocation(spec, "opencode").env[
        "OPENCODE_CONFIG_CONTENT"])["mcp"]
    assert opencode == {
        "calc": {"type": "local", "enabled": True, "timeout": 5000,
                 "command": ["python3", *SERVERS["calc"]["args"]], "cwd": "/workspace/tools",
                 "environment": {"K": "v=1"}},
        "web": {"type": "remote", "enabled": True, "url": "https://mcp.example.com/mcp?x=1",
                "headers": SERVERS["web"]["headers"], "oauth": False, "timeout": 60000}}
    # without servers, nothing of it
    plain = CLIS["claude-code"].invocation(_spec({}), "claude")
    assert "--mcp-config" not in plain.argv and plain.files == {}
