"""What this host has seen in an object store's bucket, and when (its clock): the blobs and
pack objects it uploaded, found, fetched, or that a snapshot it committed names. A freeze
trusts a name seen lately and does not ask the store whether it is there (boxes/sweeps.py
says why that is safe: a sweep that may have deleted it since is still listed, and the pack
makes sure then).

It is kept in a log beside the host's cache (`seen.log`: a line `<unix seconds> <name>` per
sighting, appended), so a restart does not cost one HEAD per unchanged blob at the first freeze
of each box. The cache's own files cannot stand in for it: a cached file says that its bytes
were right, not that the bucket still has them, and its mtime moves with every use. A time
read back is never later than the sighting (whole seconds, rounded down). The log is rewritten
with only what is still trusted once it holds twice that, and the memory keeps at most
MAX_NAMES (a name forgotten costs one HEAD at the next freeze that names it, nothing else).
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import time
from collections.abc import Iterable
from pathlib import Path

# Names kept (~150 bytes each in memory, ~80 in the log).
MAX_NAMES = 250_000
# Lines the log may hold beyond twice the names kept before it is rewritten.
REWRITE_SLACK = 1000
_NAME_RE = re.compile(r"^(packs/)?[0-9a-f]{64}$")


class Seen:
    def __init__(self, trust_s: float, log: Path | None = None) -> None:
        self.trust_s = trust_s
        self.log = log
        self._at: dict[str, float] = {}
        self._lines = 0  # in the log
        self._lock = threading.Lock()
        if log is not None:
            self._load(log)

    def when(self, name: str) -> float | None:
        """When this host last saw `name` in the bucket, if that is recent enough to trust."""
        with self._lock:
            at = self._at.get(name)
        return at if at is not None and time.time() - at < self.trust_s else None

    def saw(self, names: Iterable[str], at: float) -> None:
        at = float(int(at))
        lines = []
        with self._lock:
            for name in names:
                if self._at.get(name, 0.0) < at:
                    self._at[name] = at
                    lines.append(f"{int(at)} {name}\n")
            if not lines:
                return
            if len(self._at) > MAX_NAMES:
                self._forget()
            elif (self.log is not None
                  and self._lines + len(lines) > 2 * len(self._at) + REWRITE_SLACK):
                self._rewrite()
            else:
                self._append("".join(lines))
                self._lines += len(lines)

    def __len__(self) -> int:
        return len(self._at)

    def _load(self, log: Path) -> None:
        for left in log.parent.glob(f".{log.name}.*.tmp"):  # a rewrite that did not finish
            with contextlib.suppress(OSError):
                if left.stat().st_mtime < time.time() - 3600:
                    left.unlink()
        try:
            text = log.read_text(errors="replace")
        except FileNotFoundError:
            return
        cutoff = time.time() - self.trust_s
        for line in text.splitlines():
            self._lines += 1
            at_text, _, name = line.partition(" ")
            try:
                at = float(int(at_text))
            except ValueError:
                continue  # a line cut short by a crash
            if at > cutoff and _NAME_RE.match(name) and self._at.get(name, 0.0) < at:
                self._at[name] = at
        if len(self._at) > MAX_NAMES:
            self._forget()
        elif self._lines > 2 * len(self._at) + REWRITE_SLACK:
            self._rewrite()

    def _forget(self) -> None:
        """Keep the newest half of MAX_NAMES (under the lock)."""
        cutoff = time.time() - self.trust_s
        newest = sorted(((t, n) for n, t in self._at.items() if t > cutoff), reverse=True)
        self._at = {n: t for t, n in newest[:MAX_NAMES // 2]}
        self._rewrite()

    def _rewrite(self) -> None:
        """The log as the memory is (under the lock); a failure only costs HEADs later."""
        if self.log is None:
            return
        cutoff = time.time() - self.trust_s
        self._at = {n: t for n, t in self._at.items() if t > cutoff}
        tmp = self.log.with_name(f".{self.log.name}.{os.getpid()}.tmp")
        try:
            tmp.write_text("".join(f"{int(t)} {n}\n" for n, t in self._at.items()))
            os.replace(tmp, self.log)
            self._lines = len(self._at)
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)

    def _append(self, text: str) -> None:
        if self.log is None:
            return
        with contextlib.suppress(OSError):  # one write: processes sharing the log interleave
            fd = os.open(self.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, text.encode())
            finally:
                os.close(fd)
