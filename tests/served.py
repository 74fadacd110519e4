"""`burrow serve` as a user runs it: a real process over real HTTP, with its own Redis and
data dir; the leak check after it stops."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.hosts import OPERATOR_KEY, TEST_UID_BASE, box_processes

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parent.parent
# The `burrow` that serves: this venv's, or (for the client-only run, whose venv has no
# server parts) the one BURROW_TEST_SERVER_BIN names.
SERVER_BIN = Path(os.environ.get("BURROW_TEST_SERVER_BIN") or BIN / "burrow")
UID_BASE = str(TEST_UID_BASE + 500_000)  # inside the test range that the leak check watches


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Served:
    def __init__(self, data_dir: Path, operator_key: str | None = OPERATOR_KEY,
                 env: dict[str, str] | None = None, args: list[str] | None = None) -> None:
        self.data_dir = data_dir
        self.env = env or {}
        self.args = args or []
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.operator_key = operator_key
        self.proc: subprocess.Popen[str] | None = None
        self.output = ""

    def start(self) -> Served:
        # PYTHONPATH: the server runs this checkout's code whichever venv's `burrow` it is
        # (the client-only run names another venv's, which may be installed from elsewhere).
        env = {**os.environ, "BURROW_UID_BASE": UID_BASE, "BURROW_LAUNCHER_POOL": "1",
               "PYTHONPATH": str(ROOT), **self.env}
        env.pop("BURROW_OPERATOR_KEY", None)
        if self.operator_key:
            env["BURROW_OPERATOR_KEY"] = self.operator_key
        self.proc = subprocess.Popen(
            [str(SERVER_BIN), "serve", "--port", str(self.port), "--data-dir",
             str(self.data_dir), *self.args],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.proc.stdout.read() if self.proc.stdout else ""
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError("burrow serve did not become ready in 60 s")

    @property
    def operator(self) -> dict[str, str]:
        key = self.operator_key or (self.data_dir / "operator.key").read_text().strip()
        return {"Authorization": f"Bearer {key}"}

    def stop(self, sig: int = signal.SIGTERM) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)
        out, _ = self.proc.communicate(timeout=120)
        self.output += out


def stop_and_check(server: Served) -> None:
    if server.proc is not None and server.proc.poll() is None:
        server.stop()
    deadline = time.monotonic() + 10
    while box_processes() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert box_processes() == [], "box processes outlived burrow serve"
