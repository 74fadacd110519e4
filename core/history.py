"""The last hours of an instance, kept in Redis for the operator's charts (the dashboard,
`GET /v1/stats/history`): wakes per minute with their p50 and p99, and once a minute the boxes
per state, the worker's queue and the observation backlog. Nothing is kept past HISTORY_S.

Wakes are recorded where they happen: the process that runs the box (`burrow serve`, or a
cluster's `burrow host`) is told by its BoxManager (`on_transition`, wired in
core/services.py) and writes the wake into its minute's bucket: an exact count, and a uniform
sample of at most SAMPLE_SIZE durations (reservoir sampling, Algorithm R, in one Lua script),
so a minute of a million wakes still costs a few kilobytes. Percentiles are nearest-rank over
the minute's sample: exact while the minute had at most SAMPLE_SIZE wakes; beyond, p99 is the
sample's 254th of 256 values, whose true rank is 98.8 % ± 0.7 % (the order statistic of a
uniform sample: Beta(254, 3)).

Samples of the boxes and queues are taken by the workers' housekeeping (workers/housekeeping.py)
once a minute: the first worker to claim the minute takes it, the others skip it, and the
sorted set they go into is cut to the window at each write.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass

from redis.asyncio import Redis
from redis.exceptions import RedisError

from core.keys import Keys

log = logging.getLogger("burrow.history")

HISTORY_S = 24 * 3600                # the window kept, and the longest one shown
HISTORY_MINUTES = HISTORY_S // 60
SAMPLE_SIZE = 256                    # wake durations kept per minute (exact below it)
# A minute's wake keys live this long after its last wake: past the window, within a minute.
BUCKET_TTL_S = HISTORY_S + 60
CLAIM_TTL_S = 120                    # a minute's sample claim, long enough to outlive it
MAX_PENDING = 1000                   # recordings in flight before new ones are dropped
# A minute this long over (its wakes' writes long done, hosts' clocks apart by less) is final:
# read once, then served from memory.
SETTLED_S = 120

# KEYS: the minute's count, its sample. ARGV: the wake's ms, the sample's size, the TTL, a
# uniform draw in [0, 1) (drawn by the caller: scripts' own random numbers are not).
_RECORD = """
local n = redis.call('INCR', KEYS[1])
local size = tonumber(ARGV[2])
if n <= size then
  redis.call('RPUSH', KEYS[2], ARGV[1])
else
  local j = math.floor(tonumber(ARGV[4]) * n)
  if j < redis.call('LLEN', KEYS[2]) then redis.call('LSET', KEYS[2], j, ARGV[1]) end
end
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[3])
return n
"""

Clock = Callable[[], float]
Hook = Callable[[str, float], None]


def _ordered(busy: list[tuple[int, int]], samples: list[list[bytes]]
             ) -> dict[int, tuple[int, list[float]]]:
    """Each busy minute's count and its sampled durations, sorted."""
    return {m: (n, sorted(float(v) for v in values))
            for (m, n), values in zip(busy, samples, strict=True)}


def percentile(ordered: Sequence[float], p: float) -> float:
    """The nearest-rank `p`th percentile (0 < p <= 100) of values sorted ascending: the
    smallest value at least p % of them are at or below."""
    if not ordered:
        raise ValueError("no values")
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def chained(*hooks: Hook | None) -> Hook:
    """One BoxManager.on_transition hook that calls each of `hooks` in turn (None: none)."""
    chosen = [h for h in hooks if h is not None]

    def hook(kind: str, seconds: float) -> None:
        for each in chosen:
            each(kind, seconds)

    return hook


@dataclass(frozen=True)
class WakeMinute:
    minute: int              # the minute's start, Unix seconds
    count: int               # every wake that ended in it
    p50_ms: float | None     # None: no wake
    p99_ms: float | None
    sampled: int             # durations the percentiles are of (count, up to SAMPLE_SIZE)


@dataclass(frozen=True)
class Sample:
    at: float
    boxes: dict[str, int]
    queue_depth: int
    backlog: int


class History:
    """Records wakes and samples into Redis and reads them back as series."""

    def __init__(self, redis: Redis, keys: Keys, clock: Clock = time.time,
                 draw: Callable[[], float] = random.random) -> None:
        self.redis = redis
        self.keys = keys
        self.clock = clock
        self.draw = draw
        self.dropped = 0  # wakes not recorded: too many in flight, or Redis failed
        self._record = redis.register_script(_RECORD)
        self._pending: set[asyncio.Task[None]] = set()
        self._settled: dict[int, WakeMinute] = {}  # minute -> what it holds, once final

    # --- wakes -------------------------------------------------------------------------------

    def transition(self, kind: str, seconds: float) -> None:
        """BoxManager.on_transition: a wake is written to Redis in the background (the hook is
        called inside the wake, which must not wait for it)."""
        if kind != "wake":
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # told from a thread: nothing to write with here
            loop = None
        if loop is None or len(self._pending) >= MAX_PENDING:
            self.dropped += 1
            return
        task = loop.create_task(self._record_quietly(seconds, self.clock()))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _record_quietly(self, seconds: float, at: float) -> None:
        try:
            await self.record_wake(seconds, at)
        except (RedisError, OSError) as exc:
            self.dropped += 1
            log.warning("a wake was not recorded in the history (%d so far): %s",
                        self.dropped, exc)

    async def record_wake(self, seconds: float, at: float | None = None) -> int:
        """Count a wake of `seconds` that ended at `at` (now) in its minute; return the
        minute's count so far."""
        minute = int((self.clock() if at is None else at) // 60)
        count: int = await self._record(
            keys=[self.keys.history_wakes(minute), self.keys.history_wake_ms(minute)],
            args=[f"{seconds * 1000:.2f}", SAMPLE_SIZE, BUCKET_TTL_S, repr(self.draw())])
        return int(count)

    async def wakes(self, first: int, last: int) -> list[WakeMinute]:
        """Every minute from `first` to `last` (minute numbers, both included), oldest first;
        a minute nobody recorded a wake in counts none. A minute over for SETTLED_S is read
        once (a busy day is 368,640 durations to sort: a second, in a thread)."""
        now = self.clock()
        settled = int((now - SETTLED_S) // 60)  # the minutes before it are final
        for m in [m for m in self._settled if m < int(now // 60) - HISTORY_MINUTES]:
            del self._settled[m]  # gone from Redis too
        minutes = [m for m in range(first, last + 1) if m not in self._settled]
        counts = await self.redis.mget([self.keys.history_wakes(m) for m in minutes]) \
            if minutes else []
        busy = [(m, int(c)) for m, c in zip(minutes, counts, strict=True) if c]
        samples: list[list[bytes]] = []
        if busy:
            async with self.redis.pipeline(transaction=False) as pipe:
                for m, _ in busy:
                    pipe.lrange(self.keys.history_wake_ms(m), 0, -1)
                samples = await pipe.execute()
        # sorting a busy day's samples takes a second: off the event loop
        found = await asyncio.to_thread(_ordered, busy, samples) if busy else {}
        read = {}
        for m in minutes:
            n, ordered = found.get(m, (0, []))
            read[m] = WakeMinute(minute=m * 60, count=n, sampled=len(ordered),
                                 p50_ms=percentile(ordered, 50) if ordered else None,
                                 p99_ms=percentile(ordered, 99) if ordered else None)
            if m < settled:
                self._settled[m] = read[m]
        return [read[m] if m in read else self._settled[m] for m in range(first, last + 1)]

    async def drain(self) -> None:
        """Wait for the wakes still being written (a closing process, before Redis goes)."""
        if self._pending:
            await asyncio.wait(set(self._pending), timeout=5)

    # --- samples -----------------------------------------------------------------------------

    async def sample(self, take: Callable[[], Awaitable[tuple[dict[str, int], int, int]]]
                     ) -> Sample | None:
        """Take this minute's sample with `take` (boxes per state, queue depth, backlog) unless
        another process has claimed the minute; keep it, and only the window's."""
        now = self.clock()
        minute = int(now // 60)
        if not await self.redis.set(self.keys.history_claim(minute), "1", nx=True,
                                    ex=CLAIM_TTL_S):
            return None
        boxes, queue_depth, backlog = await take()
        taken = Sample(at=now, boxes=boxes, queue_depth=queue_depth, backlog=backlog)
        key = self.keys.history_samples()
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zadd(key, {json.dumps(asdict(taken), sort_keys=True): minute})
            pipe.zremrangebyscore(key, "-inf", f"({minute - HISTORY_MINUTES}")
            pipe.zremrangebyrank(key, 0, -HISTORY_MINUTES - 1)  # at most one per minute
            await pipe.execute()
        return taken

    async def samples(self, first: int, last: int) -> list[Sample]:
        """The samples taken from minute `first` to minute `last`, oldest first."""
        raw = await self.redis.zrangebyscore(self.keys.history_samples(), first, last)
        out = []
        for item in raw:
            try:
                value = json.loads(item)
                out.append(Sample(at=float(value["at"]), boxes=dict(value["boxes"]),
                                  queue_depth=int(value["queue_depth"]),
                                  backlog=int(value["backlog"])))
            except (ValueError, KeyError, TypeError):
                log.warning("a history sample is unreadable and was left out: %r", item[:200])
        return out

    def window(self, hours: int) -> tuple[float, int, int]:
        """(now, first minute, last minute) of the last `hours`, the current minute included."""
        now = self.clock()
        last = int(now // 60)
        return now, last - hours * 60 + 1, last
