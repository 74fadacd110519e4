"""The listener's PortCache (core/previews.py) against a real Redis: a change to a box's ports
reaches every cache through its message, a change whose message is lost within the TTL, a read
that overlapped a change is not kept, and nothing is kept while the subscription is down."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from core.keys import Keys
from core.previews import PortCache, PortRecord, Previews

SECRET = b"s" * 32


@pytest.fixture
def previews(redis: Redis) -> Previews:
    return Previews(redis, Keys(), SECRET)


@pytest.fixture
async def cache(previews: Previews) -> AsyncIterator[PortCache]:
    cache = PortCache(previews, ttl_s=0.5)
    cache.start()
    await _following(cache)
    yield cache
    await cache.aclose()


async def _following(cache: PortCache) -> None:
    """Until the cache's subscription is up (it keeps records only then)."""
    deadline = time.monotonic() + 10
    while not cache._live:
        assert time.monotonic() < deadline, "the cache never subscribed"
        await asyncio.sleep(0.01)


async def _seen(cache: PortCache, generation: int) -> None:
    """Until the cache has taken a change message after `generation`."""
    deadline = time.monotonic() + 10
    while cache._generation == generation:
        assert time.monotonic() < deadline, "the change message never arrived"
        await asyncio.sleep(0.01)


async def test_closing_or_reopening_a_port_drops_it_from_every_listeners_cache(
        previews: Previews, cache: PortCache) -> None:
    other = PortCache(previews, ttl_s=60)  # a second listener, with a TTL that never helps
    other.start()
    try:
        await _following(other)
        first = (await previews.open("b_1", "acme", 8000, "bearer")).record
        for listener in (cache, other):
            assert await listener.get("b_1", 8000) == first
        kept = other._generation
        second = (await previews.open("b_1", "acme", 8000, "bearer")).record  # a new token
        await _seen(other, kept)
        assert await other.get("b_1", 8000) == second != first
        kept = other._generation
        assert await previews.close("b_1", 8000)
        await _seen(other, kept)
        assert await other.get("b_1", 8000) is None
        assert await cache.get("b_1", 8000) is None
    finally:
        await other.aclose()


async def test_deleting_a_box_or_its_owner_drops_their_ports(previews: Previews,
                                                             cache: PortCache) -> None:
    await previews.open("b_1", "acme", 8000, "bearer")
    await previews.open("b_2", "acme", 8001, "public")
    assert await cache.get("b_1", 8000) is not None
    assert await cache.get("b_2", 8001) is not None
    kept = cache._generation
    await previews.forget_box("b_1", "acme")
    await _seen(cache, kept)
    assert await cache.get("b_1", 8000) is None
    kept = cache._generation
    await previews.forget_owner("acme")
    await _seen(cache, kept)
    assert await cache.get("b_2", 8001) is None


async def test_a_change_whose_message_is_lost_is_seen_within_the_ttl(
        previews: Previews, cache: PortCache, redis: Redis) -> None:
    record = (await previews.open("b_1", "acme", 8000, "bearer")).record
    assert await cache.get("b_1", 8000) == record
    # Written behind Previews' back: no message, as when the subscription missed it.
    await redis.hdel(Keys().box_ports("b_1"), "8000")  # type: ignore[misc]
    assert await cache.get("b_1", 8000) == record  # kept: no round trip per request
    await asyncio.sleep(cache.ttl_s)
    assert await cache.get("b_1", 8000) is None


async def test_nothing_is_kept_while_the_changes_are_not_followed(
        previews: Previews, redis: Redis) -> None:
    cache = PortCache(previews, ttl_s=60)  # never started: no subscription
    await previews.open("b_1", "acme", 8000, "bearer")
    assert await cache.get("b_1", 8000) is not None
    await redis.hdel(Keys().box_ports("b_1"), "8000")  # type: ignore[misc]
    assert await cache.get("b_1", 8000) is None
    assert len(cache) == 0


class _SlowPreviews(Previews):
    """Previews whose reads return only when `gate` opens: a read that overlaps a change."""

    gate: asyncio.Event
    read: asyncio.Event

    async def get(self, box_id: str, port: int) -> PortRecord | None:
        record = await super().get(box_id, port)
        self.read.set()
        await self.gate.wait()
        return record


async def test_a_read_that_overlapped_a_change_is_not_kept(previews: Previews,
                                                           redis: Redis) -> None:
    slow = _SlowPreviews(redis, Keys(), SECRET)
    slow.gate, slow.read = asyncio.Event(), asyncio.Event()
    cache = PortCache(slow, ttl_s=60)
    cache.start()
    try:
        await _following(cache)
        record = (await previews.open("b_1", "acme", 8000, "bearer")).record
        reading = asyncio.create_task(cache.get("b_1", 8000))
        await slow.read.wait()  # the record is read; then, before it is kept, the port closes
        kept = cache._generation
        await previews.close("b_1", 8000)
        await _seen(cache, kept)
        slow.gate.set()
        assert await reading == record  # (that request was under way before the close)
        assert await cache.get("b_1", 8000) is None
    finally:
        await cache.aclose()
