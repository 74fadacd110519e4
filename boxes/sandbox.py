"""Sandboxes: the `SandboxBackend` protocol and its bubblewrap implementation.

A bubblewrap box is: its own unprivileged host uid (never host root, not even mapped); new
user, pid, ipc, uts, mount, net and cgroup namespaces; an overlay root whose lower layer is
the read-only `host` image (with the host's /usr bound read-only) and whose upper layer is
the box's own ext4 image; cgroup and rlimit limits; and the box daemon as its first process.
bwrap is started blocked (`--block-fd`) so that its processes join the box's cgroups before
anything in the box runs.

The daemon and the box's service (the tenant agent) are the only processes of the box's
own pid namespace: the code the box runs (execs, hooks, agent runs) runs in a pid and user
namespace nested below, made by the daemon with the bwrap bound at /opt/burrow/bwrap, where
they cannot be seen, signalled or traced, and where no further user namespace can be made
(boxes/daemon.py, "the exec space").
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from boxes import cgroups, disk, hostdirs, network
from boxes import egress as egress_filter
from boxes.cgroups import BoxCgroup
from boxes.config import RuntimeConfig
from boxes.egress import EgressPolicy
from boxes.errors import HostUnsupportedError, SandboxStartError
from boxes.fdio import read_until
from boxes.hostenv import clean_env
from boxes.image import BOX_UID, DAEMON_PATH, DAEMON_PYTHON, Image, build_host_image
from boxes.launcher import LauncherPool
from boxes.models import BoxRecord

log = logging.getLogger("burrow.boxes")

ExitHandler = Callable[[str, str], Awaitable[None]]

_BASE_PATH = "/workspace/.local/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PYTHON_ALIAS_DIR = "/opt/burrow/python-bin"  # in the image: python -> /usr/bin/python3
_RUNTIME_ENV: dict[str, dict[str, str]] = {
    "base": {},
    "python": {
        # Debian marks its Python externally managed; in a box, pip falls back to --user
        # (the box's home), which is what a box owner means by "pip install".
        "PIP_BREAK_SYSTEM_PACKAGES": "1",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PYTHONUNBUFFERED": "1",
        # Bytecode that pip compiles then carries a hash of its source instead of an install
        # timestamp, so the same package installed in many boxes is stored once.
        "SOURCE_DATE_EPOCH": "315532800",
    },
    "node": {
        "NPM_CONFIG_PREFIX": "/workspace/.npm-global",
        "NPM_CONFIG_UPDATE_NOTIFIER": "false",
    },
}
# Where bwrap finds its pipes and the daemon's socket when a launcher starts it (a direct
# start keeps our own fd numbers).
_LAUNCHED_FDS = {"service": 3, "ready": 4, "listen": 5, "args": 6, "info": 7, "block": 8}
HOST_SOCKET = "/run/burrow/host.sock"  # where a box finds the host services socket
# A launched box starts its service beside the daemon rather than from it, so both Pythons
# start at once (the first request after a wake waits for the service). The fd numbers are
# the launcher's fixed ones (single digits: dash cannot name fds above 9). The service gets
# its socket as fd 3 and none of the daemon's fds; the daemon (this shell, exec'd) is its
# parent and supervises it from then on. The arguments are the box's env (NAME=value, names
# checked by BoxSpec), "--", then the service's command: the subshell exports them itself, so
# the shell and the daemon never run with them and no env(1) exec stands before the service.
_START_WITH_SERVICE = """
(
  [ -d "$HOME/.burrow" ] || mkdir "$HOME/.burrow"
  exec >>"$HOME/.burrow/service.log" 2>&1 4>&- 5<&- 6<&- 7>&- 8<&-
  unset BURROW_READY_FD BURROW_LISTEN_FD BURROW_SERVICE_CMD
  export LISTEN_FDS=1 BURROW_SERVICE_FD=3
  while [ "$1" != -- ]; do export "$1"; shift; done
  shift
  exec "$@"
) &
export BURROW_SERVICE_PID=$!
exec 6<&- 7>&- 8<&- {daemon}
"""
_RUNTIME_TOOLS = {"python": "/usr/bin/python3", "node": "/usr/bin/node"}
# Where a box finds this host's bwrap copy (hostdirs.install_bwrap's directory of it).
BWRAP_IN_BOX = "/opt/burrow/bwrap"


@dataclass(frozen=True)
class BoxUsage:
    memory_bytes: int
    cpu_ns: int
    disk_bytes: int


class SandboxBackend(Protocol):
    """What the box manager needs from a sandbox technology."""

    async def prepare(self) -> None: ...
    def set_exit_handler(self, handler: ExitHandler) -> None: ...
    def socket_path(self, box_id: str) -> str: ...
    def service_path(self, box_id: str) -> str: ...
    def has_layer(self, box: BoxRecord) -> bool: ...
    def layer_is_open(self, box: BoxRecord) -> bool: ...
    async def create_layer(self, box: BoxRecord) -> None: ...
    async def open_layer(self, box: BoxRecord) -> Path: ...
    def upper_dir(self, box: BoxRecord) -> Path: ...
    async def close_layer(self, box: BoxRecord) -> None: ...
    async def drop_layer(self, box: BoxRecord) -> None: ...
    async def start(self, box: BoxRecord, egress: EgressPolicy | None = None) -> int: ...
    async def stop(self, box: BoxRecord) -> None: ...
    async def pause(self, box: BoxRecord) -> None: ...
    async def resume(self, box: BoxRecord) -> None: ...
    def is_alive(self, box: BoxRecord) -> bool: ...
    def runs(self, box: BoxRecord) -> bool: ...
    def usage(self, box: BoxRecord) -> BoxUsage: ...
    def leftovers(self) -> dict[str, list[str]]: ...
    async def close(self) -> None: ...


@dataclass
class _Running:
    box: BoxRecord
    proc: asyncio.subprocess.Process
    child_pid: int
    egress: network.Egress | None
    watcher: asyncio.Task[None] | None = None
    stopping: bool = False


def box_env(box: BoxRecord) -> dict[str, str]:
    """The environment every process in the box starts with (before per-exec overrides)."""
    path = _BASE_PATH
    if box.runtime == "node":
        path = "/workspace/.npm-global/bin:" + path
    elif box.runtime == "python":  # `python` as well as python3, last so a venv's comes first
        path += ":" + PYTHON_ALIAS_DIR
    env = {
        "PATH": path, "HOME": "/workspace", "USER": "box", "LOGNAME": "box",
        "SHELL": "/bin/bash", "LANG": "C.UTF-8", "TERM": "xterm-256color", "TMPDIR": "/tmp",
        "BURROW_BOX_ID": box.id,
    }
    env.update(_RUNTIME_ENV.get(box.runtime, {}))
    if box.env:  # for the daemon to give its execs and service, never to apply to itself
        env["BURROW_BOX_ENV"] = json.dumps(box.env)
    return env


class BubblewrapBackend:
    def __init__(self, config: RuntimeConfig) -> None:
        self.config = config
        self.cgroups: cgroups.Cgroups = cgroups.NoCgroups()
        self.disks = disk.DiskImages(config.disk_templates_dir)
        self.image: Image | None = None
        self.bwrap = ""
        self._running: dict[str, _Running] = {}
        self._exit_handler: ExitHandler | None = None
        self.pool: LauncherPool | None = None
        self._addresses: tuple[float, tuple[str, ...]] | None = None

    # --- set-up --------------------------------------------------------------------------

    async def prepare(self) -> None:
        disk.check_host()
        hostdirs.prepare_root(self.config.run_dir)
        self.bwrap = hostdirs.install_bwrap(self.config.shared_dir / "bin")
        self.image = await asyncio.to_thread(
            build_host_image, self.config.shared_dir / "images", self.config.image_extras,
            (BWRAP_IN_BOX, *(target for _, target in self.config.ro_binds)))
        self.cgroups = cgroups.detect(self.config.instance)
        if not self.cgroups.available:
            log.warning("no usable cgroups: boxes get rlimits only and cannot be paused")
        self._remove_stale_pool_cgroups()
        if self.config.launcher_pool > 0:
            self.pool = LauncherPool(self.cgroups, self.config.launcher_pool)
            self.pool.refill()

    def _remove_stale_pool_cgroups(self) -> None:
        """Launcher cgroups of a process that died before it could clean them up."""
        for name in self.cgroups.box_ids():
            if name.startswith("pool-"):
                cgroup = self.cgroups.open(name)
                with contextlib.suppress(OSError):
                    if not cgroup.pids():
                        cgroup.remove()

    def set_exit_handler(self, handler: ExitHandler) -> None:
        self._exit_handler = handler

    # --- paths ---------------------------------------------------------------------------

    def _run_dir(self, box_id: str) -> Path:
        return self.config.box_run_dir(box_id)

    def socket_path(self, box_id: str) -> str:
        return str(self._run_dir(box_id) / "daemon.sock")

    def _image_file(self, box: BoxRecord) -> Path:
        return self.config.box_dir(box.id) / "disk.img"

    def _mountpoint(self, box: BoxRecord) -> Path:
        return self._run_dir(box.id) / "disk"

    # --- layers --------------------------------------------------------------------------

    def has_layer(self, box: BoxRecord) -> bool:
        return self._image_file(box).exists()

    def layer_is_open(self, box: BoxRecord) -> bool:
        return os.path.ismount(self._mountpoint(box))

    async def create_layer(self, box: BoxRecord) -> None:
        await asyncio.to_thread(self.disks.create, self._image_file(box), box.limits.disk_mb)

    async def open_layer(self, box: BoxRecord) -> Path:
        run_dir = self._run_dir(box.id)
        run_dir.mkdir(parents=True, exist_ok=True)
        # Root's, entered by the box's own group only (its bwrap reaches the layer through
        # it): no other user reads the box's files, its sockets or its logs.
        hostdirs.own_dir(run_dir, box.uid)
        mountpoint = self._mountpoint(box)
        self.disks.mount(self._image_file(box), mountpoint)
        hostdirs.own_dir(mountpoint, box.uid)
        upper, work = mountpoint / "upper", mountpoint / "work"
        fresh = not upper.exists()
        for path in (upper, work):
            path.mkdir(exist_ok=True)
            os.chown(path, box.uid, box.uid)
        os.chmod(work, 0o700)
        if fresh:  # the box user's own home and /tmp; everything else in the image is read-only
            for name, mode in (("workspace", 0o755), ("tmp", 0o1777)):
                (upper / name).mkdir()
                os.chown(upper / name, box.uid, box.uid)
                os.chmod(upper / name, mode)
        return upper

    def upper_dir(self, box: BoxRecord) -> Path:
        """The upper directory of the box's layer, once open (what open_layer returns)."""
        return self._mountpoint(box) / "upper"

    async def close_layer(self, box: BoxRecord) -> None:
        mountpoint = self._mountpoint(box)
        self.disks.unmount(mountpoint)

    async def drop_layer(self, box: BoxRecord) -> None:
        await self.close_layer(box)
        self._image_file(box).unlink(missing_ok=True)
        shutil.rmtree(self._run_dir(box.id), ignore_errors=True)

    # --- processes -----------------------------------------------------------------------

    def _argv(self, box: BoxRecord) -> list[str]:
        """bwrap's options for this box (not the command). They travel through `--args FD`,
        so the box's environment never shows in the host's process list."""
        assert self.image is not None
        mountpoint = self._mountpoint(box)
        argv = [
            "--unshare-user", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
            # no --disable-userns: the daemon makes the exec space's namespaces, the one
            # place user namespaces are disabled
            "--unshare-net", "--unshare-cgroup-try",
            "--uid", str(BOX_UID), "--gid", str(BOX_UID), "--hostname", "box",
            "--die-with-parent", "--new-session",
            "--overlay-src", str(self.image.path),
            "--overlay", str(mountpoint / "upper"), str(mountpoint / "work"), "/",
            "--ro-bind", "/usr", "/usr",
        ]
        for name in self.image.binds:
            argv += ["--ro-bind", f"/{name}", f"/{name}"]
        argv += ["--ro-bind", str(Path(self.bwrap).parents[2]), BWRAP_IN_BOX]
        for source, target in self.config.ro_binds:
            argv += ["--ro-bind", str(source), target]
        argv += ["--proc", "/proc", "--dev", "/dev", "--chdir", "/workspace", "--clearenv"]
        env = box_env(box)
        if self.config.host_socket is not None:
            argv += ["--ro-bind", str(self.config.host_socket), HOST_SOCKET]
            env["BURROW_HOST_SOCKET"] = HOST_SOCKET
        if self.config.start_env is not None:
            env.update(self.config.start_env(box))
        for key, value in env.items():
            argv += ["--setenv", key, value]
        return argv

    @staticmethod
    def _args_fd(args: list[str]) -> int:
        fd = os.memfd_create("bwrap-args", os.MFD_CLOEXEC)
        os.write(fd, b"".join(a.encode() + b"\0" for a in args))
        os.lseek(fd, 0, os.SEEK_SET)
        return fd

    def bare_argv(self, box: BoxRecord, command: list[str]) -> list[str]:
        """The sandbox of `box` running `command` instead of the daemon, started the same way
        but without cgroups or a readiness handshake: the floor benchmarks compare against.
        Run it as the box's uid, with its layer open."""
        return [self.bwrap, *self._argv(box), "--", *command]

    def _check_runtime(self, box: BoxRecord) -> None:
        tool = _RUNTIME_TOOLS.get(box.runtime)
        if tool and not Path(tool).exists():
            raise HostUnsupportedError(
                f"runtime {box.runtime!r} needs {tool} on the host, which is missing; install "
                f"it (Debian: apt-get install {'nodejs' if box.runtime == 'node' else 'python3'})")

    @staticmethod
    def _listen(path: str) -> socket.socket:
        """A listening socket for the box, bound by us where the box cannot see (nothing in
        the box can replace it with a link to another box's socket)."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(path)
            os.chmod(path, 0o600)
            listener.listen(512)
        except OSError:
            listener.close()
            raise
        return listener

    def service_path(self, box_id: str) -> str:
        return str(self._run_dir(box_id) / "service.sock")

    async def _spawn(self, box: BoxRecord, fds: dict[str, int],
                     log_fd: int) -> tuple[asyncio.subprocess.Process, BoxCgroup, bool]:
        """Start bwrap for `box`, blocked before the box runs anything. `fds` holds our ends
        of the info, block and ready pipes and the listening sockets passed into the box.

        Returns the process, the box's cgroup, and whether the process already sits in it
        (a pre-started launcher) or still has to be moved there.
        """
        launcher = self.pool.take() if self.pool is not None else None
        if launcher is not None and self.pool is not None:
            cgroup = self.pool.adopt_cgroup(launcher, box.id, box.limits)
            numbers = {role: _LAUNCHED_FDS[role] for role in [*fds, "args"]}
            args_fd = self._args_fd(self._daemon_args(box, numbers))
            err_fd = os.dup(log_fd)
            try:
                mapping = {fds[role]: numbers[role] for role in fds}
                launcher.launch(self._daemon_argv(box, numbers, launched=True), box.uid,
                                mapping | {args_fd: numbers["args"], log_fd: 1, err_fd: 2},
                                self._rlimits(box))
                return launcher.proc, cgroup, True
            except OSError as exc:  # it died while waiting; start directly instead
                log.warning("box launcher unusable (%s); starting %s directly", exc, box.id)
                await launcher.discard()
                with contextlib.suppress(OSError):
                    cgroup.remove()
            finally:
                os.close(err_fd)
                os.close(args_fd)
        cgroup = self.cgroups.create(box.id, box.limits)
        args_fd = self._args_fd(self._daemon_args(box, fds))
        # prlimit sets the box's limits, setpriv drops to its uid (event loops such as uvloop
        # take no user= argument).
        limits = [f"--{name}={value}:{value}" for name, value in self._rlimits(box).items()]
        drop = ["prlimit", *limits, "--", "setpriv", f"--reuid={box.uid}",
                f"--regid={box.uid}", "--clear-groups", "--inh-caps=-all", "--"]
        try:
            proc = await asyncio.create_subprocess_exec(
                *drop, *self._daemon_argv(box, {**fds, "args": args_fd}, launched=False),
                pass_fds=(*fds.values(), args_fd), stdin=asyncio.subprocess.DEVNULL,
                stdout=log_fd, stderr=log_fd, start_new_session=True, env=clean_env())
        finally:
            os.close(args_fd)
        return proc, cgroup, False

    def _daemon_argv(self, box: BoxRecord, fds: dict[str, int], launched: bool) -> list[str]:
        """bwrap's command line (every option comes from the `args` fd). A box with a
        service starts it beside the daemon rather than from it, so that both Pythons start
        at once: the first request after a wake waits for the service (given the box's env
        exported by the subshell that becomes the service, so that the shell and the daemon
        never run with it)."""
        daemon = [DAEMON_PYTHON, "-I", "-S", DAEMON_PATH]
        box_env = [f"{key}={value}" for key, value in box.env.items()]
        command = daemon if not (box.service and launched) else [
            "/bin/sh", "-c", _START_WITH_SERVICE.format(daemon=" ".join(daemon)), "sh",
            *box_env, "--", *box.service]
        return [self.bwrap, "--args", str(fds["args"]), "--", *command]

    def _daemon_args(self, box: BoxRecord, fds: dict[str, int]) -> list[str]:
        args = [*self._argv(box), "--info-fd", str(fds["info"]), "--block-fd", str(fds["block"]),
                "--setenv", "BURROW_READY_FD", str(fds["ready"]),
                "--setenv", "BURROW_LISTEN_FD", str(fds["listen"])]
        if "service" in fds and box.service:
            args += ["--setenv", "BURROW_SERVICE_FD", str(fds["service"]),
                     "--setenv", "BURROW_SERVICE_CMD", json.dumps(box.service)]
        return args

    async def start(self, box: BoxRecord, egress: EgressPolicy | None = None) -> int:
        """Start the box's sandbox; an egress box gets `egress` (default: public addresses
        only) installed as its filter before anything in it runs."""
        self._check_runtime(box)
        if box.network == "egress":
            egress = replace(egress or EgressPolicy(), host_addresses=self._host_addresses())
        run_dir = self._run_dir(box.id)
        listeners = [self._listen(self.socket_path(box.id))]
        if box.service:
            listeners.append(self._listen(self.service_path(box.id)))
        info_r, info_w = os.pipe()
        block_r, block_w = os.pipe()
        ready_r, ready_w = os.pipe()
        log_fd = os.open(run_dir / "sandbox.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC
                         | os.O_CLOEXEC, 0o600)
        fds = {"info": info_w, "block": block_r, "ready": ready_w,
               "listen": listeners[0].fileno()}
        if box.service:
            fds["service"] = listeners[1].fileno()
        try:
            proc, cgroup, placed = await self._spawn(box, fds, log_fd)
        except BaseException:
            for fd in (info_r, block_w, ready_r):
                os.close(fd)
            raise
        finally:
            for fd in (info_w, block_r, ready_w, log_fd):
                os.close(fd)
            for listener in listeners:
                listener.close()  # the box holds them now
        try:
            running = await self._handshake(box, proc, cgroup, placed, info_r, block_w, ready_r,
                                            egress)
        finally:
            for fd in (info_r, block_w, ready_r):
                os.close(fd)
        running.watcher = asyncio.create_task(self._watch(box.id, running))
        self._running[box.id] = running
        return proc.pid

    async def _handshake(self, box: BoxRecord, proc: asyncio.subprocess.Process,
                         cgroup: BoxCgroup, placed: bool, info_r: int, block_w: int,
                         ready_r: int, egress: EgressPolicy | None) -> _Running:
        """Put the blocked sandbox in its cgroups and its egress filter in place, let it
        run, and wait for its daemon."""
        running: _Running | None = None
        try:
            info = await read_until(info_r, b"}", self.config.start_timeout_s)
            try:
                child_pid = int(json.loads(info)["child-pid"])
            except (ValueError, KeyError) as exc:
                raise SandboxStartError(f"sandbox failed to start: {self._log_tail(box)}") \
                    from exc
            try:
                if not placed:
                    for pid in (proc.pid, child_pid):
                        cgroup.add(pid)
                os.write(block_w, b"1")
            except (ProcessLookupError, BrokenPipeError) as exc:  # bwrap gave up setting up
                await proc.wait()
                raise SandboxStartError(
                    f"sandbox failed to start: {self._log_tail(box)}") from exc
            ready = await read_until(ready_r, b"\n", self.config.start_timeout_s)
            running = _Running(box, proc, child_pid, None)
            if ready != b"ready\n":
                raise SandboxStartError(f"box daemon did not start: {self._log_tail(box)}")
            if egress is not None:
                # The filter first, then the route out: until slirp4netns attaches tap0 the
                # box has loopback only. (Setting the filter while bwrap still configured
                # the namespace's loopback made bwrap fail now and then.)
                await egress_filter.apply(child_pid, egress)
                running.egress = await network.start_egress(
                    child_pid, box.uid, self._run_dir(box.id), self.config.egress_dns)
        except BaseException:
            await self._kill(box, proc, running)
            raise
        return running

    def _rlimits(self, box: BoxRecord) -> dict[str, int]:
        """Limits set on bwrap before it starts (and so on everything in the box)."""
        limits = {
            # per uid, and every box has its own uid: a fork cap even without cgroups
            "nproc": box.limits.pids + 16,
            "nofile": box.limits.nofile,
            "core": 0,
            "fsize": box.limits.disk_mb * 1024 * 1024,
        }
        if not self.cgroups.available:  # the only memory bound left
            limits["as"] = box.limits.memory_mb * 2 * 1024 * 1024
        return limits

    def _host_addresses(self) -> tuple[str, ...]:
        """The host's own addresses, which no box may reach (listed at most once a minute)."""
        now = time.monotonic()
        if self._addresses is None or now - self._addresses[0] > 60:
            self._addresses = (now, egress_filter.host_addresses())
        return self._addresses[1]

    def _log_tail(self, box: BoxRecord) -> str:
        path = self._run_dir(box.id) / "sandbox.log"
        try:
            text = path.read_text(errors="replace").strip()
        except OSError:
            text = ""
        return text[-2000:] or "no output"

    async def _watch(self, box_id: str, running: _Running) -> None:
        code = await running.proc.wait()
        if running.stopping:
            return
        self._running.pop(box_id, None)
        if running.egress is not None:
            await running.egress.stop()
        reason = (f"the box's daemon exited unexpectedly (status {code}); "
                  "wake the box to restart it from its layer")
        if self._exit_handler is not None:
            await self._exit_handler(box_id, reason)

    async def _kill(self, box: BoxRecord, proc: asyncio.subprocess.Process | None,
                    running: _Running | None) -> None:
        cgroup = self.cgroups.open(box.id)
        with contextlib.suppress(OSError):
            cgroup.thaw()  # frozen tasks cannot die
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()  # bwrap's --die-with-parent then takes the whole box down
            await proc.wait()
        elif box.pid:
            _kill_foreign(box.pid, box.uid)
        with contextlib.suppress(OSError):
            for _attempt in range(200):
                pids = cgroup.pids()
                if not pids:
                    break
                for pid in pids:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                await asyncio.sleep(0.005)
        if running is not None and running.egress is not None:
            await running.egress.stop()
        with contextlib.suppress(OSError):
            cgroup.remove()

    async def stop(self, box: BoxRecord) -> None:
        running = self._running.pop(box.id, None)
        if running is not None:
            running.stopping = True
        await self._kill(box, running.proc if running else None, running)
        if running is not None and running.watcher is not None:
            await running.watcher
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path(box.id))

    async def pause(self, box: BoxRecord) -> None:
        await asyncio.to_thread(self.cgroups.open(box.id).freeze)

    async def resume(self, box: BoxRecord) -> None:
        self.cgroups.open(box.id).thaw()

    def is_alive(self, box: BoxRecord) -> bool:
        running = self._running.get(box.id)
        if running is not None:
            return running.proc.returncode is None
        return bool(box.pid) and _alive_as(box.pid or 0, box.uid)

    def runs(self, box: BoxRecord) -> bool:
        """This process started the box's sandbox, and it still runs (is_alive also knows a
        sandbox an earlier process of this machine left, by its pid)."""
        running = self._running.get(box.id)
        return running is not None and running.proc.returncode is None

    def usage(self, box: BoxRecord) -> BoxUsage:
        cgroup = self.cgroups.open(box.id)
        try:
            memory, cpu = cgroup.memory_bytes(), cgroup.cpu_ns()
        except OSError:
            memory, cpu = 0, 0
        mountpoint = self._mountpoint(box)
        if os.path.ismount(mountpoint):
            used = self.disks.used_bytes(mountpoint)
        else:  # a frozen box: what its sparse disk image takes on the host
            try:
                used = self._image_file(box).stat().st_blocks * 512
            except FileNotFoundError:
                used = 0
        return BoxUsage(memory, cpu, used)

    def leftovers(self) -> dict[str, list[str]]:
        """What of this runtime is still on the host: processes, mounts, cgroups."""
        base = str(self.config.run_dir)
        mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text()
                  .splitlines() if line.split()[4].startswith(base)]
        procs = [str(r.proc.pid) for r in self._running.values()]
        procs += [str(pid) for pid in (self.pool.pids() if self.pool is not None else [])]
        return {"processes": procs, "mounts": mounts,
                "cgroups": self.cgroups.box_ids() + self.cgroups.instance_dirs()}

    async def close(self) -> None:
        """Stop every box this process runs (their layers stay as they are)."""
        for running in list(self._running.values()):
            await self.stop(running.box)
        if self.pool is not None:
            await self.pool.close()
        self.cgroups.close()


def _alive_as(pid: int, uid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    for line in status.splitlines():
        if line.startswith("Uid:"):
            return line.split()[1] == str(uid)
    return False


def _kill_foreign(pid: int, uid: int) -> None:
    """Kill a box started by another process (pid checked against the box's uid)."""
    if _alive_as(pid, uid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
