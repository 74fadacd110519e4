"""This host's cache of an object store's snapshots (boxes/objectstore.py): blobs, pack objects,
manifests and snapshot records kept on local disk, bounded in bytes, the least recently used
evicted.

Everything cached is immutable (a blob and a pack object are named by their content's hash, a
manifest and a record by a snapshot id that is never reused), so an entry is never stale, only
gone: blobs and pack objects are hashed before they enter (the object store's downloads are
checked as they arrive), and a reader that finds an entry evicted meanwhile (by this process
or another sharing the directory) fetches it again. A hit touches the file's mtime, which
orders the eviction across restarts. (Beside the entries, boxes/seen.py keeps its log.)
"""

from __future__ import annotations

import contextlib
import os
import secrets
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import BinaryIO

# Evicting stops once the cache is this far below its bound, so a full cache does not evict
# on every insertion.
_LOW_WATER = 0.9
# A temp file this old was left by a process that stopped (processes of one data dir share it).
_TMP_STALE_S = 3600.0


class BlobCache:
    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.tmp = root / "tmp"
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, int] = OrderedDict()  # relative path -> bytes, LRU first
        self._bytes = 0
        for sub in ("blobs", "packs", "manifests", "tmp"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(root, 0o700)
        for leftover in self.tmp.iterdir():  # a download or an upload that never finished
            with contextlib.suppress(FileNotFoundError):  # (not another live process's)
                if leftover.stat().st_mtime < time.time() - _TMP_STALE_S:
                    leftover.unlink()
        found = []
        for sub in ("blobs", "packs", "manifests"):
            for path in (root / sub).rglob("*"):
                with contextlib.suppress(FileNotFoundError):
                    st = path.stat()
                    if path.is_file():
                        found.append((st.st_mtime_ns, str(path.relative_to(root)), st.st_size))
        for _, name, size in sorted(found):
            self._entries[name] = size
            self._bytes += size

    @property
    def size(self) -> int:
        """Bytes cached (as this process counts them)."""
        return self._bytes

    @staticmethod
    def blob_name(digest: str) -> str:
        return f"blobs/{digest[:2]}/{digest}"

    @staticmethod
    def pack_name(sha: str) -> str:
        return f"packs/{sha[:2]}/{sha}"

    def temp(self) -> Path:
        """A fresh file name to write an entry to before `add` moves it in."""
        return self.tmp / secrets.token_hex(8)

    def has(self, name: str) -> bool:
        with self._lock:
            return name in self._entries

    def open(self, name: str) -> BinaryIO:
        """The entry, marked as just used; FileNotFoundError if it is not cached."""
        path = self.root / name
        try:
            f = open(path, "rb")  # noqa: SIM115 (the caller closes it)
        except FileNotFoundError:
            self._forget(name)
            raise
        with self._lock:
            if name in self._entries:
                self._entries.move_to_end(name)
        with contextlib.suppress(OSError):
            os.utime(f.fileno())
        return f

    def read(self, name: str) -> bytes | None:
        try:
            with self.open(name) as f:
                return f.read()
        except FileNotFoundError:
            return None

    def add(self, name: str, temp: Path) -> None:
        """Move `temp` (a file from `temp()`, complete and checked) in as entry `name`."""
        target = self.root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        size = temp.stat().st_size
        os.replace(temp, target)
        with self._lock:
            self._bytes += size - self._entries.pop(name, 0)
            self._entries[name] = size
        self._evict(keep=name)

    def write(self, name: str, data: bytes) -> None:
        temp = self.temp()
        temp.write_bytes(data)
        self.add(name, temp)

    def forget(self, name: str) -> None:
        self._forget(name)
        (self.root / name).unlink(missing_ok=True)

    def _forget(self, name: str) -> None:
        with self._lock:
            self._bytes -= self._entries.pop(name, 0)

    def _evict(self, keep: str) -> None:
        victims = []
        with self._lock:
            if self._bytes <= self.max_bytes:
                return
            for name in list(self._entries):
                if self._bytes <= self.max_bytes * _LOW_WATER:
                    break
                if name != keep:
                    self._bytes -= self._entries.pop(name)
                    victims.append(name)
        for name in victims:  # a reader holding one open keeps reading it
            (self.root / name).unlink(missing_ok=True)
