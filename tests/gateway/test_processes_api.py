"""Background processes through the HTTP API: /v1/boxes/{id}/processes."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from tests.conftest import Gateway


async def _settled(gateway: Gateway, headers: dict[str, str], path: str) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while True:
        found = (await gateway.client.get(path, headers=headers)).json()
        if found["state"] not in ("starting", "running", "restarting"):
            return found
        assert time.monotonic() < deadline, found
        await asyncio.sleep(0.05)


async def test_start_follow_write_signal_and_kill_a_process(gateway: Gateway) -> None:
    headers, _ = await gateway.tenant("procs")
    box = (await gateway.client.post("/v1/boxes", headers=headers, json={})).json()["id"]
    base = f"/v1/boxes/{box}/processes"
    r = await gateway.client.post(base, headers=headers, json={
        "command": "echo ready; cat; echo done >&2", "stdin": True, "restart": "on-failure"})
    assert r.status_code == 201, r.text
    proc = r.json()
    assert (proc["state"], proc["restart"], proc["stdin"]) == ("running", "on-failure", True)
    assert [p["id"] for p in (await gateway.client.get(base, headers=headers)).json()] == [
        proc["id"]]
    r = await gateway.client.post(f"{base}/{proc['id']}/stdin", headers=headers,
                                  content=b"typed\n", params={"eof": "true"})
    assert r.status_code == 204, r.text
    lines = []
    async with gateway.client.stream("GET", f"{base}/{proc['id']}/logs", headers=headers,
                                     params={"follow": "true"}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/x-ndjson"
        async for line in response.aiter_lines():
            if line:
                lines.append(json.loads(line))
    assert "".join(x["data"] for x in lines if x["type"] == "stdout") == "ready\ntyped\n"
    assert "".join(x["data"] for x in lines if x["type"] == "stderr") == "done\n"
    assert lines[-1] == {"type": "exit", "state": "exited", "exit_code": 0}
    logs = (await gateway.client.get(f"{base}/{proc['id']}/logs", headers=headers,
                                     params={"stdout_offset": 6, "limit": 3})).json()
    assert logs["stdout"] == {"data": "typ", "offset": 6, "next_offset": 9}
    assert logs["process"]["state"] == "exited"

    r = await gateway.client.post(base, headers=headers, json={"command": ["sleep", "300"]})
    sleeper = r.json()
    r = await gateway.client.post(f"{base}/{sleeper['id']}/signal", headers=headers,
                                  json={"signal": "TERM"})
    assert r.status_code == 200, r.text
    ended = await _settled(gateway, headers, f"{base}/{sleeper['id']}")
    assert (ended["state"], ended["exit_code"]) == ("exited", 143)
    assert (await gateway.client.delete(f"{base}/{sleeper['id']}",
                                        headers=headers)).status_code == 204
    assert (await gateway.client.get(f"{base}/{sleeper['id']}",
                                     headers=headers)).status_code == 404
    await gateway.client.delete(f"/v1/boxes/{box}", headers=headers)


async def test_bad_requests_get_clear_errors(gateway: Gateway) -> None:
    headers, _ = await gateway.tenant("badprocs")
    box = (await gateway.client.post("/v1/boxes", headers=headers, json={})).json()["id"]
    base = f"/v1/boxes/{box}/processes"
    for body in ({"command": "true", "restart": "always"}, {"cmd": "true"},
                 {"command": "true", "stdin": "text"}):
        r = await gateway.client.post(base, headers=headers, json=body)
        assert r.status_code == 422, r.text
    r = await gateway.client.post(base, headers=headers, json={"command": "true", "cwd": "/no"})
    assert r.status_code == 404 and "/no" in r.json()["error"]["message"]
    for path in (f"{base}/p_aaaaaaaaaa", f"{base}/..%2F..%2Fetc", f"{base}/p_aaaaaaaaaa/logs"):
        r = await gateway.client.get(path, headers=headers)
        assert r.status_code == 404, (path, r.text)
    done = (await gateway.client.post(base, headers=headers, json={"command": "true"})).json()
    await _settled(gateway, headers, f"{base}/{done['id']}")
    r = await gateway.client.post(f"{base}/{done['id']}/stdin", headers=headers, content=b"x")
    assert r.status_code == 409 and "stdin" in r.json()["error"]["message"]
    r = await gateway.client.post(f"{base}/{done['id']}/signal", headers=headers,
                                  json={"signal": "SEGV"})
    assert r.status_code == 422
    r = await gateway.client.post(f"{base}/{done['id']}/signal", headers=headers,
                                  json={"signal": "TERM"})
    assert r.status_code == 409 and "not running" in r.json()["error"]["message"]
    await gateway.client.delete(f"/v1/boxes/{box}", headers=headers)


async def test_a_followed_log_ends_with_the_freeze_and_the_process_comes_back_on_wake(
        gateway: Gateway) -> None:
    headers, _ = await gateway.tenant("frozenprocs")
    box = (await gateway.client.post("/v1/boxes", headers=headers, json={})).json()["id"]
    base = f"/v1/boxes/{box}/processes"
    proc = (await gateway.client.post(base, headers=headers, json={
        "command": "echo started; exec sleep 300", "restart": "on-wake"})).json()

    async def follow() -> list[dict[str, Any]]:
        seen = []
        async with gateway.client.stream("GET", f"{base}/{proc['id']}/logs", headers=headers,
                                         params={"follow": "true"}) as response:
            async for line in response.aiter_lines():
                if line:
                    seen.append(json.loads(line))
        return seen

    following = asyncio.create_task(follow())
    await asyncio.sleep(0.5)
    r = await gateway.client.post(f"/v1/boxes/{box}/freeze", headers=headers)
    assert r.json()["state"] == "frozen"
    seen = await asyncio.wait_for(following, 20)
    assert seen[0] == {"type": "stdout", "data": "started\n", "offset": 0}
    assert seen[-1] == {"type": "exit", "state": "stopped", "exit_code": 143}
    r = await gateway.client.get(f"{base}/{proc['id']}", headers=headers)  # wakes the box
    deadline = time.monotonic() + 20
    while r.json()["state"] != "running":
        assert time.monotonic() < deadline, r.json()
        await asyncio.sleep(0.1)
        r = await gateway.client.get(f"{base}/{proc['id']}", headers=headers)
    logs = (await gateway.client.get(f"{base}/{proc['id']}/logs", headers=headers)).json()
    assert logs["stdout"]["data"] == "started\nstarted\n"
    await gateway.client.delete(f"/v1/boxes/{box}", headers=headers)
