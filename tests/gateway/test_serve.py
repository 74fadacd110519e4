"""`burrow serve` as a user runs it: a real process over real HTTP, with its own Redis."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.served import BIN, Served, stop_and_check


def test_readme_tour_over_real_http(served: Served) -> None:
    with httpx.Client(base_url=served.url, timeout=60) as c:
        r = c.post("/v1/tenants", json={"id": "tour"}, headers=served.operator)
        assert r.status_code == 201, r.text
        tenant = {"Authorization": f"Bearer {r.json()['api_key']}"}
        home = r.json()["home_box_id"]
        first = c.post("/v1/tenants/tour/agent/ask", headers=tenant,
                       json={"question": "I prefer dark mode. What theme should I use?"})
        assert first.status_code == 200 and "answer" in first.json()

        def learned() -> bool:
            r = c.get("/v1/tenants/tour/agent/profile", headers=tenant)
            return any(p["value"] == "dark mode" for p in r.json()["preferences"])

        deadline = time.monotonic() + 60
        while not learned():  # the agent learns from the request after it answered
            assert time.monotonic() < deadline, "the agent did not learn from the request"
            time.sleep(0.2)
        assert c.post(f"/v1/boxes/{home}/freeze", headers=served.operator).json()["state"] \
            == "frozen"
        assert learned()  # the next call wakes the box, and the agent remembers
        assert c.get(f"/v1/boxes/{home}", headers=tenant).json()["state"] == "running"
        hits = c.post("/v1/knowledge/search", headers=tenant, json={"query": "themes"})
        assert hits.status_code == 200 and isinstance(hits.json(), list)


@pytest.mark.boxes
def test_first_start_prints_the_url_the_operator_key_and_a_demo_tenant(tmp_path: Path) -> None:
    server = Served(tmp_path / "data", operator_key=None).start()
    server.stop()
    assert server.url in server.output
    key = (tmp_path / "data" / "operator.key").read_text().strip()
    assert key in server.output and "demo" in server.output
    assert oct((tmp_path / "data" / "operator.key").stat().st_mode & 0o777) == "0o600"


def test_sigkill_then_restart_keeps_every_box_and_file(served: Served) -> None:
    with httpx.Client(base_url=served.url, timeout=60) as c:
        r = c.post("/v1/tenants", json={"id": "k"}, headers=served.operator)
        tenant = {"Authorization": f"Bearer {r.json()['api_key']}"}
        home = r.json()["home_box_id"]
        other = c.post("/v1/boxes", json={}, headers=tenant).json()["id"]
        frozen = c.post("/v1/boxes", json={}, headers=tenant).json()["id"]
        for box in (home, other, frozen):
            r = c.put(f"/v1/boxes/{box}/files", params={"path": "kept.txt"},
                      content=f"written to {box}".encode(), headers=tenant)
            assert r.status_code == 204
        c.post(f"/v1/boxes/{frozen}/freeze", headers=tenant)
        # a product request (the built-in agent serves no /notes, and learns from it all the
        # same; the agent's own /health would not be recorded), recorded just after its answer
        assert c.post("/v1/tenants/k/agent/notes", json={"text": "kept"},
                      headers=tenant).status_code == 404
        deadline = time.monotonic() + 30
        while not _recorded(c, served, tenant):
            assert time.monotonic() < deadline, "the request was never recorded"
            time.sleep(0.05)
    served.stop(signal.SIGKILL)
    served.start()
    with httpx.Client(base_url=served.url, timeout=60) as c:
        for box in (home, other, frozen):
            r = c.get(f"/v1/boxes/{box}/files", params={"path": "kept.txt"}, headers=tenant)
            assert r.status_code == 200 and r.content == f"written to {box}".encode()
        deadline = time.monotonic() + 60
        while c.get("/v1/tenants/k/agent/profile", headers=tenant).json()["observed"] < 1:
            # the request made before the kill reaches the agent after all
            assert time.monotonic() < deadline, "an observation was lost in the kill"
            time.sleep(0.5)


def _recorded(c: httpx.Client, served: Served, tenant: dict[str, str]) -> bool:
    """Whether the pair is in the backlog, or already with the agent."""
    metrics = c.get("/metrics", headers=served.operator).text
    if any(line.startswith("burrow_observation_backlog ") and float(line.split()[1]) >= 1
           for line in metrics.splitlines()):
        return True
    return bool(c.get("/v1/tenants/k/agent/profile", headers=tenant).json()["observed"])


@pytest.mark.timeout(600)  # two runs of a fuzzer: ~50 s alone, over 120 s on a loaded machine
def test_schemathesis_finds_no_server_errors_or_schema_violations(served: Served) -> None:
    with httpx.Client(base_url=served.url, timeout=60) as c:
        r = c.post("/v1/tenants", json={"id": "fuzz"}, headers=served.operator)
        tenant_key = r.json()["api_key"]
    for key in (served.operator["Authorization"].split()[1], tenant_key):
        result = subprocess.run(
            [str(BIN / "schemathesis"), "run", f"{served.url}/openapi.json",
             "-H", f"Authorization: Bearer {key}", "--checks",
             "not_a_server_error,response_schema_conformance,status_code_conformance,"
             "content_type_conformance", "--max-examples", "4", "--request-timeout", "30",
             "--workers", "1", "--phases", "examples,coverage,fuzzing", "--seed", "7",
             "--generation-database", "none", "--exclude-tag", "planned",
             # a watch streams until its client stops reading, which a fuzzer never does
             "--exclude-path-regex", "/files/watch$", "--no-color"],
            capture_output=True, text=True, timeout=600, cwd=served.data_dir)
        assert result.returncode == 0, result.stdout[-6000:]


@pytest.fixture
def noexec_runtime_root() -> Iterator[Path]:
    """A tmpfs mounted as a systemd host mounts /run: nosuid, nodev, noexec (somewhere box uids
    can traverse to, unlike pytest's private tmp_path)."""
    root = Path(tempfile.mkdtemp(prefix="burrow-run-"))
    os.chmod(root, 0o755)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "nosuid,nodev,noexec,mode=0755", "testrun",
                    str(root)], check=True)
    yield root / "burrow"
    subprocess.run(["umount", "-R", "-l", str(root)], check=True)
    root.rmdir()


@pytest.mark.boxes
def test_serve_with_its_runtime_root_on_a_noexec_nodev_tmpfs(
        tmp_path: Path, noexec_runtime_root: Path) -> None:
    """The data dir on disk, the runtime root on another filesystem that refuses execution and
    devices: boxes (also with egress) start, freeze and wake."""
    server = Served(tmp_path / "data", env={"BURROW_RUNTIME_DIR": str(noexec_runtime_root)})
    server.start()
    try:
        with httpx.Client(base_url=server.url, timeout=60) as c:
            r = c.post("/v1/tenants", json={"id": "tmpfs"}, headers=server.operator)
            assert r.status_code == 201, r.text
            tenant = {"Authorization": f"Bearer {r.json()['api_key']}"}
            home = r.json()["home_box_id"]
            egress = c.post("/v1/boxes", json={"network": "egress"}, headers=tenant)
            assert egress.status_code == 201, egress.text
            for box in (home, egress.json()["id"]):
                r = c.post(f"/v1/boxes/{box}/exec", headers=tenant,
                           json={"command": "echo kept > kept.txt && cat /proc/net/dev"})
                assert r.json()["exit_code"] == 0, r.json()
                assert c.post(f"/v1/boxes/{box}/freeze", headers=tenant).json()["state"] \
                    == "frozen"
                assert c.post(f"/v1/boxes/{box}/wake", headers=tenant).json()["state"] \
                    == "running"
                r = c.post(f"/v1/boxes/{box}/exec", headers=tenant,
                           json={"command": "cat kept.txt; cat /proc/net/dev"})
                assert r.json()["stdout"].startswith("kept\n"), r.json()
            # the egress box has its own interface (slirp4netns's TUN device worked)
            assert "tap0" in r.json()["stdout"]
            assert c.get("/v1/tenants/tmpfs/agent/health", headers=tenant).status_code == 200
        runtime_dirs = [p for p in noexec_runtime_root.iterdir() if p.name != "bin"]
        assert runtime_dirs, "the runtime dir was not made under BURROW_RUNTIME_DIR"
        # bwrap runs from a tmpfs of Burrow's own; nothing else was mounted over the root
        assert os.path.ismount(noexec_runtime_root / "bin")
        assert not os.path.ismount(noexec_runtime_root)
    finally:
        stop_and_check(server)


@pytest.mark.boxes
def test_a_runtime_dir_box_uids_cannot_reach_is_refused_with_what_to_do(tmp_path: Path) -> None:
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    proc = subprocess.run(
        [str(BIN / "burrow"), "serve", "--port", "1", "--data-dir", str(tmp_path / "data")],
        env={**os.environ, "BURROW_RUNTIME_DIR": str(private / "run"),
             "BURROW_OPERATOR_KEY": "k" * 40}, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "other users cannot enter" in proc.stdout + proc.stderr
    assert "BURROW_RUNTIME_DIR" in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
