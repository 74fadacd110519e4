"""The README and docs/ say only what is there: every setting they name is read by the code,
every route they name is served (by the gateway or the host socket), every file or folder of
the repository they name exists, and every page is reachable from the README."""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

from core.settings import Settings
from gateway.app import create_app
from gateway.hostsvc import create_host_app
from tests.terminals import websocket_paths

ROOT = Path(__file__).parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
CODE = [p for folder in ("gateway", "core", "boxes", "tenant_agent", "knowledge", "workers",
                         "models", "burrow")
        for p in (ROOT / folder).rglob("*.py")] + [ROOT / "Makefile"]

SETTING = re.compile(r"\bBURROW_[A-Z0-9_]*[A-Z0-9]\b")
# A method (or several: GET/PUT) and a path of ours; "…" abbreviations are left out.
ROUTE = re.compile(r"\b((?:GET|POST|PUT|PATCH|DELETE|ANY)(?:/(?:GET|POST|PUT|PATCH|DELETE))*)"
                   r"\s+(/(?:v1|healthz|readyz|metrics|dashboard)[^\s`'\",)…]*)")
# `folder/file.ext` or `folder/` naming a part of this repository.
REPO_PATH = re.compile(r"`((?:gateway|boxes|tenant_agent|knowledge|workers|models|burrow|core|"
                       r"tests|bench|examples|sdk|docs|deploy|requirements)/[\w./-]*)`")
LINK = re.compile(r"\]\(((?!https?:|#)[^)#\s]+)(?:#[^)]*)?\)")


def _text(page: Path) -> str:
    return page.read_text()


def _shape(path: str) -> str:
    """A route path with its parameters unnamed and its query dropped."""
    path = path.split("?")[0].rstrip("/.:;") or "/"
    return re.sub(r"\{[^}]*\}", "{}", path)


def _served() -> set[tuple[str, str]]:
    """(method, path shape) of every operation of the gateway and the host socket, as their
    OpenAPI documents list them (the dashboard's page, kept out of the document, and the
    WebSocket routes, too)."""
    settings = Settings(redis_url="redis://unused", dev=True, operator_key="k" * 32)
    guard: Any = create_host_app(None, None)  # type: ignore[arg-type]
    served = {("GET", "/dashboard")}
    for app in (create_app(settings), guard.app):
        with warnings.catch_warnings():  # the relay's routes take several methods under one id
            warnings.simplefilter("ignore", UserWarning)
            paths = app.openapi()["paths"]
        for path, operations in paths.items():
            served |= {(method.upper(), _shape(path)) for method in operations}
        # WebSocket routes (a box's terminal) are opened with a GET, and not in the document
        served |= {("GET", _shape(path)) for path in websocket_paths(app)}
    return served


def test_every_setting_the_docs_name_is_read_by_the_code() -> None:
    code = "\n".join(p.read_text() for p in CODE)
    named = {(m, page.name) for page in PAGES for m in SETTING.findall(_text(page))}
    missing = sorted(f"{name} ({page})" for name, page in named if name not in code)
    assert missing == []


def test_every_route_the_docs_name_is_served() -> None:
    served = _served()
    missing = []
    for page in PAGES:
        for methods, path in ROUTE.findall(_text(page)):
            shape = _shape(path)
            for method in methods.split("/"):
                wanted = {"GET", "POST", "PUT", "PATCH", "DELETE"} if method == "ANY" else {method}
                if not any((m, shape) in served for m in wanted):
                    missing.append(f"{method} {path} ({page.name})")
    assert sorted(set(missing)) == []


def test_every_file_the_docs_name_exists() -> None:
    missing = [f"{name} ({page.name})" for page in PAGES
               for name in REPO_PATH.findall(_text(page))
               if "…" not in name and "*" not in name and not (ROOT / name).exists()]
    assert missing == []


def test_every_page_is_linked_from_the_readme_and_every_link_resolves() -> None:
    broken = [f"{target} ({page.name})" for page in PAGES
              for target in LINK.findall(_text(page))
              if not (page.parent / target).exists()]
    assert broken == []
    linked = {(ROOT / t).resolve() for t in LINK.findall(_text(ROOT / "README.md"))}
    orphans = [p.name for p in PAGES[1:] if p.resolve() not in linked]
    assert orphans == []
