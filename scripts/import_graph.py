"""Print the import graph of the house: wing → wing arrows (with how many module imports make
each), the largest import cycle between modules, and lines of code per wing.

    .venv/bin/python scripts/import_graph.py

The layers themselves are enforced by import-linter (``scripts/lint``, contracts in
pyproject.toml); this is the picture for a reader.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("gateway", "schema", "authz", "adapters")


def wing_of(module: str) -> str:
    parts = module.split(".")
    if parts[0] == "gateway" and len(parts) > 1:
        candidate = ROOT.joinpath(*parts[:2])
        if candidate.is_dir():
            return ".".join(parts[:2])
    return parts[0]


def strongly_connected(graph: grimp.ImportGraph, modules: set[str]) -> list[set[str]]:
    """Tarjan's algorithm over direct imports (iterative: the graph is a few hundred nodes)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []
    counter = 0
    for start in sorted(modules):
        if start in index:
            continue
        work = [(start, iter(sorted(graph.find_modules_directly_imported_by(start) & modules)))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    imported = graph.find_modules_directly_imported_by(child) & modules
                    work.append((child, iter(sorted(imported))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.add(member)
                        if member == node:
                            break
                    components.append(component)
    return components


def main() -> int:
    sys.path.insert(0, str(ROOT))
    graph = grimp.build_graph(*PACKAGES)
    modules = {m for m in graph.modules if m.split(".")[0] in PACKAGES}
    arrows: Counter[tuple[str, str]] = Counter()
    for importer in modules:
        for imported in graph.find_modules_directly_imported_by(importer) & modules:
            source, target = wing_of(importer), wing_of(imported)
            if source != target:
                arrows[(source, target)] += 1
    print("wing → wing (module imports)")
    for (source, target), count in sorted(arrows.items()):
        print(f"  {source:18} → {target:18} {count:4}")
    largest = max(strongly_connected(graph, modules), key=len)
    wings = sorted({wing_of(m) for m in largest})
    print(f"\nlargest import cycle: {len(largest)} modules across {len(wings)} wings")
    if len(largest) > 1:
        print("  " + ", ".join(sorted(largest)))
    print("\nlines per wing")
    lines: Counter[str] = Counter()
    for package in PACKAGES:
        for path in ROOT.joinpath(package).rglob("*.py"):
            module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            lines[wing_of(module)] += len(path.read_text(encoding="utf-8").splitlines())
    for wing, count in sorted(lines.items(), key=lambda item: -item[1]):
        print(f"  {wing:18} {count:6}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
