"""Burrow's domain, between HTTP (gateway/) and jobs (workers/): tenants, the operator's
policy and quotas, keys and tokens, observations and their pipeline, agent runs, what a
caller may see of the knowledge base, stats, and every Redis key (core/keys.py).

`await core.open(settings)` builds the Core (core/services.py) that holds them; runners
serve and work around it. Importing a module of this package loads nothing else of it."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.services import Core
    from core.settings import Settings
    from models.servers import LocalModels


async def open(settings: Settings, *, runs_boxes: bool = True, remote: bool = False,
               local_models: LocalModels | None = None) -> Core:
    """Every collaborator, connected (see `Core.open`)."""
    from core.services import Core

    return await Core.open(settings, runs_boxes=runs_boxes, remote=remote,
                           local_models=local_models)
