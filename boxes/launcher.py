"""Pre-started launchers: small root processes that already sit in fresh cgroups and only wait
to become a box's sandbox.

Starting a sandbox the direct way costs two things a wake should not pay: forking this
(large) process to drop to the box's uid, and moving the sandbox's processes into cgroups,
which the kernel makes wait for RCU grace periods (here 1 to 3 ms per controller, per
process). A launcher pays both ahead of time. When a box starts, the pool renames the
launcher's cgroups to the box's, sets the box's limits, and hands the launcher bwrap's
arguments and file descriptors; the launcher drops to the box's uid and execs bwrap, which
then forks the box inside cgroups it already belongs to. The launcher is this process's child,
so bwrap's --die-with-parent and waiting for its exit work as for a direct start.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import socket
import sys
from dataclasses import dataclass

from boxes.cgroups import BoxCgroup, Cgroups
from boxes.hostenv import clean_env
from boxes.models import Limits

log = logging.getLogger("burrow.boxes")

REFILL_DELAY_S = 0.25  # after a launcher is taken, while others are ready

# Runs as root, stdlib only. It waits for one message (JSON + fds), puts the fds where bwrap's
# arguments expect them, drops every privilege and becomes bwrap. If this process dies first,
# the socket closes and the launcher just exits.
_LAUNCHER = r"""
import json, os, resource, socket, sys
sock = socket.socket(fileno=int(sys.argv[1]))
data, fds, _flags, _addr = socket.recv_fds(sock, 1 << 20, 16)
if not data:
    sys.exit(0)
request = json.loads(data)
sock.close()
# Move what we received out of the way first: targets are small numbers it may occupy.
high = [os.dup2(fd, 200 + i) for i, fd in enumerate(fds)]
for fd in set(fds):
    os.close(fd)
for fd, target in zip(high, request["targets"]):
    os.dup2(fd, target)
for fd in high:
    os.close(fd)
for name, value in request["rlimits"].items():  # lowering our own limits needs no privilege
    limit = getattr(resource, "RLIMIT_" + name.upper())
    resource.setrlimit(limit, (value, value))
uid = request["uid"]
os.setgroups([])
os.setresgid(uid, uid, uid)
os.setresuid(uid, uid, uid)
os.execve(request["argv"][0], request["argv"], request["env"])
"""


@dataclass
class Launcher:
    proc: asyncio.subprocess.Process
    sock: socket.socket
    cgroup_name: str

    @property
    def alive(self) -> bool:
        return self.proc.returncode is None

    def launch(self, argv: list[str], uid: int, fds: dict[int, int],
               rlimits: dict[str, int]) -> None:
        """Become bwrap with these limits: `fds` maps each of our fds to the number argv
        expects it at."""
        message = json.dumps({"argv": argv, "uid": uid, "targets": list(fds.values()),
                              "rlimits": rlimits, "env": clean_env()})
        socket.send_fds(self.sock, [message.encode()], list(fds))
        self.sock.close()

    async def discard(self) -> None:
        self.sock.close()  # the launcher reads EOF and exits
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        await self.proc.wait()


class LauncherPool:
    def __init__(self, cgroups: Cgroups, size: int) -> None:
        self.cgroups = cgroups
        self.size = size
        self._ready: list[Launcher] = []
        self._filling: asyncio.Task[None] | None = None
        self._closed = False

    async def _start_one(self) -> Launcher:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-I", "-S", "-c", _LAUNCHER, str(theirs.fileno()),
                pass_fds=(theirs.fileno(),), stdin=asyncio.subprocess.DEVNULL,
                start_new_session=True, env=clean_env())
        finally:
            theirs.close()
        name = f"pool-{secrets.token_hex(6)}"
        launcher = Launcher(proc, ours, name)
        try:
            cgroup = await asyncio.to_thread(self.cgroups.create, name, None)
            await asyncio.to_thread(cgroup.add, proc.pid)  # the slow part, done ahead of time
        except OSError:
            await launcher.discard()
            await asyncio.to_thread(self.cgroups.open(name).remove)
            raise
        return launcher

    async def _fill(self) -> None:
        while not self._closed and len(self._ready) < self.size:
            try:
                launcher = await self._start_one()
            except OSError as exc:
                log.warning("could not pre-start a box launcher: %s", exc)
                return
            self._ready.append(launcher)  # close() releases it if it came in meanwhile

    def refill(self) -> None:
        if self.size > 0 and not self._closed and (self._filling is None or self._filling.done()):
            self._filling = asyncio.create_task(self._fill())

    def take(self) -> Launcher | None:
        """A ready launcher (None if there is none). The pool refills REFILL_DELAY_S later,
        so that a new launcher's Python does not start on the CPU the box is starting on;
        at once when it is empty."""
        while self._ready:
            launcher = self._ready.pop()
            if launcher.alive:
                if self._ready:
                    asyncio.get_running_loop().call_later(REFILL_DELAY_S, self.refill)
                else:
                    self.refill()
                return launcher
        self.refill()
        return None

    def adopt_cgroup(self, launcher: Launcher, box_id: str, limits: Limits) -> BoxCgroup:
        return self.cgroups.adopt(launcher.cgroup_name, box_id, limits)

    async def release(self, launcher: Launcher) -> None:
        await launcher.discard()
        with contextlib.suppress(OSError):
            await asyncio.to_thread(self.cgroups.open(launcher.cgroup_name).remove)

    def pids(self) -> list[int]:
        return [launcher.proc.pid for launcher in self._ready]

    async def close(self) -> None:
        self._closed = True
        if self._filling is not None:
            await self._filling
        while self._ready:
            await self.release(self._ready.pop())
