"""The host services socket: how programs in a box reach Burrow, with their box token.

Every box sees it at /run/burrow/host.sock (bound read-only), and it is the only way out of a
box without network. It answers box tokens only, from the box they belong to, and reads
nothing of a request before that is established (gateway/hostguard.py, core/authz.py).
Model calls go through the operator's allowlist, max_tokens ceiling, rate and token budget
(models/budgets.py); git goes through the git relay (gateway/gitrelay.py).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse
from redis.exceptions import RedisError
from starlette.types import ASGIApp, Receive, Scope, Send

from boxes import BoxRecord
from core import authz
from core.errors import ApiError
from core.services import Core
from core.transport import Watched
from gateway import errors, gitrelay
from gateway.hostguard import GuardError, HostGuard, HostLimits
from gateway.schemas import (
    AgentConfig,
    EmbedIn,
    EmbedOut,
    InsightOut,
    InsightVote,
    KnowledgeQuery,
    WhoAmI,
)
from models.budgets import Reservation
from models.chat import ChatRequest, ChatResponse
from models.errors import ModelError, StatusError
from models.metered import OPERATOR, metered_chat
from models.relay import Relay, RelayAllowance, RelayAnswer

SHUTTING_DOWN = "this host is shutting down: retry in a moment (the box wakes on another host)"


class Closing:
    """A call in flight when the host closed its knowledge base (the last moments of a
    shutdown) is told to retry (503), not handed a server error."""

    def __init__(self, app: ASGIApp, core: Core) -> None:
        self.app = app
        self.core = core

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        watched = Watched(send)
        try:
            await self.app(scope, receive, watched)
        except Exception:
            if not self.core.closed or watched.started or scope["type"] != "http":
                raise
            await errors.error_response(503, "unavailable", SHUTTING_DOWN,
                                        {"Retry-After": "2"})(scope, receive, send)


def caller(request: Request) -> WhoAmI:
    """The box (and its tenant) the host guard identified for this request."""
    box_id, tenant = request.scope["burrow.box"]
    return WhoAmI(kind="box", tenant=tenant, box_id=box_id)


def create_host_app(core: Core, relay_client: httpx.AsyncClient,
                    limits: HostLimits | None = None) -> ASGIApp:
    """The host services app on `core`; `relay_client` carries the git relay's traffic."""
    app = FastAPI(title="Burrow host services", docs_url=None, redoc_url=None,
                  openapi_url=None)
    errors.install(app)
    app.add_middleware(Closing, core=core)

    @app.get("/whoami")
    async def whoami(request: Request) -> WhoAmI:
        """Which box and tenant this token belongs to."""
        return caller(request)

    def principal(request: Request) -> authz.Principal:
        who = caller(request)
        if core.closed:  # a box still running at the very end of a shutdown
            raise ApiError(503, "unavailable", SHUTTING_DOWN, {"Retry-After": "2"})
        return authz.Principal("box", who.tenant, who.box_id)

    @app.post("/v1/knowledge/search")
    async def search(body: KnowledgeQuery, request: Request) -> list[InsightOut]:
        """The shared knowledge base, as the box's tenant may see it (each search spends one
        text of the tenant's embedding budget)."""
        found = await core.insights.search(principal(request), body.query, body.limit,
                                           body.kinds, body.since, body.until)
        return [InsightOut(**i.to_dict()) for i in found]

    @app.post("/v1/knowledge/insights/{insight_id}/vote")
    async def vote(insight_id: str, body: InsightVote, request: Request) -> InsightOut:
        """The box's tenant found an insight helpful or not: one vote per tenant, so one box
        cannot fade an insight for everyone."""
        voted = await core.insights.vote(principal(request), insight_id, body.helpful)
        return InsightOut(**voted.to_dict())

    app.add_api_route("/v1/embed", _embedding(core), methods=["POST"])

    @app.post("/v1/model/chat")
    async def model_chat(body: ChatRequest, request: Request) -> ChatResponse:
        """One chat completion from the model the request names (`provider/name`); the server
        adds the provider's key. Within the operator's allowlist, ceilings and the tenant's
        budget (admitted only if its worst case fits: every byte its provider is sent, and
        its max_tokens); usage is counted per tenant."""
        who = caller(request)
        # Boxes an operator made for no tenant count under "operator".
        try:
            return await metered_chat(core.providers, core.budgets, who.tenant or OPERATOR,
                                      body, await core.policies.for_tenant(who.tenant))
        except RedisError as exc:
            raise ApiError(503, "unavailable", "the model budget cannot be checked right now; "
                                               "retry shortly", {"Retry-After": "2"}) from exc

    @app.api_route("/v1/relay/git/{host}/{path:path}", methods=["GET", "POST"],
                   response_model=None)
    async def git(host: str, path: str, request: Request) -> StreamingResponse:
        """Git's smart HTTP to the box's git host, with the box's credentials added here."""
        manager = core.manager
        box = await manager.get(caller(request).box_id or "")
        return await gitrelay.relay(request, relay_client, box.meta.get("git"),
                                    manager.config.box_dir(box.id),
                                    gitrelay.GitHosts.of(core.settings), host, path)

    @app.api_route("/v1/relay/{family}/{path:path}",
                   methods=["GET", "POST", "PUT", "PATCH", "DELETE"], response_model=None)
    async def relay(family: str, path: str, request: Request) -> StreamingResponse:
        """An agent CLI's model call (Claude Code, Codex, OpenCode), relayed to the box's
        model: its provider's own API with the server's key, or translated. Inference paths
        only; within the run's max_turns, the allowlist, the ceiling and the budget; usage
        counted for the tenant and the run."""
        return await _relay(core, caller(request), family, path, request)

    async def identify(token: str, peer_uid: int | None) -> tuple[str, str | None]:
        try:
            box = await core.authenticator.box_caller(token, peer_uid)
        except ApiError as exc:
            raise GuardError(exc.status, exc.code, exc.message) from None
        return box.id, box.owner

    return HostGuard(app, identify, limits or HostLimits())


def _embedding(core: Core) -> Callable[[EmbedIn, Request], Awaitable[EmbedOut]]:
    async def embed(body: EmbedIn, request: Request) -> EmbedOut:
        """Vectors of the texts, by the model the worker embeds delivered pairs with (the
        tenant agent's recall embeds its query here); counted per tenant, within the
        policy's embed_texts_per_minute (knowledge searches spend it too)."""
        await core.insights.admit_embeds(caller(request).tenant, len(body.texts))
        vectors = await core.vectors.embed(body.texts)
        return EmbedOut(model=core.vectors.model, vectors=vectors)
    return embed


async def _relay(core: Core, who: WhoAmI, family: str, path: str,
                 request: Request) -> StreamingResponse:
    """Prepare the call (checked, screened by the operator's relay policy, its worst case
    known), reserve that worst case on the tenant's budget, send it, and settle once its
    answer has gone — or the box stopped reading it."""
    box = await core.manager.get(who.box_id or "")
    tenant = who.tenant or OPERATOR
    policy = await core.policies.for_tenant(who.tenant)
    budgets = core.budgets
    try:
        run = await core.runs.relayed_call(box.id, request.headers.get("x-burrow-run"))
        model = run.model if run is not None else _box_model(box)
        # parsing and bounding up to a few MB of JSON: off the event loop
        call = await asyncio.to_thread(
            core.relay.prepare, family, request.method, "/" + path,
            dict(request.headers), await request.body(), model,
            budgets.output_ceiling(policy), run.schema if run else None,
            RelayAllowance.of(policy))
        reservation = await budgets.admit_call(tenant, model, call.worst_case, policy)
    except StatusError as exc:
        refused = Relay.refusal(family, ModelError(exc.status, exc.code, exc.message,
                                                   exc.headers), "/" + path)
        return StreamingResponse(refused.body, status_code=refused.status,
                                 media_type=refused.media_type, headers=refused.headers)
    try:
        answer = await core.relay.send(call)
    except BaseException:
        _settle_later(core, reservation, model, None, None)
        raise
    return StreamingResponse(_settled_after(core, reservation, model, answer,
                                            run.id if run else None),
                             status_code=answer.status, media_type=answer.media_type,
                             headers=answer.headers)


async def _settled_after(core: Core, reservation: Reservation, model: str,
                         answer: RelayAnswer, run_id: str | None) -> AsyncIterator[bytes]:
    """The answer's body; once it has gone, or the box stopped reading it, the budget is
    settled (a Starlette background task does not run when the client leaves)."""
    body = answer.body
    try:
        async for chunk in body:
            yield chunk
    finally:
        # first: what the answer knows is final here, and the close may be cancelled
        _settle_later(core, reservation, model, answer, run_id)
        closing = getattr(body, "aclose", None)
        if closing is not None:
            with contextlib.suppress(Exception):
                await closing()


_SETTLING: set[asyncio.Task[None]] = set()


def _settle_later(core: Core, reservation: Reservation, model: str,
                  answer: RelayAnswer | None, run_id: str | None) -> None:
    """Settle in a task of its own: the request's may be being cancelled. Usage the answer
    does not know in full (`metered` false, or no answer) leaves the worst case spent."""
    async def settle() -> None:
        budgets = core.budgets
        provider = model.partition("/")[0]
        with contextlib.suppress(RedisError, OSError):
            if answer is None or not answer.metered:
                await budgets.settle(reservation, provider, None)
            elif answer.status >= 400:
                await budgets.release(reservation)
            else:
                await budgets.settle(reservation, provider, answer.usage)
            if answer is not None:
                await core.runs.relayed_usage(run_id, answer.usage)

    task = asyncio.get_running_loop().create_task(settle())
    _SETTLING.add(task)
    task.add_done_callback(_SETTLING.discard)


def _box_model(box: BoxRecord) -> str:
    configured = AgentConfig.stored(box.meta.get("agent"))
    if configured is None:
        raise ApiError(409, "agent_not_configured",
                       f"box {box.id} has no agent model: create it with agent={{'harness': "
                       "..., 'model': 'provider/name'}, or start the CLI through an agent run")
    return configured.model
