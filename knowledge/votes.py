"""Helpful / unhelpful votes on shared insights: one vote per tenant per insight (a later vote
replaces the earlier one), kept in Redis, and the rule by which unhelpful insights fade.

Keys: an insight's votes are a hash of contributor id to 1 or -1 (`kb_votes`); the insights a
tenant voted on are a set (`kb_voted`), so deleting a tenant takes its votes back without a
scan. Because votes are per tenant, one box (or one
tenant's many boxes) can move an insight by one vote at most.
"""

from __future__ import annotations

from redis.asyncio import Redis

from knowledge.keys import KnowledgeKeys

FADE_VOTES = 3  # unhelpful votes (net of helpful ones) that hide an insight from tenants


def faded(helpful: int, unhelpful: int, fade_votes: int = FADE_VOTES) -> bool:
    """Whether an insight is hidden from tenants: at least `fade_votes` tenants found it
    unhelpful, and twice as many as found it helpful."""
    return unhelpful >= fade_votes and unhelpful > 2 * helpful


def weight(helpful: int, unhelpful: int) -> float:
    """What a search score is multiplied by: 1 for an insight nobody faults, down to 0.7 as
    unhelpful votes outnumber helpful ones."""
    return 1.0 - 0.06 * min(5, max(0, unhelpful - helpful))


class Votes:
    def __init__(self, redis: Redis, keys: KnowledgeKeys) -> None:
        self.redis = redis
        self._votes = keys.kb_votes
        self._voted = keys.kb_voted

    async def cast(self, insight_id: str, tenant: str, contributor: str,
                   helpful: bool) -> tuple[int, int]:
        """Record the tenant's vote; the insight's (helpful, unhelpful) counts after it."""
        await self.redis.hset(self._votes(insight_id), contributor,  # type: ignore[misc]
                              "1" if helpful else "-1")
        await self.redis.sadd(self._voted(tenant), insight_id)  # type: ignore[misc]
        return await self.tally(insight_id)

    async def tally(self, insight_id: str) -> tuple[int, int]:
        values = await self.redis.hvals(self._votes(insight_id))  # type: ignore[misc]
        up = sum(1 for v in values if int(v) > 0)
        return up, len(values) - up

    async def withdraw(self, tenant: str, contributor: str) -> list[str]:
        """Take back every vote of the tenant; the insights whose counts changed."""
        ids = [m.decode() for m in await self.redis.smembers(self._voted(tenant))]  # type: ignore[misc]
        changed = []
        for insight_id in ids:
            if await self.redis.hdel(self._votes(insight_id), contributor):  # type: ignore[misc]
                changed.append(insight_id)
        await self.redis.delete(self._voted(tenant))
        return changed

    async def drop(self, insight_id: str) -> None:
        """Forget the votes of a removed insight."""
        await self.redis.delete(self._votes(insight_id))
