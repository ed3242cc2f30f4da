"""The package's layout holds: layers import only downwards, no import circles, a short top
folder, short functions. Read from the source's own imports (ast), so a change that breaks
the layering fails here, not in review."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

#: The layers, lowest first. A module may import from its own layer or a lower one; science
#: (`analysis`, `corrections`) knows nothing of files, stores, Dask or HTTP.
LAYERS: list[tuple[str, ...]] = [
    ("mtinsar", "mtinsar.errors", "mtinsar.conventions", "mtinsar.progress", "mtinsar.atomic"),
    ("mtinsar.config",),
    ("mtinsar.analysis", "mtinsar.corrections"),
    ("mtinsar.sources",),
    ("mtinsar.stack",),
    ("mtinsar.io", "mtinsar.results", "mtinsar.nrt"),
    ("mtinsar.workflows",),
    ("mtinsar.infra", "mtinsar.simulate"),
    ("mtinsar.service",),
    ("mtinsar.cli",),
    ("mtinsar.__main__",),
]
MAX_TOP_MODULES = 10
MAX_FUNCTION_LINES = 80


def _modules() -> dict[str, Path]:
    found = {}
    for path in (SRC / "mtinsar").rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the mtinsar modules it imports (anywhere in its body, lazy imports too)."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*up, base] if base else up)
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    targets.add(full if full in modules else base)
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def layer_of(module: str) -> int:
    best, depth = -1, -1
    for number, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            matches = module == prefix or (prefix != "mtinsar" and module.startswith(prefix + "."))
            if matches and len(prefix) > depth:
                best, depth = number, len(prefix)
    if best < 0:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS")
    return best


def test_every_module_has_a_layer():
    for module in _modules():
        layer_of(module)


def test_imports_run_downwards_only():
    upward = [
        f"{source} (layer {layer_of(source)}) imports {target} (layer {layer_of(target)})"
        for source, targets in import_graph().items()
        for target in sorted(targets)
        if layer_of(target) > layer_of(source)
    ]
    assert upward == []


def test_no_import_circles():
    graph = import_graph()
    state: dict[str, int] = {}
    circles: list[list[str]] = []

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                circles.append(trail[trail.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert circles == []


def test_top_folder_is_short():
    top = sorted(p.name for p in (SRC / "mtinsar").glob("*.py"))
    assert len(top) <= MAX_TOP_MODULES, top


def test_functions_are_short():
    long = []
    for path in sorted((SRC / "mtinsar").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(SRC)}:{node.lineno} {node.name} ({lines})")
    assert long == []


@pytest.mark.parametrize(
    ("source", "target"),
    [("mtinsar.analysis.qc", "mtinsar.workflows.pipeline"), ("mtinsar.config", "mtinsar.cli")],
)
def test_the_layer_check_can_fail(source, target):
    assert layer_of(target) > layer_of(source)


def _room(module: str) -> str:
    """A top-level module, or a top-level sub-package as one room."""
    parts = module.split(".")
    if len(parts) == 1:
        return "mtinsar/__init__.py"
    return parts[1] + ("/" if (SRC / "mtinsar" / parts[1]).is_dir() else ".py")


def figures() -> dict[str, int]:
    """The layout's figures: rooms (top-level modules and sub-packages), arrows between
    rooms, floors (the longest chain of rooms importing each other), module imports."""
    graph = import_graph()
    arrows = {(_room(a), _room(b)) for a, bs in graph.items() for b in bs if _room(a) != _room(b)}
    below: dict[str, set[str]] = {}
    for a, b in arrows:
        below.setdefault(a, set()).add(b)
    floors: dict[str, int] = {}

    def floor(room: str, trail: frozenset[str]) -> int:
        if room not in floors:  # a circle counts once (the circle test reports it)
            nxt = [floor(b, trail | {room}) for b in below.get(room, ()) if b not in trail]
            floors[room] = 1 + max(nxt, default=0)
        return floors[room]

    rooms = {_room(m) for m in graph}
    return {
        "rooms": len(rooms),
        "arrows": len(arrows),
        "floors": max(floor(r, frozenset()) for r in rooms),
        "module imports": sum(len(b) for b in graph.values()),
        "top-level modules": len(list((SRC / "mtinsar").glob("*.py"))),
    }


if __name__ == "__main__":  # python tests/test_architecture.py: the figures of the layout
    for name, value in figures().items():
        print(f"{name}: {value}")
