"""The HTTP API through the app: tenants, boxes, exec, files, snapshots, the agent route."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from boxes import BoxState
from core.embedded_redis import EmbeddedRedis
from gateway.app import create_app
from tests.conftest import OPERATOR_KEY, Gateway, gateway_settings


async def test_tenant_gets_a_home_box_and_a_key_shown_once(gateway: Gateway) -> None:
    c = gateway.client
    r = await c.post("/v1/tenants", json={"id": "acme"}, headers=gateway.operator)
    assert r.status_code == 201
    created = r.json()
    assert created["api_key"].startswith("brw_t_") and created["id"] == "acme"
    r = await c.get("/v1/tenants/acme", headers=gateway.operator)
    public = r.json()
    assert "api_key" not in public and public["home_box_id"] == created["home_box_id"]
    assert public["state"] == "running" and public["boxes"] == 1
    assert public["storage_bytes"] > 0
    r = await c.post("/v1/tenants", json={"id": "acme"}, headers=gateway.operator)
    assert r.status_code == 409 and r.json()["error"]["code"] == "conflict"
    assert [t["id"] for t in (await c.get("/v1/tenants", headers=gateway.operator)).json()] \
        == ["acme"]


async def test_agent_route_proxies_everything_but_credentials(gateway: Gateway) -> None:
    headers, _ = await gateway.tenant("t1")
    r = await gateway.client.put("/v1/tenants/t1/agent/some/path?a=1&b=two",
                                 headers={**headers, "X-Custom": "yes",
                                          "Cookie": "session=secret",
                                          "X-Burrow-Model": "anthropic/claude-opus"},
                                 content=b"payload bytes")
    assert r.status_code == 200, r.text
    echo = r.json()["echo"]
    assert (echo["method"], echo["path"], echo["query"], echo["body"]) == \
        ("PUT", "/some/path", "a=1&b=two", "payload bytes")
    assert echo["headers"]["x-custom"] == "yes" and echo["headers"]["x-burrow-tenant"] == "t1"
    assert "authorization" not in echo["headers"] and "cookie" not in echo["headers"]
    # x-burrow-* come from the gateway only: a client cannot pick the agent's model
    assert "x-burrow-model" not in echo["headers"]
    assert r.headers["x-request-id"] == echo["headers"]["x-request-id"]


async def test_each_tenant_agent_answers_through_the_model_its_policy_names(
        gateway: Gateway) -> None:
    """x-burrow-model is the tenant's agent_model override, else the global policy's, else
    the server's (none here); only the operator sets it, only as provider/name, only a model
    the allowlist allows."""
    c, op = gateway.client, gateway.operator
    keys = {t: (await gateway.tenant(t))[0] for t in ("a", "b")}

    async def model(tenant: str) -> str | None:
        r = await c.get(f"/v1/tenants/{tenant}/agent/x", headers=keys[tenant])
        return r.json()["echo"]["headers"].get("x-burrow-model")  # type: ignore[no-any-return]

    assert await model("a") is None
    assert (await c.put("/v1/policy", json={"agent_model": "openai/gpt-x"},
                        headers=op)).status_code == 200
    r = await c.put("/v1/tenants/b/policy", json={"agent_model": "anthropic/claude-haiku-4-5"},
                    headers=op)
    assert r.status_code == 200, r.text
    assert (await model("a"), await model("b")) == ("openai/gpt-x", "anthropic/claude-haiku-4-5")
    r = await c.put("/v1/tenants/b/policy", json={"agent_model": "openai/gpt-x"},
                    headers=keys["b"])
    assert r.status_code in (401, 403)  # a tenant does not choose its model
    r = await c.put("/v1/tenants/b/policy", json={"agent_model": "gpt-x"}, headers=op)
    assert r.status_code == 422 and "provider/name" in r.text
    r = await c.put("/v1/policy", json={"model_allowlist": ["openai/*"]}, headers=op)
    assert r.status_code == 422 and "tenant b" in r.text and "model_allowlist" in r.text
    assert (await c.put("/v1/tenants/b/policy", json={"agent_model": None},
                        headers=op)).status_code == 200
    assert await model("b") == "openai/gpt-x"  # the override removed: the global one
    assert (await c.put("/v1/policy", json={"model_allowlist": ["openai/*"]},
                        headers=op)).status_code == 200
    r = await c.put("/v1/tenants/b/policy", json={"agent_model": "anthropic/claude-haiku-4-5"},
                    headers=op)
    assert r.status_code == 422 and "not on model_allowlist" in r.text
    assert await model("b") == "openai/gpt-x"


async def test_frozen_tenant_wakes_on_request_with_its_state(gateway: Gateway) -> None:
    headers, home = await gateway.tenant("t1")
    c = gateway.client
    first = (await c.get("/v1/tenants/t1/agent/x", headers=headers)).json()["requests"]
    r = await c.post(f"/v1/boxes/{home}/freeze", headers=headers)
    assert r.json()["state"] == "frozen"
    r = await c.get("/v1/tenants/t1/agent/x", headers=headers)
    assert r.status_code == 200 and r.json()["requests"] == first + 1
    box = await gateway.manager.get(home)
    assert box.state == BoxState.RUNNING and box.wakes == 1


async def test_hundred_concurrent_requests_to_a_frozen_tenant_wake_it_once(
        gateway: Gateway) -> None:
    headers, home = await gateway.tenant("busy")
    await gateway.client.post(f"/v1/boxes/{home}/freeze", headers=headers)
    replies = await asyncio.gather(*(
        gateway.client.post("/v1/tenants/busy/agent/ping", headers=headers, content=str(i))
        for i in range(100)))
    assert [r.status_code for r in replies] == [200] * 100
    assert sorted(r.json()["echo"]["body"] for r in replies) == sorted(map(str, range(100)))
    assert (await gateway.manager.get(home)).wakes == 1


async def test_box_api_exec_stream_files_and_lifecycle(gateway: Gateway) -> None:
    headers, _ = await gateway.tenant("dev")
    c = gateway.client
    r = await c.post("/v1/boxes", json={"runtime": "python", "labels": {"team": "x"},
                                        "env": {"GREETING": "hi"}}, headers=headers)
    assert r.status_code == 201, r.text
    box = r.json()
    assert (box["tenant"], box["state"], box["labels"]) == ("dev", "running", {"team": "x"})
    bid = box["id"]
    r = await c.post(f"/v1/boxes/{bid}/exec", json={"command": "echo $GREETING; exit 3"},
                     headers=headers)
    assert r.json() == {**r.json(), "exit_code": 3, "stdout": "hi\n", "timed_out": False}
    r = await c.post(f"/v1/boxes/{bid}/exec", json={"command": ["cat"], "stdin": "fed"},
                     headers=headers)
    assert r.json()["stdout"] == "fed"
    r = await c.post(f"/v1/boxes/{bid}/exec/stream",
                     json={"command": "echo a; echo b >&2; exit 1"}, headers=headers)
    lines = [json.loads(line) for line in r.text.splitlines()]
    assert r.headers["content-type"].startswith("application/x-ndjson")
    assert lines[-1]["type"] == "exit" and lines[-1]["exit_code"] == 1
    assert {"type": "stdout", "data": "a\n"} in lines and {"type": "stderr", "data": "b\n"} in lines

    data = bytes(range(256)) * 40
    r = await c.put(f"/v1/boxes/{bid}/files", params={"path": "d/blob.bin"}, content=data,
                    headers=headers)
    assert r.status_code == 204
    r = await c.get(f"/v1/boxes/{bid}/files", params={"path": "/workspace/d/blob.bin"},
                    headers=headers)
    assert r.content == data
    r = await c.get(f"/v1/boxes/{bid}/files/list", params={"path": "d"}, headers=headers)
    assert [(e["name"], e["type"], e["size"]) for e in r.json()] == [("blob.bin", "file", 10240)]
    assert (await c.delete(f"/v1/boxes/{bid}/files", params={"path": "d", "recursive": "true"},
                           headers=headers)).status_code == 204

    for action, state in (("pause", "paused"), ("resume", "running"), ("freeze", "frozen"),
                          ("wake", "running"), ("archive", "archived"), ("wake", "running")):
        r = await c.post(f"/v1/boxes/{bid}/{action}", headers=headers)
        assert r.status_code == 200 and r.json()["state"] == state, (action, r.text)
    r = await c.get("/v1/boxes", params={"label": "team:x"}, headers=headers)
    assert [b["id"] for b in r.json()] == [bid]
    assert (await c.delete(f"/v1/boxes/{bid}", headers=headers)).status_code == 204
    assert (await c.get(f"/v1/boxes/{bid}", headers=headers)).status_code == 404


async def test_snapshots_seed_new_boxes_for_their_owner_only(gateway: Gateway) -> None:
    alice, _ = await gateway.tenant("alice")
    bob, _ = await gateway.tenant("bob")
    c = gateway.client
    bid = (await c.post("/v1/boxes", json={}, headers=alice)).json()["id"]
    await c.post(f"/v1/boxes/{bid}/exec", json={"command": "echo v1 > version"}, headers=alice)
    r = await c.post(f"/v1/boxes/{bid}/snapshots", json={"name": "base"}, headers=alice)
    assert r.status_code == 201
    snap = r.json()["id"]
    assert [s["id"] for s in (await c.get("/v1/snapshots", headers=alice)).json()] == [snap]
    assert (await c.get("/v1/snapshots", headers=bob)).json() == []
    r = await c.post("/v1/boxes", json={"from_snapshot": snap}, headers=bob)
    assert r.status_code == 404
    r = await c.post("/v1/boxes", json={"from_snapshot": snap}, headers=alice)
    twin = r.json()["id"]
    r = await c.post(f"/v1/boxes/{twin}/exec", json={"command": "cat version"}, headers=alice)
    assert r.json()["stdout"] == "v1\n"
    assert (await c.delete(f"/v1/snapshots/{snap}", headers=bob)).status_code == 404
    assert (await c.delete(f"/v1/snapshots/{snap}", headers=alice)).status_code == 204


async def test_git_settings_are_written_into_the_box(gateway: Gateway) -> None:
    headers, _ = await gateway.tenant("g")
    r = await gateway.client.post("/v1/boxes", json={"git": {
        "token": "ghp_example", "user_name": "Bot", "user_email": "bot@example.com"}},
        headers=headers)
    bid = r.json()["id"]
    r = await gateway.client.post(f"/v1/boxes/{bid}/exec", json={
        "command": "git config --global user.name; git config --global --get-regexp "
                   "'url.*insteadof'; stat -c %a .gitconfig; ls -a"}, headers=headers)
    out = r.json()["stdout"]
    assert out.startswith("Bot\nurl.http://127.0.0.1:7171/git/github.com/.insteadof "
                          "https://github.com/\n600\n"), out
    assert ".git-credentials" not in out  # the token stays on the host, for the relay
    box = await gateway.manager.get(bid)
    assert "ghp_example" not in json.dumps(box.to_dict())  # nor is it in the registry


async def test_errors_use_the_contract_format(gateway: Gateway) -> None:
    headers, home = await gateway.tenant("e")
    c = gateway.client

    async def check(response_code: int, code: str, request: object) -> None:
        r = await request  # type: ignore[misc]
        assert r.status_code == response_code, r.text
        body = r.json()
        assert set(body) == {"error"} and body["error"]["code"] == code
        assert body["error"]["message"] and "Traceback" not in r.text

    await check(400, "invalid_json", c.post("/v1/boxes", content=b"{bad",
                                            headers={**headers,
                                                     "content-type": "application/json"}))
    await check(422, "invalid_request", c.post("/v1/boxes", json={"runtime": "cobol"},
                                               headers=headers))
    await check(422, "invalid_request", c.post("/v1/boxes", json={"limits": {"memory_mb": 1}},
                                               headers=headers))
    await check(404, "not_found", c.get("/v1/boxes/b_doesnotexist", headers=headers))
    await check(404, "not_found", c.get("/v1/no/such/route", headers=headers))
    await check(404, "not_found", c.get(f"/v1/boxes/{home}/files",
                                        params={"path": "missing"}, headers=headers))
    await check(409, "conflict", c.delete(f"/v1/boxes/{home}", headers=headers))
    big = gateway.core.settings.max_body_bytes + 1
    await check(413, "too_large", c.put(f"/v1/boxes/{home}/files", params={"path": "big"},
                                        content=b"x" * big, headers=headers))
    await check(401, "unauthenticated", c.get("/v1/boxes"))
    await check(401, "unauthenticated", c.get("/v1/boxes", headers={"Authorization": "Bearer x"}))
    await check(405, "method_not_allowed", c.patch("/v1/boxes", headers=headers))
    await check(409, "agent_not_configured", c.post(f"/v1/boxes/{home}/agent/runs",
                                                    json={"prompt": "p"}, headers=headers))


async def test_deleting_a_tenant_removes_its_boxes_and_revokes_its_key(gateway: Gateway) -> None:
    headers, home = await gateway.tenant("gone")
    c = gateway.client
    extra = (await c.post("/v1/boxes", json={}, headers=headers)).json()["id"]
    assert (await c.delete("/v1/tenants/gone", headers=gateway.operator)).status_code == 204
    assert (await c.get("/v1/boxes", headers=headers)).status_code == 401
    for bid in (home, extra):
        assert (await gateway.manager.get(bid)).state == BoxState.DELETED
    assert (await c.get("/v1/tenants/gone", headers=gateway.operator)).status_code == 404


async def test_readiness_and_openapi(gateway: Gateway) -> None:
    assert (await gateway.client.get("/healthz")).json() == {"status": "ok"}
    r = await gateway.client.get("/readyz")
    assert r.status_code == 200 and r.json()["status"] == "ready"
    spec = (await gateway.client.get("/openapi.json")).json()
    assert "/v1/boxes/{box_id}/exec/stream" in spec["paths"]


WHOAMI = """
import json, os, socket, sys
def ask(token):
    s = socket.socket(socket.AF_UNIX)
    s.connect(os.environ["BURROW_HOST_SOCKET"])
    auth = f"Authorization: Bearer {token}\\r\\n" if token else ""
    head = f"GET /whoami HTTP/1.1\\r\\nHost: h\\r\\n{auth}Connection: close\\r\\n\\r\\n"
    s.sendall(head.encode())
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\\r\\n\\r\\n")
    return int(head.split()[1]), json.loads(body)
print(json.dumps([ask(os.environ["BURROW_BOX_TOKEN"]), ask(sys.argv[1]), ask("")]))
"""


async def test_programs_in_a_box_reach_burrow_through_the_host_socket(gateway: Gateway) -> None:
    headers, home = await gateway.tenant("h")
    tenant_key = headers["Authorization"].split()[1]
    r = await gateway.client.post(f"/v1/boxes/{home}/exec", json={
        "command": ["python3", "-c", WHOAMI, tenant_key]}, headers=headers)
    assert r.json()["exit_code"] == 0, r.json()["stderr"]
    (ok, me), (forbidden, _), (missing, _) = json.loads(r.json()["stdout"])
    assert ok == 200 and me == {"kind": "box", "tenant": "h", "box_id": home}
    assert (forbidden, missing) == (401, 401)  # a tenant key is no box token


@pytest.mark.boxes
async def test_every_body_is_bounded(tmp_path: Path, redis: Redis,
                                     redis_server: EmbeddedRedis) -> None:
    settings = gateway_settings(tmp_path / "gw", redis_server.url, run_worker=False,
                                max_body_bytes=1000, launcher_pool=0)
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), \
            httpx.AsyncClient(transport=transport, base_url="http://burrow") as c:
        op = {"Authorization": f"Bearer {OPERATOR_KEY}"}
        huge = {"command": "cat", "stdin": "x" * (2 * 1024 * 1024)}
        r = await c.post("/v1/boxes/b_any/exec", json=huge, headers=op)
        assert r.status_code == 413 and r.json()["error"]["code"] == "too_large"
        r = await c.post("/v1/tenants", json={"id": "small"}, headers=op)
        key = {"Authorization": f"Bearer {r.json()['api_key']}"}
        r = await c.post("/v1/tenants/small/agent/x", content=b"y" * 1001, headers=key)
        assert r.status_code == 413 and r.json()["error"]["code"] == "too_large"


@pytest.mark.boxes
async def test_a_request_that_waits_too_long_for_a_wake_gets_503_and_a_retry_hint(
        tmp_path: Path, redis: Redis, redis_server: EmbeddedRedis) -> None:
    settings = gateway_settings(tmp_path / "gw", redis_server.url, run_worker=False,
                                wake_wait_s=0.5)
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), \
            httpx.AsyncClient(transport=transport, base_url="http://burrow") as c:
        op = {"Authorization": f"Bearer {OPERATOR_KEY}"}
        r = await c.post("/v1/tenants", json={"id": "slow"}, headers=op)
        key = {"Authorization": f"Bearer {r.json()['api_key']}"}
        home = r.json()["home_box_id"]
        await c.post(f"/v1/boxes/{home}/freeze", headers=op)
        manager = app.state.core.manager
        async with manager.locks.hold(home):  # a long transition holds the box
            r = await c.get("/v1/tenants/slow/agent/x", headers=key)
        assert r.status_code == 503 and r.headers["retry-after"]
        assert r.json()["error"]["code"] == "unavailable"
        r = await c.get("/v1/tenants/slow/agent/health", headers=key)  # then it works
        assert r.status_code == 200


async def test_a_home_box_is_woken_before_its_large_files_are_written_but_not_its_agents_state(
        learning: Gateway) -> None:
    """The gateway tells the runtime that its own agent reads only its state and its log, so
    an archived home box's agent answers, from its memory, while the box's other large files
    are still being written (a replacement agent is not named: its box is restored whole)."""
    from core.inbox import DEFAULT_AGENT_COMMAND
    from core.services import AGENT_STATE_DIR

    config = learning.manager.config
    assert config.lazy_restore_services == (tuple(DEFAULT_AGENT_COMMAND),)
    assert set(config.eager_restore_dirs) == {"workspace/.burrow", AGENT_STATE_DIR.strip("/")}
    headers, box_id = await learning.tenant("lazy")
    big = os.urandom(24 << 20)
    await learning.manager.write_file(box_id, "big", big)
    profile = (await learning.client.get("/v1/tenants/lazy/agent/profile",
                                         headers=headers)).json()
    await learning.manager.archive(box_id)
    r = await learning.client.get("/v1/tenants/lazy/agent/profile", headers=headers)
    assert r.status_code == 200 and r.json() == profile
    assert not (await learning.manager.get(box_id)).layer_local  # `big` is still being written
    assert await learning.manager.read_file(box_id, "big") == big


# The service argv home boxes were made with before the agent's code moved into
# tenant_agent/memory/; their records keep it, so the path must go on starting the agent.
FIRST_AGENT_ARGV = ["/usr/bin/python3", "-I", "-S", "/opt/burrow/tenant_agent/__main__.py"]


async def test_a_home_box_made_with_the_agents_first_argv_wakes_and_answers_from_its_memory(
        learning: Gateway) -> None:
    headers, box_id = await learning.tenant("early")
    c = learning.client
    r = await c.post("/v1/tenants/early/memories", json={"text": "I live in Lisbon"},
                     headers=headers)
    assert r.status_code == 200, r.text
    box = await learning.manager.freeze(box_id)
    await learning.manager.registry.update(box, service=FIRST_AGENT_ARGV)
    r = await c.get("/v1/tenants/early/memories", headers=headers)
    assert r.status_code == 200, r.text
    assert [m["text"] for m in r.json()["items"]] == ["I live in Lisbon"]
    box = await learning.manager.get(box_id)
    assert box.service == FIRST_AGENT_ARGV and box.state == BoxState.RUNNING and box.wakes == 1
