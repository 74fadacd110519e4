"""The TypeScript SDK (sdk/typescript) against a live `burrow serve --local-model`: its own
tests (`npm test`, Node's test runner), the seed's two TypeScript snippets as written (only
the import line and the model names changed), its generated types against the live OpenAPI
document, and its surface against the Python SDK's.

One server for the module. The seed snippets start first, in the background: they wait on
the bundled models while `npm test` runs, and their tests collect them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import pytest

import burrow
from burrow._async.http import AsyncHttp
from burrow._config import resolve
from tests.served import Served, stop_and_check

ROOT = Path(__file__).parents[2]
SDK = ROOT / "sdk" / "typescript"
LOCAL = "local/smollm2-135m"
SECOND = "local/gemma-3-270m"
pytestmark = [pytest.mark.timeout(600), pytest.mark.boxes, pytest.mark.node]


def _run(args: list[str], cwd: Path, timeout: float = 300,
         env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


def _node() -> str:
    node = shutil.which("node")
    assert node, "no `node`: `make test` installs Node.js (Debian's nodejs and npm)"
    version = _run([node, "--version"], ROOT).stdout.strip()
    assert int(version.lstrip("v").split(".")[0]) >= 18, f"Node {version}: the SDK needs 18+"
    return node


@pytest.fixture(scope="module")
def sdk() -> Path:
    """The package, built (ESM and CommonJS, with declarations)."""
    assert (SDK / "node_modules" / "typescript").is_dir(), (
        "sdk/typescript has no node_modules: `make test` installs them (npm ci there)")
    done = _run([_node(), "scripts/build.mjs"], SDK)
    assert done.returncode == 0, done.stdout + done.stderr
    return SDK


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    served = Served(tmp_path_factory.mktemp("ts") / "data", args=["--local-model"]).start()
    yield served
    stop_and_check(served)


def _operator_key(server: Served) -> str:
    return server.operator["Authorization"].split()[1]


def as_burrow(seed: str, models: dict[str, str]) -> str:
    """The seed snippet with what the issue allows changed: the import line, and the model
    names replaced by the bundled local ones. The harness stays as written."""
    out = re.sub(r'^import \{ (.*) \} from "@upstash/box"$', r'import { \1 } from "@burrow/sdk"',
                 seed, flags=re.M)
    for old, new in models.items():
        out = out.replace(old, new)
    changed = [(a, b) for a, b in zip(seed.splitlines(), out.splitlines(), strict=True)
               if a != b]
    assert changed and all("import" in a or "model" in a for a, _ in changed), changed
    return out


class Seed:
    """A seed snippet running in the background, as a tenant of its own (so that what it
    made can be looked at, and deleted with the tenant)."""

    def __init__(self, name: str, where: Path, server: Served) -> None:
        self.name = name
        self.server = server
        made = httpx.post(f"{server.url}/v1/tenants", json={}, headers=server.operator,
                          timeout=60)
        assert made.status_code == 201, made.text
        self.tenant, self.key = made.json()["id"], made.json()["api_key"]
        self.home = made.json()["home_box_id"]
        self.out, self.err = where / f"{name}.stdout", where / f"{name}.stderr"
        env = {**os.environ, "BURROW_URL": server.url, "BURROW_API_KEY": self.key}
        env.pop("GIT_TOKEN", None)
        self.started = time.monotonic()
        with self.out.open("w") as out, self.err.open("w") as err:
            self.proc = subprocess.Popen([_node(), "--import", "./supplied.mjs",
                                          f"out/{name}.js"], cwd=where, env=env, stdout=out,
                                         stderr=err, text=True)

    def finish(self, timeout_s: float) -> None:
        code = self.proc.wait(timeout=timeout_s)
        print(f"{self.name}: done within {time.monotonic() - self.started:.0f} s of its start")
        said = self.out.read_text() + self.err.read_text()
        # Node 18 warns on stderr that its fetch is experimental: the exit code is the verdict
        assert code == 0, f"{self.name} failed:\n{said}"

    def runs(self) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
        """Each box the snippet made (not the tenant's home box), with its agent runs."""
        with httpx.Client(base_url=self.server.url, timeout=60,
                          headers={"Authorization": f"Bearer {self.key}"}) as c:
            boxes = [b for b in c.get("/v1/boxes").json() if b["id"] != self.home]
            return [(b, c.get(f"/v1/boxes/{b['id']}/agent/runs").json()) for b in boxes]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        httpx.delete(f"{self.server.url}/v1/tenants/{self.tenant}",
                     headers=self.server.operator, timeout=120)


@pytest.fixture(scope="module")
def seeds(server: Served, sdk: Path,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Seed]]:
    """The two snippets, compiled as TypeScript against the SDK's declarations (with `fs`
    and the two scorers supplied by tests/seed/supplied.*) and started."""
    where = tmp_path_factory.mktemp("seeds")
    (where / "package.json").write_text('{"type": "module"}\n')
    (where / "node_modules" / "@burrow").mkdir(parents=True)
    (where / "node_modules" / "@burrow" / "sdk").symlink_to(sdk)
    (where / "node_modules" / "@types").mkdir()
    (where / "node_modules" / "@types" / "node").symlink_to(sdk / "node_modules/@types/node")
    for supplied in ("supplied.mjs", "supplied.d.ts"):
        shutil.copy(ROOT / "tests/seed" / supplied, where / supplied)
    shutil.copy(ROOT / "examples/data/api_docs.md", where / "documentation.md")
    fanout = (ROOT / "tests/seed/fanout_jury.ts").read_text()
    assert fanout.count("harness: Agent.ClaudeCode") == 4
    (where / "fanout_jury.ts").write_text(as_burrow(fanout, {
        '"anthropic/claude-sonnet-4-6"': json.dumps(LOCAL)}))
    (where / "model_comparison.ts").write_text(as_burrow(
        (ROOT / "tests/seed/model_comparison.ts").read_text(), {
            '"anthropic/claude-opus-4-6", "openai/gpt-5.3-codex", '
            '"openrouter/google/gemini-2.5-pro"': f'"{LOCAL}", "{SECOND}", "{LOCAL}"'}))
    (where / "tsconfig.json").write_text(json.dumps({
        "compilerOptions": {"target": "ES2022", "module": "NodeNext", "strict": True,
                            "moduleResolution": "NodeNext", "types": ["node"],
                            "skipLibCheck": True, "outDir": "out"},
        "include": ["*.ts"]}))
    done = _run([_node(), str(sdk / "node_modules/typescript/bin/tsc"), "-p", "."], where)
    assert done.returncode == 0, f"the seed snippets do not compile:\n{done.stdout}"
    started = {name: Seed(name, where, server) for name in ("fanout_jury", "model_comparison")}
    yield started
    for seed in started.values():
        seed.stop()


def test_npm_test_passes_against_a_served_instance(server: Served, sdk: Path,
                                                   seeds: dict[str, Seed]) -> None:
    npm = shutil.which("npm")
    assert npm, "no `npm`: `make test` installs it (Debian's npm)"
    env = {**os.environ, "BURROW_URL": server.url, "BURROW_API_KEY": _operator_key(server),
           "BURROW_TEST_MODEL": LOCAL}
    done = _run([npm, "test"], sdk, timeout=540, env=env)
    said = done.stdout[-10000:] + done.stderr[-3000:]
    assert done.returncode == 0, said
    summary = re.search(r"^npm test: (\d+) passed, (\d+) failed$", done.stdout, re.M)
    assert summary and int(summary.group(1)) >= 20 and summary.group(2) == "0", said


def test_seed_fanout_with_jury_runs_from_typescript_as_written(seeds: dict[str, Seed]) -> None:
    seed = seeds["fanout_jury"]
    seed.finish(timeout_s=480)
    made = seed.runs()
    assert len(made) == 4, made  # three reviewers and the jury
    for box, runs in made:
        assert box["runtime"] == "node" and box["agent"] == {
            "harness": "claude-code", "model": LOCAL, "mcp_servers": {}}, box
        assert [(r["status"], r["harness"]) for r in runs] == [("completed", "claude-code")], runs


def test_seed_model_comparison_runs_from_typescript_as_written(
        seeds: dict[str, Seed]) -> None:
    seed = seeds["model_comparison"]
    seed.finish(timeout_s=480)
    made = seed.runs()
    runs = [run for _, box_runs in made for run in box_runs]
    assert sorted(r["model"] for r in runs) == sorted([LOCAL, SECOND, LOCAL]), runs
    assert all(r["status"] == "completed" and r["harness"] == "burrow" for r in runs), runs
    assert len(made) == 3 and all(len(box_runs) == 1 for _, box_runs in made), made


def test_the_generated_types_match_the_live_openapi_document(server: Served, sdk: Path,
                                                             tmp_path: Path) -> None:
    live = f"{server.url}/openapi.json"
    done = _run([_node(), "scripts/generate.mjs", "--check", live], sdk)
    assert done.returncode == 0, done.stdout + done.stderr
    # and the check sees a change: a document with one field less
    document = httpx.get(live, timeout=30).json()
    del document["components"]["schemas"]["BoxPublic"]["properties"]["runtime"]
    (tmp_path / "openapi.json").write_text(json.dumps(document))
    done = _run([_node(), "scripts/generate.mjs", "--check", str(tmp_path / "openapi.json")], sdk)
    assert done.returncode == 1 and "npm run generate" in done.stderr, done.stderr


# --- the two SDKs have the same surface -------------------------------------------------------

# Python's classes and the TypeScript classes they are (TypeScript has no sync twin).
TWINS = {"AsyncBox": "Box", "AsyncExec": "Exec", "AsyncFiles": "Files", "AsyncGit": "Git",
         "AsyncAgentRuns": "AgentRuns", "AsyncRunStream": "RunStream", "AsyncTenant": "Tenant",
         "AsyncTenantAgent": "TenantAgent", "AsyncKnowledge": "Knowledge",
         "AsyncMemories": "Memories", "AsyncProcesses": "Processes", "AsyncPty": "Pty",
         "AsyncTerminal": "Terminal"}
# What one language spells with its own protocol: Python's async context managers and
# iterator step; TypeScript iterates with [Symbol.asyncIterator], where Python has
# __aiter__, and closes with close(), where Python has aclose().
PYTHON_ONLY = {"__aenter__", "__aexit__", "__anext__", "__init__"}
RENAMED = {"__aiter__": "[Symbol.asyncIterator]", "aclose": "close"}
# TypeScript's options objects and the API's generated types, which Python spells as keyword
# arguments and pydantic models.
TYPESCRIPT_ONLY_TYPES = {
    "AgentAskAnswer", "AgentOptions", "AgentProfile", "AgentRequestOptions", "ClientOptions",
    "Command", "CommandOptions", "CreateOptions", "ExecOptions", "InsightKind", "JsonSchema",
    "KnowledgeSearchOptions", "LogOffsets", "McpServerOptions", "MemoriesListOptions",
    "MemoryAddOptions", "MemoryExport",
    "MemoryItem", "MemoryKind", "MemoryPage", "MemoryWiped", "ObservationsAccepted",
    "ObservedPair", "Parsed", "ProcessOptions", "ProcessSignal", "PtyOptions", "RecallOptions",
    "RecallResult", "ResponseSchema", "RunOptions", "WebSocketConstructor", "WebSocketLike",
    "ZodLike", "components", "operations", "paths"}


def camel(name: str) -> str:
    if name in RENAMED:
        return RENAMED[name]
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


async def _lines() -> Any:
    yield {}


def _instances() -> dict[str, object]:
    """One object of each Python class, for the attributes its constructor sets."""
    http = AsyncHttp(resolve("k", "http://127.0.0.1:1", None))
    info = burrow.BoxInfo(id="b_1", state="running")
    box = burrow.AsyncBox(info, http)
    return {"AsyncBox": box, "AsyncExec": box.exec, "AsyncFiles": box.files,
            "AsyncGit": box.git, "AsyncAgentRuns": box.agent,
            "AsyncRunStream": burrow.AsyncRunStream(_lines(), None),
            "AsyncTenant": burrow.AsyncTenant(burrow.TenantInfo(id="t"), http),
            "AsyncTenantAgent": burrow.AsyncTenantAgent(http, "t"),
            "AsyncKnowledge": burrow.AsyncKnowledge(),
            "AsyncMemories": burrow.AsyncMemories(http, "t"),
            "AsyncProcesses": box.processes, "AsyncPty": box.pty,
            "AsyncTerminal": burrow.AsyncTerminal(cast(Any, None))}


def python_surface(cls: type, instance: object) -> dict[str, set[str]]:
    static, members = set(), set()
    for name, member in vars(cls).items():
        if (name.startswith("_") and name not in RENAMED) or name in PYTHON_ONLY:
            continue
        target = static if isinstance(member, classmethod | staticmethod) else members
        target.add(camel(name))
    members |= {camel(n) for n in vars(instance) if not n.startswith("_")}
    return {"static": static, "instance": members}


@pytest.fixture(scope="module")
def typescript_surface(sdk: Path) -> dict[str, Any]:
    done = _run([_node(), "scripts/surface.mjs"], sdk)
    assert done.returncode == 0, done.stderr
    surface: dict[str, Any] = json.loads(done.stdout)
    return surface


def test_both_sdks_have_the_same_classes_and_methods(
        typescript_surface: dict[str, Any]) -> None:
    classes = typescript_surface["classes"]
    for python, instance in _instances().items():
        ours = python_surface(getattr(burrow, python), instance)
        theirs = {kind: set(names) for kind, names in classes[TWINS[python]].items()}
        assert ours == theirs, (python, {"python only": {k: ours[k] - theirs[k] for k in ours},
                                         "typescript only": {k: theirs[k] - ours[k]
                                                             for k in theirs}})


def test_both_sdks_export_the_same_names_and_errors(
        typescript_surface: dict[str, Any]) -> None:
    exports: dict[str, str] = typescript_surface["exports"]
    sync_twins = {name.removeprefix("Async") for name in TWINS}
    python = {n for n in burrow.__all__ if n not in TWINS} | sync_twins
    assert python - set(exports) == set(), "the TypeScript SDK lacks these"
    assert set(exports) - python == TYPESCRIPT_ONLY_TYPES, "the Python SDK lacks these"
    assert all(exports[n] == "type" for n in TYPESCRIPT_ONLY_TYPES)
    errors = [n for n in python if isinstance(getattr(burrow, n), type)
              and issubclass(getattr(burrow, n), BaseException)]
    assert all(exports[n] == "class" for n in errors)
    error = burrow.GitError("m", stderr="", exit_code=1)
    fields = {camel(n) for n in vars(error)} - {"message"}
    assert fields <= set(typescript_surface["classes"]["GitError"]["instance"]), fields
