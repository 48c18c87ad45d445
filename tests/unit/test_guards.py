"""Guard tests: the dependency direction holds and every module imports on its own."""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import apex

ALL_MODULES = sorted(m.name for m in pkgutil.walk_packages(apex.__path__, "apex.") if not m.name.endswith("__main__"))

# Pure modules: no sockets, no aiohttp, no prometheus (style.md, dependency direction).
PURE = [
    "apex.errors", "apex.types", "apex.sse", "apex.glob", "apex.tokens", "apex.translate.passthrough",
    "apex.config.model", "apex.config.load", "apex.auth", "apex.ratelimit",
    "apex.routing.match", "apex.routing.balance", "apex.routing.policy", "apex.routing.health", "apex.routing.router",
    *[m for m in ALL_MODULES if m.startswith(("apex.translate.", "apex.wire."))],
]


def _imported_after(module: str) -> set[str]:
    code = f"import sys, {module}; print('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    return set(out.stdout.split())


def test_pure_modules_do_not_import_aiohttp_or_prometheus() -> None:
    """Translation, routing, auth, rate limiting and SSE never pull in aiohttp or prometheus_client."""
    code = "import sys\n" + "".join(f"import {m}\n" for m in PURE) + "print('aiohttp' in sys.modules, 'prometheus_client' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.split() == ["False", "False"]


@pytest.mark.parametrize("module", ALL_MODULES)
def test_module_imports_alone(module: str) -> None:
    """Each module imports in a fresh interpreter (no import cycles, no import-order dependence)."""
    subprocess.run([sys.executable, "-c", f"import {module}"], check=True, timeout=60, capture_output=True)


def test_cli_help_does_not_import_server() -> None:
    """`apex --help` stays fast: it loads neither aiohttp nor the server."""
    code = "import sys\nsys.argv = ['apex', '--help']\nfrom apex.cli import main\ntry:\n    main()\nexcept SystemExit:\n    pass\nprint('aiohttp' in sys.modules, 'apex.server' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.split()[-2:] == ["False", "False"]


def test_only_the_server_imports_aiohttp() -> None:
    """aiohttp (server side) lives in apex.server only: the Snapshot, providers and the
    upstream client load without it, so `apex config validate` and `route explain` stay light."""
    outside = [m for m in ALL_MODULES if not m.startswith(("apex.server", "apex.cli"))]
    code = "import sys\n" + "".join(f"import {m}\n" for m in outside) + "print('aiohttp' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.split() == ["False"]


def _import_graph() -> dict[str, set[str]]:
    """Module -> the apex modules it names in any import statement (module level, inside
    functions and under TYPE_CHECKING alike: a lazy or type-only import is still a dependency)."""
    root = Path(apex.__file__).parent
    names: dict[str, Path] = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(root.parent).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph: dict[str, set[str]] = {}
    for name, path in names.items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                deps.add(node.module)
                deps.update(f"{node.module}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.Import):
                deps.update(alias.name for alias in node.names)
        graph[name] = {d for d in deps if d in names and d != name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_import_cycles() -> None:
    """No two apex modules import each other, directly or round a loop (counting lazy and
    TYPE_CHECKING imports): the layering stays a direction a reader can follow."""
    assert _cycles(_import_graph()) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    """The guard above can fail: a loop through three modules is reported as one component."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]


# Structs that are Apex's own values, not any API's wire shape.
_OWN_STRUCTS = {
    "apex.types": {"Usage"}, "apex.ratelimit.limiter": {"Limits", "Decision"}, "apex.config.model": {"_Base"},
    "apex.budget.ledger": {"BudgetPolicy", "Reservation"}, "apex.cost.pricing": {"UnitPrice"},
}


def test_wire_shapes_live_in_wire() -> None:
    """Every msgspec Struct describing an API's body is declared in apex/wire/, once: a view
    declared beside the code that reads it is how copies that disagree start."""
    root = Path(apex.__file__).parent
    stray: list[str] = []
    for path in root.rglob("*.py"):
        parts = path.relative_to(root.parent).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        if module.startswith("apex.wire"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ClassDef) or node.name in _OWN_STRUCTS.get(module, set()):
                continue
            if any(ast.unparse(base) in ("msgspec.Struct", "Struct") for base in node.bases):
                stray.append(f"{module}.{node.name}")
    assert stray == []


def test_log_extras_are_fields() -> None:
    """Apex's formatters print a record's ``fields`` dict and nothing else passed by ``extra=``:
    any other extra key would be dropped without a word."""
    root = Path(apex.__file__).parent
    wrong: list[str] = []
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
                continue
            if node.func.attr not in ("debug", "info", "warning", "error", "exception", "critical", "log"):
                continue
            for kw in node.keywords:
                if kw.arg != "extra":
                    continue
                keys = [k.value for k in kw.value.keys if isinstance(k, ast.Constant)] if isinstance(kw.value, ast.Dict) else None
                if keys != ["fields"]:
                    wrong.append(f"{path.relative_to(root.parent)}:{node.lineno}")
    assert wrong == []


def test_every_error_kind_has_a_wire_type_in_each_dialect() -> None:
    """The kind -> wire type tables cover the closed ErrorKind set (mypy checks the keys;
    this checks that none is missing)."""
    from typing import get_args

    from apex.errors import ErrorKind
    from apex.translate.neutral import errortypes

    kinds = set(get_args(ErrorKind))
    assert set(errortypes._OPENAI) == kinds
    assert set(errortypes._ANTHROPIC) == kinds
