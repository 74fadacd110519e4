"""Observations a product sends itself: (request, response) pairs it served without Burrow
(its own traffic, or a user's history it imports), learned by the tenant's agent exactly as
if they had come through the agent route.

Each pair becomes the pair the agent route records (core/observations.py
`Observations.pair`: the same excerpts, the same kept headers), with the time and request id
the product gives, and goes into the same backlog, in the order sent. Invariants:
- all or nothing: every pair is validated before any is recorded, so a bad call stores
  nothing (and loses nothing already stored);
- the box is never woken: a frozen box gets the pairs at its next wake, a running one from
  the worker, which embeds the tenant's words on the host first;
- the agent's own protocol (/ask, /recall, /profile, /health, /memories, /_burrow/…) cannot be
  sent as a pair, however its path is spelled (gateway/schemas.py `ObservedRequest`).
"""

from __future__ import annotations

import json

from fastapi import APIRouter, Request

from core import authz, logs
from core.errors import ApiError
from core.observations import Observations
from gateway.deps import CoreDep, bearer_key
from gateway.schemas import ErrorOut, ObservationsAccepted, ObservationsIn, ObservedPair

router = APIRouter(tags=["memory"],
                   responses={401: {"model": ErrorOut}, 403: {"model": ErrorOut},
                              404: {"model": ErrorOut}, 409: {"model": ErrorOut},
                              413: {"model": ErrorOut}})


def _bytes(body: object) -> bytes:
    return (body if isinstance(body, str) else json.dumps(body)).encode()


def recorded_pair(tenant_id: str, pair: ObservedPair, request_id: str) -> dict[str, object]:
    """The pair as the agent route would have recorded it."""
    path, _, query = pair.request.path.partition("?")
    recorded = Observations.pair(
        pair.request.method, f"/v1/tenants/{tenant_id}/agent{path}", query,
        _bytes(pair.request.body), pair.response.status, _bytes(pair.response.body), 0.0,
        pair.request_id or request_id, pair.request.headers)
    if pair.at is not None:
        recorded["at"] = float(pair.at)
    return recorded


@router.post("/v1/tenants/{tenant_id}/observations", status_code=202,
             operation_id="observations_add")
async def add_observations(tenant_id: str, body: ObservationsIn, request: Request,
                           core: CoreDep) -> ObservationsAccepted:
    """Pairs the product served itself, for the tenant's agent to learn from as if they had
    come through `/agent/{path}`: in order, with their own times and request ids. Does not
    wake the box; a frozen box learns them at its next wake."""
    who = await core.authenticator.authenticate(
        bearer_key(request.headers.get("authorization")))
    authz.require_tenant_access(who, tenant_id)
    box_id = await core.tenants.home_box(tenant_id)
    if not core.pipeline.enabled:
        raise ApiError(409, "observation_off", "this server does not record observations "
                       "(BURROW_OBSERVE=0); the operator can turn them on")
    call_id = logs.request_id.get() or logs.new_request_id(None)
    pairs = [recorded_pair(tenant_id, pair, f"{call_id}/{i}")
             for i, pair in enumerate(body.pairs)]
    batch = await core.pipeline.record_batch(tenant_id, box_id, pairs)
    return ObservationsAccepted(accepted=batch.accepted, dropped=batch.dropped)
