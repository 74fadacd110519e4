"""The host services socket: how programs in a box reach Burrow, with their box token.

Every box sees it at /run/burrow/host.sock (bound read-only), and it is the only way out of a
box without network. It answers box tokens only, from the box they belong to, and reads
nothing of a request before that is established (gateway/hostguard.py). Model calls go
through the operator's allowlist, max_tokens ceiling, rate and token budget
(gateway/budgets.py).
"""

from __future__ import annotations

import contextlib

from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse
from redis.exceptions import RedisError
from starlette.types import ASGIApp

from gateway import errors, gitrelay
from gateway.budgets import ModelBudgets
from gateway.chat import ChatRequest, ChatResponse
from gateway.deps import Principal
from gateway.errors import ApiError
from gateway.hostguard import GuardError, HostGuard, HostLimits
from gateway.providers import Providers
from gateway.routes.knowledge import search_for
from gateway.schemas import InsightOut, KnowledgeQuery, WhoAmI
from gateway.security import box_of_token
from workers.policy import Policies

_LIVE = ("running", "paused", "waking", "creating")


def create_host_app(parent: FastAPI, limits: HostLimits | None = None) -> ASGIApp:
    app = FastAPI(title="Burrow host services", docs_url=None, redoc_url=None,
                  openapi_url=None)
    errors.install(app)
    app.state.parent = parent

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
        who = caller(request)
        return await search_for(parent.state.kb, Principal("box", who.tenant, who.box_id), body)

    @app.post("/v1/model/chat")
    async def model_chat(body: ChatRequest, request: Request) -> ChatResponse:
        """One chat completion from the model the request names (`provider/name`); the server
        adds the provider's key. Within the operator's allowlist, ceilings and the tenant's
        budget; usage is counted per tenant."""
        who = caller(request)
        providers: Providers = parent.state.providers
        budgets: ModelBudgets = parent.state.budgets
        policies: Policies = parent.state.policies
        # Boxes an operator made for no tenant count under "operator".
        tenant = who.tenant or "operator"
        try:
            reservation = await budgets.admit(tenant, body, await policies.for_tenant(
                who.tenant))
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
        who = caller(request)
        manager = parent.state.manager
        box = await manager.get(who.box_id)
        return await gitrelay.relay(request, parent.state.relay_client, box.meta.get("git"),
                                    manager.config.box_dir(box.id),
                                    parent.state.settings.git_hosts, host, path)

    async def identify(token: str, peer_uid: int | None) -> tuple[str, str | None]:
        box_id = box_of_token(parent.state.secret, token)
        if box_id is None:
            raise GuardError(401, "unauthenticated",
                             "the host socket answers box tokens only ($BURROW_BOX_TOKEN "
                             "inside a box)")
        manager = getattr(parent.state, "manager", None)
        box = await manager.registry.get(box_id) if manager is not None else None
        if box is None or box.state.value not in _LIVE:
            raise GuardError(401, "unauthenticated", "this box token names no running box")
        if peer_uid is not None and peer_uid != box.uid:
            raise GuardError(403, "forbidden", "this token belongs to another box; use your "
                                               "own ($BURROW_BOX_TOKEN)")
        return box.id, box.owner

    return HostGuard(app, identify, limits or HostLimits())
