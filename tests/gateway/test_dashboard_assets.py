"""The dashboard's static files: the pinned chart library is the published one (its sha256s,
and its npm tarball's integrity where the registry is reachable), with its licence beside it;
/dashboard/assets/ serves exactly those scripts and styles with their types, and no other file
however its path is spelt; the history route is in the OpenAPI document."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from core.settings import Settings
from gateway.app import create_app
from gateway.routes.dashboard import ASSETS, PAGES

VENDOR = PAGES / "vendor" / "uplot"
PIN = json.loads((VENDOR / "pin.json").read_text())
SERVED = {"charts.js": "text/javascript", "vendor/uplot/uPlot.iife.min.js": "text/javascript",
          "vendor/uplot/uPlot.min.css": "text/css"}


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_the_vendored_chart_library_is_the_pinned_release() -> None:
    assert PIN["package"] == "uplot" and PIN["license"] == "MIT"
    assert PIN["tarball"] == (f"https://registry.npmjs.org/uplot/-/uplot-{PIN['version']}.tgz")
    assert set(PIN["files"]) == {"uPlot.iife.min.js", "uPlot.min.css", "LICENSE"}
    for name, pinned in PIN["files"].items():
        assert _sha256((VENDOR / name).read_bytes()) == pinned["sha256"], name
    # the file's own banner names the same release
    head = (VENDOR / "uPlot.iife.min.js").read_text()[:200]
    assert f"(v{PIN['version']})" in head, head
    # MIT: its notice travels with the copy (Apache-2.0, Burrow's licence, allows that)
    licence = (VENDOR / "LICENSE").read_text()
    assert licence.startswith("The MIT License") and "Leon Sorokin" in licence
    # vendor/ holds nothing that is not pinned (pin.json itself aside)
    assert {p.name for p in VENDOR.iterdir()} == {*PIN["files"], "pin.json"}


def test_the_page_loads_the_vendored_files_and_nothing_from_elsewhere() -> None:
    page = (PAGES / "index.html").read_text()
    for name in ("vendor/uplot/uPlot.iife.min.js", "vendor/uplot/uPlot.min.css", "charts.js"):
        assert f'"/dashboard/assets/{name}"' in page, name
    assert "http://" not in page and "https://" not in page and "//cdn" not in page


@pytest.mark.node
def test_the_pinned_files_are_the_ones_npm_publishes(tmp_path: Path) -> None:
    """Against the registry: `npm pack` of the pinned version (npm checks the tarball against
    the registry's integrity), its integrity as pinned, its files as vendored."""
    npm = shutil.which("npm")
    assert npm is not None, "the node tier needs npm"
    done = subprocess.run([npm, "pack", f"uplot@{PIN['version']}", "--pack-destination",
                           str(tmp_path), "--json"], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    (tarball,) = tmp_path.glob("uplot-*.tgz")
    data = tarball.read_bytes()
    assert "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode() \
        == PIN["integrity"]
    with tarfile.open(tarball) as archive:
        for name, pinned in PIN["files"].items():
            member = archive.extractfile(pinned["from"])
            assert member is not None, pinned["from"]
            assert _sha256(member.read()) == pinned["sha256"], name


# --- serving them ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def app() -> Iterator[FastAPI]:
    # no lifespan: these routes need no Core, and the door lets them in without a key
    yield create_app(Settings(redis_url="redis://unused", dev=True, operator_key="k" * 32))


async def _get(app: FastAPI, path: str, headers: dict[str, str] | None = None,
               method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    """One request with its path exactly as given (no client normalises its dots away), as
    uvicorn hands a decoded path to the app."""
    sent: list[dict[str, Any]] = []
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": method, "scheme": "http", "path": path,
             "raw_path": path.encode("utf-8", "surrogateescape"), "query_string": b"",
             "root_path": "", "server": ("testserver", 80), "client": ("127.0.0.1", 1),
             "headers": [(b"host", b"testserver"),
                         *((k.lower().encode(), v.encode()) for k, v in (headers or {}).items())]}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], {k.decode(): v.decode() for k, v in start["headers"]}, body


async def test_assets_are_served_with_their_types_and_no_session(app: FastAPI) -> None:
    assert set(ASSETS) == set(SERVED)
    for name, kind in SERVED.items():
        status, headers, body = await _get(app, f"/dashboard/assets/{name}")
        assert status == 200, (name, body[:200])
        assert headers["content-type"].startswith(kind), headers
        assert headers["x-content-type-options"] == "nosniff"
        assert body == (PAGES / name).read_bytes()
        again, cached, nothing = await _get(app, f"/dashboard/assets/{name}",
                                            {"If-None-Match": headers["etag"]})
        assert (again, nothing) == (304, b"") and cached["etag"] == headers["etag"]


ATTACKS = [
    "../index.html", "../login.html", "index.html", "login.html",
    "../routes/dashboard.py", "../../core/security.py", "../../../../../../etc/passwd",
    "/etc/passwd", "//etc/passwd", "vendor/uplot/../../../routes/dashboard.py",
    "vendor/uplot/LICENSE", "vendor/uplot/pin.json", "vendor/uplot/", "vendor/", "",
    "..%2findex.html", "%2e%2e/index.html", "vendor%2fuplot%2fuPlot.min.css",
    "vendor\\uplot\\uPlot.min.css", "charts.js/", "charts.js\x00.png", "./charts.js",
    "vendor/./uplot/uPlot.min.css", "CHARTS.JS", "../../../../../../root/.bashrc",
]


@pytest.mark.parametrize("name", ATTACKS)
async def test_no_path_reaches_any_other_file(app: FastAPI, name: str) -> None:
    status, headers, body = await _get(app, "/dashboard/assets/" + name)
    assert status == 404, (name, status, body[:200])
    assert headers["content-type"].startswith("application/json")
    assert json.loads(body)["error"]["code"] == "not_found"
    for secret in (b"root:", b"def ", b"import ", b"<html", b"MIT License", b"sha256"):
        assert secret not in body, (name, body[:200])


async def test_only_get_is_open_under_assets(app: FastAPI) -> None:
    door = app.door  # type: ignore[attr-defined]
    assert not door.route("GET", "/dashboard/assets/charts.js").keyed
    for method in ("POST", "PUT", "DELETE"):  # anything else needs a key, as everywhere
        assert door.route(method, "/dashboard/assets/charts.js").keyed
    assert door.route("GET", "/dashboard/assetsx").keyed
    status, _, _ = await _get(app, "/dashboard/assets/../../v1/stats")
    assert status == 404  # routed as an asset name, never as /v1/stats


async def test_assets_over_http(app: FastAPI) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://testserver") as client:
        r = await client.get("/dashboard/assets/vendor/uplot/uPlot.iife.min.js")
        assert r.status_code == 200 and r.content.startswith(b"/*! https://github.com/leeoniya")


def test_the_history_route_is_in_the_openapi_document(app: FastAPI) -> None:
    spec = app.openapi()
    op = spec["paths"]["/v1/stats/history"]["get"]
    assert op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"] \
        .endswith("/StatsHistoryOut")
    assert {"401", "403", "422"} <= set(op["responses"])
    hours = next(p for p in op["parameters"] if p["name"] == "hours")
    assert hours["schema"]["minimum"] == 1 and hours["schema"]["maximum"] == 24
    assert {"WakeHistory", "SampleHistory", "StatsHistoryOut"} <= set(spec["components"]["schemas"])
    assert not any(p.startswith("/dashboard") for p in spec["paths"])
