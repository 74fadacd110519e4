"""GET /v1/stats/history: the series the dashboard charts, for the operator only, from real
wakes of real boxes and the worker's minute sample."""

from __future__ import annotations

import time

from core.security import box_token
from tests.conftest import Gateway
from workers.housekeeping import sample_history


async def test_history_shows_the_wakes_this_test_caused_and_the_minute_sample(
        gateway: Gateway) -> None:
    gw, op, c = gateway, gateway.operator, gateway.client
    _, home = await gw.tenant("acme")
    empty = (await c.get("/v1/stats/history", headers=op)).json()
    assert empty["hours"] == 6 and empty["kept_hours"] == 24 and empty["sample_size"] == 256
    assert len(empty["wakes"]["minute"]) == 360 and sum(empty["wakes"]["count"]) == 0
    assert set(empty["wakes"]["p50_ms"]) == {None} and empty["samples"]["at"] == []

    started = time.time()
    for _ in range(3):
        assert (await c.post(f"/v1/boxes/{home}/freeze", headers=op)).status_code == 200
        assert (await c.post(f"/v1/boxes/{home}/wake", headers=op)).status_code == 200
    await gw.core.history.drain()
    ctx = {"history": gw.core.history, "stats": gw.core.stats}
    assert await sample_history(ctx) is True
    assert await sample_history(ctx) is False  # this minute's sample is taken

    r = await c.get("/v1/stats/history?hours=1", headers=op)
    assert r.status_code == 200, r.text
    body = r.json()
    wakes, samples = body["wakes"], body["samples"]
    assert len(wakes["minute"]) == 60
    assert wakes["minute"] == sorted(wakes["minute"]) and wakes["minute"][-1] <= body["now"]
    assert wakes["minute"][-1] == int(body["now"] // 60) * 60
    assert sum(wakes["count"]) == 3
    busy = [i for i, n in enumerate(wakes["count"]) if n]
    assert all(wakes["minute"][i] >= int(started // 60) * 60 for i in busy)
    for i, n in enumerate(wakes["count"]):
        has = wakes["p50_ms"][i] is not None
        assert has == (n > 0) and (wakes["p99_ms"][i] is not None) == has
        assert wakes["sampled"][i] == n
        if has:
            assert 0 < wakes["p50_ms"][i] <= wakes["p99_ms"][i] < 60_000
    assert len(samples["at"]) == 1 and samples["at"][0] >= started
    assert samples["boxes"]["running"] == [1] and samples["boxes"]["frozen"] == [0]
    assert samples["queue_depth"] == [0] and samples["backlog"] == [0]
    assert "deleted" not in samples["boxes"]


async def test_history_is_the_operators_and_bad_windows_are_422(gateway: Gateway) -> None:
    gw, c = gateway, gateway.client
    tenant, home = await gw.tenant("acme")
    token = {"Authorization": f"Bearer {box_token(gw.core.secret, home)}"}
    assert (await c.get("/v1/stats/history")).status_code == 401
    for who in (tenant, token):
        r = await c.get("/v1/stats/history", headers=who)
        assert r.status_code == 403 and "wakes" not in r.text, r.text
        assert r.json()["error"]["code"]
    for bad in ("0", "25", "-1", "abc", "1.5", "", "99999999999999999999999"):
        r = await c.get(f"/v1/stats/history?hours={bad}", headers=gw.operator)
        assert r.status_code == 422, (bad, r.status_code, r.text)
        error = r.json()["error"]
        assert error["code"] == "invalid_request" and "hours" in error["message"], error
    r = await c.get("/v1/stats/history?hours=24", headers=gw.operator)
    assert r.status_code == 200 and len(r.json()["wakes"]["minute"]) == 24 * 60

