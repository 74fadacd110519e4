"""Claude Code, Codex and OpenCode — the pinned releases, installed by models/relay/harnesses.py
— run by tenant_agent/runs/clirun.py as an unprivileged uid, offline (a network namespace with
loopback only), with the install directory bind-mounted read-only, against the relay: the
in-box relay, a host relay route (tests/relay_host.py) and the scripted model (tests/fakes.py)
as the provider behind it.

Each CLI creates a file through its own tool call when the script answers with one, its
stream maps to Burrow's run chunks, the provider receives the server's key while the CLI and
its tools only ever see a dummy, and a run ends — leaving no process and nothing in its temp
dir — at max_turns, at its timeout and when the model endpoint is down, saying why.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from core.settings import Settings
from models.relay import harnesses
from tenant_agent.runs.clis import DUMMY_KEY
from tests.fakes import FakeOpenAI, text_reply, tool_reply
from tests.mcp_server import SOURCE as MCP_SERVER
from tests.relay_host import RelayHost

UID = 8_765_432  # no user has it: the runs own nothing else on this machine
KEY_ANTHROPIC = "sk-ant-relay-test-0a1b2c3d4e5f60718293"
KEY_OPENAI = "sk-relay-test-openai-9f8e7d6c5b4a3928"
TOKEN = "box-token-relay-cli-tests"
RUNNER = Path(__file__).resolve().parents[2] / "tenant_agent" / "clirun.py"

pytestmark = [pytest.mark.timeout(240), pytest.mark.boxes, pytest.mark.agent_clis]


@pytest.fixture(scope="module")
def harness_dir() -> Iterator[Path]:
    """The three CLIs installed (from npm once per machine) and laid out as a box sees them."""
    root = harnesses.default_root()
    base = Path(tempfile.mkdtemp(prefix="burrow-harness-links-"))
    os.chmod(base, 0o755)
    for name in harnesses.HARNESSES:
        found = harnesses.install(name, root)
        (base / name).symlink_to(found.path)
    yield base
    shutil.rmtree(base)


@dataclass
class Sandbox:
    root: Path
    workdir: Path
    tmp: Path
    socket: Path
    fake: FakeOpenAI = field(default_factory=FakeOpenAI)


def _processes_of(uid: int) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        try:
            if name.isdigit() and os.stat(f"/proc/{name}").st_uid == uid:
                found.append(int(name))
        except OSError:
            continue
    return found


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    root = Path(tempfile.mkdtemp(prefix="burrow-relay-cli-"))
    os.chmod(root, 0o755)
    box = Sandbox(root, root / "workspace", root / "tmp", root / "run" / "host.sock")
    for directory in (box.workdir, box.tmp):
        directory.mkdir()
        os.chown(directory, UID, UID)
    box.socket.parent.mkdir()
    os.chmod(box.socket.parent, 0o755)
    yield box
    box.fake.close()
    left = _processes_of(UID)
    for pid in left:
        os.kill(pid, 9)
    shutil.rmtree(root)
    strays = [p for p in Path("/tmp").iterdir() if _owner(p) == UID]  # TMPDIR not honoured?
    for path in strays:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    assert left == [], f"processes of the run's uid were left running: {left}"
    assert strays == [], f"the run left files in /tmp: {strays}"


def _owner(path: Path) -> int:
    try:
        return path.lstat().st_uid
    except OSError:
        return -1


def settings(fake: FakeOpenAI) -> Settings:
    return Settings(anthropic_api_key=KEY_ANTHROPIC, anthropic_url=fake.root_url,
                    openai_api_key=KEY_OPENAI, openai_url=fake.url, local_model_url=fake.url)


@dataclass
class Outcome:
    events: list[dict[str, Any]]
    seconds: float

    @property
    def result(self) -> dict[str, Any]:
        return self.events[-1]

    def chunks(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == kind]


def run(box: Sandbox, harness_dir: Path, harness: str, model: str, *, host: bool = True,
        **job: Any) -> tuple[Outcome, RelayHost]:
    relay_host = RelayHost(box.socket, TOKEN, model, settings(box.fake))
    body = {"prompt": "create hello.txt containing hi", "model": model, "harness": harness,
            "timeout_s": 120, "workdir": str(box.workdir), **job}
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "BURROW_HOST_SOCKET": str(box.socket),
           "BURROW_BOX_TOKEN": TOKEN, "BURROW_HARNESS_DIR": str(harness_dir),
           "BURROW_RUN_ID": "run_test", "TMPDIR": str(box.tmp), "HOME": str(box.workdir),
           # a tenant's box env: its own secrets stay, provider settings give way to the relay
           "VISIBLE": "yes", "STRIPE_API_KEY": "sk_live_tenant_own",
           "ANTHROPIC_API_KEY": "tenant-set-provider-key", "OPENAI_BASE_URL": "http://x"}
    install = str(harnesses.default_root())
    # offline (loopback only), the installs read-only, as the run's own uid
    inner = (f"ip link set lo up && mount --bind -o ro {install} {install} && exec setpriv "
             f"--reuid={UID} --regid={UID} --clear-groups env -i "
             + " ".join(f"{k}={v}" for k, v in env.items())
             + f" /usr/bin/python3 -I -S {RUNNER}")
    started = time.monotonic()
    if host:
        relay_host.__enter__()
    try:
        done = subprocess.run(["unshare", "--net", "--mount", "--propagation", "private",
                               "sh", "-c", inner], input=json.dumps(body), text=True,
                              capture_output=True, cwd=box.workdir, timeout=200)
    finally:
        if host:
            relay_host.__exit__(None, None, None)
    seconds = time.monotonic() - started
    events = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    assert events and events[-1]["type"] == "result", (done.stdout, done.stderr)
    return Outcome(events, seconds), relay_host


def reply(model: str, name: str | None = None, text: str = "", **arguments: Any,
          ) -> dict[str, Any]:
    """A scripted answer: a tool call or a final text, as the model's provider gives it (a
    local model answers in the JSON actions of models/emulation.py)."""
    if not model.startswith("local/"):
        return tool_reply(name, **arguments) if name else text_reply(text)
    action = ({"tool": name, "arguments": arguments} if name
              else {"tool": "final_answer", "text": text})
    return text_reply(json.dumps(action))


# Per CLI: its shell tool (dumping the environment its tools run in), its file tool.
SHELL = {"claude-code": ("Bash", lambda w: {"command": "env > env.txt"}),
         "codex": ("exec_command", lambda w: {"cmd": "env > env.txt"}),
         "opencode": ("bash", lambda w: {"command": "env > env.txt",
                                         "description": "Save the environment"})}
WRITE = {"claude-code": ("Write", lambda w: {"file_path": f"{w}/hello.txt", "content": "hi"}),
         "codex": ("exec_command", lambda w: {"cmd": "printf hi > hello.txt"}),
         "opencode": ("write", lambda w: {"filePath": f"{w}/hello.txt", "content": "hi"})}
# The chunk names each CLI's stream maps its tool calls to.
CHUNK_NAMES = {"claude-code": ["Bash", "Write"], "codex": ["shell", "shell"],
               "opencode": ["bash", "write"]}


@pytest.mark.parametrize(("harness", "model"), [
    ("claude-code", "anthropic/claude-test"),  # passthrough: Messages to Anthropic
    ("claude-code", "openai/gpt-test"),  # translated: Messages ⇄ chat completions
    ("codex", "openai/gpt-test"),  # passthrough: Responses to OpenAI
    ("codex", "anthropic/claude-test"),  # translated: Responses ⇄ Messages
    ("opencode", "openai/test-model"),  # passthrough: chat completions to OpenAI
    ("opencode", "local/test-model"),  # translated: local tool emulation
])
def test_each_cli_writes_a_file_through_its_own_tool_and_never_sees_the_key(
        sandbox: Sandbox, harness_dir: Path, harness: str, model: str) -> None:
    workdir = sandbox.workdir
    shell, write = SHELL[harness], WRITE[harness]
    sandbox.fake.script = [reply(model, shell[0], **shell[1](workdir)),
                           reply(model, write[0], **write[1](workdir)),
                           reply(model, text="Done.")]
    outcome, host = run(sandbox, harness_dir, harness, model)

    result = outcome.result
    assert result["status"] == "completed", result
    assert result["result"] == "Done." and result["output"] == "Done."
    assert (workdir / "hello.txt").read_text() == "hi"
    assert (workdir / "hello.txt").stat().st_uid == UID
    calls = outcome.chunks("tool_call")
    assert [c["name"] for c in calls] == CHUNK_NAMES[harness]
    assert all(not r["is_error"] for r in outcome.chunks("tool_result"))
    assert [t["text"] for t in outcome.chunks("text")] == ["Done."]
    assert result["usage"]["turns"] == 3 and result["usage"]["tool_calls"] == 2

    key = KEY_ANTHROPIC if model.startswith("anthropic/") else KEY_OPENAI
    upstream = [h.get("x-api-key") or h.get("authorization", "") for h in sandbox.fake.headers]
    if model.startswith("local/"):
        assert upstream == [""] * 3  # a local server gets no key at all
    else:
        assert len(upstream) == 3 and all(key in u for u in upstream)
    assert all(r["model"] == model.partition("/")[2] for r in sandbox.fake.requests)
    for call in host.calls:
        assert call.headers["authorization"] == f"Bearer {TOKEN}"
        assert DUMMY_KEY not in json.dumps(call.headers)
    env = (workdir / "env.txt").read_text()
    assert DUMMY_KEY in env and "VISIBLE=yes" in env and "sk_live_tenant_own" in env
    assert key not in env and TOKEN not in env and "tenant-set-provider-key" not in env
    for path in [*workdir.rglob("*"), *sandbox.tmp.rglob("*")]:
        assert not path.is_file() or key.encode() not in path.read_bytes()
    assert list(sandbox.tmp.iterdir()) == []  # the run's home is gone


@pytest.mark.parametrize("harness", ["claude-code", "codex", "opencode"])
def test_max_turns_counts_model_calls_and_stops_the_cli(
        sandbox: Sandbox, harness_dir: Path, harness: str) -> None:
    shell = SHELL[harness]
    sandbox.fake.script = [reply("openai/x", shell[0], **shell[1](sandbox.workdir))] * 6
    model = "anthropic/claude-test" if harness == "claude-code" else "openai/test-model"
    outcome, _ = run(sandbox, harness_dir, harness, model, max_turns=2)
    result = outcome.result
    assert result["status"] == "failed" and "max_turns" in result["error"], result
    assert result["usage"]["turns"] == 2 and len(sandbox.fake.requests) == 2
    assert list(sandbox.tmp.iterdir()) == []


def test_a_run_past_its_timeout_is_stopped(sandbox: Sandbox, harness_dir: Path) -> None:
    sandbox.fake.delay_s = 60  # a model that never answers in time
    outcome, _ = run(sandbox, harness_dir, "codex", "openai/gpt-test", timeout_s=4)
    result = outcome.result
    assert result["status"] == "timed_out" and "timeout (4 s)" in result["error"]
    assert outcome.seconds < 15
    assert list(sandbox.tmp.iterdir()) == []


@pytest.mark.parametrize("harness", ["claude-code", "codex", "opencode"])
def test_a_dead_endpoint_fails_fast_naming_the_cause(
        sandbox: Sandbox, harness_dir: Path, harness: str) -> None:
    outcome, _ = run(sandbox, harness_dir, harness, "openai/gpt-test", host=False,
                     timeout_s=120)
    result = outcome.result
    assert result["status"] == "failed", result
    assert "host services socket did not answer" in result["error"], result
    assert outcome.seconds < 30


@pytest.mark.parametrize("harness", ["claude-code", "codex", "opencode"])
def test_a_structured_result_is_asked_again_in_the_same_session(
        sandbox: Sandbox, harness_dir: Path, harness: str) -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "integer"}},
              "required": ["answer"]}
    sandbox.fake.script = [text_reply("The answer is 42."), text_reply('{"answer": 42}')]
    model = "anthropic/claude-test" if harness == "claude-code" else "openai/test-model"
    outcome, _ = run(sandbox, harness_dir, harness, model, response_schema=schema,
                     prompt="What is six times seven?")
    result = outcome.result
    assert result["status"] == "completed" and result["result"] == {"answer": 42}, result
    again = json.dumps(sandbox.fake.requests[-1])
    assert "That is not valid" in again
    assert "six times seven" in again and "The answer is 42." in again  # the same session
    assert result["usage"]["turns"] == 2


# The name each CLI gives an MCP server's tool (the model calls it by this name).
MCP_TOOL = {"claude-code": "mcp__calc__add", "opencode": "calc_add"}


def _mcp_run(sandbox: Sandbox, harness_dir: Path, harness: str, model: str) -> Outcome:
    server = sandbox.workdir / "mcp_server.py"
    server.write_text(MCP_SERVER)
    outcome, _ = run(sandbox, harness_dir, harness, model, mcp_servers={
        "calc": {"command": "/usr/bin/python3", "args": [str(server)],
                 "env": {"MCP_OWN": "tenant-value"}}})
    return outcome


@pytest.mark.parametrize(("harness", "model"), [
    ("claude-code", "anthropic/claude-test"), ("opencode", "openai/test-model")])
def test_each_cli_calls_a_stdio_mcp_server_from_its_own_config(
        sandbox: Sandbox, harness_dir: Path, harness: str, model: str) -> None:
    sandbox.fake.script = [reply(model, MCP_TOOL[harness], a=20, b=22),
                           reply(model, MCP_TOOL[harness].replace("add", "whoami")),
                           reply(model, text="It is 42.")]
    outcome = _mcp_run(sandbox, harness_dir, harness, model)
    result = outcome.result
    assert result["status"] == "completed" and result["result"] == "It is 42.", result
    assert [(c["name"], c["output"][:2]) for c in outcome.chunks("tool_result")] == [
        (MCP_TOOL[harness], "42"), (MCP_TOOL[harness].replace("add", "whoami"), '{"')]
    # the server's answers reached the model: 42, then the environment it ran in
    added, env = (json.dumps(r.get("messages")) for r in sandbox.fake.requests[1:3])
    assert "42" in added and "MCP_OWN" in env and "tenant-value" in env
    assert TOKEN not in env and KEY_ANTHROPIC not in env and KEY_OPENAI not in env
    assert result["usage"]["tool_calls"] == 2


def test_codex_starts_a_stdio_mcp_server_from_its_config_and_offers_its_tools(
        sandbox: Sandbox, harness_dir: Path) -> None:
    """Codex offers an MCP server's tools as a Responses API namespace (`mcp__calc`, tool
    `add`), which the scripted model here does not call back in; the server was started
    from the run's config, in the run, and listed."""
    sandbox.fake.script = [reply("openai/gpt-test", text="Done.")]
    outcome = _mcp_run(sandbox, harness_dir, "codex", "openai/gpt-test")
    assert outcome.result["status"] == "completed", outcome.result
    spaces = {t["name"]: [f["name"] for f in t.get("tools", [])]
              for t in sandbox.fake.requests[0]["tools"] if t.get("type") == "namespace"}
    assert spaces.get("mcp__calc") == ["add", "whoami"], spaces
