"""The package's structure: core ← runtime ← methods and models ← evaluation ← front ends, and no
import cycles."""

from __future__ import annotations

import ast
from pathlib import Path

import sise

PACKAGE = Path(sise.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, *, top_level_only: bool) -> set[str]:
    """The sise modules a file imports (at module level only, or anywhere)."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.If) and top_level_only:
            continue  # `if TYPE_CHECKING:` blocks do not run
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("sise"):
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("sise"))
    modules = {_module_name(p) for p in PACKAGE.rglob("*.py")}
    return {name for name in found if name in modules}


#: The architecture, bottom to top: a module imports only from its own layer or below.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("sise.errors", "sise.extras", "sise.lazy_exports"),
    ("sise.core", "sise.targets", "sise.images", "sise.viz"),
    ("sise.runtime",),
    ("sise.methods", "sise.models", "sise.options"),
    ("sise.eval",),
    ("sise.cli", "sise.web", "sise.__main__"),  # the front ends (python -m sise)
)


def _layer(module: str) -> int:
    if module == "sise":  # the package's front door re-exports from every layer
        return len(LAYERS) - 1
    for level, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return level
    raise AssertionError(f"{module} is in no layer: add it to LAYERS")


def test_no_module_imports_a_higher_layer() -> None:
    for path in PACKAGE.rglob("*.py"):
        module = _module_name(path)
        if module == "sise":
            continue  # the package's front door re-exports from every layer
        for imported in _imports(path, top_level_only=False):
            assert _layer(imported) <= _layer(module), f"{module} imports {imported}"


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of ``graph`` as the modules along it (first = last), or None: a depth-first
    search that meets a module still on its own path has closed a loop."""
    done: set[str] = set()
    path: list[str] = []
    on_path: set[str] = set()

    def visit(module: str) -> list[str] | None:
        path.append(module)
        on_path.add(module)
        for imported in sorted(graph.get(module, ())):
            if imported == "sise":  # the front door: nothing below imports it
                continue
            if imported in on_path:
                return [*path[path.index(imported) :], imported]
            if imported not in done:
                found = visit(imported)
                if found:
                    return found
        path.pop()
        on_path.discard(module)
        done.add(module)
        return None

    for module in sorted(graph):
        if module not in done:
            found = visit(module)
            if found:
                return found
    return None


def test_no_import_cycles() -> None:
    """Every import counts, those inside functions and ``if TYPE_CHECKING:`` blocks too: an
    import deferred to run time still ties the two modules together."""
    graph = {_module_name(p): _imports(p, top_level_only=False) for p in PACKAGE.rglob("*.py")}
    for module, imported in graph.items():
        imported.discard(module)
    cycle = _find_cycle(graph)
    assert cycle is None, " -> ".join(cycle or [])


def test_the_cycle_finder_finds_cycles() -> None:
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": {"b2", "a"}, "b2": set()}) == ["a", "b", "a"]


def test_speed_has_one_door() -> None:
    """Outside ``sise.runtime`` nothing imports its modules, only the package (``Runtime``,
    ``ModelRuntime`` and the few names it exports): a method never imports a speed module."""
    for path in PACKAGE.rglob("*.py"):
        module = _module_name(path)
        if module.startswith("sise.runtime"):
            continue
        inside = {
            imported
            for imported in _imports(path, top_level_only=False)
            if imported.startswith("sise.runtime.")
        }
        assert not inside, f"{module} imports {sorted(inside)}: use sise.runtime's exports"
