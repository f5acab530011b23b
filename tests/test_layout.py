"""The code's shape: no import cycles, imports point down the layers, a pure core, small modules.

Every import counts: at module level, inside functions and under TYPE_CHECKING.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

ROOT = Path(__file__).parent.parent
PACKAGES = ("orchestrator", "triggers", "sensors")

# Lowest first. A module may import its own layer's modules and lower layers' only.
# The ``orchestrator`` package itself is the public facade over all of them.
LAYERS: list[set[str]] = [
    {"triggers"},
    {
        "orchestrator.errors",
        "orchestrator._clock",
        "orchestrator._settings",
        "orchestrator._aio",
        "orchestrator._logging",
        "orchestrator._processes",
    },
    {"orchestrator.core"},
    {"orchestrator.store"},
    {"orchestrator.resources"},
    {"orchestrator.authoring", "orchestrator.operators"},
    {"orchestrator.dagfiles", "orchestrator.alerts", "sensors"},
    {"orchestrator.runtime"},
    {"orchestrator.api"},
    {"orchestrator.web"},
    {"orchestrator.daemon"},
    {"orchestrator.cli"},
]
MAX_LINES = 500


@cache
def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def _target(name: str) -> str | None:
    """The project module an imported name lives in (a module, or its package)."""
    while name and name not in modules():
        name = name.rpartition(".")[0]
    return name or None


@cache
def imports() -> dict[str, set[str]]:
    """Module -> the project modules it imports, anywhere in its source."""
    graph: dict[str, set[str]] = {}
    for name, path in modules().items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                wanted = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*parent, base] if base else parent)
                wanted = [f"{base}.{alias.name}" for alias in node.names]
            else:
                continue
            found |= {t for w in wanted if (t := _target(w)) is not None and t != name}
        graph[name] = found
    return graph


def layer_of(module: str) -> int | None:
    for index, layer in enumerate(LAYERS):
        if any(module == unit or module.startswith(unit + ".") for unit in layer):
            return index
    return None


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_cycle() -> None:
    """The check below can fail: a two-module loop and a three-module loop are found."""
    graph = {"a": {"b"}, "b": {"a"}, "c": {"d"}, "d": {"e"}, "e": {"c"}, "f": {"a"}}
    assert sorted(cycles(graph)) == [["a", "b"], ["c", "d", "e"]]


def test_no_import_cycles() -> None:
    """No two project modules import each other, directly or through others."""
    assert cycles(imports()) == []


def test_every_module_belongs_to_a_layer() -> None:
    """A new package or top-level module is placed in LAYERS on purpose."""
    placed = {m for m in modules() if m == "orchestrator" or layer_of(m) is not None}
    assert set(modules()) - placed == set()


def test_imports_point_down_the_layers() -> None:
    """A module imports its own layer and those below, never one above."""
    upward = []
    for module, targets in imports().items():
        own = layer_of(module)
        if own is None:
            continue  # the facade
        for target in targets:
            other = layer_of(target)
            if other is None or other > own:
                upward.append(f"{module} -> {target}")
    assert upward == []


def test_triggers_knows_nothing_of_the_orchestrator() -> None:
    """The trigger definitions and engine import no orchestrator module."""
    offending = {
        m: sorted(t for t in targets if t.startswith("orchestrator"))
        for m, targets in imports().items()
        if m.startswith("triggers")
    }
    assert {m: t for m, t in offending.items() if t} == {}


FORBIDDEN_IN_CORE = {
    "anyio",
    "asyncio",
    "httpx",
    "os",
    "socket",
    "subprocess",
    "threading",
    "time",
    "structlog",
}


def test_the_core_does_no_io_and_reads_no_clock() -> None:
    """core/ imports no I/O library and never asks for the current time."""
    problems = []
    for name, path in modules().items():
        if not name.startswith("orchestrator.core"):
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                roots = (
                    [a.name for a in node.names]
                    if isinstance(node, ast.Import)
                    else [node.module or ""]
                )
                problems += [f"{name} imports {r}" for r in roots if r in FORBIDDEN_IN_CORE]
            if isinstance(node, ast.Attribute) and node.attr in ("now", "utcnow", "today"):
                problems.append(f"{name} reads the clock ({ast.unparse(node)})")
            if isinstance(node, ast.Name) and node.id == "SystemClock":
                problems.append(f"{name} uses SystemClock")
    assert problems == []


def test_no_module_is_over_the_limit() -> None:
    """Small pieces: no module over MAX_LINES lines."""
    long = {
        name: n
        for name, path in modules().items()
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}
