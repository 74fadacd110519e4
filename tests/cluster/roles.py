"""The roles of a cluster as separate processes for tests: box hosts (`burrow host`), gateways
(`burrow gateway`) and the worker, sharing one Redis and one S3 store (SeaweedFS), each with
a data dir, a uid range and ports of its own."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
BURROW = str(Path(sys.executable).parent / "burrow")
START_TIMEOUT_S = 180.0  # a host loads the embedding model in a child process first
UID_STEP = 20_000        # box uids per host: ranges never overlap


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Role:
    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    port: int = 0

    def start(self) -> Role:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(self.argv, env=self.env, stdout=out, stderr=out,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        return self

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.signal(signal.SIGKILL)
            self.proc.wait()

    def tail(self) -> str:
        with contextlib.suppress(OSError):
            return self.log.read_text(errors="replace")[-4000:]
        return ""

    def wait_for_line(self, text: str, timeout_s: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while text not in self.tail():
            assert self.proc is not None and self.proc.poll() is None, \
                f"{self.name} exited:\n{self.tail()}"
            assert time.monotonic() < deadline, f"{self.name} did not start:\n{self.tail()}"
            time.sleep(0.2)


@dataclass
class Cluster:
    root: Path
    redis_url: str
    store_url: str
    store_env: dict[str, str]
    uid_base: int
    secret: str = field(default_factory=lambda: secrets.token_hex(32))
    operator_key: str = field(default_factory=lambda: "op-" + secrets.token_hex(24))
    lease_s: float = 3.0
    roles: list[Role] = field(default_factory=list)
    _hosts: int = 0

    def _env(self, data_dir: Path) -> dict[str, str]:
        return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.root),
                "REDIS_URL": self.redis_url, "BURROW_SERVER_SECRET": self.secret,
                "BURROW_OPERATOR_KEY": self.operator_key, "BURROW_STORE_URL": self.store_url,
                "QDRANT_URL": ":memory:", "BURROW_HOST_LEASE_S": str(self.lease_s),
                "BURROW_SWEEP_INTERVAL_S": "2", "BURROW_DATA_DIR": str(data_dir),
                "BURROW_LOG_FORMAT": "text", "PYTHONPATH": str(REPO), **self.store_env}

    def host(self, name: str | None = None) -> Role:
        """A box host (a new one each call: a restarted host registers anew)."""
        self._hosts += 1
        name = name or f"h{self._hosts}"
        port = free_port()
        env = {**self._env(self.root / name), "BURROW_HOST_NAME": name,
               "BURROW_UID_BASE": str(self.uid_base + self._hosts * UID_STEP),
               "BURROW_HOST_LISTEN": f"127.0.0.1:{port}",
               "BURROW_HOST_ADDRESS": f"127.0.0.1:{port}"}
        role = Role(name, [BURROW, "host"], env,
                    self.root / f"{name}-{self._hosts}.log", port=port)
        self.roles.append(role.start())
        return role

    def gateway(self, name: str = "gw") -> Role:
        port = free_port()
        role = Role(name, [BURROW, "gateway", "--port", str(port)],
                    self._env(self.root / name), self.root / f"{name}.log", port=port)
        self.roles.append(role.start())
        return role

    def stop(self) -> None:
        for role in self.roles:
            role.kill()


def client(gateway: Role, key: str) -> httpx.Client:
    return httpx.Client(base_url=f"http://127.0.0.1:{gateway.port}", timeout=120,
                        headers={"Authorization": f"Bearer {key}"})
