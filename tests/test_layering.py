"""The package's layers (docs/architecture.md): imports point one way, with no cycle between
modules or between subpackages. Imports inside functions count too, so a lazy import cannot hide
a cycle. Static (``ast``): nothing is imported to check it."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import multi_agent_pruning

PACKAGE = Path(multi_agent_pruning.__file__).parent
ROOT = "multi_agent_pruning"

# Lowest first. A module may import its own layer and the layers below it, never above. Keep in
# step with the table in docs/architecture.md.
LAYERS: list[set[str]] = [
    {"exceptions"},
    {"utils", "compat"},
    {"config", "models", "data", "results", "stats"},
    {"core"},
    {"methods", "agents"},
    {"actors", "search", "reports", "tools", "testing"},
    {"orchestrator"},
    {"baselines", "validation"},
    {"cli_registry", "cli_commands", "cli", "__main__", "<package>"},
]
LAYER_OF = {name: index for index, names in enumerate(LAYERS) for name in names}


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = [ROOT, *path.relative_to(PACKAGE).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(module: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules that ``module`` imports, anywhere in the file."""
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [target] + [f"{target}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        found |= {name for name in names if name in known and name != module}
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {module: _imports(module, path, set(modules)) for module, path in modules.items()}


def _subpackage(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "<package>"


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                item = stack.pop()
                on_stack.discard(item)
                component.append(item)
                if item == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_cycle_between_modules():
    assert _cycles(_graph()) == []


def test_no_cycle_between_subpackages():
    packages: dict[str, set[str]] = defaultdict(set)
    for module, targets in _graph().items():
        packages[_subpackage(module)] |= {_subpackage(t) for t in targets} - {_subpackage(module)}
    assert _cycles(packages) == []


def test_every_subpackage_has_a_layer():
    assert sorted({_subpackage(m) for m in _modules()} - set(LAYER_OF)) == []


def test_imports_point_down_the_layers():
    upward = sorted(f"{module} -> {target}" for module, targets in _graph().items() for target in targets
                    if LAYER_OF[_subpackage(target)] > LAYER_OF[_subpackage(module)])
    assert upward == []


def test_the_check_sees_imports_inside_functions(tmp_path):
    """A cycle hidden in a function body is found (the check cannot pass vacuously)."""
    (tmp_path / "a.py").write_text("def f():\n    from multi_agent_pruning.b import g\n")
    (tmp_path / "b.py").write_text("from multi_agent_pruning.a import f\n")
    known = {f"{ROOT}.a", f"{ROOT}.b"}
    graph = {f"{ROOT}.a": _imports(f"{ROOT}.a", tmp_path / "a.py", known),
             f"{ROOT}.b": _imports(f"{ROOT}.b", tmp_path / "b.py", known)}
    assert _cycles(graph) == [[f"{ROOT}.a", f"{ROOT}.b"]]
