"""Plain data of the box runtime: what a box is asked to be, what it is, and what it answers."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any, Literal

from boxes.egress import parse_rules
from boxes.errors import InvalidRequestError

RUNTIMES = ("python", "node", "base")
NETWORKS = ("none", "egress")
_LABEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-/]{0,62}$")
_ENV_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


class BoxState(StrEnum):
    CREATING = "creating"
    RUNNING = "running"
    PAUSED = "paused"
    FREEZING = "freezing"
    FROZEN = "frozen"
    ARCHIVED = "archived"
    WAKING = "waking"
    DELETING = "deleting"
    DELETED = "deleted"
    FAILED = "failed"


# States in which the box's processes exist (running or held by the cgroup freezer).
LIVE_STATES = frozenset({BoxState.RUNNING, BoxState.PAUSED})
# States a box passes through under its lock; one found outside a transition was interrupted.
TRANSIENT_STATES = frozenset({BoxState.CREATING, BoxState.WAKING, BoxState.FREEZING,
                              BoxState.DELETING})


@dataclass(frozen=True)
class Limits:
    """Per-box resource limits. Memory, pids and CPU use cgroups where the host has them;
    rlimits apply always; the disk is a filesystem image of `disk_mb`, a hard bound."""

    memory_mb: int = 1024
    pids: int = 256
    cpus: float = 1.0
    disk_mb: int = 2048
    nofile: int = 4096

    def validate(self) -> Limits:
        checks = [
            (16 <= self.memory_mb <= 1 << 20, "memory_mb must be between 16 and 1048576"),
            (8 <= self.pids <= 1 << 16, "pids must be between 8 and 65536"),
            (0.05 <= self.cpus <= 1024, "cpus must be between 0.05 and 1024"),
            (64 <= self.disk_mb <= 1 << 24, "disk_mb must be between 64 and 16777216"),
            (64 <= self.nofile <= 1 << 20, "nofile must be between 64 and 1048576"),
        ]
        for ok, message in checks:
            if not ok:
                raise InvalidRequestError(f"limits: {message}")
        return self

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None, base: Limits | None = None) -> Limits:
        merged = asdict(base or cls())
        for key, value in (data or {}).items():
            if key not in merged:
                raise InvalidRequestError(
                    f"limits: unknown key {key!r}; known keys are {', '.join(merged)}")
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise InvalidRequestError(f"limits: {key} must be a number")
            merged[key] = value if key == "cpus" else int(value)
        return cls(**merged).validate()


# Variables that change how programs load rather than what they do: the dynamic loader's
# (LD_*), and what else glibc drops for set-uid programs or reads at start (tunables, malloc,
# gconv, locale and resolver paths). A box's env applies to every exec and service in it,
# including Burrow's own programs there (the agent, the harness); the daemon never sees it.
# PYTHON* stays allowed: Burrow's in-box Pythons run isolated (-I) and ignore it.
_REFUSED_PREFIXES = ("LD_", "MALLOC_", "GLIBC_", "BURROW_")
_REFUSED_NAMES = frozenset({
    "GCONV_PATH", "GETCONF_DIR", "HOSTALIASES", "LOCALDOMAIN", "LOCPATH", "NIS_PATH",
    "NLSPATH", "RESOLV_HOST_CONF", "RES_OPTIONS", "TZDIR"})


def refused_env(name: str) -> None:
    """Refuse, with what to do, a box env variable that would change how programs load."""
    if name.upper().startswith(_REFUSED_PREFIXES) or name.upper() in _REFUSED_NAMES:
        what = ("is reserved for Burrow" if name.upper().startswith("BURROW_")
                else "changes how programs load or start, so it cannot be set for a whole box")
        raise InvalidRequestError(
            f"env: {name} {what}; set it for one command instead (exec's env, or "
            f"`{name}=… command` in the command)")


@dataclass(frozen=True)
class BoxSpec:
    """What a caller asks for when creating a box."""

    runtime: str = "python"
    name: str | None = None
    owner: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    network: str = "none"
    limits: Limits = field(default_factory=Limits)
    from_snapshot: str | None = None
    pre_freeze_hook: str | None = None
    # A long-running program the daemon keeps running, listening on a socket the host
    # created (fd 3, as with systemd socket activation); reached with BoxManager.service_path.
    service: list[str] | None = None
    # The caller's own data about the box, kept with it and never interpreted here.
    meta: dict[str, Any] = field(default_factory=dict)
    # Egress rules of this box alone (see boxes.egress): they only narrow the operator's.
    egress_allow: tuple[str, ...] = ()
    egress_deny: tuple[str, ...] = ()

    def validate(self) -> BoxSpec:
        if self.runtime not in RUNTIMES:
            raise InvalidRequestError(
                f"unknown runtime {self.runtime!r}; choose one of {', '.join(RUNTIMES)}")
        if self.network not in NETWORKS:
            raise InvalidRequestError(
                f"unknown network {self.network!r}; choose one of {', '.join(NETWORKS)}")
        if self.name is not None and not (0 < len(self.name) <= 128):
            raise InvalidRequestError("name must be 1 to 128 characters")
        for key, value in self.env.items():
            if not _ENV_RE.match(key) or not isinstance(value, str) or "\0" in value:
                raise InvalidRequestError(
                    f"env: {key!r} is not a valid variable name with a string value")
            refused_env(key)
        for key, value in self.labels.items():
            if not _LABEL_RE.match(key) or not isinstance(value, str) or len(value) > 256:
                raise InvalidRequestError(
                    f"labels: {key!r} must be 1-63 letters, digits or _.-/ with a value "
                    "of at most 256 characters")
        if self.pre_freeze_hook is not None and not self.pre_freeze_hook.strip():
            raise InvalidRequestError("pre_freeze_hook must be a shell command or omitted")
        if self.service is not None and (not self.service or not all(
                isinstance(a, str) and a and "\0" not in a for a in self.service)):
            raise InvalidRequestError("service must be a non-empty list of strings")
        self.limits.validate()
        for name in ("egress_allow", "egress_deny"):
            try:
                parse_rules(getattr(self, name))
            except ValueError as exc:
                raise InvalidRequestError(f"{name}: {exc}") from None
        return self


@dataclass(frozen=True)
class StartPolicy:
    """What the operator decides about a box each time it starts: its limits (clamped to the
    ceilings in force) and the operator's egress rules."""

    limits: Limits
    egress_allow: tuple[str, ...] = ()
    egress_deny: tuple[str, ...] = ()


@dataclass
class BoxRecord:
    """A box as the registry knows it."""

    id: str
    state: BoxState
    runtime: str
    network: str
    limits: Limits
    uid: int
    created_at: float
    last_active_at: float
    owner: str | None = None
    name: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    pre_freeze_hook: str | None = None
    service: list[str] | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    reason: str | None = None
    snapshot_id: str | None = None   # the latest complete freeze snapshot
    layer_local: bool = True         # the unpacked layer (disk image) is on local disk
    layer_dirty: bool = True         # the local layer may differ from snapshot_id
    pid: int | None = None           # the sandbox's outer process on this host
    host: str | None = None          # which manager runs it ("hostname:pid"); in a
                                     # cluster, the host placed at `generation`
    # Raised by each placement on a host (boxes/placement.py); a host's writes for the box
    # count only while the box is at the generation it was placed with (fencing).
    generation: int = 0
    wakes: int = 0
    freezes: int = 0
    egress_allow: list[str] = field(default_factory=list)
    egress_deny: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["state"] = self.state.value
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BoxRecord:
        data = dict(data)
        data["state"] = BoxState(data["state"])
        data["limits"] = Limits(**data["limits"])
        return cls(**data)


DEFAULT_MAX_OUTPUT = 1 << 20  # characters kept of each of stdout and stderr


@dataclass(frozen=True)
class ExecRequest:
    command: str | list[str]
    cwd: str | None = None
    env: dict[str, str] | None = None
    timeout_s: float | None = None
    stdin: str | bytes | None = None
    # Characters of each stream a collected exec keeps (the rest is dropped, and the result
    # says `truncated`); streamed execs pass everything through.
    max_output: int = DEFAULT_MAX_OUTPUT


@dataclass(frozen=True)
class ExecEvent:
    type: Literal["stdout", "stderr", "exit"]
    data: str | None = None
    exit_code: int | None = None
    timed_out: bool | None = None
    duration_ms: float | None = None


@dataclass(frozen=True)
class ExecResult:
    exit_code: int
    stdout: str
    stderr: str
    duration_ms: float
    timed_out: bool = False
    truncated: bool = False


@dataclass(frozen=True)
class FileEntry:
    name: str
    path: str
    type: str
    size: int
    mtime: float
    mode: int = 0o644


@dataclass
class SnapshotRecord:
    """A snapshot in the store: a box's latest freeze, or a named one that can seed new boxes."""

    id: str
    box_id: str
    kind: Literal["freeze", "named"]
    created_at: float
    files: int
    logical_bytes: int
    new_bytes: int
    owner: str | None = None
    name: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
