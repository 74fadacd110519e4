"""The `burrow` command as a user runs it: the installed binary, against one real
`burrow serve` for the module, over real HTTP."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from burrow.cli import main
from burrow.cli.plugins import SERVER_COMMANDS
from tests.fakes import FakeOpenAI, text_reply, tool_reply
from tests.served import Served, free_port, stop_and_check

BURROW = str(Path(sys.executable).parent / "burrow")


@pytest.fixture(scope="module")
def model() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI()
    yield fake
    fake.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, model: FakeOpenAI) -> Iterator[Served]:
    served = Served(tmp_path_factory.mktemp("cli") / "data", env={
        "OPENAI_API_KEY": "sk-cli-test-0123456789abcdef", "BURROW_OPENAI_URL": model.url,
    }).start()
    yield served
    stop_and_check(served)


def env_for(server: Served, key: str | None = None) -> dict[str, str]:
    return {**os.environ, "BURROW_URL": server.url,
            "BURROW_API_KEY": key or server.operator["Authorization"].split()[1]}


def run(server: Served, *args: str, key: str | None = None,
        stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([BURROW, *args], env=env_for(server, key), capture_output=True,
                          text=True, timeout=120, input=stdin)


def ok(server: Served, *args: str, key: str | None = None, stdin: str | None = None) -> str:
    done = run(server, *args, key=key, stdin=stdin)
    assert done.returncode == 0, done.stderr
    assert done.stderr == "", "nothing on stderr when it is not a terminal"
    return done.stdout


def as_json(server: Served, *args: str) -> object:
    return json.loads(ok(server, *args, "--json"))


def one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode != 0, done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert "Traceback" not in done.stderr
    return lines[0]


@pytest.fixture(scope="module")
def box_id(server: Served) -> str:
    box = as_json(server, "box", "create", "--name", "cli", "--label", "team=cli",
                  "--env", "GREETING=hello")
    assert isinstance(box, dict) and box["state"] == "running" and box["name"] == "cli"
    return str(box["id"])


def commands() -> Iterator[tuple[list[str], click.Command]]:
    """The client's commands (the server's come from its own distribution: tests/
    test_packaging.py checks them, and what they say where it is not installed)."""
    def walk(path: list[str], command: click.Command) -> Iterator[tuple[list[str], click.Command]]:
        yield path, command
        if isinstance(command, click.Group):
            ctx = click.Context(command)
            for name in command.list_commands(ctx):
                if not path and name in SERVER_COMMANDS:
                    continue
                sub = command.get_command(ctx, name)
                if sub is not None:
                    yield from walk([*path, name], sub)
    yield from walk([], main)


def test_every_command_has_help_that_names_each_of_its_options() -> None:
    found = list(commands())
    assert {" ".join(p) for p, _ in found} >= {
        "tenant create", "tenant ls", "tenant rm", "box create", "box ls", "box get",
        "box exec", "box cp", "box pause", "box resume", "box freeze", "box wake",
        "box snapshot", "box rm", "box run", "box start", "box ps", "box logs", "box kill",
        "kb search", "kb vote", "policy show",
        "stats", "memory ls", "memory get", "memory recall", "memory add", "memory rm",
        "memory clear", "memory export", "memory import"}
    runner = CliRunner()
    for path, command in found:
        shown = runner.invoke(main, [*path, "--help"], prog_name="burrow")
        assert shown.exit_code == 0, (path, shown.output)
        assert command.get_short_help_str(80).strip(), f"{path} has no summary"
        for param in command.params:
            if isinstance(param, click.Option):
                assert param.help, f"{path} {param.opts} has no help text"
                assert param.opts[-1] in shown.output, (path, param.opts)
    # and the installed binary says the same
    for path in ([], ["box"], ["box", "exec"]):
        done = subprocess.run([BURROW, *path, "--help"], capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 0 and done.stderr == "" and "Usage: burrow" in done.stdout


def test_tenant_create_ls_and_rm(server: Served) -> None:
    created = as_json(server, "tenant", "create", "cli-acme")
    assert isinstance(created, dict) and created["id"] == "cli-acme"
    assert created["api_key"] and created["home_box_id"].startswith("b_")
    human = run(server, "tenant", "create", "cli-beta")
    assert human.returncode == 0 and "cli-beta" in human.stdout
    assert "api key" in human.stdout and "shown only now" in human.stderr
    listed = as_json(server, "tenant", "ls")
    assert isinstance(listed, list)
    assert {t["id"] for t in listed} >= {"cli-acme", "cli-beta"}
    assert "cli-acme" in ok(server, "tenant", "ls")

    # the tenant's own key sees its own home box
    boxes = json.loads(ok(server, "box", "ls", "--json", key=created["api_key"]))
    assert [b["id"] for b in boxes] == [created["home_box_id"]]

    assert as_json(server, "tenant", "rm", "cli-acme") == {"deleted": ["cli-acme"]}
    assert "deleted tenant cli-beta" in ok(server, "tenant", "rm", "cli-beta")
    assert "cli-acme" not in ok(server, "tenant", "ls")
    gone = run(server, "box", "ls", key=created["api_key"])
    assert "not valid" in one_line_error(gone)


def test_box_create_ls_and_get(server: Served, box_id: str) -> None:
    listed = as_json(server, "box", "ls", "--label", "team:cli")
    assert isinstance(listed, list) and [b["id"] for b in listed] == [box_id]
    assert as_json(server, "box", "ls", "--label", "team:nobody") == []
    table = ok(server, "box", "ls", "--label", "team:cli")
    assert table.splitlines()[0].split()[:4] == ["ID", "NAME", "TENANT", "STATE"]
    assert box_id in table and "team:cli" in table
    got = as_json(server, "box", "get", box_id)
    assert isinstance(got, dict) and got["labels"] == {"team": "cli"}
    assert "running" in ok(server, "box", "get", box_id)


def test_exec_passes_the_exit_code_and_keeps_stdout_and_stderr_apart(
        server: Served, box_id: str) -> None:
    done = run(server, "box", "exec", box_id, "--", "echo $GREETING; echo oops >&2; exit 3")
    assert (done.returncode, done.stdout, done.stderr) == (3, "hello\n", "oops\n")
    argv = run(server, "box", "exec", box_id, "-e", "X=1 2", "--", "sh", "-c", 'echo "[$X]"')
    assert (argv.returncode, argv.stdout) == (0, "[1 2]\n")
    piped = run(server, "box", "exec", "--stdin", box_id, "--", "wc -c", stdin="12345")
    assert piped.stdout.strip() == "5"
    collected = run(server, "box", "exec", box_id, "--json", "--", "echo hi; exit 4")
    assert collected.returncode == 4
    result = json.loads(collected.stdout)
    assert result["stdout"] == "hi\n" and result["exit_code"] == 4 and not result["timed_out"]
    timed = run(server, "box", "exec", box_id, "--timeout", "1s", "--", "sleep 30")
    assert timed.returncode == 124 and "timed out" in one_line_error(timed)


def test_exec_streams_output_before_the_command_ends(server: Served, box_id: str) -> None:
    with subprocess.Popen([BURROW, "box", "exec", box_id, "--", "echo first; sleep 3; "
                           "echo second"], env=env_for(server), stdout=subprocess.PIPE,
                          text=True) as proc:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "first\n"
        assert proc.poll() is None, "the first line arrived only when the command ended"
        assert proc.stdout.read() == "second\n" and proc.wait(timeout=30) == 0


def test_cp_uploads_and_downloads_files_and_directories(
        server: Served, box_id: str, tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("alpha\n")
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "top.sh").write_text("echo top\n")
    (tree / "top.sh").chmod(0o755)
    (tree / "sub" / "deep.txt").write_text("deep\n")

    assert "a.txt" in ok(server, "box", "cp", str(tmp_path / "a.txt"), f"{box_id}:/workspace/")
    up = as_json(server, "box", "cp", str(tree), f"{box_id}:/workspace/tree")
    assert isinstance(up, dict) and up["direction"] == "upload" and len(up["files"]) == 2
    ok(server, "box", "cp", "-", f"{box_id}:piped.txt", stdin="from stdin\n")
    check = run(server, "box", "exec", box_id, "--", "cat a.txt piped.txt tree/sub/deep.txt && "
                "./tree/top.sh")
    assert check.stdout == "alpha\nfrom stdin\ndeep\ntop\n", check.stderr

    down = tmp_path / "down"
    down.mkdir()
    ok(server, "box", "cp", f"{box_id}:/workspace/a.txt", str(down))
    assert (down / "a.txt").read_text() == "alpha\n"
    got = as_json(server, "box", "cp", f"{box_id}:/workspace/tree", str(down / "copy"))
    assert isinstance(got, dict) and got["direction"] == "download" and got["bytes"] == 14
    assert (down / "copy" / "sub" / "deep.txt").read_text() == "deep\n"
    assert (down / "copy" / "top.sh").read_text() == "echo top\n"
    assert ok(server, "box", "cp", f"{box_id}:piped.txt", "-") == "from stdin\n"


def test_pause_resume_freeze_wake_snapshot_and_rm(server: Served, box_id: str) -> None:
    other = ok(server, "box", "create", "-q", "--runtime", "base").strip()
    ok(server, "box", "exec", other, "--", "echo kept > kept.txt")
    for action, state in (("pause", "paused"), ("resume", "running"), ("freeze", "frozen"),
                          ("wake", "running")):
        box = as_json(server, "box", action, other)
        assert isinstance(box, dict) and box["state"] == state, action
    assert f"{other} frozen" in ok(server, "box", "freeze", other)
    assert ok(server, "box", "exec", other, "--", "cat kept.txt") == "kept\n"  # woken by exec

    snap = as_json(server, "box", "snapshot", other, "base")
    assert isinstance(snap, dict) and snap["name"] == "base" and snap["box_id"] == other
    listed = as_json(server, "box", "snapshots")
    assert isinstance(listed, list) and snap["id"] in [s["id"] for s in listed]
    twin = ok(server, "box", "create", "-q", "--from-snapshot", snap["id"]).strip()
    assert ok(server, "box", "exec", twin, "--", "cat kept.txt") == "kept\n"

    assert as_json(server, "box", "rm", twin) == {"deleted": [twin]}
    assert ok(server, "box", "rm", other) == f"deleted {other}\n"
    assert other not in ok(server, "box", "ls")


def test_box_run_streams_the_agent_and_prints_a_structured_result(
        server: Served, model: FakeOpenAI, tmp_path: Path) -> None:
    agent_box = ok(server, "box", "create", "-q", "--agent-model", "openai/gpt-test").strip()
    assert "burrow openai/gpt-test" in ok(server, "box", "get", agent_box)
    model.script = [tool_reply("shell", command="echo hi > said.txt"), text_reply("it said hi")]
    done = run(server, "box", "run", agent_box, "write hi to said.txt")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "it said hi\n" and "→ shell" in done.stderr
    assert ok(server, "box", "exec", agent_box, "--", "cat said.txt") == "hi\n"

    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps({"type": "object", "required": ["count"],
                                  "properties": {"count": {"type": "integer"}}}))
    # the work, then the result
    model.script = [text_reply("There are three."), text_reply('{"count": 3}')]
    structured = run(server, "box", "run", agent_box, "count", "--schema", str(schema))
    assert structured.returncode == 0, structured.stderr
    assert json.loads(structured.stdout) == {"count": 3}  # only the result on stdout
    assert "There are three." in structured.stderr

    model.script = [text_reply("plain")]
    whole = as_json(server, "box", "run", agent_box, "say plain")
    assert isinstance(whole, dict) and whole["status"] == "completed"
    assert whole["result"] == "plain" and whole["usage"]["turns"] == 1
    assert "not a JSON file" in one_line_error(run(server, "box", "run", agent_box, "x",
                                                   "--schema", __file__))
    ok(server, "box", "rm", agent_box)


def test_kb_search(server: Served) -> None:
    found = as_json(server, "kb", "search", "how to retry a flaky call", "--limit", "3")
    assert isinstance(found, list) and len(found) <= 3
    assert ok(server, "kb", "search", "anything")
    assert as_json(server, "kb", "search", "anything", "--kind", "tip", "--kind", "fact",
                   "--since", "4102444800") == []  # 2100: nothing is that new
    voter = json.loads(ok(server, "tenant", "create", "cli-voter", "--json"))
    assert "no insight" in one_line_error(run(
        server, "kb", "vote", "00000000-0000-4000-8000-000000000000", "--helpful",
        key=voter["api_key"]))
    assert "tenant key" in one_line_error(run(
        server, "kb", "vote", "00000000-0000-4000-8000-000000000000", "--unhelpful"))
    assert run(server, "kb", "vote", "some-id").returncode == 2  # --helpful or --unhelpful


def test_failures_are_one_line_and_non_zero(server: Served, box_id: str,
                                            tmp_path: Path) -> None:
    assert "no box" in one_line_error(run(server, "box", "exec", "b_nosuchbox", "--", "true"))
    assert "no box" in one_line_error(run(server, "box", "freeze", "b_nosuchbox"))
    assert "exactly one" in one_line_error(run(server, "box", "cp", "a.txt", "b.txt"))
    assert "exactly one" in one_line_error(run(server, "box", "cp", f"{box_id}:a",
                                               f"{box_id}:b"))
    assert "no such file" in one_line_error(run(server, "box", "cp", f"{box_id}:/nope",
                                                str(tmp_path))).lower()
    assert "KEY=VALUE" in one_line_error(run(server, "box", "create", "--env", "novalue"))
    assert "--help" in one_line_error(run(server, "box", "create", "--bogus"))
    assert one_line_error(run(server, "box", "run", box_id, "hello"))  # the box has no agent
    assert "not valid" in one_line_error(run(server, "box", "ls", key="brw_wrong"))
    down = subprocess.run([BURROW, "box", "ls"], capture_output=True, text=True, timeout=60,
                          env={**env_for(server), "BURROW_URL": f"http://127.0.0.1:{free_port()}"})
    assert "cannot reach Burrow" in one_line_error(down)
    nokey = {k: v for k, v in env_for(server).items() if k != "BURROW_API_KEY"}
    keyless = subprocess.run([BURROW, "stats"], capture_output=True, text=True, timeout=60,
                             env={**nokey, "BURROW_DATA_DIR": str(tmp_path)})
    assert "BURROW_API_KEY" in one_line_error(keyless)


def test_progress_shows_on_a_terminal_and_never_in_stdout(server: Served) -> None:
    other = ok(server, "box", "create", "-q").strip()
    main_fd, tty_fd = pty.openpty()
    try:
        proc = subprocess.Popen([BURROW, "box", "freeze", other, "--json"], env=env_for(server),
                                stdout=subprocess.PIPE, stderr=tty_fd, text=True)
        out, _ = proc.communicate(timeout=60)
        seen = b""
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and select.select([main_fd], [], [], 0.2)[0]:
            seen += os.read(main_fd, 4096)
    finally:
        os.close(tty_fd)
        os.close(main_fd)
    assert proc.returncode == 0 and json.loads(out)["state"] == "frozen"
    assert f"freezing {other}".encode() in seen and seen.endswith(b"\x1b[2K")
    ok(server, "box", "rm", other)


def test_policy_set_and_show_the_ceilings(server: Served) -> None:
    ok(server, "policy", "set", "--max-box-memory", "2048", "--max-boxes", "7",
       "--tenant-keep-alive", "--egress-allow", "10.1.0.0/16:5432", "--model-allow",
       "local/*", "--token-budget", "5000", "--agent-model", "local/gemma-3-270m")
    shown = ok(server, "policy", "show")
    for line in ("max_box_memory_mb          2048", "max_boxes_per_tenant       7",
                 "tenant_keep_alive          yes", "egress_allow               10.1.0.0/16:5432",
                 "model_allowlist            local/*", "tenant_token_budget        5000",
                 "agent_model                local/gemma-3-270m"):
        assert line in shown, shown
    done = run(server, "policy", "set", "--egress-deny", "example.com")
    assert done.returncode != 0 and "host names" in one_line_error(done)
    done = run(server, "policy", "set", "--agent-model", "openai/gpt-x")
    assert done.returncode != 0 and "not on model_allowlist" in one_line_error(done)
    ok(server, "policy", "set", "--egress-allow", "", "--model-allow", "*", "--max-boxes",
       "none", "--no-tenant-keep-alive", "--agent-model", "")
    policy = as_json(server, "policy", "show")["global"]["policy"]  # type: ignore[index]
    assert policy["egress_allow"] == [] and policy["model_allowlist"] is None
    assert policy["agent_model"] is None
    assert policy["max_boxes_per_tenant"] is None and policy["tenant_keep_alive"] is False


def test_memory_ls_get_recall_rm_export_and_clear(server: Served, tmp_path: Path) -> None:
    key = as_json(server, "tenant", "create", "cli-mem")["api_key"]  # type: ignore[index]
    added = json.loads(ok(server, "memory", "add", "cli-mem", "I'm allergic to peanuts",
                          "--json", key=key))
    assert "peanuts" in ok(server, "memory", "ls", "cli-mem", key=key)
    assert added["id"] in ok(server, "memory", "get", "cli-mem", added["id"], key=key)
    found = json.loads(ok(server, "memory", "recall", "cli-mem", "allergic", "--json", key=key))
    assert found[0]["id"] == added["id"]
    out = tmp_path / "memory.json"
    ok(server, "memory", "export", "cli-mem", "-o", str(out), key=key)
    assert json.loads(out.read_text())["memories"][0]["id"] == added["id"]
    assert added["id"] in ok(server, "memory", "rm", "cli-mem", added["id"], key=key)
    missing = run(server, "memory", "get", "cli-mem", added["id"], key=key)
    assert missing.returncode != 0 and "HTTP 404" in one_line_error(missing)
    ok(server, "memory", "add", "cli-mem", "I live in Lisbon", key=key)
    history = tmp_path / "history.jsonl"
    history.write_text("".join(json.dumps({
        "request": {"path": "/chat", "body": {"message": text},
                    "headers": {"x-burrow-user-text": "message"}},
        "at": 1683561600 + i, "request_id": f"chat/{i}"}) + "\n"
        for i, text in enumerate(["I keep bees.", "I play the cello."])))
    assert "sent 2 pairs" in ok(server, "memory", "import", "cli-mem", str(history), key=key)
    history.write_text('{"request": {"body": "x"}, "at": "2999-01-01T00:00:00Z"}\n')
    refused = run(server, "memory", "import", "cli-mem", str(history), key=key)
    assert refused.returncode != 0 and "in the future" in one_line_error(refused)
    history.write_text("not json\n")
    refused = run(server, "memory", "import", "cli-mem", str(history), key=key)
    assert refused.returncode != 0 and "history.jsonl:1" in one_line_error(refused)
    assert "deleted" in ok(server, "memory", "clear", "cli-mem", "--yes", key=key)
    assert "no memories" in ok(server, "memory", "ls", "cli-mem", key=key)
    other = run(server, "memory", "ls", "cli-mem", key="brw_t_not-a-real-key")
    assert other.returncode != 0


def test_box_port_open_ls_and_close(server: Served, box_id: str) -> None:
    opened = as_json(server, "box", "port", "open", box_id, "8000")
    assert isinstance(opened, dict) and opened["token"] and opened["port"] == 8000
    shown = run(server, "box", "port", "open", box_id, "8001", "--auth", "basic",
                "--username", "ann")
    assert shown.returncode == 0 and "password" in shown.stdout and "ann" in shown.stdout
    assert "shown once" in shown.stderr
    listed = ok(server, "box", "port", "ls", box_id)
    assert "8000" in listed and "bearer" in listed and "8001" in listed and "basic" in listed
    assert opened["token"] not in listed
    assert "closed port 8000" in ok(server, "box", "port", "close", box_id, "8000")
    error = one_line_error(run(server, "box", "port", "close", box_id, "8000"))
    assert "not open" in error
    error = one_line_error(run(server, "box", "port", "open", box_id, "8002", "--auth",
                               "basic", "--password", "short"))
    assert "password" in error


def test_box_start_ps_logs_follow_and_kill(server: Served, box_id: str) -> None:
    pid = ok(server, "box", "start", box_id, "-q", "--", "echo hi; echo oops >&2; exit 3")
    pid = pid.strip()
    assert pid.startswith("p_")
    done = run(server, "box", "logs", box_id, pid, "-f")
    assert done.returncode == 3, done.stderr
    assert done.stdout == "hi\n" and done.stderr.startswith("oops\n")
    assert "exited with exit code 3" in done.stderr
    listed = ok(server, "box", "ps", box_id)
    assert pid in listed and "exited" in listed
    assert ok(server, "box", "kill", box_id, pid) == f"killed {pid}\n"
    assert "no process" in one_line_error(run(server, "box", "logs", box_id, pid))
