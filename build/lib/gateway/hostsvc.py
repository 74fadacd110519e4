"""The host services socket: how programs in a box reach Burrow, with their box token.

Every box sees it at /run/burrow/host.sock (bound read-only), and it is the only way out of a
box without network. It answers box tokens only, from the box they belong to, and reads
nothing of a request before that is established (gateway/hostguard.py, gateway/authz.py).
Model calls go through the operator's allowlist, max_tokens ceiling, rate and token budget
(models/budgets.py); git goes through the git relay (gateway/gitrelay.py).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse
from redis.exceptions import RedisError
from starlette.types import ASGIApp

from gateway import authz, errors, gitrelay
from gateway.errors import ApiError
from gateway.hostguard import GuardError, HostGuard, HostLimits
from gateway.schemas import InsightOut, KnowledgeQuery, WhoAmI
from models.chat import ChatRequest, ChatResponse

if TYPE_CHECKING:
    from gateway.services import Services


def create_host_app(services: Services, limits: HostLimits | None = None) -> ASGIApp:
    app = FastAPI(title="Burrow host services", docs_url=None, redoc_url=None,
                  openapi_url=None)
    errors.install(app)

    def caller(request: Request) -> WhoAmI:
        box_id, tenant = request.scope["burrow.box"]
        return WhoAmI(kind="box", tenant=tenant, box_id=box_id)

    @app.get("/whoami")
    async def whoami(request: Request) -> WhoAmI:
        """Which box and tenant this token belongs to."""
        return caller(request)

    @app.post("/v1/knowledge/search")
    async def search(body: KnowledgeQuery, request: Request) -> list[InsightOut]:
        """The shared knowledge base, as the box's tenant may see it."""
        who = authz.Principal("box", caller(request).tenant)
        found = await services.kb.search(body.query, body.limit,
                                         everyone=authz.sees_all_knowledge(who))
        return [InsightOut(**i.to_dict()) for i in found]

    @app.post("/v1/model/chat")
    async def model_chat(body: ChatRequest, request: Request) -> ChatResponse:
        """One chat completion from the model the request names (`provider/name`); the server
        adds the provider's key. Within the operator's allowlist, ceilings and the tenant's
        budget; usage is counted per tenant."""
        who = caller(request)
        budgets, providers = services.budgets, services.providers
        # Boxes an operator made for no tenant count under "operator".
        tenant = who.tenant or "operator"
        try:
            reservation = await budgets.admit(
                tenant, body, await services.policies.for_tenant(who.tenant))
        except RedisError as exc:
            raise ApiError(503, "unavailable", "the model budget cannot be checked right now; "
                                               "retry shortly", {"Retry-After": "2"}) from exc
        response = None
        try:
            providers.get(body.model)  # an unknown provider or missing key: before anything
            response = await providers.chat(body)
            return response
        finally:
            with contextlib.suppress(RedisError, OSError):  # counting must not fail the call
                await budgets.settle(reservation, body.provider,
                                     response.usage if response is not None else None)

    @app.api_route("/v1/relay/git/{host}/{path:path}", methods=["GET", "POST"],
                   response_model=None)
    async def git(host: str, path: str, request: Request) -> StreamingResponse:
        """Git's smart HTTP to the box's git host, with the box's credentials added here."""
        manager = services.manager
        box = await manager.get(caller(request).box_id or "")
        return await gitrelay.relay(request, services.relay_client, box.meta.get("git"),
                                    manager.config.box_dir(box.id),
                                    services.settings.git_hosts, host, path)

    async def identify(token: str, peer_uid: int | None) -> tuple[str, str | None]:
        try:
            box = await authz.box_caller(services, token, peer_uid)
        except ApiError as exc:
            raise GuardError(exc.status, exc.code, exc.message) from None
        return box.id, box.owner

    return HostGuard(app, identify, limits or HostLimits())
