"""The host services socket: how programs in a box reach Burrow, with their box token.

Every box sees it at /run/burrow/host.sock (bound read-only), and it is the only way out of a
box without network. It answers box tokens only.
"""

from __future__ import annotations

import contextlib

from fastapi import FastAPI, Request
from redis.exceptions import RedisError

from gateway import errors
from gateway.chat import ChatRequest, ChatResponse
from gateway.deps import authenticate, bearer
from gateway.errors import ApiError
from gateway.providers import Providers
from gateway.routes.knowledge import search_for
from gateway.schemas import InsightOut, KnowledgeQuery, WhoAmI


def create_host_app(parent: FastAPI) -> FastAPI:
    app = FastAPI(title="Burrow host services", docs_url=None, redoc_url=None,
                  openapi_url=None)
    errors.install(app)
    app.state.parent = parent

    async def box_principal(request: Request) -> WhoAmI:
        who = await authenticate(parent, bearer(request))
        if who.kind != "box":
            raise ApiError(403, "forbidden", "the host socket answers box tokens only "
                                             "($BURROW_BOX_TOKEN inside a box)")
        return WhoAmI(kind="box", tenant=who.tenant, box_id=who.box_id)

    @app.get("/whoami")
    async def whoami(request: Request) -> WhoAmI:
        """Which box and tenant this token belongs to."""
        return await box_principal(request)

    @app.post("/v1/knowledge/search")
    async def search(body: KnowledgeQuery, request: Request) -> list[InsightOut]:
        """The shared knowledge base, as the box's tenant may see it."""
        who = await authenticate(parent, bearer(request))
        if who.kind != "box":
            raise ApiError(403, "forbidden", "the host socket answers box tokens only")
        return await search_for(parent.state.kb, who, body)

    @app.post("/v1/model/chat")
    async def model_chat(body: ChatRequest, request: Request) -> ChatResponse:
        """One chat completion from the model the request names (`provider/name`); the server
        adds the provider's key. Usage is counted per tenant."""
        who = await box_principal(request)
        providers: Providers = parent.state.providers
        response = await providers.chat(body)
        # Boxes an operator made for no tenant count under "operator".
        await _count_usage(parent, who.tenant or "operator", body.provider, response)
        return response

    return app


def usage_key(tenant: str) -> str:
    return f"burrow:model_usage:{tenant}"


async def _count_usage(parent: FastAPI, tenant: str, provider: str,
                       response: ChatResponse) -> None:
    redis = getattr(parent.state, "redis", None)
    if redis is None:
        return
    with contextlib.suppress(RedisError, OSError):  # counting must not fail the call
        async with redis.pipeline(transaction=False) as pipe:
            key = usage_key(tenant)
            pipe.hincrby(key, f"{provider}:calls", 1)
            pipe.hincrby(key, f"{provider}:input_tokens", response.usage.input_tokens)
            pipe.hincrby(key, f"{provider}:output_tokens", response.usage.output_tokens)
            await pipe.execute()
