"""The package's layers point one way: data and utilities → components (generation, evaluation, metrics,
interpolation) → methods → applications (world, explorer, publishing) → the command line.

The test reads every module's imports (at module level and inside functions) from the source, so a
lazy import that points the wrong way fails it too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOP_LEVEL = ("cf_hf", "dataset_builder", "hub_scripts", "model_card")

# package -> the packages it may import (its own always allowed).
ALLOWED = {
    "cf_hf.utils": set(),
    "cf_hf.concepts": {"cf_hf.utils"},
    "cf_hf.metrics": {"cf_hf.utils"},
    "cf_hf.interpolation": {"cf_hf.utils"},
    "cf_hf.generation": {"cf_hf.utils", "cf_hf.concepts"},
    "cf_hf.evaluation": {"cf_hf.utils", "cf_hf.concepts", "cf_hf.metrics", "cf_hf.interpolation"},
    "dataset_builder": {"cf_hf", "cf_hf.utils", "cf_hf.concepts", "cf_hf.generation"},
    "model_card": {"cf_hf.utils", "cf_hf.evaluation", "cf_hf.interpolation", "cf_hf.metrics"},
    "cf_hf.methods": {"cf_hf.utils", "cf_hf.concepts", "cf_hf.metrics", "cf_hf.interpolation", "cf_hf.evaluation"},
    "cf_hf.world": {"cf_hf.utils", "cf_hf.concepts", "cf_hf.metrics", "cf_hf.interpolation", "cf_hf.evaluation",
                    "cf_hf.generation", "cf_hf.methods", "dataset_builder", "model_card"},
    "cf_hf.explorer": {"cf_hf.utils", "cf_hf.concepts", "cf_hf.metrics", "cf_hf.evaluation", "cf_hf.interpolation",
                       "cf_hf.world"},
    "hub_scripts": {"cf_hf", "cf_hf.utils", "cf_hf.metrics", "cf_hf.evaluation", "cf_hf.interpolation",
                    "cf_hf.explorer", "dataset_builder", "model_card"},
}
# `cf_hf/__init__.py` names its public API by strings (lazy); `cf_hf.cli` may import every layer.
UNCHECKED = {"cf_hf", "cf_hf.cli"}


def _modules() -> dict[str, Path]:
    modules = {}
    for top in TOP_LEVEL:
        for path in sorted((ROOT / top).rglob("*.py")):
            if "space_template" in path.parts or "modules" in path.relative_to(ROOT).parts[:3] and path.parent.name != "modules":
                continue  # copies shipped to the Hub (Space, evaluate modules) import nothing of cf_hf's
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            modules[name] = path
    return modules


MODULES = _modules()


def _package(module: str) -> str:
    """The layer package a module belongs to (`cf_hf.methods.clip_clip.fit` -> `cf_hf.methods`)."""
    parts = module.split(".")
    if parts[0] != "cf_hf":
        return parts[0]
    return ".".join(parts[:2]) if len(parts) > 1 else "cf_hf"


def _imports(module: str, path: Path, top_level_only: bool = False) -> set[str]:
    """The project modules `module` imports (resolving relative imports)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else ast.walk(tree)
    is_package = path.name == "__init__.py"
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor if is_package else anchor[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]
        else:
            continue
        found |= {name for name in names if name.split(".")[0] in TOP_LEVEL and name in MODULES}
    return found


def test_every_import_points_down_the_layers():
    wrong = []
    for module, path in MODULES.items():
        package = _package(module)
        if package in UNCHECKED:
            continue
        assert package in ALLOWED, f"{module}: package {package} has no place in the layers (add it to ALLOWED)"
        for imported in _imports(module, path):
            target = _package(imported)
            if target != package and target not in ALLOWED[package]:
                wrong.append(f"{module} imports {imported}")
    assert not wrong, "imports against the layers:\n" + "\n".join(sorted(wrong))


def test_only_the_command_line_imports_the_command_line():
    importers = [module for module, path in MODULES.items() if not module.startswith("cf_hf.cli")
                 and any(name.startswith("cf_hf.cli") for name in _imports(module, path))]
    assert not importers, f"library modules importing cf_hf.cli: {importers}"


def test_no_import_cycle():
    graph = {module: _imports(module, path) - {module} for module, path in MODULES.items()}
    # A package importing its own submodules is how a package exports; a cycle through it is not one.
    graph = {module: {name for name in targets if not module.startswith(name + ".")} for module, targets in graph.items()}
    state, stack, cycles = {}, [], []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                cycles.append(stack[stack.index(target):] + [target])
            elif target not in state:
                visit(target)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(cycle) for cycle in cycles)


@pytest.mark.parametrize("package", ["cf_hf.generation"])
def test_generation_imports_neither_the_world_nor_the_builder(package):
    reached = {name for module, path in MODULES.items() if module.startswith(package) for name in _imports(module, path)}
    assert not {name for name in reached if name.startswith(("cf_hf.world", "dataset_builder", "cf_hf.evaluation"))}
