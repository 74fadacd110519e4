"""The architecture as the imports show it: each package imports only the layers below it,
no module imports a route module or the in-box harness, and there is no import cycle.
(TYPE_CHECKING-only imports and imports inside functions, which run late, are not edges.)"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import Gateway

ROOT = Path(__file__).parent.parent
PACKAGES = ("boxes", "gateway", "tenant_agent", "knowledge", "workers", "burrow", "models")
# What each package may import of ours (besides itself).
ALLOWED = {
    "boxes": set(),
    "knowledge": set(),
    "tenant_agent": set(),          # runs inside boxes: stdlib only
    "models": {"workers", "tenant_agent"},  # the policy it enforces; the JSON schema helper
    "workers": {"boxes", "knowledge"},
    "gateway": {"boxes", "knowledge", "workers", "models", "tenant_agent"},
    "burrow": set(),                # the SDK and CLI: the server only through `burrow serve`
}


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> list[str]:
    """Modules imported at module level (not under TYPE_CHECKING, not inside functions);
    `from package import submodule` is an edge to the submodule alone."""
    tree = ast.parse(path.read_text())
    found: list[str] = []

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.Import):
                found.extend(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                subs = [f"{node.module}.{a.name}" for a in node.names
                        if f"{node.module}.{a.name}" in modules]
                found.extend(subs)
                if len(subs) < len(node.names):
                    found.append(node.module)
            elif isinstance(node, ast.If) and "TYPE_CHECKING" not in ast.unparse(node.test):
                visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)
    visit(tree.body)
    return found


def _graph() -> dict[str, set[str]]:
    modules = {_module(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    return {name: {m for m in _imports(path, set(modules)) if m in modules and m != name}
            for name, path in modules.items()}


def test_each_package_imports_only_the_layers_below_it() -> None:
    wrong = [f"{module} imports {target}" for module, targets in _graph().items()
             for target in targets
             if (ours := target.split(".")[0]) != module.split(".")[0]
             and ours not in ALLOWED[module.split(".")[0]]]
    assert wrong == []


def test_no_module_imports_a_route_module_or_the_in_box_harness() -> None:
    wrong = [f"{module} imports {target}" for module, targets in _graph().items()
             for target in targets
             if (target.startswith("gateway.routes") and module != "gateway.app"
                 and not module.startswith("gateway.routes"))
             or (target == "tenant_agent.runs.harness" and not module.startswith("tenant_agent"))]
    assert wrong == []


def test_there_is_no_import_cycle() -> None:
    graph = _graph()
    seen: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        seen[node] = 1
        for target in sorted(graph.get(node, ())):
            if seen.get(target) == 1:
                cycle = [*path[path.index(target):], target]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if target not in seen:
                visit(target, [*path, target])
        seen[node] = 2

    for module in sorted(graph):
        if module not in seen:
            visit(module, [module])


def test_the_apps_state_holds_the_services_object_alone(gateway: Gateway) -> None:
    assert set(gateway.app.state._state) == {"services"}
