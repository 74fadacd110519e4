"""Egress for boxes with network="egress": slirp4netns, user-mode TCP/IP, one per box.

slirp4netns runs as the box's own unprivileged uid. It joins the box's network namespace
through the user namespace that owns it (bwrap nests the sandbox in a second one), and it
opens the TUN device through a private node, owned by the box uid, on a tmpfs mounted over
/dev/net in a mount namespace of its own: the host's /dev/net/tun permissions need not change,
and no device node is left on a host filesystem (the runtime root may be mounted nodev).
`--disable-host-loopback` keeps the host's 127.0.0.1 out of reach.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from boxes import egress
from boxes.errors import HostUnsupportedError, SandboxStartError
from boxes.fdio import read_until
from boxes.hostenv import clean_env

_NS_GET_USERNS = 0xB701
_TUN_MAJOR, _TUN_MINOR = 10, 200
_READY_TIMEOUT_S = 10.0
_PACKAGES = {"slirp4netns": "slirp4netns", "unshare": "util-linux", "setpriv": "util-linux",
             "mknod": "coreutils"}


def check_host() -> None:
    egress.check_host()
    if not os.path.isdir("/dev/net"):
        raise HostUnsupportedError(
            "network='egress' needs the TUN device (/dev/net is missing); load the tun module "
            "(modprobe tun) or give the container /dev/net/tun")
    for tool in ("slirp4netns", "unshare", "setpriv", "mknod"):
        if shutil.which(tool) is None:
            raise HostUnsupportedError(
                f"network='egress' needs {tool}, which this host lacks; install "
                f"{_PACKAGES[tool]} (make install does it on Debian)")


@dataclass
class Egress:
    proc: asyncio.subprocess.Process
    exit_fd: int | None  # slirp4netns exits when this write end closes (or we die)

    async def stop(self) -> None:
        if self.exit_fd is not None:
            os.close(self.exit_fd)
            self.exit_fd = None
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()


async def start_egress(child_pid: int, uid: int, run_dir: Path,
                       dns: str | None = None) -> Egress:
    """Give the sandbox whose first process is `child_pid` a NATed route out; wait until ready.
    slirp's DNS forwarder (10.0.2.3 in the box) asks the host's resolvers, or `dns`."""
    check_host()
    net_fd = os.open(f"/proc/{child_pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    userns_fd = fcntl.ioctl(net_fd, _NS_GET_USERNS)
    ready_r, ready_w = os.pipe()
    exit_r, exit_w = os.pipe()  # slirp4netns exits when this process (the write end) goes away
    # In slirp's own mount namespace: a private TUN node and, when asked, its own resolv.conf.
    script = ('uid=$1 dns=$2 && shift 2 && mount -t tmpfs -o size=16k,mode=0755 burrow-tun '
              f'/dev/net && mknod -m 0600 /dev/net/tun c {_TUN_MAJOR} {_TUN_MINOR} '
              '&& chown "$uid:$uid" /dev/net/tun '
              '&& { [ -z "$dns" ] || { printf "nameserver %s\\n" "$dns" > /dev/net/resolv.conf '
              '&& mount --bind /dev/net/resolv.conf /etc/resolv.conf; }; } && exec setpriv '
              '--reuid="$uid" --regid="$uid" --clear-groups --inh-caps=-all '
              '--bounding-set=-all -- slirp4netns "$@"')
    argv = [
        "unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c", script, "sh",
        str(uid), dns or "",
        "--configure", "--mtu=65520", "--disable-host-loopback", "--enable-seccomp",
        f"--ready-fd={ready_w}", f"--exit-fd={exit_r}",
        f"--userns-path=/proc/self/fd/{userns_fd}", "--netns-type=path",
        f"/proc/self/fd/{net_fd}", "tap0",
    ]
    log = run_dir / "slirp4netns.log"
    log_fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, pass_fds=(ready_w, exit_r, userns_fd, net_fd),
            stdin=asyncio.subprocess.DEVNULL, stdout=log_fd, stderr=log_fd, env=clean_env())
    finally:
        for fd in (ready_w, exit_r, userns_fd, net_fd, log_fd):
            os.close(fd)
    egress = Egress(proc, exit_w)
    try:
        ready = await read_until(ready_r, b"1", _READY_TIMEOUT_S)
    finally:
        os.close(ready_r)
    if ready != b"1":
        await egress.stop()
        reason = log.read_text(errors="replace").strip()[-2000:] if log.exists() else ""
        raise SandboxStartError(f"egress networking failed to start: {reason or 'no output'}")
    return egress
