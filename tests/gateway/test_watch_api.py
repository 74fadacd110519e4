"""Watching files through the HTTP API: GET /v1/boxes/{id}/files/watch. (httpx's ASGI
transport hands a response over once it is complete, so each watch here ends: its directory
is removed.)"""

from __future__ import annotations

import asyncio
import json

from tests.conftest import Gateway


async def _later(gateway: Gateway, headers: dict[str, str], box: str, command: str) -> None:
    await asyncio.sleep(1.0)  # the watch is set up by then
    r = await gateway.client.post(f"/v1/boxes/{box}/exec", headers=headers,
                                  json={"command": command})
    assert r.json()["exit_code"] == 0, r.text


async def test_a_watch_streams_file_events_as_ndjson_until_its_path_is_gone(
        gateway: Gateway) -> None:
    headers, _ = await gateway.tenant("watcher")
    box = (await gateway.client.post("/v1/boxes", headers=headers, json={})).json()["id"]
    await gateway.client.post(f"/v1/boxes/{box}/exec", headers=headers,
                              json={"command": "mkdir w"})
    acting = asyncio.create_task(_later(gateway, headers, box, (
        "mkdir w/d && echo x > w/d/f && mv w/d/f w/d/g && sleep 0.2 && rm -r w")))
    r = await gateway.client.get(f"/v1/boxes/{box}/files/watch", headers=headers,
                                 params={"path": "w", "recursive": "true"})
    await acting
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/x-ndjson"
    seen = [json.loads(line) for line in r.text.splitlines()]
    assert seen[:4] == [
        {"type": "created", "path": "/workspace/w/d", "is_dir": True},
        {"type": "created", "path": "/workspace/w/d/f", "is_dir": False},
        {"type": "modified", "path": "/workspace/w/d/f", "is_dir": False},
        {"type": "moved", "path": "/workspace/w/d/g", "from_path": "/workspace/w/d/f",
         "is_dir": False}]
    assert {"type": "deleted", "path": "/workspace/w/d/g", "is_dir": False} in seen
    assert seen[-1]["type"] == "end" and "gone" in seen[-1]["reason"]
    r = await gateway.client.get(f"/v1/boxes/{box}/files/watch", headers=headers,
                                 params={"path": "/no/such"})
    assert r.status_code == 404 and "/no/such" in r.json()["error"]["message"]
    await gateway.client.delete(f"/v1/boxes/{box}", headers=headers)
