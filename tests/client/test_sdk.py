"""The SDK, `Box` and `AsyncBox`, against one real `burrow serve` over real HTTP."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import BaseModel

from burrow import (
    Agent,
    AsyncBox,
    AsyncKnowledge,
    AsyncTenant,
    AuthenticationError,
    Box,
    BoxInfo,
    ConflictError,
    ExecChunk,
    GitError,
    InvalidRequestError,
    Knowledge,
    NotFoundError,
    Run,
    Tenant,
)
from tests.fakes import FakeOpenAI, text_reply, tool_reply
from tests.mcp_server import SOURCE as MCP_SERVER
from tests.served import Served, stop_and_check


@pytest.fixture(scope="module")
def fake_model() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI()
    yield fake
    fake.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, fake_model: FakeOpenAI) -> Iterator[Served]:
    served = Served(tmp_path_factory.mktemp("sdk"), env={
        "OPENAI_API_KEY": "sk-sdk-test-0123456789abcdef", "BURROW_OPENAI_URL": fake_model.url,
    }).start()
    yield served
    stop_and_check(served)


@pytest.fixture(scope="module")
def tenant_key(server: Served) -> str:
    r = httpx.post(f"{server.url}/v1/tenants", json={"id": "sdk"},
                   headers=server.operator, timeout=60)
    assert r.status_code == 201, r.text
    return str(r.json()["api_key"])


@pytest.fixture
def env(server: Served, tenant_key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The client settings as a user sets them: BURROW_URL and BURROW_API_KEY."""
    monkeypatch.setenv("BURROW_URL", server.url)
    monkeypatch.setenv("BURROW_API_KEY", tenant_key)


@pytest.fixture
def box(env: None) -> Iterator[Box]:
    created = Box.create(runtime="python", git={"user_name": "Bot",
                                                "user_email": "bot@example.com"})
    with created:
        yield created
        created.delete()


def test_create_passes_env_and_labels_into_the_box(env: None) -> None:
    box = Box.create(runtime="python", name="envy", env={"GREETING": "hi there"},
                     labels={"team": "x"})
    with box:
        assert box.status == "running"
        assert box.info.labels == {"team": "x"} and box.info.name == "envy"
        r = box.exec.command("printf %s \"$GREETING\"")
        assert (r.exit_code, r.stdout, r.timed_out) == (0, "hi there", False)
        box.delete()
    assert box.status == "deleted"


def test_exec_returns_exit_code_and_output_and_takes_argv_cwd_env_stdin(box: Box) -> None:
    r = box.exec.command("python3 -c 'print(1+1)'; echo oops >&2; exit 3")
    assert (r.exit_code, r.stdout, r.stderr) == (3, "2\n", "oops\n")
    assert r.duration_ms > 0 and not r.ok
    r = box.exec.command(["sh", "-c", 'echo "$X:$(pwd)"; cat'], cwd="/tmp", env={"X": "1"},
                         stdin="in")
    assert r.stdout == "1:/tmp\nin"
    r = box.exec.command("sleep 5", timeout_s=0.5)
    assert r.timed_out


def test_exec_stream_yields_output_then_the_exit(box: Box) -> None:
    chunks = list(box.exec.stream("echo a; echo b >&2; echo c; exit 4"))
    assert all(isinstance(c, ExecChunk) for c in chunks)
    assert chunks[-1].type == "exit" and chunks[-1].exit_code == 4
    out = "".join(c.data for c in chunks if c.type == "stdout")
    err = "".join(c.data for c in chunks if c.type == "stderr")
    assert (out, err) == ("a\nc\n", "b\n")


def test_files_write_read_list_upload_download_delete(box: Box, tmp_path: Path) -> None:
    box.files.write("/workspace/a.txt", "hi")
    box.files.write("data/b.bin", bytes(range(256)))  # relative: under /workspace
    assert box.files.read("/workspace/a.txt") == "hi"
    assert box.files.read_bytes("/workspace/data/b.bin") == bytes(range(256))
    names = {e.name: e for e in box.files.list("/workspace")}
    assert names["a.txt"].type == "file" and names["a.txt"].size == 2
    assert names["data"].type == "dir"
    local = tmp_path / "up.txt"
    local.write_text("from the host\n")
    box.files.upload(local, "/workspace/up/up.txt")
    assert box.exec.command("cat /workspace/up/up.txt").stdout == "from the host\n"
    box.files.download("/workspace/data/b.bin", tmp_path / "down" / "b.bin")
    assert (tmp_path / "down" / "b.bin").read_bytes() == bytes(range(256))
    box.files.delete("/workspace/a.txt")
    with pytest.raises(NotFoundError) as caught:
        box.files.read("/workspace/a.txt")
    assert caught.value.status == 404


def test_git_init_commit_status_diff_and_clone_inside_the_box(box: Box) -> None:
    repo = box.git.init("/workspace/proj")
    assert repo == "/workspace/proj"
    box.files.write("/workspace/proj/hello.py", "print('hello')\n")
    status = box.git.status()
    assert status.branch == "main"
    assert [(c.status, c.path) for c in status.changes] == [("??", "hello.py")]
    sha = box.git.commit(message="first")
    assert len(sha) == 40 and box.git.status().clean
    box.files.write("/workspace/proj/hello.py", "print('bye')\n")
    diff = box.git.diff()
    assert "-print('hello')" in diff and "+print('bye')" in diff
    box.git.commit(message="second")
    log = box.exec.command("git log --format=%an:%s", cwd=repo).stdout.split()
    assert log == ["Bot:second", "Bot:first"]

    copy = box.git.clone(repo="/workspace/proj", path="/workspace/copy")
    assert copy == "/workspace/copy" and box.git.path == copy
    assert box.git.status().clean
    assert box.files.read("/workspace/copy/hello.py") == "print('bye')\n"


def test_git_failure_raises_git_error_with_what_git_said(box: Box) -> None:
    with pytest.raises(GitError) as caught:
        box.git.status("/tmp")
    assert "not a git repository" in str(caught.value)
    assert caught.value.exit_code != 0
    box.git.init("/workspace/empty")
    with pytest.raises(GitError, match="nothing to commit"):
        box.git.commit(message="nothing")


def test_snapshot_then_a_new_box_from_it(box: Box) -> None:
    box.files.write("/workspace/state.txt", "kept")
    snap = box.snapshot(name="base")
    assert snap.box_id == box.id and snap.name == "base"
    assert snap.id in {s.id for s in Box.snapshots()}
    with Box.from_snapshot(snap.id, labels={"from": "snap"}) as twin:
        assert twin.id != box.id
        assert twin.files.read("/workspace/state.txt") == "kept"
        twin.delete()
    Box.delete_snapshot(snap.id)
    assert snap.id not in {s.id for s in Box.snapshots()}


def test_freeze_wake_pause_resume_update_status(box: Box) -> None:
    box.exec.command("echo warm > /workspace/w.txt")
    assert box.freeze().state == "frozen" and box.status == "frozen"
    assert box.wake().state == "running" and box.status == "running"
    assert box.pause().state == "paused" and box.status == "paused"
    assert box.resume().state == "running"
    box.freeze()
    # any call wakes a frozen box; refresh() shows it
    assert box.exec.command("cat /workspace/w.txt").stdout == "warm\n"
    assert box.refresh().state == "running" and box.status == "running"


def test_get_and_list_by_label(env: None) -> None:
    tag = uuid.uuid4().hex[:8]
    made = [Box.create(labels={"suite": tag, "n": str(i)}) for i in range(2)]
    try:
        found = Box.list(label=f"suite:{tag}")
        assert sorted(b.id for b in found) == sorted(b.id for b in made)
        assert [b.id for b in Box.list(label=[f"suite:{tag}", "n:1"])] == [made[1].id]
        with Box.get(made[0].id) as again:
            assert again.status == "running"
            assert again.exec.command("echo $((6*7))").stdout == "42\n"
        for b in found:
            b.close()
    finally:
        for b in made:
            b.delete()
    assert Box.list(label=f"suite:{tag}") == []


def test_errors_name_what_went_wrong(server: Served, env: None) -> None:
    with pytest.raises(AuthenticationError) as auth:
        Box.get("b_nope", api_key="not-a-key")
    assert auth.value.status == 401 and auth.value.code
    with pytest.raises(NotFoundError) as missing:
        Box.get("b_nope")
    assert missing.value.code == "not_found" and "b_nope" in str(missing.value)
    with pytest.raises(InvalidRequestError) as invalid:
        Box.create(runtime="cobol")
    assert invalid.value.status == 422 and "runtime" in invalid.value.message


def test_a_deleted_box_is_not_found(env: None) -> None:
    box = Box.create()
    box_id = box.id
    box.delete()
    with pytest.raises(NotFoundError):
        Box.get(box_id)


# --- AsyncBox -----------------------------------------------------------------------------


async def test_async_fan_out_of_three_creates_as_the_seed_writes_it(env: None) -> None:
    tag = uuid.uuid4().hex[:8]
    boxes = await asyncio.gather(*(AsyncBox.create(runtime="python", labels={"fan": tag},
                                                   env={"N": str(i)}) for i in range(3)))
    try:
        assert len({b.id for b in boxes}) == 3
        results = await asyncio.gather(*(b.exec.command("echo $N") for b in boxes))
        assert [r.stdout for r in results] == ["0\n", "1\n", "2\n"]
        listed = await AsyncBox.list(label=f"fan:{tag}")
        assert sorted(b.id for b in listed) == sorted(b.id for b in boxes)
        assert all(isinstance(b.info, BoxInfo) for b in listed)
    finally:
        await asyncio.gather(*(b.delete() for b in boxes))


async def test_async_exec_stream_files_and_git(server: Served, tenant_key: str,
                                               tmp_path: Path) -> None:
    async with await AsyncBox.create(api_key=tenant_key, base_url=server.url,
                                     git={"user_name": "Async", "user_email": "a@b.c"}) as box:
        r = await box.exec.command("echo $((2+3))")
        assert (r.exit_code, r.stdout) == (0, "5\n")
        chunks = [c async for c in box.exec.stream("echo one; echo two >&2; exit 7")]
        assert [(c.type, c.data) for c in chunks[:-1]] in (
            [("stdout", "one\n"), ("stderr", "two\n")],
            [("stderr", "two\n"), ("stdout", "one\n")])
        assert chunks[-1].exit_code == 7

        await box.files.write("/workspace/x/y.txt", b"bytes")
        assert await box.files.read("/workspace/x/y.txt") == "bytes"
        assert [e.name for e in await box.files.list("/workspace/x")] == ["y.txt"]
        (tmp_path / "in.txt").write_text("uploaded")
        await box.files.upload(tmp_path / "in.txt", "/workspace/in.txt")
        await box.files.download("/workspace/in.txt", tmp_path / "out.txt")
        assert (tmp_path / "out.txt").read_text() == "uploaded"

        await box.git.init("/workspace/x")
        assert [c.path for c in (await box.git.status()).changes] == ["y.txt"]
        sha = await box.git.commit(message="add y")
        assert (await box.exec.command("git rev-parse HEAD", cwd="/workspace/x")).stdout.strip() \
            == sha
        await box.files.write("/workspace/x/y.txt", "changed")
        assert "+changed" in await box.git.diff()
        await box.delete()


async def test_async_lifecycle_snapshot_and_errors(server: Served, tenant_key: str) -> None:
    async with httpx.AsyncClient(base_url=server.url) as c:  # tenants' keep-alive is opt-in
        r = await c.put("/v1/policy", json={"tenant_keep_alive": True}, headers=server.operator)
        assert r.status_code == 200, r.text
    box = await AsyncBox.create(api_key=tenant_key, base_url=server.url, keep_alive=True)
    async with box:
        await box.files.write("/workspace/s.txt", "snap")
        assert (await box.freeze()).state == "frozen"
        assert (await box.wake()).state == "running"
        assert (await box.pause()).state == "paused" and box.status == "paused"
        assert (await box.resume()).state == "running"
        snap = await box.snapshot(name="async-base")
        async with await AsyncBox.from_snapshot(snap.id, api_key=tenant_key,
                                                base_url=server.url) as twin:
            assert await twin.files.read("/workspace/s.txt") == "snap"
            await twin.delete()
        await AsyncBox.delete_snapshot(snap.id, api_key=tenant_key, base_url=server.url)
        again = await AsyncBox.get(box.id, api_key=tenant_key, base_url=server.url)
        async with again:
            assert (await again.refresh()).state == "running"
        await box.delete()
    with pytest.raises(NotFoundError):
        await AsyncBox.get(box.id, api_key=tenant_key, base_url=server.url)
    with pytest.raises(AuthenticationError):
        await AsyncBox.list(api_key="wrong", base_url=server.url)


# --- agent runs (the model is FakeOpenAI; the harness in the box and the server are real) ---


class Count(BaseModel):
    count: int
    names: list[str]


AGENT = {"harness": Agent.BURROW, "model": "openai/gpt-test"}


def test_agent_run_with_a_pydantic_schema_returns_an_instance(
        env: None, fake_model: FakeOpenAI) -> None:
    fake_model.script = [tool_reply("write_file", path="n.txt", content="a b c"),
                         text_reply("done"), text_reply('{"count": 3, "names": ["a", "b", "c"]}')]
    with Box.create(agent=AGENT) as box:
        assert box.info.agent is not None and box.info.agent.harness == "burrow"
        run = box.agent.run(prompt="count the names in n.txt", response_schema=Count)
        assert run.status == "completed", run.error
        assert run.result == Count(count=3, names=["a", "b", "c"])
        assert run.usage.tool_calls == 1 and run.harness == "burrow"
        assert box.files.read("/workspace/n.txt") == "a b c"
        assert [r.id for r in box.agent.list()] == [run.id]
        assert box.agent.get(run.id).result == {"count": 3, "names": ["a", "b", "c"]}
        box.delete()


async def test_agent_stream_yields_chunks_then_the_final_run(
        server: Served, tenant_key: str, fake_model: FakeOpenAI) -> None:
    fake_model.script = [tool_reply("shell", command="echo hi"), text_reply("it said hi")]
    async with await AsyncBox.create(agent=AGENT, api_key=tenant_key,
                                     base_url=server.url) as box:
        stream = box.agent.stream(prompt="run echo hi")
        types = [chunk.type async for chunk in stream]
        assert types == ["start", "tool_call", "tool_result", "text", "finish"]
        assert isinstance(stream.run, Run) and stream.run.result == "it said hi"
        await box.delete()


def test_mcp_servers_of_the_box_and_of_a_run_reach_the_agent(
        env: None, server: Served, tenant_key: str, fake_model: FakeOpenAI) -> None:
    calc = {"command": "python3", "args": ["/workspace/mcp.py"], "env": {"OWN": "x"}}
    fake_model.script = [tool_reply("mcp__calc__add", a=20, b=22), text_reply("42")]
    with Box.create(agent={**AGENT, "mcp_servers": {"calc": calc}}) as box:
        assert box.info.agent is not None
        shown = box.info.agent.mcp_servers["calc"]
        assert shown.args == ["/workspace/mcp.py"] and shown.env == {"OWN": "***"}
        box.files.write("/workspace/mcp.py", MCP_SERVER)
        run = box.agent.run(prompt="add 20 and 22")
        assert run.status == "completed" and run.result == "42", run.error
        assert fake_model.requests[-1]["messages"][-1] == {
            "role": "tool", "tool_call_id": "call_mcp__calc__add", "content": "42"}

        async def streamed() -> list[str]:
            fake_model.script = [tool_reply("mcp__more__add", a=1, b=2), text_reply("3")]
            async with await AsyncBox.get(box.id, api_key=tenant_key,
                                          base_url=server.url) as same:
                stream = same.agent.stream(prompt="add 1 and 2", mcp_servers={"more": calc})
                return [f"{c.type}:{c.name or ''}" async for c in stream]

        assert asyncio.run(streamed()) == ["start:", "tool_call:mcp__more__add",
                                           "tool_result:mcp__more__add", "text:", "finish:"]
        assert fake_model.requests[-1]["messages"][-1]["content"] == "3"
        with pytest.raises(InvalidRequestError, match="1 to 32 of a-z"):
            box.agent.run(prompt="x", mcp_servers={"Not A Name": calc})
        box.delete()


def test_agent_run_without_a_model_is_a_conflict(env: None) -> None:
    with Box.create() as box:
        with pytest.raises(ConflictError) as caught:
            box.agent.run(prompt="hello")
        assert caught.value.code == "agent_not_configured"
        box.delete()


def test_tenants_their_agents_and_knowledge_through_the_sdk(server: Served) -> None:
    operator = server.operator["Authorization"].split()[1]
    with Tenant.create("sdk-tenant", api_key=operator, base_url=server.url) as made:
        assert made.api_key and made.info.home_box_id
        assert "sdk-tenant" in [t.id for t in Tenant.list(api_key=operator,
                                                           base_url=server.url)]
        with Tenant.connect("sdk-tenant", api_key=made.api_key, base_url=server.url) as own:
            answer = own.agent.request("POST", "/ask", json={"question": "Hi there?"},
                                       headers={"X-Request-Id": "sdk-req-1"})
            assert answer.status == 200 and "answer" in answer.body
            assert answer.request_id == "sdk-req-1"
            assert "observed" in own.agent.profile()
            assert isinstance(Knowledge.search("anything", api_key=made.api_key,
                                               base_url=server.url), list)
            assert Knowledge.search("anything", kinds=["tip"], since=0, until=1,
                                    api_key=made.api_key, base_url=server.url) == []
            with pytest.raises(NotFoundError, match="no insight"):
                Knowledge.vote("00000000-0000-4000-8000-000000000000", True,
                               api_key=made.api_key, base_url=server.url)
            with pytest.raises(InvalidRequestError, match="since"):
                Knowledge.search("x", since=5, until=1, api_key=made.api_key,
                                 base_url=server.url)
            with Tenant.connect("someone-else", api_key=made.api_key,
                                base_url=server.url) as other, pytest.raises(NotFoundError):
                other.agent.profile()  # another tenant's agent is not its to reach
        made.delete()
    with pytest.raises(NotFoundError):
        Tenant.get("sdk-tenant", api_key=operator, base_url=server.url)


async def test_async_tenants_mirror_the_sync_ones(server: Served) -> None:
    operator = server.operator["Authorization"].split()[1]
    async with await AsyncTenant.create(api_key=operator, base_url=server.url) as made:
        async with AsyncTenant.connect(made.id, api_key=made.api_key,
                                       base_url=server.url) as own:
            assert "answer" in await own.agent.ask("What do you know?")
        fetched = await AsyncTenant.get(made.id, api_key=operator, base_url=server.url)
        assert fetched.info.home_box_id == made.info.home_box_id
        await fetched.aclose()
        await made.delete()
    assert isinstance(await AsyncKnowledge.search("x", api_key=operator,
                                                  base_url=server.url), list)


def test_a_tenant_owns_its_memory_through_the_sdk(server: Served) -> None:
    operator = server.operator["Authorization"].split()[1]
    with Tenant.create("sdk-memory", api_key=operator, base_url=server.url) as made, \
            Tenant.connect("sdk-memory", api_key=made.api_key, base_url=server.url) as own:
        added = own.memories.add("I'm allergic to peanuts", subject="allergy")
        assert added["source"] == "api" and added["text"] == "I'm allergic to peanuts"
        page = own.memories.list()
        assert [i["id"] for i in page["items"]] == [added["id"]] and page["total"] == 1
        hits = own.agent.recall("What am I allergic to?", limit=5)
        assert hits and hits[0]["id"] == added["id"]
        fixed = own.memories.correct(added["id"], "I'm allergic to peanuts and cashews")
        assert fixed["history"][0]["id"] == added["id"]
        assert own.memories.get(fixed["id"])["current"] is True
        assert len(own.memories.list(status="all")["items"]) == 2
        exported = own.memories.export()
        assert exported["format"] == "burrow.memory/1" and len(exported["memories"]) == 2
        with pytest.raises(InvalidRequestError, match="memory id"):
            own.memories.delete("")
        with Tenant.connect("someone-else", api_key=made.api_key,
                            base_url=server.url) as other, pytest.raises(NotFoundError):
            other.memories.list()
        assert fixed["id"] in own.memories.delete(fixed["id"])
        with pytest.raises(NotFoundError):
            own.memories.get(fixed["id"])
        own.memories.add("I live in Lisbon")
        imported = own.memories.observe([{
            "request": {"path": "/chat", "body": {"message": "I keep bees on the roof."},
                        "headers": {"x-burrow-user-text": "message"}},
            "response": {"body": {"reply": "Nice."}}, "at": "2023-05-08T13:56:00Z",
            "request_id": "chat-1/1"}])
        assert imported == {"accepted": 1, "dropped": 0}
        deadline = time.monotonic() + 60
        while not own.memories.list(kind="episode")["total"]:
            assert time.monotonic() < deadline, "the imported pair was never learned"
            time.sleep(0.2)
        episode = own.memories.list(kind="episode")["items"][0]
        assert episode["request_ids"] == ["chat-1/1"] and episode["at"].startswith("2023-05-08")
        with pytest.raises(InvalidRequestError, match=r"pairs\.0\.at"):
            own.memories.observe([{"request": {"body": "x"}, "at": "2999-01-01T00:00:00Z"}])
        wiped = own.memories.delete_all()
        assert wiped["replace_snapshot"] is True and own.memories.list()["total"] == 0
        assert own.agent.recall("Lisbon") == []
        made.delete()


def test_a_box_gives_a_public_url_of_its_port(env: None) -> None:
    app = (Path(__file__).resolve().parents[1] / "preview_app.py").read_bytes()
    with Box.create(runtime="python") as box:
        box.files.write("/workspace/preview_app.py", app)
        r = box.exec.command("setsid -f python3 /workspace/preview_app.py 8000 "
                             ">/dev/null 2>&1 </dev/null")
        assert r.exit_code == 0, r
        url = box.get_public_url(8000)
        assert url.auth == "bearer" and url.token and url.url.endswith(f"/{box.id}/8000/")
        assert url.browser_url == f"{url.url}?token={url.token}"
        with httpx.Client(timeout=60, follow_redirects=True) as visitor:
            assert visitor.get(url.url).status_code == 401
            page = visitor.get(url.browser_url)  # the token once, then the cookie
            assert page.status_code == 200 and "hello from the box" in page.text
            assert str(page.url) == url.url
        assert [(u.port, u.token) for u in box.list_public_urls()] == [(8000, None)]
        basic = box.get_public_url(8000, auth="basic", username="ann")
        assert basic.username == "ann" and basic.password
        box.close_public_url(8000)
        assert box.list_public_urls() == []
        with pytest.raises(NotFoundError):
            box.close_public_url(8000)
        box.delete()


def test_processes_start_follow_write_wait_signal_and_kill(box: Box) -> None:
    proc = box.processes.start("echo ready; cat; exit 4", stdin=True, restart="on-failure")
    assert proc.running and proc.id.startswith("p_") and proc.restart == "on-failure"
    box.processes.write(proc.id, "typed\n", eof=True)
    seen = ""
    for chunk in box.processes.follow(proc.id):  # it runs again after exit 4: stop reading
        seen += chunk.data
        if seen == "ready\ntyped\n":
            break
    time.sleep(0.3)
    assert box.processes.get(proc.id).state in ("restarting", "running", "starting")
    box.processes.signal(proc.id, "KILL")
    ended = box.processes.wait(proc.id)
    assert ended.state == "exited" and not ended.running
    logs = box.processes.logs(proc.id)
    assert logs.stdout.data.startswith("ready\ntyped\n")  # and "ready" again if it restarted
    assert logs.stdout.next_offset == len(logs.stdout.data.encode())
    assert [p.id for p in box.processes.list()] == [proc.id]
    box.processes.kill(proc.id)
    with pytest.raises(NotFoundError):
        box.processes.get(proc.id)
    with pytest.raises(InvalidRequestError):
        box.processes.start("true", restart="always")  # type: ignore[arg-type]


async def test_async_processes_start_and_follow(server: Served, tenant_key: str) -> None:
    async with await AsyncBox.create(api_key=tenant_key, base_url=server.url) as box:
        proc = await box.processes.start(["sh", "-c", "echo one; sleep 0.2; echo two >&2"])
        seen = [chunk async for chunk in box.processes.follow(proc.id)]
        assert [(c.type, c.data) for c in seen[:-1]] == [("stdout", "one\n"),
                                                         ("stderr", "two\n")]
        assert (seen[-1].type, seen[-1].exit_code, seen[-1].state) == ("exit", 0, "exited")
        await box.delete()


def test_files_watch_yields_events_until_the_path_is_gone(box: Box) -> None:
    import threading

    box.exec.command("mkdir -p watched")

    def act() -> None:
        time.sleep(1.0)
        box.exec.command("echo hi > watched/a; rm -r watched")
    acting = threading.Thread(target=act)
    acting.start()
    events = list(box.files.watch("watched"))
    acting.join()
    assert [(e.type, e.path) for e in events[:2]] == [("created", "/workspace/watched/a"),
                                                      ("modified", "/workspace/watched/a")]
    assert events[-1].type == "end"
