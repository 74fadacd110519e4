"""The history behind the operator's charts (core/history.py), against a real Redis with an
injected clock: wakes bucketed per minute with exact counts and bounded samples, percentiles,
the one-sample-per-minute claim, and nothing kept past the window."""

from __future__ import annotations

import asyncio
import random

import pytest
from redis.asyncio import Redis

from core.history import (
    BUCKET_TTL_S,
    HISTORY_MINUTES,
    HISTORY_S,
    SAMPLE_SIZE,
    History,
    chained,
    percentile,
)
from core.keys import Keys

T0 = 1_800_000_000.0 // 60 * 60  # the start of a minute
MINUTE = int(T0 // 60)


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def history(redis: Redis, clock: Clock, seed: int = 7, prefix: str = "hist") -> History:
    return History(redis, Keys(prefix), clock=clock, draw=random.Random(seed).random)


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50 and percentile(values, 99) == 99
    assert percentile(values, 100) == 100 and percentile(values, 0.1) == 1
    assert percentile([7.0], 50) == percentile([7.0], 99) == 7.0
    assert percentile([1.0, 2.0], 50) == 1.0 and percentile([1.0, 2.0], 99) == 2.0
    with pytest.raises(ValueError):
        percentile([], 50)


async def test_wakes_are_counted_in_the_minute_they_end(redis: Redis) -> None:
    clock = Clock()
    h = history(redis, clock)
    for at, seconds in ((T0 + 1, 0.040), (T0 + 59.9, 0.010), (T0 + 30, 0.020),
                        (T0 + 60, 0.500), (T0 + 180, 0.075)):
        clock.now = at
        await h.record_wake(seconds)
    wakes = await h.wakes(MINUTE - 1, MINUTE + 3)
    assert [w.minute for w in wakes] == [(MINUTE + i) * 60 for i in range(-1, 4)]
    assert [w.count for w in wakes] == [0, 3, 1, 0, 1]
    assert [w.p50_ms for w in wakes] == [None, 20.0, 500.0, None, 75.0]
    assert [w.p99_ms for w in wakes] == [None, 40.0, 500.0, None, 75.0]
    assert [w.sampled for w in wakes] == [0, 3, 1, 0, 1]


async def test_a_busy_minute_keeps_an_exact_count_and_a_bounded_uniform_sample(
        redis: Redis) -> None:
    clock = Clock(T0 + 5)
    h = history(redis, clock)
    n = 2000
    durations = [ms / 1000 for ms in range(1, n + 1)]  # 1 ms … 2000 ms, in order
    for seconds in durations:
        await h.record_wake(seconds)
    keys = Keys("hist")
    assert int(await redis.get(keys.history_wakes(MINUTE))) == n
    assert await redis.llen(keys.history_wake_ms(MINUTE)) == SAMPLE_SIZE
    (w,) = await h.wakes(MINUTE, MINUTE)
    assert w.count == n and w.sampled == SAMPLE_SIZE
    # Kept the first SAMPLE_SIZE (what a capped list would do), p50 would be ~128 ms and p99
    # ~254 ms. A uniform sample of 1..2000 ms puts them near 1000 and 1980.
    assert w.p50_ms is not None and w.p99_ms is not None
    assert 850 <= w.p50_ms <= 1150, w
    assert w.p99_ms >= 1900, w
    sample = [float(v) for v in await redis.lrange(keys.history_wake_ms(MINUTE), 0, -1)]
    assert sum(v > SAMPLE_SIZE for v in sample) > SAMPLE_SIZE // 2  # later wakes got in


async def test_a_minute_long_over_is_read_once_and_the_recent_ones_each_time(
        redis: Redis) -> None:
    clock = Clock(T0 + 5)
    h = history(redis, clock)
    await h.record_wake(0.010)
    clock.now = T0 + 3 * 60 + 10  # minute 0 is over by more than SETTLED_S, 2 is not
    await h.record_wake(0.020, at=T0 + 2 * 60 + 59)
    first = await h.wakes(MINUTE, MINUTE + 3)
    assert [w.count for w in first] == [1, 0, 1, 0]
    # late writes: the final minute keeps what it was read as, the others show them
    for at in (T0 + 30, T0 + 2 * 60 + 1, T0 + 3 * 60 + 9):
        await h.record_wake(0.040, at=at)
    again = await h.wakes(MINUTE, MINUTE + 3)
    assert [w.count for w in again] == [1, 0, 2, 1]
    assert again[0] == first[0] and again[2].p99_ms == 40.0
    assert set(h._settled) == {MINUTE}  # minute 1 ended 70 s ago: not yet final
    clock.now += HISTORY_S + 3600  # a day later, what was read then is let go
    await h.wakes(int(clock.now // 60) - 1, int(clock.now // 60))
    assert MINUTE not in h._settled


async def test_wake_buckets_expire_after_the_window(redis: Redis) -> None:
    h = history(redis, Clock(T0 + 10))
    await h.record_wake(0.030)
    keys = Keys("hist")
    for key in (keys.history_wakes(MINUTE), keys.history_wake_ms(MINUTE)):
        ttl = await redis.ttl(key)
        assert HISTORY_S < ttl <= BUCKET_TTL_S, (key, ttl)
    # every key it wrote is the instance's, under its prefix
    assert all(keys.owns(k) for k in await redis.keys("*"))


async def test_the_transition_hook_records_wakes_in_the_background(redis: Redis) -> None:
    clock = Clock(T0 + 3)
    h = history(redis, clock)
    seen: list[tuple[str, float]] = []
    hook = chained(h.transition, None, lambda kind, s: seen.append((kind, s)))
    hook("wake", 0.025)
    hook("freeze", 1.5)  # not a wake: not in the history
    hook("wake", 0.035)
    assert seen == [("wake", 0.025), ("freeze", 1.5), ("wake", 0.035)]
    await h.drain()
    (w,) = await h.wakes(MINUTE, MINUTE)
    assert (w.count, w.p50_ms, w.p99_ms) == (2, 25.0, 35.0)


async def test_a_wake_that_cannot_be_recorded_does_not_fail_the_wake() -> None:
    unreachable = Redis.from_url("redis://127.0.0.1:9/0", socket_connect_timeout=1)
    h = History(unreachable, Keys("hist"), clock=Clock())
    h.transition("wake", 0.02)  # raises nothing here
    await h.drain()
    assert h.dropped == 1
    await unreachable.aclose()


def test_a_wake_told_outside_the_event_loop_is_counted_as_dropped() -> None:
    h = History(Redis.from_url("redis://unused"), Keys("hist"), clock=Clock())
    h.transition("wake", 0.02)  # no running loop: it must not raise into the wake
    assert h.dropped == 1


async def test_one_sample_per_minute_however_many_workers_try(redis: Redis) -> None:
    clock = Clock(T0 + 0.2)
    workers = [history(redis, clock, seed=i) for i in range(3)]
    calls = 0

    async def take() -> tuple[dict[str, int], int, int]:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        return {"running": calls, "frozen": 2}, 5, 9

    taken = await asyncio.gather(*(w.sample(take) for w in workers))
    assert calls == 1 and sum(t is not None for t in taken) == 1
    clock.now = T0 + 60.1  # the next minute
    assert await workers[1].sample(take) is not None and calls == 2
    assert await workers[2].sample(take) is None and calls == 2
    samples = await workers[0].samples(MINUTE - 5, MINUTE + 5)
    assert [(s.at, s.boxes["running"], s.queue_depth, s.backlog) for s in samples] \
        == [(T0 + 0.2, 1, 5, 9), (T0 + 60.1, 2, 5, 9)]
    assert await workers[0].samples(MINUTE + 1, MINUTE + 1) == samples[1:]


async def test_samples_are_cut_to_the_window(redis: Redis) -> None:
    clock = Clock(T0)
    h = history(redis, clock)

    async def take() -> tuple[dict[str, int], int, int]:
        return {"running": 1}, 0, 0

    extra = 30
    for i in range(HISTORY_MINUTES + extra):
        clock.now = T0 + i * 60
        assert await h.sample(take) is not None
    key = Keys("hist").history_samples()
    assert await redis.zcard(key) == HISTORY_MINUTES
    oldest = await redis.zrange(key, 0, 0, withscores=True)
    assert oldest[0][1] == MINUTE + extra
    last = int(clock.now // 60)
    assert len(await h.samples(last - 59, last)) == 60


async def test_an_unreadable_sample_is_left_out(redis: Redis) -> None:
    clock = Clock(T0 + 1)
    h = history(redis, clock)
    await redis.zadd(Keys("hist").history_samples(), {b"not json": MINUTE, b'{"at": 1}': MINUTE})

    async def take() -> tuple[dict[str, int], int, int]:
        return {"running": 4}, 1, 2

    await h.sample(take)
    assert [s.boxes for s in await h.samples(MINUTE, MINUTE)] == [{"running": 4}]


def test_the_window_ends_with_the_current_minute() -> None:
    h = History(Redis.from_url("redis://unused"), Keys("hist"), clock=Clock(T0 + 42))
    now, first, last = h.window(6)
    assert now == T0 + 42 and last == MINUTE and last - first + 1 == 360
