"""The architecture as DESIGN.md and CONTRIBUTING.md state it, checked on the source: which
package may import which, the sub-packages of `dissector` in data-flow order, no import cycle,
no private name imported across modules, no module over 600 lines."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("layers", "keys", "dissector")
#: dissector's sub-packages in data-flow order: each may import only those before it.
FLOW = ("stages", "sources", "framing", "analysis", "output", "live", "cli")
MAX_LINES = 600


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path
    return out


MODULES = _modules()


def _imports(name: str, path: Path) -> Iterator[tuple[str, list[str]]]:
    """(module imported, names taken from it) for every import of a module, lazy ones too."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, []
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            names = [a.name for a in node.names]
            yield base, names
            for n in names:  # `from pkg import module`
                if f"{base}.{n}" in MODULES:
                    yield f"{base}.{n}", []


def _project(target: str) -> str | None:
    """The project module an import names (the longest known prefix), else None."""
    parts = target.split(".")
    for i in range(len(parts), 0, -1):
        candidate = ".".join(parts[:i])
        if candidate in MODULES:
            return candidate
    return None


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        deps = graph.setdefault(name, set())
        for target, _ in _imports(name, path):
            found = _project(target)
            if found is not None and found != name and not name.startswith(found + "."):
                deps.add(found)
    return graph


def test_layers_and_keys_do_not_import_upwards() -> None:
    bad = [(m, d) for m, deps in _graph().items() for d in deps
           if (m.startswith("layers") and d.split(".")[0] in ("keys", "dissector"))
           or (m.startswith("keys") and d.startswith("dissector"))]
    assert bad == []


def test_dissector_subpackages_import_only_earlier_ones() -> None:
    def stage(module: str) -> int | None:
        parts = module.split(".")
        return FLOW.index(parts[1]) if len(parts) > 1 and parts[1] in FLOW else None

    bad = []
    for m, deps in _graph().items():
        if stage(m) is None:
            continue
        for d in deps:
            if d.startswith("dissector.") and stage(d) is not None and stage(d) > stage(m):
                bad.append((m, d))
    assert bad == []


def test_no_import_cycle() -> None:
    graph = _graph()
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                cycles.append([*path[path.index(dep):], dep] if dep in path else [node, dep])
            elif dep not in state:
                visit(dep, [*path, dep])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert cycles == []


def test_no_private_name_imported_across_modules() -> None:
    bad = []
    for name, path in MODULES.items():
        for target, names in _imports(name, path):
            if _project(target) is None:
                continue
            bad += [(name, target, n) for n in names if n.startswith("_") and n != "__version__"]
    assert bad == []


def test_no_module_over_600_lines() -> None:
    sizes = {name: len(path.read_text().splitlines()) for name, path in MODULES.items()}
    assert {n: s for n, s in sizes.items() if s > MAX_LINES} == {}
