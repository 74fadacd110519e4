"""The architecture as the imports show it: each package imports only the layers below it,
no module imports a route module or the in-box harness, and there is no import cycle.
(TYPE_CHECKING-only imports and imports inside functions, which run late, are not edges.)
Redis keys are spelled in core/keys.py alone."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from tests.conftest import Gateway

ROOT = Path(__file__).parent.parent
PACKAGES = ("boxes", "gateway", "tenant_agent", "knowledge", "workers", "burrow", "models",
            "core")
# What each package may import of ours (besides itself).
ALLOWED = {
    "boxes": set(),
    "knowledge": set(),
    "tenant_agent": set(),          # runs inside boxes: stdlib only
    "models": {"tenant_agent"},     # the JSON schema helper
    "core": {"boxes", "knowledge", "models", "tenant_agent"},
    "workers": {"boxes", "knowledge", "core"},
    "gateway": {"boxes", "knowledge", "workers", "models", "tenant_agent", "core"},
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
             or (target == "tenant_agent.harness" and not module.startswith("tenant_agent"))]
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


def test_the_apps_state_holds_the_core_alone(gateway: Gateway) -> None:
    assert set(gateway.app.state._state) == {"core"}


# --- Redis keys ------------------------------------------------------------------------------

KEYS_MODULE = Path("core/keys.py")
SERVER = ("boxes", "core", "gateway", "knowledge", "models", "tenant_agent", "workers")
# f"{prefix}:family…": an interpolated prefix, then a key family
_FAMILY = re.compile(r"^\{\}:[A-Za-z_][\w-]*")
# a prefix written out: Burrow's default one, or arq's own
_WRITTEN_PREFIX = re.compile(r"^(burrow|arq):")
# key + ":family"
_APPENDED = re.compile(r"^:[A-Za-z_][\w-]*$")
# arq's calls that name a queue or a job id, and what each must be given (the instance's)
_ARQ_NAMES = {"create_pool": "default_queue_name", "Worker": "queue_name", "cron": "name",
              "enqueue_job": "_job_id"}


def _shape(node: ast.JoinedStr) -> str:
    """The f-string with each interpolation as {}."""
    return "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)


def _hash_fields(tree: ast.AST) -> set[int]:
    """The strings given as a hash's fields (`hincrby(key, f"{provider}:calls", 1)`): the key
    is a hash command's first argument, the rest are not keys."""
    fields: set[int] = set()
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr.startswith("h")):
            fields.update(id(arg) for arg in node.args[1:])
    return fields


def _spelled(node: ast.AST) -> str | None:
    """What `node` spells by hand, if it is a key, a key family or an arq name."""
    if isinstance(node, ast.JoinedStr):
        shape = _shape(node)
        return ast.unparse(node) if _FAMILY.match(shape) or _WRITTEN_PREFIX.match(shape) else None
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return repr(node.value) if _WRITTEN_PREFIX.match(node.value) else None
    appended = (isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add)
                and isinstance(node.right, ast.Constant) and isinstance(node.right.value, str)
                and _APPENDED.match(node.right.value))
    if appended or (isinstance(node, ast.ImportFrom) and node.module == "arq.constants"):
        return ast.unparse(node)
    if isinstance(node, ast.Call):
        func = node.func  # arq's functions by their names; enqueue_job, a pool's method
        name = (func.id if isinstance(func, ast.Name) else
                func.attr if isinstance(func, ast.Attribute) and func.attr == "enqueue_job"
                else "")
        needed = _ARQ_NAMES.get(name)
        if needed is not None and needed not in {k.arg for k in node.keywords}:
            return f"{ast.unparse(node)} (no {needed}=)"
    return None


def spelled_keys(source: str) -> list[str]:
    """What in `source` spells a Redis key, a key family or arq's queue and job ids by hand
    (each as `line: source text`), instead of asking core/keys.py."""
    tree = ast.parse(source)
    fields = _hash_fields(tree)
    found = [(node.lineno, text) for node in ast.walk(tree)
             if id(node) not in fields and (text := _spelled(node)) is not None]
    return [f"{line}: {text}" for line, text in sorted(found)]


def test_the_key_check_finds_keys_spelled_by_hand() -> None:
    sample = """
async def f(redis, prefix, pool, keys, provider, x, tenant):
    await redis.set(f"{prefix}:foo:{x}", 1)
    key = f"{self.prefix}:bar"
    await redis.get("burrow:box:" + x)
    await redis.delete(keys.tenant(tenant) + ":reserved")
    await pool.enqueue_job("observe", tenant)
    from arq.constants import default_queue_name
"""
    assert [line.split(":")[0] for line in spelled_keys(sample)] == [
        "3", "4", "5", "6", "7", "8"]
    fine = """
async def f(redis, keys, pool, host, port, provider, tenant):
    await redis.set(keys.tenant(tenant), 1)
    await redis.hincrby(keys.model_usage(tenant), f"{provider}:calls", 1)
    url = f"http://{host}:{port}/v1"
    scope = f"tenant:{tenant}"
    await pool.enqueue_job("observe", tenant, _job_id=keys.job("observe", tenant))
"""
    assert spelled_keys(fine) == []


def test_no_redis_key_is_spelled_outside_the_keys_module() -> None:
    spelled = {str(path.relative_to(ROOT)): found
               for pkg in SERVER for path in sorted((ROOT / pkg).rglob("*.py"))
               if path.relative_to(ROOT) != KEYS_MODULE
               and (found := spelled_keys(path.read_text()))}
    assert spelled == {}
