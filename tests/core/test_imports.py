"""The import graph of trident_core has no cycle (each module's imports, read from the source with ast)."""

from __future__ import annotations

import ast
from pathlib import Path

import trident_core

PACKAGE = Path(trident_core.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST) -> set[str]:
    """Every module named by an import, lazy ones inside functions included; `if TYPE_CHECKING:` blocks never run
    and are left out."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)  # `from pkg import module`
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def import_graph() -> dict[str, set[str]]:
    """``module -> trident_core modules it imports`` (a package's ``__init__`` importing its own submodules is
    how packages are built, not a cycle, so a submodule's implied import of its parent package is not counted)."""
    sources = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: {dep for dep in _imports(ast.parse(path.read_text(), filename=str(path)))
                   if dep in sources and dep != name}
            for name, path in sources.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path ``[a, b, ..., a]``, or ``None``."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def walk(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return [*path[path.index(dep):], dep]
            if dep not in state and (cycle := walk(dep)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := walk(node)):
            return cycle
    return None


def test_trident_core_has_no_import_cycle() -> None:
    graph = import_graph()
    assert "trident_core.presets" in graph["trident_core.cli"]  # the graph sees real imports
    assert "trident_core.cli" in graph["trident_core.entry"]  # lazy imports inside functions count too
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_find_cycle_finds_the_cycle_cli_and_entry_had() -> None:
    """The control: the graph before presets.py (cli imported PRESET_DIR from entry) is reported."""
    graph = import_graph()
    graph["trident_core.cli"] = graph["trident_core.cli"] | {"trident_core.entry"}
    assert find_cycle(graph) == ["trident_core.cli", "trident_core.entry", "trident_core.cli"]
