"""The `host` runtime image: the read-only lower layer every box starts from.

It is a small tree: a filtered copy of the host's /etc (no shadow, no keys, no host users),
the links of a merged /usr, empty mount points, and the box daemon. The host's /usr itself
is bind-mounted read-only over it at start. Images are content-addressed directories, so a
new daemon or /etc never changes the lower layer under a box that is running.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from boxes.errors import HostUnsupportedError

BOX_UID = 1000  # the box user's uid and gid as seen inside every box
DAEMON_PYTHON = "/usr/bin/python3"
DAEMON_PATH = "/opt/burrow/boxd.pyc"

# What of the host's /etc a box may see. Everything else (shadow, sudoers, ssh keys, ssl
# private keys, machine-id, cloud credentials…) is left out by not being listed.
_ETC_FILES = (
    "nsswitch.conf", "host.conf", "gai.conf", "localtime", "timezone", "ld.so.cache",
    "ld.so.conf", "mime.types", "os-release", "debian_version", "profile", "bash.bashrc",
    "inputrc", "protocols", "services", "ethertypes", "shells", "magic", "login.defs",
    "issue", "lsb-release", "papersize", "mailcap",
)
_ETC_DIRS = (
    "alternatives", "ld.so.conf.d", "ssl", "ca-certificates", "profile.d", "python3",
    "python3.11", "terminfo", "fonts", "mime", "gitconfig.d",
)
_ETC_SKIP = frozenset({"private"})  # ssl/private
_TOP_LINKS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
_MOUNT_POINTS = ("usr", "proc", "dev", "run/burrow", "workspace", "tmp", "home", "opt/burrow",
                 "var/tmp", "mnt", "srv")


@dataclass(frozen=True)
class Image:
    path: Path
    # Top-level directories that are real directories on this host (not merged-/usr links)
    # and must be bind-mounted read-only like /usr.
    binds: tuple[str, ...]


def _generated_etc() -> dict[str, str]:
    return {
        "passwd": (f"root:x:0:0:root:/root:/usr/sbin/nologin\n"
                   f"box:x:{BOX_UID}:{BOX_UID}:box:/workspace:/bin/bash\n"
                   "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"),
        "group": f"root:x:0:\nbox:x:{BOX_UID}:\nnogroup:x:65534:\n",
        "hosts": "127.0.0.1\tlocalhost box\n::1\tlocalhost ip6-localhost ip6-loopback\n",
        # slirp4netns's DNS forwarder; unreachable (and harmless) in boxes without network
        "resolv.conf": "nameserver 10.0.2.3\noptions timeout:2 attempts:2\n",
        "hostname": "box\n",
    }


def _copy_etc(dest: Path) -> None:
    src = Path("/etc")
    for name in _ETC_FILES:
        path = src / name
        if path.is_symlink():
            os.symlink(os.readlink(path), dest / name)
        elif path.is_file():
            shutil.copy2(path, dest / name)
    for name in _ETC_DIRS:
        path = src / name
        if path.is_dir() and not path.is_symlink():
            shutil.copytree(path, dest / name, symlinks=True,
                            ignore=lambda _d, names: [n for n in names if n in _ETC_SKIP],
                            ignore_dangling_symlinks=True)
    for name, text in _generated_etc().items():
        (dest / name).write_text(text)


def _extra_files(extras: dict[str, Path]) -> list[tuple[str, Path]]:
    """(path inside the image, host file) for the Python sources of each extra directory."""
    files = []
    for target, source in sorted(extras.items()):
        for path in sorted(source.rglob("*.py")):
            if "__pycache__" not in path.parts:
                files.append((f"{target.strip('/')}/{path.relative_to(source)}", path))
    return files


def _fingerprint(daemon_source: bytes, extras: list[tuple[str, Path]]) -> str:
    h = hashlib.sha256(daemon_source)
    h.update(Path(__file__).read_bytes())  # how the image is laid out
    for target, path in extras:
        h.update(target.encode() + b"\0" + path.read_bytes())
    for name in (*_ETC_FILES, *_ETC_DIRS, "skel"):
        path = Path("/etc") / name
        try:
            st = path.lstat()
        except FileNotFoundError:
            continue
        h.update(f"{name}:{st.st_mtime_ns}:{st.st_size}".encode())
    for name in _TOP_LINKS:
        path = Path("/") / name
        h.update(f"{name}:{path.is_symlink()}:{path.exists()}".encode())
    h.update(repr(_generated_etc()).encode())
    return h.hexdigest()[:16]


def _check_host() -> None:
    if not Path(DAEMON_PYTHON).is_file():
        raise HostUnsupportedError(
            f"boxes run their daemon with {DAEMON_PYTHON}, which this host lacks; "
            "install the distribution's python3 package")


def _populate(root: Path, daemon_source: bytes, extras: list[tuple[str, Path]]) -> None:
    for mount_point in _MOUNT_POINTS:
        (root / mount_point).mkdir(parents=True, exist_ok=True)
    for link in _TOP_LINKS:
        host = Path("/") / link
        if host.is_symlink():
            os.symlink(os.readlink(host), root / link)
        elif host.is_dir():
            (root / link).mkdir()
    (root / "run/burrow/host.sock").touch()  # mount point for the host services socket
    aliases = root / "opt/burrow/python-bin"  # on the PATH of python boxes (sandbox.box_env)
    aliases.mkdir(parents=True)
    os.symlink(DAEMON_PYTHON, aliases / "python")
    (root / "etc").mkdir()
    _copy_etc(root / "etc")
    skel = Path("/etc/skel")
    if skel.is_dir():  # the box user's dotfiles, as a new account would get them
        shutil.copytree(skel, root / "workspace", symlinks=True, dirs_exist_ok=True)
    source = root / "opt/burrow/boxd.py"
    source.write_bytes(daemon_source)
    # Compile with the box's own interpreter: a box runs the .pyc, skipping a compile at start.
    subprocess.run([DAEMON_PYTHON, "-I", "-S", "-c",
                    "import py_compile, sys; py_compile.compile(sys.argv[1], cfile=sys.argv[2], "
                    "doraise=True)", str(source), str(root / DAEMON_PATH.lstrip("/"))],
                   check=True, capture_output=True)
    for target, path in extras:
        (root / target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, root / target)
    if extras:  # into __pycache__, where the box's python looks for them
        subprocess.run([DAEMON_PYTHON, "-I", "-S", "-c",
                        "import py_compile, sys\nfor f in sys.argv[1:]: "
                        "py_compile.compile(f, doraise=True)",
                        *(str(root / target) for target, _ in extras)],
                       check=True, capture_output=True)


def _make_world_readable(root: Path) -> None:
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(dirpath, name)
            if not os.path.islink(path):
                mode = 0o755 if name in dirs else os.stat(path).st_mode & 0o755 | 0o444
                os.chmod(path, mode)
    os.chmod(root / "tmp", 0o1777)
    os.chmod(root / "var/tmp", 0o1777)


def build_host_image(images_dir: Path, extras: dict[str, Path] | None = None,
                     mount_points: tuple[str, ...] = ()) -> Image:
    """Return the current `host` image, building it on first use.

    `extras` maps directories inside the image (like "opt/burrow/agent") to host directories
    whose Python sources are copied there and compiled: programs boxes run besides the daemon.
    `mount_points`: directories made for read-only binds of the host's (agent CLIs).
    """
    _check_host()
    daemon_source = (Path(__file__).parent / "daemon.py").read_bytes()
    extra_files = _extra_files(extras or {})
    points = tuple(sorted(p.strip("/") for p in mount_points))
    name = f"host-{_fingerprint(daemon_source + repr(points).encode(), extra_files)}"
    path = images_dir / name
    binds = tuple(n for n in _TOP_LINKS
                  if (Path("/") / n).is_dir() and not (Path("/") / n).is_symlink())
    if path.is_dir():
        return Image(path, binds)
    images_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(images_dir, 0o755)
    tmp = images_dir / f".{name}.{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(mode=0o755)
    _populate(tmp, daemon_source, extra_files)
    for point in points:
        (tmp / point).mkdir(parents=True, exist_ok=True)
    _make_world_readable(tmp)
    try:
        os.rename(tmp, path)
    except OSError:  # another process built the same image first
        shutil.rmtree(tmp, ignore_errors=True)
    return Image(path, binds)
