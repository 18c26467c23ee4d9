"""The package's import graph: layers point one way and nothing imports in a cycle.

Every `rcc.*` import counts, at module level or inside a function (a lazy import does not hide a cycle).
The allowed arrows are ARCHITECTURE.md's: ir ← backends ← runtime ← compiler.
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx
import pytest

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ("ir", "backends", "runtime", "compiler")
MAY_IMPORT = {"ir": {"ir"}, "backends": {"ir", "backends"}, "runtime": {"ir", "backends", "runtime"},
              "compiler": set(LAYERS)}
OLD_TOP_LEVEL = set(LAYERS)  # before the single `rcc` namespace


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(["rcc", *parts])


def imported_modules(path: Path, modules: set[str] = frozenset()) -> set[str]:
    """The `rcc.*` (and stray old top-level) modules a file imports, anywhere in it. `from P import name`
    counts as importing P.name when that is one of `modules`, else P (a package's parents are imported
    anyway, so they are not edges of their own)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                found.add(submodule if submodule in modules else node.module)
    return {name for name in found if name.split(".")[0] in {"rcc"} | OLD_TOP_LEVEL}


def package_files() -> list[Path]:
    return sorted(p for layer in ("rcc", *LAYERS) for p in (ROOT / layer).rglob("*.py"))


def import_graph() -> nx.DiGraph:
    files = {module_name(p): p for p in package_files()}
    graph = nx.DiGraph()
    graph.add_nodes_from(files)
    for name, path in files.items():
        for module in imported_modules(path, set(files)):
            if module in files and module != name and module != "rcc":
                graph.add_edge(name, module)
    return graph


def test_no_module_uses_the_old_top_level_names() -> None:
    stray = {str(p.relative_to(ROOT)): sorted(n for n in imported_modules(p) if n.split(".")[0] != "rcc")
             for p in package_files() + sorted((ROOT / "tests").rglob("*.py")) + sorted((ROOT / "bench").rglob("*.py"))}
    assert {path: names for path, names in stray.items() if names} == {}


@pytest.mark.parametrize("layer", LAYERS)
def test_layers_import_only_what_they_may(layer) -> None:
    graph = import_graph()
    wrong = sorted((a, b) for a, b in graph.edges if a.split(".")[1] == layer
                   and len(b.split(".")) > 1 and b.split(".")[1] not in MAY_IMPORT[layer])
    assert wrong == []


def test_the_import_graph_has_no_cycle() -> None:
    graph = import_graph()
    assert graph.number_of_edges() > 50  # the walk really found the imports
    assert list(nx.simple_cycles(graph)) == []
