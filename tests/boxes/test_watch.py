"""Watching files in a box: inotify in its daemon, paths resolved in the box's own view."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

import pytest

from boxes import BoxManager, BoxSpec, ExecRequest
from boxes.errors import BoxFileError


async def _take(events: AsyncGenerator[dict[str, Any], None], count: int) -> list[dict[str, Any]]:
    got = []
    while len(got) < count:
        got.append(await asyncio.wait_for(anext(events), 20))
    return got


async def test_created_modified_moved_deleted_are_told_with_their_paths(
        manager: BoxManager) -> None:
    box = await manager.create(BoxSpec())
    await manager.mkdir(box.id, "/workspace/w")
    events = manager.watch(box.id, "w", recursive=True)
    try:
        assert (await anext(events))["path"] == "/workspace/w"
        await manager.exec(box.id, ExecRequest(command=(
            "cd w && echo a > a.txt && echo more >> a.txt && mv a.txt b.txt && mkdir sub && "
            "sleep 0.2 && echo c > sub/c.txt && rm b.txt")))
        seen = [(e["type"], e["path"]) for e in await _take(events, 7)]
    finally:
        await events.aclose()
    assert seen == [("created", "/workspace/w/a.txt"), ("modified", "/workspace/w/a.txt"),
                    ("moved", "/workspace/w/b.txt"), ("created", "/workspace/w/sub"),
                    ("created", "/workspace/w/sub/c.txt"),
                    ("modified", "/workspace/w/sub/c.txt"), ("deleted", "/workspace/w/b.txt")]


async def test_a_watch_reaches_only_the_boxes_own_view(manager: BoxManager) -> None:
    box = await manager.create(BoxSpec())
    await manager.exec(box.id, ExecRequest(command="ln -s /work out; ln -s /proc/1/root root1"))
    for path in ("/work", "out", "/proc/1/root/work", "/root/.ssh"):
        with pytest.raises(BoxFileError) as err:
            events = manager.watch(box.id, path)
            await anext(events)
        assert err.value.code in ("not_found", "permission_denied"), path
    # /proc is the box's own: its pid 1's root is the box's root
    for path, resolved in (("/proc/1/..", "/proc"), ("root1", "/")):
        events = manager.watch(box.id, path)
        try:
            head = await anext(events)
        finally:
            await events.aclose()
        assert head["path"] == resolved  # the box's own root, nothing of the host's


async def test_a_freeze_ends_a_watch(manager: BoxManager) -> None:
    box = await manager.create(BoxSpec())
    events = manager.watch(box.id, "/workspace")
    await anext(events)
    freezing = asyncio.create_task(manager.freeze(box.id))
    try:
        last = await asyncio.wait_for(anext(events), 20)
        assert last["type"] == "end" and "freezing" in last["reason"]
    finally:
        await events.aclose()
        await freezing
