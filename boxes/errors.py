"""Errors of the box runtime. One root, `BoxError`; the gateway maps each `code` to HTTP once.

    BoxError
    ├── InvalidRequestError      bad input from the caller (422)
    ├── BoxNotFoundError         no such box (404)
    ├── SnapshotNotFoundError    no such snapshot (404)
    ├── BoxStateError            the box is in the wrong state for this (409)
    ├── BoxFileError             a file operation failed inside the box (404/409/413/…)
    ├── BoxBusyError             another transition holds the box for too long (503, retry)
    ├── BoxUnavailableError      the box's daemon does not answer (503)
    │   ├── DaemonUnreachableError   …before anything was sent (the manager retries)
    │   ├── FencedError          a host wrote for a box it no longer holds: nothing written
    │   ├── NoCapacityError      no live host has room for the box now (503, retry)
    │   └── StoreUnavailableError    the snapshot store cannot be reached, or refuses this host
    ├── SandboxStartError        the sandbox could not be started (503)
    ├── SnapshotError            a snapshot is unusable or would escape its layer (422)
    │   └── ManifestFormatError  …written in a format this host's Burrow does not read (503)
    ├── WakeFailedError          a box could not be restored; its last snapshot is kept (503)
    ├── HostUnsupportedError     this host cannot run boxes; the message says what is missing
    └── HostNotFoundError        no such box host, or its registration has gone (404)
"""

from __future__ import annotations


class BoxError(Exception):
    code = "box_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequestError(BoxError):
    code = "invalid_request"


class BoxNotFoundError(BoxError):
    code = "not_found"


class SnapshotNotFoundError(BoxError):
    code = "not_found"


class BoxStateError(BoxError):
    code = "conflict"


class BoxFileError(BoxError):
    """A file operation failed inside the box; `code` is the daemon's (not_found, …)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class BoxBusyError(BoxError):
    code = "busy"


class BoxUnavailableError(BoxError):
    code = "unavailable"


class DaemonUnreachableError(BoxUnavailableError):
    """The daemon could not be reached at all, so nothing was sent: safe to retry."""


class FencedError(BoxUnavailableError):
    """A host wrote for a box whose generation it no longer holds (another host was placed
    since, or this host's lease lapsed): nothing was written. The writer must stop the box
    here; the request that led to the write is retried where the box is now."""
    code = "fenced"


class NoCapacityError(BoxUnavailableError):
    """No live, non-draining host has room for the box now: retry in a few seconds."""
    code = "no_capacity"


class StoreUnavailableError(BoxUnavailableError):
    """The snapshot store did not answer, or refused (its bucket missing, the credentials
    wrong): nothing was committed, and every snapshot it held before is as it was."""
    code = "store_unavailable"


class SandboxStartError(BoxError):
    code = "unavailable"


class SnapshotError(BoxError):
    code = "invalid_snapshot"


class ManifestFormatError(SnapshotError):
    """A snapshot's manifest is of a format this host's Burrow does not read (a newer one
    wrote it): nothing was read from it or written; upgrade this host. Not the caller's
    fault, so not 422: the gateway answers 503 `host_unsupported`."""
    code = "host_unsupported"


class WakeFailedError(BoxError):
    """Restoring a box's layer failed (its disk is too small for the snapshot, a blob is
    damaged, …): nothing of the partial restore is kept, the snapshot is."""
    code = "wake_failed"


class HostUnsupportedError(BoxError):
    code = "host_unsupported"


class HostNotFoundError(BoxNotFoundError):
    code = "not_found"
