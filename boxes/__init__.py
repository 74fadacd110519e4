"""The box runtime: isolated, freezable Linux boxes with a fast in-box daemon.

Entry point: `BoxManager` (async). Everything a caller needs is re-exported here.
"""

from boxes.config import RuntimeConfig
from boxes.errors import (
    BoxBusyError,
    BoxError,
    BoxFileError,
    BoxNotFoundError,
    BoxStateError,
    BoxUnavailableError,
    FencedError,
    HostNotFoundError,
    HostUnsupportedError,
    InvalidRequestError,
    ManifestFormatError,
    NoCapacityError,
    SandboxStartError,
    SnapshotError,
    SnapshotNotFoundError,
    StoreUnavailableError,
    WakeFailedError,
)
from boxes.manager import BoxManager
from boxes.models import (
    BoxRecord,
    BoxSpec,
    BoxState,
    ExecEvent,
    ExecRequest,
    ExecResult,
    FileEntry,
    Limits,
    SnapshotRecord,
)
from boxes.sandbox import BoxUsage

__all__ = [
    "BoxBusyError",
    "BoxError",
    "BoxFileError",
    "BoxManager",
    "BoxNotFoundError",
    "BoxRecord",
    "BoxSpec",
    "BoxState",
    "BoxStateError",
    "BoxUnavailableError",
    "BoxUsage",
    "ExecEvent",
    "ExecRequest",
    "ExecResult",
    "FencedError",
    "FileEntry",
    "HostNotFoundError",
    "HostUnsupportedError",
    "InvalidRequestError",
    "Limits",
    "ManifestFormatError",
    "NoCapacityError",
    "RuntimeConfig",
    "SandboxStartError",
    "SnapshotError",
    "SnapshotNotFoundError",
    "SnapshotRecord",
    "StoreUnavailableError",
    "WakeFailedError",
]
