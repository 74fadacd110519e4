"""Every route x every kind of caller: who may, who may not, and what a refusal reveals."""

from __future__ import annotations

import itertools
import re
import uuid
from typing import Any

import httpx

from core.security import box_token
from tests.conftest import Gateway

KINDS = ["none", "bad", "other_tenant", "box_token", "own_tenant", "operator"]
OPEN = {"/healthz", "/readyz", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}
OPERATOR_ONLY = re.compile(r"^/v1/(tenants(/\{tenant_id\}(/policy)?)?|policy(/history)?|"
                           r"stats(/history)?|knowledge/insights(?!/\{insight_id\}/vote$).*)$|"
                           r"^/(metrics|dashboard)$")
VOTE = ("POST", "/v1/knowledge/insights/{insight_id}/vote")  # a tenant's: not the operator's
BOX_TOKEN_OK = {("POST", "/v1/knowledge/search"), VOTE}
_counter = itertools.count()


class World:
    """Tenant "own" with a box and a snapshot; tenant "other"; the credentials of each kind."""

    def __init__(self, gateway: Gateway) -> None:
        self.gw = gateway

    async def setup(self) -> None:
        self.own, self.own_home = await self.gw.tenant("own")
        self.other, _ = await self.gw.tenant("other")
        self.box = await self.new_box()
        self.snapshot = await self.new_snapshot()
        secret = self.gw.core.secret
        self.headers = {
            "none": {}, "bad": {"Authorization": "Bearer brw_t_not-a-real-key"},
            "other_tenant": self.other, "own_tenant": self.own,
            "box_token": {"Authorization": f"Bearer {box_token(secret, self.own_home)}"},
            "operator": self.gw.operator}
        self.secrets = [v["Authorization"].split()[1] for k, v in self.headers.items()
                        if k not in ("none", "bad")]

    async def new_box(self) -> str:
        r = await self.gw.client.post("/v1/boxes", json={}, headers=self.own)
        return str(r.json()["id"])

    async def new_snapshot(self) -> str:
        r = await self.gw.client.post(f"/v1/boxes/{self.box}/snapshots", json={"name": "s"},
                                      headers=self.own)
        return str(r.json()["id"])

    async def params(self, method: str, path: str, allowed: bool) -> dict[str, str]:
        """Path parameters; destructive calls that will succeed get targets of their own."""
        destructive = method == "DELETE"
        box = self.box
        if destructive and allowed and path == "/v1/boxes/{box_id}":
            box = await self.new_box()
        snapshot = await self.new_snapshot() if destructive and allowed else self.snapshot
        tenant = "own"
        if destructive and allowed and path == "/v1/tenants/{tenant_id}":
            tenant = f"victim{next(_counter)}"
            await self.gw.tenant(tenant)
        insight = self.new_insight() if destructive and allowed else "i1"
        if (method, path) == VOTE and allowed:
            insight = self.new_insight(shared=True)
        return {"box_id": box, "snapshot_id": snapshot, "tenant_id": tenant,
                "insight_id": insight, "path": "probe", "run_id": "run_probe",
                "memory_id": "m_0000000000000000", "port": "8080",
                "process_id": "p_probe00000"}

    def new_insight(self, shared: bool = False) -> str:
        """An insight put straight into the store (contributions need a worker); `shared`:
        two tenants told it, so every tenant sees it."""
        insight_id = str(uuid.uuid4())
        vector = [1.0] + [0.0] * 383
        text = "a test insight"
        tellers = ["c1", "c2"] if shared else ["c1"]
        self.gw.core.kb.store.upsert([(insight_id, vector, {
            "text": text, "kind": "fact", "support": len(tellers), "contributors": tellers,
            "members": [{"c": c, "t": text, "at": 0.0} for c in tellers],
            "canonical_by": "rule", "visible": int(shared)})])
        return insight_id


def body_for(method: str, path: str) -> dict[str, Any] | None:
    if method not in ("POST", "PUT", "PATCH"):
        return None
    if path == "/v1/tenants":
        return {"id": f"made{next(_counter)}"}
    if path.endswith("/exec") or path.endswith("/exec/stream"):
        return {"command": "true"}
    if path.endswith("/snapshots"):
        return {"name": "n"}
    if path.endswith("/policy"):
        return {"freeze_after_s": 60}
    if path.endswith("/agent/runs") or path.endswith("/agent/runs/stream"):
        return {"prompt": "p"}
    if path == "/v1/knowledge/search":
        return {"query": "q"}
    if (method, path) == VOTE:
        return {"helpful": True}
    if path.endswith("/signal"):
        return {"signal": "TERM"}
    if path.endswith("/observations"):
        return {"pairs": [{"request": {"body": {"message": "I prefer tea"}}}]}
    if "/memories" in path:
        return {"text": "I prefer tea"}
    return {}


def expected(method: str, path: str, kind: str) -> int | None:
    """The status a refused call must get, or None where the call is allowed."""
    if path in OPEN:
        return None
    if kind in ("none", "bad"):
        return 401
    if kind == "operator":
        return 403 if (method, path) == VOTE else None
    if kind == "box_token":
        return None if (method, path) in BOX_TOKEN_OK else 403
    if OPERATOR_ONLY.match(path):
        return 403
    owned = ("{box_id}" in path or "{snapshot_id}" in path
             or path.startswith("/v1/tenants/{tenant_id}/agent")
             or path.startswith("/v1/tenants/{tenant_id}/memories")
             or path == "/v1/tenants/{tenant_id}/observations")
    return 404 if owned and kind == "other_tenant" else None


def allowed(method: str, path: str, r: httpx.Response) -> bool:
    """Whether an allowed call got past authorisation: not refused, or refused for what it
    names (a file, run, process or port the probe does not have) rather than for who asks."""
    if (path.endswith("/files") or path.endswith("/files/watch")) and method in ("GET",
                                                                              "DELETE"):
        return r.status_code in (200, 204, 404) and "no box" not in r.text
    if path.endswith("/{run_id}"):  # the box is theirs; no such run
        return r.status_code == 404 and "no run 'run_probe'" in r.text
    if "{process_id}" in path:  # the box is theirs; no such process
        return r.status_code == 404 and "no process p_probe00000" in r.text
    if "/ports" in path:  # theirs; previews off here, or not open
        return (r.status_code == 503 and "previews are off" in r.text) or (
            r.status_code == 404 and "port 8080 of box" in r.text)
    return r.status_code not in (401, 403, 404)


async def test_every_route_for_every_kind_of_caller(gateway: Gateway) -> None:
    world = World(gateway)
    await world.setup()
    spec = gateway.app.openapi()
    routes = [(method.upper(), path) for path, operations in spec["paths"].items()
              for method in operations]
    assert len(routes) > 30
    failures = []
    for method, path in routes:
        for kind in KINDS:
            want = expected(method, path, kind)
            params = await world.params(method, path, allowed=want is None)
            url = path.format(**params)
            if path.endswith("/files") or path.endswith("/files/list"):
                url += "?path=probe.txt" if method != "GET" or path.endswith("/files") else ""
            if path.endswith("/files/watch"):  # a missing path: no stream left open
                url += "?path=probe.txt"
            body = body_for(method, path)
            kwargs: dict[str, Any] = {"headers": world.headers[kind]}
            if path.endswith("/files") and method == "PUT":
                kwargs["content"] = b"data"
            elif body is not None:
                kwargs["json"] = body
            r = await gateway.client.request(method, url, **kwargs)
            ok = allowed(method, path, r) if want is None else r.status_code == want
            if not ok:
                failures.append((method, path, kind, want, r.status_code, r.text[:120]))
            if r.status_code >= 400:
                assert "Traceback" not in r.text
                assert not any(s in r.text for s in world.secrets), (method, path, kind)
    assert failures == []


async def test_someone_elses_box_looks_exactly_like_a_missing_one(gateway: Gateway) -> None:
    world = World(gateway)
    await world.setup()
    c = gateway.client
    theirs = await c.get(f"/v1/boxes/{world.box}", headers=world.other)
    missing = await c.get("/v1/boxes/b_0000000000000000", headers=world.other)
    assert theirs.status_code == missing.status_code == 404
    assert theirs.json()["error"]["code"] == missing.json()["error"]["code"]
    listed = (await c.get("/v1/boxes", headers=world.other)).json()
    assert world.box not in [b["id"] for b in listed]
    assert (await c.get("/v1/snapshots", headers=world.other)).json() == []
    r = await c.get("/v1/tenants/own/agent/x", headers=world.other)
    assert r.status_code == 404 and "own" in r.json()["error"]["message"]
