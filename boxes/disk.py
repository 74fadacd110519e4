"""Each box's writable layer lives on its own ext4 filesystem image: a hard disk quota.

The image file sits in the data dir (durable); while the box is up it is attached to a loop
device and mounted in the runtime dir. Mounting goes straight through ioctl + mount(2) (about
1.5 ms) rather than through losetup and mount(8). New images are sparse copies of a template
formatted once per size, so creating one costs a copy of a few hundred KiB, not a mkfs.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import shutil
import struct
import subprocess
import threading
from pathlib import Path

from boxes.errors import HostUnsupportedError

_LOOP_CTL_GET_FREE = 0x4C82
_LOOP_CONFIGURE = 0x4C0A
_LO_FLAGS_AUTOCLEAR = 4
_MS_NOSUID, _MS_NODEV, _MS_NOATIME = 0x2, 0x4, 0x400
_MNT_DETACH = 2

_libc = ctypes.CDLL(None, use_errno=True)


def check_host() -> None:
    if os.geteuid() != 0:
        raise HostUnsupportedError(
            "boxes need root: each box gets its own unprivileged uid and its own disk image; "
            "run burrow as root (for example with sudo)")
    if not os.path.exists("/dev/loop-control"):
        raise HostUnsupportedError(
            "boxes need loop devices for their disk images (/dev/loop-control is missing); "
            "load the loop module (modprobe loop) or give the container access to it")
    if shutil.which("mkfs.ext4") is None:
        raise HostUnsupportedError("mkfs.ext4 is missing; install e2fsprogs")
    for tool in ("setpriv", "nsenter"):  # nsenter: boxes run their code with it
        if shutil.which(tool) is None:
            raise HostUnsupportedError(f"{tool} is missing; install util-linux")


# copy_file_range refuses some pairs of filesystems (EXDEV across mounts before Linux 5.3 and
# again since 5.19 for different filesystem types; EOPNOTSUPP, ENOSYS, EINVAL on some, e.g.
# overlayfs or FUSE): then the bytes go through user space, still region by region.
_COPY_FALLBACK = frozenset({errno.EXDEV, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL})
_CHUNK = 1 << 20


def _copy_region(fin: int, fout: int, start: int, end: int) -> None:
    try:
        while start < end:
            copied = os.copy_file_range(fin, fout, end - start, start, start)
            if copied == 0:  # the source shrank under us
                return
            start += copied
    except OSError as exc:
        if exc.errno not in _COPY_FALLBACK:
            raise
        while start < end:
            data = os.pread(fin, min(_CHUNK, end - start), start)
            if not data:
                return
            start += os.pwrite(fout, data, start)


def copy_sparse(fin: int, fout: int, size: int) -> None:
    """Copy the first `size` bytes of one open file to another, keeping its holes."""
    offset = 0
    while offset < size:
        try:
            start = os.lseek(fin, offset, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # only a hole is left
                break
            raise
        end = min(os.lseek(fin, start, os.SEEK_HOLE), size)
        _copy_region(fin, fout, start, end)
        offset = end
    os.ftruncate(fout, size)


def _sparse_copy(src: Path, dst: Path) -> None:
    """Copy `src` to `dst` keeping its holes (a new disk image stays a few hundred KiB)."""
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        copy_sparse(fin.fileno(), fout.fileno(), os.fstat(fin.fileno()).st_size)


class DiskImages:
    def __init__(self, cache_dir: Path) -> None:
        self.cache_dir = cache_dir

    def _template(self, size_mb: int) -> Path:
        path = self.cache_dir / f"ext4-{size_mb}m.img"
        if path.exists():
            return path
        self.cache_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Boxes are created from threads and processes at once: each formats its own temp
        # file and the first rename wins (the same bytes either way).
        tmp = path.with_suffix(f".{os.getpid()}-{threading.get_ident()}.tmp")
        with open(tmp, "wb") as f:
            f.truncate(size_mb * 1024 * 1024)
        # -m 0: no blocks reserved for root (the box is never root); lazy init keeps it small.
        subprocess.run(["mkfs.ext4", "-q", "-F", "-m", "0", "-E",
                        "lazy_itable_init=1,lazy_journal_init=1", str(tmp)],
                       check=True, capture_output=True)
        os.replace(tmp, path)
        return path

    def create(self, image: Path, size_mb: int) -> None:
        image.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = image.with_suffix(".tmp")
        _sparse_copy(self._template(size_mb), tmp)
        os.chmod(tmp, 0o600)  # a box's files, readable by root only
        os.replace(tmp, image)

    @staticmethod
    def _attach(image: Path) -> tuple[str, int]:
        ctl = os.open("/dev/loop-control", os.O_RDWR | os.O_CLOEXEC)
        try:
            for _attempt in range(16):  # another process may take the free device first
                number = fcntl.ioctl(ctl, _LOOP_CTL_GET_FREE)
                device = f"/dev/loop{number}"
                loop_fd = os.open(device, os.O_RDWR | os.O_CLOEXEC)
                file_fd = os.open(image, os.O_RDWR | os.O_CLOEXEC)
                try:
                    # struct loop_config { u32 fd; u32 block_size; struct loop_info64 info;
                    #                      u64 reserved[8]; }
                    info = struct.pack("=QQQQQIIII64s64s32sQQ", 0, 0, 0, 0, 0, 0, 0, 0,
                                       _LO_FLAGS_AUTOCLEAR, b"", b"", b"", 0, 0)
                    config = struct.pack("=II", file_fd, 0) + info + b"\0" * 64
                    fcntl.ioctl(loop_fd, _LOOP_CONFIGURE, config)
                    # The loop fd stays open until mount(2) holds the device; AUTOCLEAR then
                    # detaches it at unmount.
                    return device, loop_fd
                except OSError as exc:
                    os.close(loop_fd)
                    if exc.errno != errno.EBUSY:
                        raise
                finally:
                    os.close(file_fd)
            raise OSError(errno.EBUSY, "no free loop device")
        finally:
            os.close(ctl)

    def mount(self, image: Path, mountpoint: Path) -> None:
        mountpoint.mkdir(parents=True, exist_ok=True)
        if os.path.ismount(mountpoint):
            return
        device, loop_fd = self._attach(image)
        try:
            flags = _MS_NOSUID | _MS_NODEV | _MS_NOATIME
            if _libc.mount(device.encode(), str(mountpoint).encode(), b"ext4", flags, b"") != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"mount {image} on {mountpoint}: {os.strerror(err)}")
        finally:
            os.close(loop_fd)

    @staticmethod
    def unmount(mountpoint: Path) -> None:
        if not os.path.ismount(mountpoint):
            return
        if _libc.umount2(str(mountpoint).encode(), 0) != 0:
            err = ctypes.get_errno()
            if err == errno.EBUSY:  # something still holds it open; let it go when it closes
                _libc.umount2(str(mountpoint).encode(), _MNT_DETACH)
            elif err != errno.EINVAL:
                raise OSError(err, f"umount {mountpoint}: {os.strerror(err)}")

    @staticmethod
    def used_bytes(mountpoint: Path) -> int:
        st = os.statvfs(mountpoint)
        return (st.f_blocks - st.f_bfree) * st.f_frsize
