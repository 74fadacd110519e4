"""What the benches that run a real `burrow serve` share: waiting until the server is quiet,
stopping it and removing what it left, and refusing to run without root."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from boxes import RuntimeConfig


def tree_cpu(pid: int) -> Iterator[tuple[int, float]]:
    """(pid, CPU seconds it used so far) for `pid` and every process below it."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(stat[1]), []).append(int(entry))
    todo = [pid]
    while todo:
        current = todo.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        yield current, (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        todo.extend(children.get(current, []))


def tree_cpu_s(pid: int) -> float:
    """CPU seconds used so far by `pid` and everything below it (its embedding process, the
    boxes' agents)."""
    return sum(used for _, used in tree_cpu(pid))


def settle(pid: int, quiet: float = 0.1, timeout_s: float = 90.0) -> None:
    """Wait until the server and its children are idle: its first-start work (loading the
    embedding model) and the learning from earlier requests would otherwise be measured as
    gateway latency."""
    deadline = time.monotonic() + timeout_s
    before = tree_cpu_s(pid)
    while time.monotonic() < deadline:
        time.sleep(1.0)
        now = tree_cpu_s(pid)
        if now - before < quiet:
            return
        before = now
    print(f"note: the server was still busy after {timeout_s:.0f} s; measuring anyway")


def phases(metrics: str) -> dict[str, tuple[float, int]]:
    """(sum in seconds, count) of each phase of burrow_wake_phase_seconds."""
    out: dict[str, list[float]] = {}
    for line in metrics.splitlines():
        for suffix, slot in (("_sum", 0), ("_count", 1)):
            prefix = f"burrow_wake_phase_seconds{suffix}{{phase=\""
            if line.startswith(prefix):
                name = line[len(prefix):].split('"', 1)[0]
                out.setdefault(name, [0.0, 0.0])[slot] = float(line.rsplit(" ", 1)[1])
    return {k: (v[0], int(v[1])) for k, v in out.items()}


def stop_served(proc: subprocess.Popen[Any], data_dir: Path) -> None:
    proc.terminate()
    proc.wait(120)
    shutil.rmtree(RuntimeConfig(data_dir=data_dir).run_dir, ignore_errors=True)
    shutil.rmtree(data_dir, ignore_errors=True)


@dataclass
class Served:
    url: str
    port: int
    data_dir: Path
    pid: int


@contextmanager
def served(operator_key: str, uid_base: str, prefix: str,
           extra_env: dict[str, str] | None = None) -> Iterator[Served]:
    """`burrow serve` on a free port with a fresh data dir, once it answers /readyz; stopped
    and removed afterwards."""
    import httpx

    from bench.httpload import free_port
    data_dir = Path(tempfile.mkdtemp(prefix=prefix))
    port = free_port()
    env = {**os.environ, "BURROW_OPERATOR_KEY": operator_key, "BURROW_UID_BASE": uid_base,
           **(extra_env or {})}
    proc = subprocess.Popen([str(Path(sys.executable).parent / "burrow"), "serve", "--port",
                             str(port), "--data-dir", str(data_dir)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield Served(url, port, data_dir, proc.pid)
    finally:
        stop_served(proc, data_dir)


@contextmanager
def served_with_local_models(operator_key: str, uid_base: str, prefix: str,
                             extra_env: dict[str, str] | None = None,
                             ) -> Iterator[tuple[str, dict[str, str], Path]]:
    """`burrow serve --local-model` on a free port with a fresh data dir, once it is quiet:
    (its URL, each bundled model's llama.cpp URL by name, the data dir)."""
    from bench.httpload import free_port
    data_dir = Path(tempfile.mkdtemp(prefix=prefix))
    port = free_port()
    env = {**os.environ, "BURROW_OPERATOR_KEY": operator_key, "BURROW_UID_BASE": uid_base,
           **(extra_env or {})}
    proc = subprocess.Popen([str(Path(sys.executable).parent / "burrow"), "serve", "--port",
                             str(port), "--data-dir", str(data_dir), "--local-model"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        routes: dict[str, str] = {}
        assert proc.stdout is not None
        for line in proc.stdout:  # the welcome names each local model's server
            if line.startswith("local models for agent runs: "):
                routes = dict(re.findall(r"local/(\S+) \(llama\.cpp at (\S+)\)", line))
                break
        if not routes:
            sys.exit("burrow serve --local-model did not start its local models")
        # Keep reading what the server prints, so that it never blocks on a full pipe.
        threading.Thread(target=proc.stdout.read, daemon=True).start()
        settle(proc.pid)
        yield f"http://127.0.0.1:{port}", routes, data_dir
    finally:
        stop_served(proc, data_dir)


def run_as_root(name: str, main: Callable[[], None]) -> None:
    if os.geteuid() != 0:
        sys.exit(f"{name} needs root (boxes get their own uids and disk images)")
    main()
