"""The host services socket: how programs in a box reach Burrow, with their box token.

Every box sees it at /run/burrow/host.sock (bound read-only), and it is the only way out of a
box without network. It answers box tokens only.
"""

from __future__ import annotations

from fastapi import FastAPI, Request

from gateway import errors
from gateway.deps import authenticate, bearer
from gateway.errors import ApiError
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

    return app
