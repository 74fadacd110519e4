"""The architecture as the imports show it. Every import is an edge — under TYPE_CHECKING or
inside a function too (they are the same dependency, taken later) — and:

- each package imports only the floors below it (the ladder), so no arrow runs back up;
- no module imports a route module or the in-box harness;
- there is no import cycle between modules;
- Redis keys are spelled in core/keys.py alone;
- the programs that run in boxes import the standard library and nothing else.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

from tests.conftest import Gateway

ROOT = Path(__file__).parent.parent
# The ladder, bottom first: a package imports its own floor's packages only if listed, and
# anything on a floor below. The in-box agent, the box runtime and the knowledge base import
# nothing of ours; models/ uses the agent's JSON-schema helper; core/ is the domain over them;
# workers/ (jobs) and gateway/ (HTTP, the host socket) are runners over core/, and the gateway
# runs the worker in `burrow serve`.
LADDER: tuple[tuple[str, ...], ...] = (
    ("boxes", "knowledge", "tenant_agent"),
    ("models",),
    ("core",),
    ("workers",),
    ("gateway",),
)
# The client (SDK and CLI, the `burrow` distribution) is apart: it imports nothing of the
# server. The server's commands (serve, gateway, worker, doctor, harness) are gateway/cli.py,
# which the client finds through the `burrow.commands` entry points.
CLIENT = "burrow"
SERVER = tuple(pkg for floor in LADDER for pkg in floor)
PACKAGES = (*SERVER, CLIENT)


def _floor(package: str) -> int:
    return next(n for n, floor in enumerate(LADDER) if package in floor)


def _allowed(module: str, target: str) -> bool:
    mine, theirs = module.split(".")[0], target.split(".")[0]
    if mine == theirs:
        return True
    if mine == CLIENT:
        return False
    return theirs in SERVER and _floor(theirs) < _floor(mine)


# What a box starts by path (home boxes keep theirs in their records): nobody imports them.
ENTRY_SCRIPTS = {"tenant_agent.__main__", "tenant_agent.harness", "tenant_agent.clirun"}
# The programs behind the runs' scripts: run in a box, never imported by the server.
IN_BOX_PROGRAMS = {"tenant_agent.runs.harness", "tenant_agent.runs.clirun"}
# Inside tenant_agent: the tenant agent and the runs share only common/.
IN_BOX_APART = {"memory": {"common"}, "runs": {"common"}, "common": set()}


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(source: str, modules: set[str]) -> list[str]:
    """Every module `source` imports, wherever the import is (module level, under
    TYPE_CHECKING, inside a function or a try); `from package import submodule` is an edge to
    the submodule alone."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.extend(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            subs = [f"{node.module}.{a.name}" for a in node.names
                    if f"{node.module}.{a.name}" in modules]
            found.extend(subs)
            if len(subs) < len(node.names):
                found.append(node.module)
    return found


def _graph() -> dict[str, set[str]]:
    modules = {_module(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    return {name: {m for m in imports(path.read_text(), set(modules))
                   if m in modules and m != name}
            for name, path in modules.items()}


def test_imports_under_type_checking_and_inside_functions_are_edges() -> None:
    sample = """
from typing import TYPE_CHECKING
from core import keys
if TYPE_CHECKING:
    from gateway.app import BurrowApp

def later():
    import workers.runner
    from core.services import Core
"""
    known = {"core", "core.keys", "core.services", "gateway.app", "workers.runner"}
    assert sorted(m for m in imports(sample, known) if m in known) == [
        "core.keys", "core.services", "gateway.app", "workers.runner"]


def test_each_package_imports_only_the_floors_below_it() -> None:
    wrong = [f"{module} imports {target}" for module, targets in _graph().items()
             for target in sorted(targets) if not _allowed(module, target)]
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


def test_the_apps_state_holds_the_core_alone(gateway: Gateway) -> None:
    assert set(gateway.app.state._state) == {"core"}


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


# --- Redis keys ------------------------------------------------------------------------------

KEYS_MODULE = Path("core/keys.py")
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
