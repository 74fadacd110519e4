"""The seed's use cases against a live `burrow serve --local-model`, over real HTTP, with real
(small) models: the two seed snippets with only their import line and harness/model values
changed, the three examples, and agent runs through the SDK that use the box's tools and
return validated objects.

One server for the module: starting it (and its local model server) takes seconds.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import BaseModel

from burrow import Agent, AsyncBox, Box
from tests.served import Served, stop_and_check

ROOT = Path(__file__).parent.parent
LOCAL = "local/smollm2-135m"
SECOND = "local/gemma-3-270m"
pytestmark = [pytest.mark.timeout(600), pytest.mark.boxes, pytest.mark.local_model,
              pytest.mark.agent_clis]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    served = Served(tmp_path_factory.mktemp("local") / "data", args=["--local-model"],
                    env={"BURROW_AGENT_MODEL": LOCAL}).start()
    yield served
    stop_and_check(served)


@pytest.fixture
def client_env(server: Served, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = {"BURROW_URL": server.url,
           "BURROW_API_KEY": server.operator["Authorization"].split()[1]}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return {**os.environ, **env}


def run_script(path: Path, env: dict[str, str], cwd: Path, *args: str,
               timeout_s: float = 500) -> str:
    done = subprocess.run([sys.executable, str(path), *args], cwd=cwd, env=env, text=True,
                          capture_output=True, timeout=timeout_s)
    assert done.returncode == 0, f"{path.name} failed:\n{done.stdout}\n{done.stderr}"
    assert "Traceback" not in done.stderr
    return done.stdout


def as_burrow(seed: str, models: dict[str, str]) -> str:
    """The seed snippet with what the issue allows changed: the import line, and the model
    names replaced by the bundled local ones. The harnesses stay as written (Claude Code,
    Codex: the CLIs themselves run in the boxes)."""
    out = re.sub(r"^from upstash_box import .*$", "from burrow import Agent, AsyncBox", seed,
                 flags=re.M)
    for old, new in models.items():
        out = out.replace(old, new)
    changed = [(a, b) for a, b in zip(seed.splitlines(), out.splitlines(), strict=True)
               if a != b]
    assert all("import" in a or "model" in a for a, _ in changed), changed
    return out


def test_seed_fanout_with_jury_runs_as_written(client_env: dict[str, str],
                                               tmp_path: Path) -> None:
    seed = (ROOT / "tests/seed/fanout_jury.py").read_text()
    script = tmp_path / "fanout.py"
    script.write_text(as_burrow(seed, {"ClaudeCode.SONNET_4_5": repr(LOCAL)}))
    out = run_script(script, client_env, tmp_path)
    assert out.strip() and out.strip() != "None", out


def test_seed_model_comparison_runs_as_written(client_env: dict[str, str],
                                               tmp_path: Path) -> None:
    seed = (ROOT / "tests/seed/model_comparison.py").read_text()
    script = tmp_path / "compare.py"
    script.write_text(as_burrow(seed, {
        '["anthropic/claude-sonnet-4-5", "openai/gpt-5"]': repr([LOCAL, SECOND])}))
    shutil.copy(ROOT / "examples/data/api_docs.md", tmp_path / "api_docs.md")
    out = run_script(script, client_env, tmp_path)
    lines = out.strip().splitlines()
    assert [line.split()[0] for line in lines] == [LOCAL, SECOND], out
    assert all(line.split()[1] == "completed" for line in lines), out


def test_model_comparison_prints_a_score_table_for_two_local_models(
        client_env: dict[str, str], tmp_path: Path) -> None:
    out = run_script(ROOT / "examples/model_comparison.py", client_env, tmp_path)
    assert "9 endpoints in api_docs.md" in out
    rows = {line.split()[0]: line for line in out.splitlines() if line.startswith("local/")}
    assert set(rows) == {LOCAL, SECOND}, out
    for row in rows.values():
        assert re.search(r"\d+%\s+\d+%", row), row
    assert re.search(r"^best: local/\S+ \(\d+% of the endpoints, \d+% hallucinated\)$", out,
                     re.M), out


def test_pr_review_fanout_writes_the_jury_comment(client_env: dict[str, str],
                                                  tmp_path: Path) -> None:
    out = run_script(ROOT / "examples/pr_review_fanout.py", client_env, tmp_path,
                     "--out", str(tmp_path / "comment.md"))
    for role in ("security", "quality", "architecture"):
        assert re.search(rf"^  {role}: \d+ findings\.", out, re.M), out
    assert (tmp_path / "comment.md").read_text().strip()


def test_agent_server_fills_the_knowledge_base(client_env: dict[str, str],
                                               tmp_path: Path) -> None:
    out = run_script(ROOT / "examples/agent_server.py", client_env, tmp_path)
    assert "ana: likes dark mode" in out
    assert re.search(r"\[2 tenants, score [\d.]+\] Postgres 16 vacuums faster", out), out
    assert f"its agent answers with {LOCAL}:" in out


class Note(BaseModel):
    path: str
    words: int


def test_a_local_run_creates_a_file_with_its_tools(client_env: dict[str, str]) -> None:
    with Box.create(agent={"harness": Agent.BURROW, "model": LOCAL}) as box:
        try:
            run = box.agent.run(prompt="Create the file hello.txt containing the word hello.",
                                max_turns=4)
            assert run.usage.tool_calls >= 1, run
            entries = {e.name for e in box.files.list("/workspace")}
            assert "hello.txt" in entries, (run, entries)
            assert "hello" in box.files.read("/workspace/hello.txt").lower()
        finally:
            box.delete()


async def test_a_local_run_returns_a_validated_object(client_env: dict[str, str]) -> None:
    box = await AsyncBox.create(agent={"harness": Agent.BURROW, "model": LOCAL})
    async with box:
        try:
            await box.files.write("/workspace/notes.txt", "one two three four five\n")
            run = await box.agent.run(
                prompt="How many words are in /workspace/notes.txt? Give its path and the "
                       "number of words.", response_schema=Note, max_turns=3)
            assert run.status == "completed", run
            assert isinstance(run.result, Note)
        finally:
            await box.delete()


def test_an_opencode_run_with_a_local_model_completes(client_env: dict[str, str]) -> None:
    """The third agent CLI (the seeds run Claude Code and Codex), with a bundled model."""
    with Box.create(runtime="node", agent={"harness": Agent.OPEN_CODE, "model": LOCAL}) as box:
        try:
            run = box.agent.run(prompt="Create the file hello.txt containing the word hi.",
                                max_turns=4, timeout_s=240)
            assert run.status == "completed", run
        finally:
            box.delete()
