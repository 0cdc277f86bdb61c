"""The package's structure: layers core ← methods ← evaluation ← CLI, no import cycles, and the
benchmark's old module still answering with a deprecation warning."""

from __future__ import annotations

import ast
import importlib
import warnings
from pathlib import Path

import pytest

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


def _layer(module: str) -> int:
    if module in ("sise.cli", "sise.app", "sise.many_images"):  # the front ends
        return 3
    if module.startswith("sise.eval"):
        return 2
    if module.startswith("sise.methods") or module == "sise.options":
        return 1
    return 0


def test_no_module_imports_a_higher_layer() -> None:
    for path in PACKAGE.rglob("*.py"):
        module = _module_name(path)
        if module == "sise":
            continue  # the package's front door re-exports from every layer
        for imported in _imports(path, top_level_only=False):
            assert _layer(imported) <= _layer(module), f"{module} imports {imported}"


def test_no_import_cycles_at_module_level() -> None:
    graph = {_module_name(p): _imports(p, top_level_only=True) for p in PACKAGE.rglob("*.py")}

    def visit(module: str, trail: tuple[str, ...]) -> None:
        for imported in graph.get(module, ()):
            if imported == module or imported == "sise":
                continue
            assert imported not in trail, " -> ".join([*trail, imported])
            visit(imported, (*trail, imported))

    for module in graph:
        visit(module, (module,))


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("run_benchmark", "sise.eval.running.run_benchmark"),
        ("BenchmarkResult", "sise.eval.running.BenchmarkResult"),
        ("evaluate_pair", "sise.eval.running.evaluate_pair"),
        ("METRICS", "sise.eval.scoring.METRICS"),
        ("ALL_METRICS", "sise.eval.scoring.ALL_METRICS"),
        ("format_table", "sise.eval.reporting.format_table"),
        ("load_dataset", "sise.eval.datasets.load_dataset"),
        ("select_pairs", "sise.eval.datasets.select_pairs"),
        ("parse_method_options", "sise.options.parse_method_options"),
    ],
)
def test_old_names_still_import_with_a_warning(old: str, new: str) -> None:
    benchmark = importlib.import_module("sise.eval.benchmark")
    module, _, name = new.rpartition(".")
    with pytest.warns(DeprecationWarning, match=f"use {new}"):
        assert getattr(benchmark, old) is getattr(importlib.import_module(module), name)


def test_old_config_keywords_still_work() -> None:
    from sise.eval import benchmark
    from sise.eval.running import BenchmarkConfig
    from sise.eval.scoring import MetricSettings

    with pytest.warns(DeprecationWarning, match="sise.eval.running.BenchmarkConfig"):
        config = benchmark.BenchmarkConfig(dataset="synthetic", model="m", steps=8)
    assert isinstance(config, BenchmarkConfig)
    assert config.metric_settings == MetricSettings(steps=8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        importlib.import_module("sise.cli").build_parser()  # the CLI uses the new homes
