"""The layout's rules, checked: small modules, no import cycle, Ray only at the edges."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "harmonize"
MAX_LINES = 400
RAY_EDGES = ("harmonize.distributed",)  # besides jobs/, the only importers of Ray


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _type_checking_only(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    """Whether ``node`` sits under ``if TYPE_CHECKING:`` (never executed: no runtime edge)."""
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


def _imports(name: str, path: Path) -> set[str]:
    """Every module this module imports when it runs, at the top or inside a function."""
    tree = ast.parse(path.read_text())
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    found: set[str] = set()
    for node in ast.walk(tree):
        if _type_checking_only(node, parents):
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            base = node.module
            if node.level:  # relative imports
                package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
                for _ in range(node.level - 1):
                    package = package.rsplit(".", 1)[0]
                base = f"{package}.{base}"
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


GRAPH = {
    name: {m for m in _imports(name, path) if m in MODULES and m != name}
    for name, path in MODULES.items()
}


def test_every_module_is_small() -> None:
    """Package, tests and job scripts alike: at most MAX_LINES lines each."""
    paths = [
        *PACKAGE.rglob("*.py"),
        *(REPO / "tests").rglob("*.py"),
        *(REPO / "jobs").rglob("*.py"),
    ]
    sizes = {str(p.relative_to(REPO)): len(p.read_text().splitlines()) for p in paths}
    assert {path: n for path, n in sizes.items() if n > MAX_LINES} == {}


def test_every_module_says_what_it_holds() -> None:
    missing = [n for n, p in MODULES.items() if ast.get_docstring(ast.parse(p.read_text())) is None]
    assert missing == []


def test_there_is_no_import_cycle() -> None:
    """Tarjan's strongly connected components over every runtime import (lazy ones included)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in sorted(GRAPH[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for name in sorted(GRAPH):
        if name not in index:
            visit(name)
    assert cycles == []


def test_ray_is_imported_only_by_distributed_and_jobs() -> None:
    offenders = sorted(
        name
        for name, path in MODULES.items()
        if not name.startswith(RAY_EDGES)
        and any(m == "ray" or m.startswith("ray.") for m in _imports(name, path))
    )
    assert offenders == []


def test_the_core_does_not_reach_for_the_edges() -> None:
    """Only the command line (an edge, like jobs/) may import harmonize.distributed."""
    edges = ("harmonize.distributed", "harmonize.cli")
    offenders = sorted(
        f"{name} -> {m}"
        for name, imported in GRAPH.items()
        if not name.startswith(edges)
        for m in imported
        if m.startswith("harmonize.distributed")
    )
    assert offenders == []
