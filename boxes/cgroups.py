"""Per-box cgroups: memory, pids and CPU limits, CPU and memory accounting, and the freezer
that pauses a box. cgroup v1 (one hierarchy per controller) and v2 (unified) are supported;
boxes nest under the cgroup this process already sits in, as `burrow-<instance>/<box id>`.
Where neither is usable, `NoCgroups` keeps boxes running on rlimits alone.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from boxes.errors import BoxStateError
from boxes.models import Limits

_V1_CONTROLLERS = ("memory", "pids", "cpu", "cpuacct", "freezer")
_CPU_PERIOD_US = 100_000
# How long a freeze waits for every process of the box to stop: each must run to reach the
# freezer, which on a loaded machine (a box forking all the time, two busy cores) took more
# than a second.
FREEZE_WAIT_S = 5.0


def _until_frozen(frozen: Callable[[], bool], thaw: Callable[[], None]) -> None:
    """Wait for `frozen()`; past FREEZE_WAIT_S, thaw what did stop (a box is never left half
    frozen) and say so."""
    deadline = time.monotonic() + FREEZE_WAIT_S
    pause = 0.001
    while not frozen():
        if time.monotonic() > deadline:
            thaw()
            raise BoxStateError(f"the box did not pause within {FREEZE_WAIT_S:.0f} s (its "
                                "processes kept running); try again")
        time.sleep(pause)
        pause = min(pause * 2, 0.02)


class BoxCgroup(Protocol):
    def set_limits(self, limits: Limits) -> None: ...
    def add(self, pid: int) -> None: ...
    def freeze(self) -> None: ...
    def thaw(self) -> None: ...
    def memory_bytes(self) -> int: ...
    def cpu_ns(self) -> int: ...
    def pids(self) -> list[int]: ...
    def remove(self) -> None: ...


class Cgroups(Protocol):
    available: bool

    def create(self, name: str, limits: Limits | None) -> BoxCgroup: ...
    def adopt(self, old: str, new: str, limits: Limits) -> BoxCgroup: ...
    def open(self, name: str) -> BoxCgroup: ...
    def box_ids(self) -> list[str]: ...
    def close(self) -> None: ...
    def instance_dirs(self) -> list[str]: ...


def _write(path: Path, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _read(path: Path) -> str:
    with open(path) as f:
        return f.read().strip()


def _rmdir_when_empty(path: Path) -> None:
    for _attempt in range(100):  # tasks leave a cgroup a little after they die
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.01)
    path.rmdir()


def _remove_if_empty(path: Path) -> None:
    """This data dir's `burrow-<instance>` cgroup, when no box (of any process using the
    data dir) is left in it: otherwise every data dir ever served leaves one per controller."""
    with contextlib.suppress(OSError):  # boxes left in it, or gone already
        path.rmdir()


def _private(base: Path) -> None:
    """This data dir's cgroups: their names are box ids, which other users may not list."""
    if os.stat(base).st_mode & 0o077:
        os.chmod(base, 0o700)


def _own_cgroups() -> dict[str, str]:
    """controller name (or "" for v2) → this process's cgroup path."""
    own: dict[str, str] = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for name in controllers.split(",") if controllers else [""]:
            own[name] = path
    return own


def _mounts() -> dict[str, Path]:
    """controller name (or "" for the v2 hierarchy) → mount point."""
    found: dict[str, Path] = {}
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        fstype, _source, options = right.split(" ", 2)
        mount_point = Path(left.split(" ")[4])
        if fstype == "cgroup2":
            found.setdefault("", mount_point)
        elif fstype == "cgroup":
            for opt in options.split(","):
                if opt in _V1_CONTROLLERS:
                    found[opt] = mount_point
    return found


class V1BoxCgroup:
    def __init__(self, dirs: dict[str, Path]) -> None:
        self.dirs = dirs

    def set_limits(self, limits: Limits) -> None:
        memory = limits.memory_mb * 1024 * 1024
        _write(self.dirs["memory"] / "memory.limit_in_bytes", str(memory))
        swap_limit = self.dirs["memory"] / "memory.memsw.limit_in_bytes"
        if swap_limit.exists():
            _write(swap_limit, str(memory))
        _write(self.dirs["pids"] / "pids.max", str(limits.pids))
        _write(self.dirs["cpu"] / "cpu.cfs_period_us", str(_CPU_PERIOD_US))
        _write(self.dirs["cpu"] / "cpu.cfs_quota_us", str(int(limits.cpus * _CPU_PERIOD_US)))

    def add(self, pid: int) -> None:
        for path in self.dirs.values():
            _write(path / "cgroup.procs", str(pid))

    def freeze(self) -> None:
        state_file = self.dirs["freezer"] / "freezer.state"
        _write(state_file, "FROZEN")
        _until_frozen(lambda: _read(state_file) == "FROZEN", self.thaw)

    def thaw(self) -> None:
        _write(self.dirs["freezer"] / "freezer.state", "THAWED")

    def memory_bytes(self) -> int:
        return int(_read(self.dirs["memory"] / "memory.usage_in_bytes"))

    def cpu_ns(self) -> int:
        return int(_read(self.dirs["cpuacct"] / "cpuacct.usage"))

    def pids(self) -> list[int]:
        text = _read(self.dirs["pids"] / "cgroup.procs")
        return [int(p) for p in text.split()]

    def remove(self) -> None:
        for path in self.dirs.values():
            _rmdir_when_empty(path)


class V1Cgroups:
    available = True

    def __init__(self, instance: str) -> None:
        mounts, own = _mounts(), _own_cgroups()
        self.bases = {c: mounts[c] / own.get(c, "/").lstrip("/") / f"burrow-{instance}"
                      for c in _V1_CONTROLLERS}

    @staticmethod
    def usable() -> bool:
        mounts = _mounts()
        return os.geteuid() == 0 and all(c in mounts for c in _V1_CONTROLLERS)

    def _dirs(self, name: str) -> dict[str, Path]:
        return {c: base / name for c, base in self.bases.items()}

    def create(self, name: str, limits: Limits | None) -> BoxCgroup:
        dirs = self._dirs(name)
        for path in dirs.values():
            path.mkdir(parents=True, exist_ok=True)
            _private(path.parent)
        cgroup = V1BoxCgroup(dirs)
        if limits is not None:
            cgroup.set_limits(limits)
        return cgroup

    def adopt(self, old: str, new: str, limits: Limits) -> BoxCgroup:
        for controller, path in self._dirs(old).items():
            path.rename(self.bases[controller] / new)
        cgroup = V1BoxCgroup(self._dirs(new))
        cgroup.set_limits(limits)
        return cgroup

    def open(self, name: str) -> BoxCgroup:
        return V1BoxCgroup(self._dirs(name))

    def box_ids(self) -> list[str]:
        base = self.bases["pids"]
        return sorted(p.name for p in base.iterdir() if p.is_dir()) if base.is_dir() else []

    def close(self) -> None:
        for base in self.bases.values():
            _remove_if_empty(base)

    def instance_dirs(self) -> list[str]:
        """This data dir's cgroups still on the host (one per controller)."""
        return sorted({str(base) for base in self.bases.values() if base.is_dir()})


class V2BoxCgroup:
    def __init__(self, path: Path) -> None:
        self.path = path

    def set_limits(self, limits: Limits) -> None:
        _write(self.path / "memory.max", str(limits.memory_mb * 1024 * 1024))
        swap = self.path / "memory.swap.max"
        if swap.exists():
            _write(swap, "0")
        _write(self.path / "pids.max", str(limits.pids))
        _write(self.path / "cpu.max", f"{int(limits.cpus * _CPU_PERIOD_US)} {_CPU_PERIOD_US}")

    def add(self, pid: int) -> None:
        _write(self.path / "cgroup.procs", str(pid))

    def freeze(self) -> None:
        _write(self.path / "cgroup.freeze", "1")
        _until_frozen(lambda: "frozen 1" in _read(self.path / "cgroup.events"), self.thaw)

    def thaw(self) -> None:
        _write(self.path / "cgroup.freeze", "0")

    def memory_bytes(self) -> int:
        return int(_read(self.path / "memory.current"))

    def cpu_ns(self) -> int:
        for line in _read(self.path / "cpu.stat").splitlines():
            key, value = line.split()
            if key == "usage_usec":
                return int(value) * 1000
        return 0

    def pids(self) -> list[int]:
        return [int(p) for p in _read(self.path / "cgroup.procs").split()]

    def remove(self) -> None:
        _rmdir_when_empty(self.path)


class V2Cgroups:
    """cgroup v2: boxes go under `<own cgroup>/burrow-<instance>`.

    v2 lets a cgroup hand controllers to children only while it has no processes of its own,
    so on first use this process moves itself into a `burrow-<instance>-manager` leaf.
    """

    available = True

    def __init__(self, instance: str) -> None:
        mount = _mounts()[""]
        own = mount / _own_cgroups().get("", "/").lstrip("/")
        self.base = own / f"burrow-{instance}"
        self._own = own
        self._instance = instance
        self._ready = False

    @staticmethod
    def usable() -> bool:
        mounts = _mounts()
        if os.geteuid() != 0 or "" not in mounts:
            return False
        own = mounts[""] / _own_cgroups().get("", "/").lstrip("/")
        wanted = {"memory", "pids", "cpu"}
        return wanted <= set(_read(own / "cgroup.controllers").split())

    def _prepare(self) -> None:
        if self._ready:
            return
        enable = "+memory +pids +cpu"
        try:
            _write(self._own / "cgroup.subtree_control", enable)
        except OSError:
            leaf = self._own / f"burrow-{self._instance}-manager"
            leaf.mkdir(exist_ok=True)
            for pid in _read(self._own / "cgroup.procs").split():
                with contextlib.suppress(OSError):  # exited meanwhile, or a kernel thread
                    _write(leaf / "cgroup.procs", pid)
            _write(self._own / "cgroup.subtree_control", enable)
        self.base.mkdir(exist_ok=True)
        _private(self.base)
        _write(self.base / "cgroup.subtree_control", enable)
        self._ready = True

    def create(self, name: str, limits: Limits | None) -> BoxCgroup:
        self._prepare()
        path = self.base / name
        path.mkdir(exist_ok=True)
        cgroup = V2BoxCgroup(path)
        if limits is not None:
            cgroup.set_limits(limits)
        return cgroup

    def adopt(self, old: str, new: str, limits: Limits) -> BoxCgroup:
        (self.base / old).rename(self.base / new)
        cgroup = V2BoxCgroup(self.base / new)
        cgroup.set_limits(limits)
        return cgroup

    def open(self, name: str) -> BoxCgroup:
        return V2BoxCgroup(self.base / name)

    def box_ids(self) -> list[str]:
        return sorted(p.name for p in self.base.iterdir() if p.is_dir()) \
            if self.base.is_dir() else []

    def close(self) -> None:
        _remove_if_empty(self.base)

    def instance_dirs(self) -> list[str]:
        return [str(self.base)] if self.base.is_dir() else []


class NoBoxCgroup:
    def set_limits(self, limits: Limits) -> None:
        pass

    def add(self, pid: int) -> None:
        pass

    def freeze(self) -> None:
        raise BoxStateError("this host has no cgroup freezer, so boxes cannot be paused; "
                            "freeze the box instead")

    def thaw(self) -> None:
        pass

    def memory_bytes(self) -> int:
        return 0

    def cpu_ns(self) -> int:
        return 0

    def pids(self) -> list[int]:
        return []

    def remove(self) -> None:
        pass


class NoCgroups:
    available = False

    def create(self, name: str, limits: Limits | None) -> BoxCgroup:
        return NoBoxCgroup()

    def adopt(self, old: str, new: str, limits: Limits) -> BoxCgroup:
        return NoBoxCgroup()

    def open(self, name: str) -> BoxCgroup:
        return NoBoxCgroup()

    def box_ids(self) -> list[str]:
        return []

    def close(self) -> None:
        pass

    def instance_dirs(self) -> list[str]:
        return []


def detect(instance: str) -> Cgroups:
    if V1Cgroups.usable():
        return V1Cgroups(instance)
    if V2Cgroups.usable():
        return V2Cgroups(instance)
    return NoCgroups()
