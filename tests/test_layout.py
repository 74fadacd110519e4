"""The architecture as the imports show it: each package imports only the layers below it,
no module imports a route module or the in-box harness, and there is no import cycle.
(TYPE_CHECKING-only imports and imports inside functions, which run late, are not edges; the
programs that run in boxes are held to every import they name, wherever it is.)"""

from __future__ import annotations

import ast
import sys
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


# What a box starts by path (home boxes keep theirs in their records): nobody imports them.
ENTRY_SCRIPTS = {"tenant_agent.__main__", "tenant_agent.harness", "tenant_agent.clirun"}
# The programs behind the runs' scripts: run in a box, never imported by the server.
IN_BOX_PROGRAMS = {"tenant_agent.runs.harness", "tenant_agent.runs.clirun"}
# Inside tenant_agent: the tenant agent and the runs share only common/.
IN_BOX_APART = {"memory": {"common"}, "runs": {"common"}, "common": set()}


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
             or (target in IN_BOX_PROGRAMS and not module.startswith("tenant_agent"))
             or target in ENTRY_SCRIPTS]
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


def _every_import(path: Path) -> set[str]:
    """Every module a file names in an import, wherever the import is (in a function, under
    TYPE_CHECKING): the in-box programs import late on purpose, to start fast."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return found


def test_the_in_box_programs_import_the_standard_library_and_nothing_else_of_ours() -> None:
    """A box runs them with its own /usr/bin/python3 -I -S: no site-packages, none of the
    server's packages."""
    wrong = [f"{_module(path)} imports {name}" for path in (ROOT / "tenant_agent").rglob("*.py")
             for name in _every_import(path)
             if name.split(".")[0] not in sys.stdlib_module_names
             and name.split(".")[0] != "tenant_agent"]
    assert wrong == []


def test_the_tenant_agent_and_the_runs_share_only_common() -> None:
    modules = {_module(p) for p in (ROOT / "tenant_agent").rglob("*.py")}
    wrong = []
    for path in (ROOT / "tenant_agent").rglob("*.py"):
        parts = _module(path).split(".")
        if len(parts) < 3:  # the package and its entry scripts
            continue
        for name in _every_import(path) & modules:
            target = name.split(".")
            if len(target) >= 3 and target[1] != parts[1] and target[1] not in IN_BOX_APART[
                    parts[1]]:
                wrong.append(f"{_module(path)} imports {name}")
    assert wrong == []


def test_the_in_box_packages_run_no_code_at_import() -> None:
    """Every program in a box imports these packages first: what they hold, each start pays."""
    inits = [ROOT / "tenant_agent" / sub / "__init__.py" for sub in ("", *IN_BOX_APART)]
    assert [str(p.relative_to(ROOT)) for p in inits
            if [type(n) for n in ast.parse(p.read_text()).body] != [ast.Expr]] == []
