"""The layers of DESIGN.md ("Layout") and a checker of the imports between them.

A module's layer is the longest prefix of its dotted name listed in :data:`LAYERS`; each
layer may import itself and the layers named for it. Imports inside functions count,
and relative imports are resolved, so no import escapes the check.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

OURS = ("pacs", "storage", "webviewer")
# layer -> the layers it may import (besides itself)
LAYERS: dict[str, frozenset[str]] = {
    "storage": frozenset(),
    "pacs.core": frozenset({"storage"}),
    "pacs.ops": frozenset({"pacs.core", "storage"}),
    "pacs.dicom": frozenset({"pacs.ops", "pacs.core", "storage"}),
    "webviewer": frozenset({"pacs.ops", "pacs.core", "storage"}),
    "pacs.cli": frozenset({"pacs.serve", "pacs.dicom", "webviewer", "pacs.ops", "pacs.core", "storage"}),
    "pacs.serve": frozenset({"pacs.dicom", "webviewer", "pacs.ops", "pacs.core", "storage"}),
}
# The package's own files: ``python -m pacs`` runs the command line.
ROOT_MODULES = {"pacs": frozenset(), "pacs.__main__": frozenset({"pacs.cli"})}


@dataclass(frozen=True)
class Module:
    """One of our modules and the modules of ours it imports."""

    name: str
    path: Path
    imports: frozenset[str]


def module_name(root: Path, path: Path) -> str:
    """The dotted name of the module at `path` under `root`."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imported(node: ast.AST, name: str, is_package: bool) -> Iterator[str]:
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom):
        if node.level:
            base = name.split(".") if is_package else name.split(".")[:-1]
            base = base[: len(base) - (node.level - 1)]
            module = ".".join([*base, node.module] if node.module else base)
        else:
            module = node.module or ""
        yield module
        yield from (f"{module}.{alias.name}" for alias in node.names)


def modules(root: Path) -> list[Module]:
    """Every module of ours under `root`, with what it imports of ours (names as written)."""
    found = []
    for package in OURS:
        for path in sorted((root / package).rglob("*.py")):
            name = module_name(root, path)
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            names = {
                imported
                for node in ast.walk(tree)
                for imported in _imported(node, name, path.name == "__init__.py")
                if imported.split(".")[0] in OURS
            }
            found.append(Module(name, path, frozenset(names)))
    return found


def layer_of(name: str) -> str | None:
    """The layer that holds module `name`, or None if it belongs to none."""
    candidates = [layer for layer in LAYERS if name == layer or name.startswith(layer + ".")]
    return max(candidates, key=len, default=None)


def _resolve(name: str, known: set[str]) -> str | None:
    """The module `name` refers to (``pacs.core.audit.AuditLog`` -> ``pacs.core.audit``)."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def offences(root: Path) -> list[str]:
    """Every import that crosses the layers against DESIGN.md, and every module outside a layer."""
    found = modules(root)
    known = {module.name for module in found}
    problems = []
    for module in found:
        layer = layer_of(module.name)
        if layer is None and module.name not in ROOT_MODULES:
            problems.append(f"{module.name} is in no layer of DESIGN.md")
            continue
        allowed = ROOT_MODULES.get(module.name, LAYERS.get(layer or "", frozenset()))
        targets = {t for name in module.imports if (t := _resolve(name, known)) and t not in ROOT_MODULES}
        # ``from pacs.ops import selfcheck`` names the package and the module: report the module.
        for target in sorted(t for t in targets if not any(o.startswith(t + ".") for o in targets)):
            target_layer = layer_of(target)
            if target_layer != layer and target_layer not in allowed:
                problems.append(f"{module.name} ({layer}) imports {target} ({target_layer})")
    return sorted(set(problems))


def cycles(root: Path) -> list[list[str]]:
    """The import cycles among our modules (strongly connected components of two or more)."""
    found = modules(root)
    known = {module.name for module in found}
    graph = {
        module.name: {t for name in module.imports if (t := _resolve(name, known)) and t != module.name}
        for module in found
    }
    # A package's import of its own submodules (``from pacs.cli import main``) is how packages
    # are built, not a cycle between them.
    graph = {
        name: {t for t in targets if not t.startswith(name + ".") and not name.startswith(t + ".")}
        for name, targets in graph.items()
    }
    return _strongly_connected(graph)


def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iteratively; components of two or more nodes, sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    for start in sorted(graph):
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
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(sorted(component))
    return sorted(components)
