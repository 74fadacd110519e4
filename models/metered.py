"""One chat call on somebody's budget: admitted by the operator's allowlist, ceilings and the
tenant's budget (models/budgets.py) for its worst case — the body its provider would be sent,
every field of it, and its max_tokens (models/worstcase.py) — made by the provider the model
names, and settled on what it used: released when it failed before the provider worked, kept
whole when its usage is unknown. Boxes' calls through the host socket and the server's own
calls (the knowledge base's model) go through here, so both are bounded and counted alike.

`OperatorModel` is the server's own model: `BURROW_KNOWLEDGE_MODEL`, counted under the tenant
"operator" within the policy for calls no tenant makes (boxes an operator made for no tenant
are counted there too). It answers the knowledge base's `ChatModel` protocol
(knowledge/model.py): messages in, the model's JSON text out.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import Any

from redis.exceptions import RedisError

from models.budgets import ModelBudgets
from models.chat import ChatMessage, ChatRequest, ChatResponse, JsonSchemaFormat, ResponseFormat
from models.errors import ModelError
from models.limits import LimitsSource, ModelLimits
from models.providers import ProviderError, Providers
from models.worstcase import call_tokens

OPERATOR = "operator"


async def metered_chat(providers: Providers, budgets: ModelBudgets, tenant: str,
                       request: ChatRequest, policy: ModelLimits) -> ChatResponse:
    """The provider's answer, or the ModelError that says why not (refused by the budget:
    BudgetError; unknown provider, no key, upstream down: ProviderError). RedisError when the
    budget cannot be checked."""
    max_output = budgets.clamp(request, policy)
    budgets.check_model(request.model, policy)
    provider = providers.get(request.model)  # an unknown provider or missing key: before anything
    reservation = await budgets.admit_call(
        tenant, request.model, call_tokens(provider.body(request), max_output), policy)
    try:
        response = await provider.chat(request)
    except ModelError as exc:
        spent = exc.maybe_billed if isinstance(exc, ProviderError) else False
        await _settled(budgets.settle(reservation, request.provider, None) if spent
                       else budgets.release(reservation))
        raise
    except (Exception, asyncio.CancelledError):  # the caller left, or worse: usage unknown
        await _settled(budgets.settle(reservation, request.provider, None))
        raise
    await _settled(budgets.settle(reservation, request.provider, response.usage))
    return response


async def _settled(counting: Awaitable[None]) -> None:
    with contextlib.suppress(RedisError, OSError):  # counting must not fail the call
        await counting


class OperatorModel:
    """The server's own model, held to a JSON schema, on the operator's budget."""

    def __init__(self, model: str, providers: Providers, budgets: ModelBudgets,
                 policies: LimitsSource, max_tokens: int = 400) -> None:
        self.model = model
        self.providers = providers
        self.budgets = budgets
        self.policies = policies
        self.max_tokens = max_tokens

    async def chat(self, messages: list[dict[str, str]], json_schema: dict[str, Any]) -> str:
        request = ChatRequest(
            model=self.model, temperature=0, max_tokens=self.max_tokens,
            messages=[ChatMessage(role=m["role"], content=m["content"])
                      for m in messages],
            response_format=ResponseFormat(type="json_schema", json_schema=JsonSchemaFormat(
                name="answer", schema_=json_schema)))
        policy = await self.policies.for_tenant(None)
        response = await metered_chat(self.providers, self.budgets, OPERATOR, request, policy)
        return response.message.content or ""
