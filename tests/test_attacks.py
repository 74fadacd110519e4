"""Attacks on Burrow, written as the attacker would try them: a tenant key holder, and code
running inside a box, are both hostile. Each test fails if the attack works."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import Gateway, box_processes
from tests.served import Served, stop_and_check

SECRETS = {
    "BURROW_OPERATOR_KEY": "op-secret-" + "o" * 40,
    "ANTHROPIC_API_KEY": "sk-ant-secret-" + "a" * 30,
    "OPENAI_API_KEY": "sk-openai-secret-" + "b" * 30,
    "OPENROUTER_API_KEY": "sk-or-secret-" + "c" * 30,
}


@pytest.fixture
def secret_server(tmp_path: Path) -> Iterator[Served]:
    """`burrow serve` started the way an operator does: provider keys in its environment."""
    server = Served(tmp_path / "data", operator_key=SECRETS["BURROW_OPERATOR_KEY"],
                    env={k: v for k, v in SECRETS.items() if k != "BURROW_OPERATOR_KEY"})
    server.start()
    yield server
    stop_and_check(server)


def _tenant(c: httpx.Client, server: Served, name: str) -> tuple[dict[str, str], str]:
    r = c.post("/v1/tenants", json={"id": name}, headers=server.operator)
    assert r.status_code == 201, r.text
    return {"Authorization": f"Bearer {r.json()['api_key']}"}, r.json()["home_box_id"]


def test_no_process_of_a_box_holds_a_server_secret(secret_server: Served) -> None:
    """Inside the box: every /proc/*/environ and /proc/*/cmdline. On the host: every process
    running as a box uid (bwrap, the daemon, the agent, slirp4netns)."""
    with httpx.Client(base_url=secret_server.url, timeout=60) as c:
        tenant, home = _tenant(c, secret_server, "spy")
        assert c.get("/v1/tenants/spy/agent/health", headers=tenant).status_code == 200
        egress = c.post("/v1/boxes", json={"network": "egress"}, headers=tenant).json()["id"]
        for box in (home, egress):
            r = c.post(f"/v1/boxes/{box}/exec", headers=tenant, json={
                "command": "for f in /proc/[0-9]*/environ /proc/[0-9]*/cmdline; do "
                           "tr '\\0' '\\n' < $f; done 2>/dev/null; env"})
            assert r.json()["exit_code"] == 0, r.json()
            seen = r.json()["stdout"]
            assert "BURROW_BOX_TOKEN=" in seen  # the listing did read the box's processes
            for name, value in SECRETS.items():
                assert value not in seen, f"{name} is readable inside box {box}"
        pids = box_processes()
        assert len(pids) >= 4  # two sandboxes, the home box's agent, slirp4netns
        for pid in pids:
            for part in ("environ", "cmdline"):
                try:
                    data = Path(f"/proc/{pid}/{part}").read_bytes().decode(errors="replace")
                except OSError:
                    continue  # it exited meanwhile
                for name, value in SECRETS.items():
                    assert value not in data, f"{name} in /proc/{pid}/{part} (a box uid)"


DAEMON_ENV = ("for p in /proc/[0-9]*; do if /usr/bin/tr '\\0' ' ' < $p/cmdline | "
              "/usr/bin/grep -q 'boxd[.]pyc'; then /usr/bin/tr '\\0' '\\n' < $p/environ; fi; done")


async def test_box_env_cannot_change_how_programs_load(gateway: Gateway) -> None:
    headers, _ = await gateway.tenant("loader")
    for name in ("LD_PRELOAD", "LD_LIBRARY_PATH", "GCONV_PATH", "GLIBC_TUNABLES",
                 "BURROW_BOX_TOKEN", "ld_audit"):
        r = await gateway.client.post("/v1/boxes", headers=headers,
                                      json={"env": {name: "/workspace/x.so"}})
        assert r.status_code == 422, (name, r.text)
        assert name in r.json()["error"]["message"]
        assert "for one command" in r.json()["error"]["message"]
    assert (await gateway.client.get("/v1/boxes", headers=headers)).json() == [] or all(
        b["name"] != "x" for b in (await gateway.client.get("/v1/boxes", headers=headers)).json())


async def test_box_env_reaches_execs_and_never_the_daemon(gateway: Gateway) -> None:
    headers, _ = await gateway.tenant("envs")
    r = await gateway.client.post("/v1/boxes", headers=headers,
                                  json={"env": {"GREETING": "hello", "PATH": "/nowhere"}})
    assert r.status_code == 201, r.text
    box = r.json()["id"]
    r = await gateway.client.post(f"/v1/boxes/{box}/exec", headers=headers,
                                  json={"command": ["/bin/sh", "-c", "echo $GREETING $PATH"]})
    assert r.json()["stdout"] == "hello /nowhere\n", r.json()
    r = await gateway.client.post(f"/v1/boxes/{box}/exec", headers=headers,
                                  json={"command": ["/bin/sh", "-c", DAEMON_ENV]})
    daemon_env = r.json()["stdout"]
    assert "BURROW_BOX_ID=" in daemon_env  # found the daemon's environment
    lines = daemon_env.splitlines()  # (BURROW_BOX_ENV, the JSON it reads them from, is there)
    assert not [v for v in lines if v.startswith(("GREETING=", "PATH=/nowhere"))], lines
