"""Background tasks run by the arq worker."""

from __future__ import annotations

from typing import Any

from boxes import BoxManager

# A blob younger than this is kept even if nothing references it yet: a freeze may be
# writing the manifest that will.
GC_GRACE_S = 3600.0


async def gc_store(ctx: dict[str, Any]) -> int:
    """Drop snapshots no box points at and blobs no snapshot references; return bytes freed."""
    manager: BoxManager = ctx["manager"]
    return await manager.gc(grace_s=GC_GRACE_S)
