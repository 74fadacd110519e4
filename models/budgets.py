"""What boxes may spend on models: the operator's allowlist, a max_tokens ceiling that clamps
(agent CLIs ask for large values), a per-tenant token budget per period and a per-tenant
call rate. Usage is counted per tenant and provider, and in totals for stats and metrics.

A call reserves its worst case before it starts (models/worstcase.py: every byte sent as a
token, plus its max_tokens) and is admitted only if that fits in what is left, so that no call,
and no number of calls at once, can take the tenant past its budget. It settles on the usage
the provider reported when it ends; it releases the reservation when it failed before the
provider did any work; and when its usage is unknown (a stream cut short, a timeout after the
request went out) the reservation stays spent — the worst case, never zero. When the budget is
spent the call answers 429 with the time the period ends. Its Redis keys (models/keys.py) are
owned here; a deleted tenant's are deleted with it.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from redis.asyncio import Redis

from models.chat import ChatRequest, Usage
from models.errors import ModelError
from models.keys import BudgetKeys
from models.limits import ModelLimits

DEFAULT_MAX_TOKENS = 1024


@dataclass(frozen=True)
class Reservation:
    tenant: str
    key: str | None  # the budget window's counter; None: no budget
    reserved: int


class BudgetError(ModelError):
    """The operator's allowlist, call rate or token budget refused a call."""


class ModelBudgets:
    def __init__(self, redis: Redis, keys: BudgetKeys) -> None:
        self.redis = redis
        self.keys = keys
        self.usage_key = keys.model_usage
        self.totals_key = keys.model_usage_total()
        self._budget_key = keys.model_budget
        self._rate_key = keys.model_rate
        self._embed_key = keys.model_embeds

    async def admit_embed(self, tenant: str, texts: int, policy: ModelLimits) -> None:
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

    @staticmethod
    def clamp(request: ChatRequest, policy: ModelLimits) -> int:
        """Bound request.max_tokens by the ceiling (and return it)."""
        # A call that names no max_tokens gets the usual 1024 (a tiny local model asked for
        # the whole ceiling rambles on for minutes); one that names more gets the ceiling.
        asked = request.max_tokens or DEFAULT_MAX_TOKENS
        ceiling = policy.model_max_tokens
        request.max_tokens = asked if ceiling is None else min(asked, ceiling)
        return request.max_tokens

    @staticmethod
    def check_model(model: str, policy: ModelLimits) -> None:
        """Raise the BudgetError of the operator's allowlist if `model` is not on it."""
        if not policy.allows(model):
            raise BudgetError(403, "model_not_allowed",
                              f"model {model} is not on the operator's allowlist "
                              f"({', '.join(policy.model_allowlist or ()) or 'empty'}); use "
                              "one of those")

    def output_ceiling(self, policy: ModelLimits) -> int:
        """The most output tokens one call may ask for (a relayed CLI's are clamped to it)."""
        return policy.model_max_tokens or 4 * DEFAULT_MAX_TOKENS

    async def admit_call(self, tenant: str, model: str, tokens: int,
                         policy: ModelLimits) -> Reservation:
        """Allow a call of `model` that may cost at most `tokens` (prompt and output: its
        worst case), or raise the BudgetError that says why not: the allowlist, the call
        rate, the token budget (the call is admitted only if `tokens` fits in what is left)."""
        self.check_model(model, policy)
        now = time.time()
        if policy.model_calls_per_minute is not None:
            await self._rate(tenant, policy.model_calls_per_minute, now)
        budget = policy.tenant_token_budget
        if budget is None:
            return Reservation(tenant, None, tokens)
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
        """Replace the reservation by what the call used. `usage` None: the call may have
        cost something but its usage is unknown (a stream cut short, a timeout after the
        request went out): the reservation stays spent, and is counted as
        `{provider}:unmetered_tokens`."""
        used = (usage.input_tokens + usage.output_tokens) if usage is not None else None
        async with self.redis.pipeline(transaction=False) as pipe:
            if reservation.key is not None and used is not None:
                # more than reserved cannot happen when the reservation is a bound; if a
                # provider ever counts more, the budget shows it
                pipe.decrby(reservation.key, reservation.reserved - used)
            for key in (self.usage_key(reservation.tenant), self.totals_key):
                pipe.hincrby(key, f"{provider}:calls", 1)
                if usage is None:
                    pipe.hincrby(key, f"{provider}:unmetered_tokens", reservation.reserved)
                else:
                    pipe.hincrby(key, f"{provider}:input_tokens", usage.input_tokens)
                    pipe.hincrby(key, f"{provider}:output_tokens", usage.output_tokens)
            await pipe.execute()

    async def release(self, reservation: Reservation) -> None:
        """Give the reservation back: the call was refused or failed before the provider did
        any work."""
        if reservation.key is not None and reservation.reserved:
            await self.redis.decrby(reservation.key, reservation.reserved)

    async def spent(self, tenant: str, policy: ModelLimits) -> int:
        window = int(time.time() // policy.token_budget_period_s)
        return int(await self.redis.get(self._budget_key(tenant, window)) or 0)

    async def totals(self) -> dict[str, int]:
        raw = await self.redis.hgetall(self.totals_key)  # type: ignore[misc]
        return {k.decode(): int(v) for k, v in raw.items()}

    async def forget(self, tenant: str) -> None:
        """A deleted tenant's usage, budget and rate counters."""
        keys = [self.usage_key(tenant)]
        async for key in self.redis.scan_iter(match=self.keys.model_windows(tenant)):
            keys.append(key)
        await self.redis.delete(*keys)
