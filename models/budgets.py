"""What boxes may spend on models: the operator's allowlist, a max_tokens ceiling that clamps
(agent CLIs ask for large values), a per-tenant token budget per period and a per-tenant
call rate. Usage is counted per tenant and provider, and in totals for stats and metrics.

A call reserves its worst case before it starts (the prompt's estimated tokens plus its
max_tokens), so that many calls at once cannot overdraw the budget, and settles on the real
usage when it ends (or releases the reservation when it fails). When the budget is spent the
call answers 429 with the time the period ends. Keys: `{prefix}:model:*`, owned here; a
deleted tenant's are deleted with it.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from redis.asyncio import Redis

from models.chat import ChatRequest, Usage
from models.errors import ModelError
from workers.policy import Policy

CHARS_PER_TOKEN = 4  # the usual estimate; a reservation, settled on the real count
DEFAULT_MAX_TOKENS = 1024


@dataclass(frozen=True)
class Reservation:
    tenant: str
    key: str | None  # the budget window's counter; None: no budget
    reserved: int


class BudgetError(ModelError):
    """The operator's allowlist, call rate or token budget refused a call."""


class ModelBudgets:
    def __init__(self, redis: Redis, *, prefix: str) -> None:
        self.redis = redis
        self.prefix = prefix

    def usage_key(self, tenant: str) -> str:
        return f"{self.prefix}:model:usage:{tenant}"

    @property
    def totals_key(self) -> str:
        return f"{self.prefix}:model:usage-total"

    def _budget_key(self, tenant: str, window: int) -> str:
        return f"{self.prefix}:model:budget:{tenant}:{window}"

    def _rate_key(self, tenant: str, minute: int) -> str:
        return f"{self.prefix}:model:rate:{tenant}:{minute}"

    def _embed_key(self, tenant: str, minute: int) -> str:
        return f"{self.prefix}:model:embed:{tenant}:{minute}"

    async def admit_embed(self, tenant: str, texts: int, policy: Policy) -> None:
        """Count `texts` the host embeds for `tenant`'s boxes (in its usage as embed:texts),
        or raise the 429 BudgetError of embed_texts_per_minute."""
        now = time.time()
        minute = int(now // 60)
        key = self._embed_key(tenant, minute)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.incrby(key, texts)
            pipe.expire(key, 120)
            count, _ = await pipe.execute()
        limit = policy.embed_texts_per_minute
        if limit is not None and count > limit:
            await self.redis.decrby(key, texts)
            wait = max(1, math.ceil((minute + 1) * 60 - now))
            raise BudgetError(429, "rate_limited",
                              f"this tenant had the host embed {limit} texts this minute (a "
                              f"knowledge search embeds one), the most allowed "
                              f"(embed_texts_per_minute); retry in {wait} s",
                              {"Retry-After": str(wait)})
        async with self.redis.pipeline(transaction=False) as pipe:
            for usage in (self.usage_key(tenant), self.totals_key):
                pipe.hincrby(usage, "embed:texts", texts)
            await pipe.execute()

    async def admit(self, tenant: str, request: ChatRequest, policy: Policy) -> Reservation:
        """Allow a chat call or raise the BudgetError that says why not; clamps
        request.max_tokens to the ceiling."""
        # A call that names no max_tokens gets the usual 1024 (a tiny local model asked for
        # the whole ceiling rambles on for minutes); one that names more gets the ceiling.
        asked = request.max_tokens or DEFAULT_MAX_TOKENS
        ceiling = policy.model_max_tokens
        request.max_tokens = asked if ceiling is None else min(asked, ceiling)
        chars = sum(len(m.content or "") for m in request.messages)
        chars += sum(len(t.model_dump_json()) for t in request.tools or [])
        return await self.admit_call(tenant, request.model,
                                     chars // CHARS_PER_TOKEN + request.max_tokens, policy)

    def output_ceiling(self, policy: Policy) -> int:
        """The most output tokens one call may ask for (a relayed CLI's are clamped to it)."""
        return policy.model_max_tokens or 4 * DEFAULT_MAX_TOKENS

    async def admit_call(self, tenant: str, model: str, tokens: int,
                         policy: Policy) -> Reservation:
        """Allow a call of `model` that may cost `tokens` (prompt and output), or raise the
        BudgetError that says why not: the allowlist, the call rate, the token budget."""
        if not policy.allows(model):
            raise BudgetError(403, "model_not_allowed",
                              f"model {model} is not on the operator's allowlist "
                              f"({', '.join(policy.model_allowlist or ()) or 'empty'}); use "
                              "one of those")
        now = time.time()
        if policy.model_calls_per_minute is not None:
            await self._rate(tenant, policy.model_calls_per_minute, now)
        budget = policy.tenant_token_budget
        if budget is None:
            return Reservation(tenant, None, 0)
        period = policy.token_budget_period_s
        window = int(now // period)
        key = self._budget_key(tenant, window)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.incrby(key, tokens)
            pipe.expire(key, int(period) + 3600)
            spent, _ = await pipe.execute()
        if spent > budget:
            await self.redis.decrby(key, tokens)
            reset = (window + 1) * period
            raise BudgetError(429, "budget_spent",
                              f"this tenant's model budget ({budget} tokens per {period:g} s) "
                              f"is spent (this call could use {tokens}); it resets at "
                              f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(reset))}",
                              {"Retry-After": str(max(1, math.ceil(reset - now)))})
        return Reservation(tenant, key, tokens)

    async def _rate(self, tenant: str, per_minute: int, now: float) -> None:
        minute = int(now // 60)
        key = self._rate_key(tenant, minute)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.expire(key, 120)
            calls, _ = await pipe.execute()
        if calls > per_minute:
            wait = max(1, math.ceil((minute + 1) * 60 - now))
            raise BudgetError(429, "rate_limited",
                              f"this tenant's boxes made {per_minute} model calls this minute, "
                              f"the most allowed; retry in {wait} s",
                              {"Retry-After": str(wait)})

    async def settle(self, reservation: Reservation, provider: str,
                     usage: Usage | None) -> None:
        """Replace the reservation by what the call used (nothing, if it failed)."""
        used = (usage.input_tokens + usage.output_tokens) if usage is not None else 0
        async with self.redis.pipeline(transaction=False) as pipe:
            if reservation.key is not None:
                pipe.decrby(reservation.key, reservation.reserved - used)
            if usage is not None:
                for key in (self.usage_key(reservation.tenant), self.totals_key):
                    pipe.hincrby(key, f"{provider}:calls", 1)
                    pipe.hincrby(key, f"{provider}:input_tokens", usage.input_tokens)
                    pipe.hincrby(key, f"{provider}:output_tokens", usage.output_tokens)
            await pipe.execute()

    async def spent(self, tenant: str, policy: Policy) -> int:
        window = int(time.time() // policy.token_budget_period_s)
        return int(await self.redis.get(self._budget_key(tenant, window)) or 0)

    async def totals(self) -> dict[str, int]:
        raw = await self.redis.hgetall(self.totals_key)  # type: ignore[misc]
        return {k.decode(): int(v) for k, v in raw.items()}

    async def forget(self, tenant: str) -> None:
        """A deleted tenant's usage, budget and rate counters."""
        keys = [self.usage_key(tenant)]
        async for key in self.redis.scan_iter(match=f"{self.prefix}:model:*:{tenant}:*"):
            keys.append(key)
        await self.redis.delete(*keys)
