"""The SDK's surface without a server: public names, sync/async parity, settings, the error
tree, and what the agent-run helpers send and return."""

from __future__ import annotations

import builtins
import inspect
import subprocess
import sys
from typing import Any

import pytest
from pydantic import BaseModel

import burrow
from burrow import (
    Agent,
    AgentRuns,
    AsyncAgentRuns,
    AsyncBox,
    AsyncExec,
    AsyncFiles,
    AsyncGit,
    AsyncKnowledge,
    AsyncMemories,
    AsyncProcesses,
    AsyncRunStream,
    AsyncTenant,
    AsyncTenantAgent,
    AuthenticationError,
    Box,
    BurrowError,
    Exec,
    Files,
    Git,
    Knowledge,
    Memories,
    Processes,
    RunStream,
    Tenant,
    TenantAgent,
)
from burrow._agent import parse_run, run_body
from burrow._git import parse_status
from burrow._unasync import unasync_line
from tests.served import free_port

PAIRS = [(Box, AsyncBox), (Exec, AsyncExec), (Files, AsyncFiles), (Git, AsyncGit),
         (AgentRuns, AsyncAgentRuns), (RunStream, AsyncRunStream), (Tenant, AsyncTenant),
         (TenantAgent, AsyncTenantAgent), (Knowledge, AsyncKnowledge),
         (Memories, AsyncMemories), (Processes, AsyncProcesses)]


def test_all_is_pinned() -> None:
    assert sorted(burrow.__all__) == [
        "Agent", "AgentAnswer", "AgentConfig", "AgentRuns", "AsyncAgentRuns", "AsyncBox",
        "AsyncExec", "AsyncFiles", "AsyncGit", "AsyncKnowledge", "AsyncMemories",
        "AsyncProcesses", "AsyncRunStream", "AsyncTenant", "AsyncTenantAgent",
        "AuthenticationError", "Box",
        "BoxInfo", "BoxStateError", "BurrowError", "ConflictError", "ConnectionError", "Exec",
        "ExecChunk", "ExecResult", "FileEntry", "FileEvent", "Files", "Git", "GitChange",
        "GitError",
        "GitStatus", "Insight", "InvalidRequestError", "Knowledge", "Memories", "NotFoundError",
        "PermissionDeniedError", "Process", "ProcessChunk", "ProcessLogPiece", "ProcessLogs",
        "Processes", "PublicUrl", "RateLimitError", "Run", "RunChunk", "RunStream", "RunUsage",
        "ServiceUnavailableError", "Snapshot", "Tenant", "TenantAgent", "TenantInfo",
        "TimeoutError"]
    assert all(hasattr(burrow, name) for name in burrow.__all__)


def test_generated_sync_client_is_up_to_date() -> None:
    done = subprocess.run([sys.executable, "-m", "burrow._unasync", "--check"],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def _public(cls: type) -> dict[str, Any]:
    return {name: member for name, member in vars(cls).items()
            if not name.startswith("_") or name in ("__init__", "__enter__", "__exit__",
                                                   "__aenter__", "__aexit__", "__iter__",
                                                   "__aiter__", "__next__", "__anext__")}


def _shape(member: Any) -> tuple[str, list[tuple[str, str, str, str]], str]:
    func = member.__func__ if isinstance(member, classmethod | staticmethod) else member
    if isinstance(member, property):
        func = member.fget
    sig = inspect.signature(func)
    params = [(p.name, str(p.kind), unasync_line(str(p.annotation)), repr(p.default))
              for p in sig.parameters.values()]
    return type(member).__name__, params, unasync_line(str(sig.return_annotation))


@pytest.mark.parametrize(("sync", "async_"), PAIRS, ids=[s.__name__ for s, _ in PAIRS])
def test_sync_and_async_signatures_match(sync: type, async_: type) -> None:
    renames = {"__aenter__": "__enter__", "__aexit__": "__exit__", "__aiter__": "__iter__",
               "__anext__": "__next__", "aclose": "close"}
    async_members = {renames.get(n, n): m for n, m in _public(async_).items()}
    sync_members = _public(sync)
    assert sorted(sync_members) == sorted(async_members)
    for name, member in sync_members.items():
        other = async_members[name]
        if callable(member) or isinstance(member, classmethod | staticmethod | property):
            assert _shape(member) == _shape(other), name
            func = getattr(other, "__func__", other)
            if inspect.iscoroutinefunction(func) or inspect.isasyncgenfunction(func):
                assert not (inspect.iscoroutinefunction(getattr(member, "__func__", member))
                            or inspect.isasyncgenfunction(getattr(member, "__func__", member)))


def test_sub_apis_hang_off_both_boxes() -> None:
    info = burrow.BoxInfo(id="b_1", state="running")
    from burrow._async.http import AsyncHttp
    from burrow._config import resolve
    from burrow._sync.http import Http

    config = resolve("k", "http://x", None)
    sync, async_ = Box(info, Http(config)), AsyncBox(info, AsyncHttp(config))
    for attr, cls in (("exec", Exec), ("files", Files), ("git", Git), ("agent", AgentRuns),
                      ("processes", Processes)):
        assert isinstance(getattr(sync, attr), cls)
        assert type(getattr(async_, attr)).__name__ == "Async" + cls.__name__


def test_missing_key_names_burrow_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BURROW_API_KEY", raising=False)
    with pytest.raises(AuthenticationError, match="BURROW_API_KEY"):
        Box.get("b_1")


def test_url_comes_from_burrow_url_with_a_default(monkeypatch: pytest.MonkeyPatch) -> None:
    from burrow._config import resolve

    monkeypatch.delenv("BURROW_URL", raising=False)
    monkeypatch.setenv("BURROW_API_KEY", "env-key")
    assert (resolve(None, None, None).url, resolve(None, None, None).api_key) == (
        "http://127.0.0.1:8420", "env-key")
    monkeypatch.setenv("BURROW_URL", "http://elsewhere:1/")
    assert resolve(None, None, None).url == "http://elsewhere:1"
    assert resolve("arg", "http://arg:2", 5).url == "http://arg:2"


def test_unreachable_server_is_a_connection_error_that_says_what_to_do() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(burrow.ConnectionError) as caught:
        Box.create(api_key="k", base_url=url)
    message = str(caught.value)
    assert url in message and "burrow serve" in message and "BURROW_URL" in message
    assert isinstance(caught.value, builtins.ConnectionError)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_a_url_without_a_scheme_is_an_invalid_request_not_an_httpx_error() -> None:
    with pytest.raises(burrow.InvalidRequestError, match="BURROW_URL"):
        Box.get("b_1", api_key="k", base_url="127.0.0.1:8420")


async def test_unreachable_server_async() -> None:
    with pytest.raises(burrow.ConnectionError):
        await AsyncBox.list(api_key="k", base_url=f"http://127.0.0.1:{free_port()}")


def test_error_tree_is_drawn_in_the_root_docstring() -> None:
    errors = [getattr(burrow, n) for n in burrow.__all__
              if isinstance(getattr(burrow, n), type)
              and issubclass(getattr(burrow, n), BaseException)]
    assert all(issubclass(e, BurrowError) for e in errors)
    doc = BurrowError.__doc__ or ""
    assert all(e.__name__ in doc for e in errors)
    assert issubclass(burrow.TimeoutError, builtins.TimeoutError)
    assert issubclass(burrow.BoxStateError, burrow.ConflictError)


def test_agent_is_a_str_enum_with_the_harness_names() -> None:
    assert {a.name: a.value for a in Agent} == {
        "BURROW": "burrow", "CLAUDE_CODE": "claude-code", "CODEX": "codex",
        "OPEN_CODE": "opencode"}
    assert Agent.CLAUDE_CODE == "claude-code"


class Answer(BaseModel):
    city: str
    population: int


RUN = {"id": "run_1", "box_id": "b_1", "status": "completed", "output": "...",
       "error": None, "usage": {"input_tokens": 3, "output_tokens": 4, "turns": 1,
                                "tool_calls": 0, "duration_ms": 12.5},
       "model": "local/gemma-3-270m", "harness": "burrow", "created_at": 1.0,
       "finished_at": 2.0}


def test_a_pydantic_response_schema_is_sent_as_json_schema_and_read_back_as_the_model(
        ) -> None:
    body = run_body("where?", Answer, 30, None, None, Agent.BURROW)
    assert body == {"prompt": "where?", "response_schema": Answer.model_json_schema(),
                    "timeout_s": 30, "harness": "burrow"}
    run = parse_run({**RUN, "result": {"city": "Oslo", "population": 700000}}, Answer)
    assert run.result == Answer(city="Oslo", population=700000) and run.ok
    failed = parse_run({**RUN, "status": "failed", "result": "junk", "error": "x"}, Answer)
    assert failed.result is None and not failed.ok
    with pytest.raises(BurrowError, match="Answer"):
        parse_run({**RUN, "result": {"city": "Oslo"}}, Answer)
    plain = parse_run({**RUN, "result": "just text"}, {"type": "string"})
    assert plain.result == "just text" and plain.usage.output_tokens == 4


def test_git_status_porcelain_is_parsed() -> None:
    out = "## main...origin/main [ahead 1]\0 M a.py\0R  new.py\0old.py\0?? dir/x y.txt\0"
    status = parse_status(out)
    assert status.branch == "main" and not status.clean
    assert [(c.status, c.path) for c in status.changes] == [
        (" M", "a.py"), ("R ", "new.py"), ("??", "dir/x y.txt")]
    assert parse_status("## No commits yet on trunk\0").branch == "trunk"
    assert parse_status("## HEAD (no branch)\0").branch is None
