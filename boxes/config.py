"""Settings of the box runtime (a dataclass: the gateway's pydantic Settings builds one)."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from boxes.models import BoxRecord, Limits, StartPolicy

# Host uids given to boxes: one each, far above ordinary users and the usual subuid ranges.
DEFAULT_UID_BASE = 2_000_000
DEFAULT_RUNTIME_ROOT = Path("/run/burrow")


@dataclass(frozen=True)
class RuntimeConfig:
    data_dir: Path
    # Mount points, sockets, the runtime image and the bwrap copy live under this root, not in
    # the data dir: every box uid must be able to reach them, and the data dir may sit under a
    # private directory. Each data dir gets its own runtime dir below it (runtime_dir).
    runtime_root: Path = DEFAULT_RUNTIME_ROOT
    runtime_dir: Path | None = None
    uid_base: int = DEFAULT_UID_BASE
    default_limits: Limits = field(default_factory=Limits)
    start_timeout_s: float = 10.0
    prefreeze_grace_s: float = 2.0
    hook_timeout_s: float = 10.0
    lock_ttl_s: float = 30.0
    lock_wait_s: float = 60.0
    # Pre-started launchers kept ready in fresh cgroups (see boxes/launcher.py); 0 disables.
    launcher_pool: int = 2
    # Programs boxes may run besides the daemon: directory in the image -> host directory.
    image_extras: dict[str, Path] = field(default_factory=dict)
    # Host directories every box sees read-only: (host dir, path in the box). For programs too
    # big to copy into the image (the agent CLIs, ~1 GB); box uids must be able to reach them.
    ro_binds: tuple[tuple[Path, str], ...] = ()
    # A host socket every box can reach at /run/burrow/host.sock (bound read-only). Box uids
    # must be able to reach its path and connect to it: keep it in the runtime dir, mode 0666.
    host_socket: Path | None = None
    # Environment computed at each start and never stored (credentials such as box tokens).
    start_env: Callable[[BoxRecord], dict[str, str]] | None = None
    # The resolver that egress boxes' DNS forwarder asks (an IPv4 address); None: the host's.
    egress_dns: str | None = None
    # The operator's say on a box at each start (create and wake): its limits clamped to the
    # current ceilings, and the egress rules it gets. None: the box as it is, default egress.
    start_policy: Callable[[BoxRecord], Awaitable[StartPolicy]] | None = None
    # Waking a box from its snapshot writes its large files after the box starts (its execs
    # and file operations wait for them) when the box runs no service, or one of these
    # commands, which read nothing of the box but the directories below (layer paths, written
    # before the box starts).
    lazy_restore_services: tuple[tuple[str, ...], ...] = ()
    eager_restore_dirs: tuple[str, ...] = ("workspace/.burrow",)
    # The snapshot store (boxes/stores.py): "" (the data dir's store/), file:///path or
    # s3://bucket/prefix; the S3 API's endpoint (None: AWS S3) and region (None: the AWS
    # chain's); this host's cache of an s3 store (bytes), and blobs fetched at once.
    store_url: str = ""
    s3_endpoint: str | None = None
    s3_region: str | None = None
    store_cache_bytes: int = 4 << 30
    store_fetch_parallel: int = 8
    # The manifest format an s3 store's freezes write: 2 (small files in pack objects) or 1
    # (every file a blob of its own, which Burrow before pack objects reads too).
    store_format: int = 2

    def __post_init__(self) -> None:
        object.__setattr__(self, "data_dir", Path(self.data_dir).resolve())
        object.__setattr__(self, "runtime_root", Path(self.runtime_root).absolute())
        if self.runtime_dir is None:
            digest = hashlib.sha256(str(self.data_dir).encode()).hexdigest()[:12]
            object.__setattr__(self, "runtime_dir", self.runtime_root / digest)

    @property
    def run_dir(self) -> Path:
        assert self.runtime_dir is not None
        return self.runtime_dir

    @property
    def shared_dir(self) -> Path:
        """Content-addressed things every data dir on this host can share (image, bwrap)."""
        return self.run_dir.parent

    @property
    def instance(self) -> str:
        """A short name for this data dir, used to name cgroups."""
        return self.run_dir.name

    @property
    def boxes_dir(self) -> Path:
        return self.data_dir / "boxes"

    @property
    def disk_templates_dir(self) -> Path:
        """Formatted empty disk images, copied to make each box's disk: beside the boxes'
        images, so the copy never crosses filesystems and never executes anything."""
        return self.data_dir / "disk-templates"

    @property
    def store_dir(self) -> Path:
        return self.data_dir / "store"

    @property
    def store_cache_dir(self) -> Path:
        """This host's cache of an object store's blobs and manifests."""
        return self.data_dir / "store-cache"

    def box_dir(self, box_id: str) -> Path:
        return self.boxes_dir / box_id

    def box_run_dir(self, box_id: str) -> Path:
        return self.run_dir / "boxes" / box_id
