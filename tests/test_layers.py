"""The house reads top-down: CLI (winnow/) → flows/ → tasks/recipes → curation and
execution → pipeline → gates → llm, store, sandbox → core. Each building block imports
only what stands below it, no recipe imports another, tasks/ imports nothing from
winnow/ or flows/, and no modules import each other in a circle. Read from the source
(every import, function-level ones included), so a new arrow that runs back up fails
here before it confuses the next engineer."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Floor of each part of tasks/: a module may import a part on a lower floor only.
FLOORS = {
    "core": 0,
    "llm": 1,
    "store": 1,
    "sandbox": 1,
    "gates": 2,
    "pipeline": 3,
    "curation": 4,
    "execution": 4,
    "recipes": 5,
}


def modules() -> dict[str, Path]:
    found = {}
    for top in ("tasks", "flows", "winnow"):
        for path in (ROOT / top).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def imports(path: Path, known: dict[str, Path]) -> set[str]:
    """The project modules ``path`` imports (a name imported from a package counts as
    the submodule when there is one)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name in known)
        elif isinstance(node, ast.ImportFrom) and node.module in known:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                out.add(sub if sub in known else node.module)
    return out


def part(module: str) -> str:
    """The part of tasks/ a module belongs to (``recipes.<name>`` for a recipe)."""
    pieces = module.split(".")
    if pieces[0] != "tasks" or len(pieces) < 2:
        return pieces[0]
    return "recipes." + pieces[2] if pieces[1] == "recipes" and len(pieces) > 2 else pieces[1]


def floor(p: str) -> int:
    return FLOORS[p.split(".")[0]]


GRAPH = {name: imports(path, modules()) for name, path in modules().items()}


def test_every_part_of_tasks_is_on_a_floor() -> None:
    parts = {part(m) for m in GRAPH if m.startswith("tasks.") and m.count(".") >= 1}
    assert {p.split(".")[0] for p in parts} <= set(FLOORS), parts


def test_building_blocks_import_only_what_stands_below_them() -> None:
    wrong = []
    for module, targets in GRAPH.items():
        if not module.startswith("tasks."):
            continue
        mine = part(module)
        for target in targets:
            theirs = part(target)
            if theirs == mine:
                continue
            if theirs in ("winnow", "flows") or floor(theirs) >= floor(mine):
                wrong.append(f"{module} -> {target}")
    assert wrong == []


def test_flows_stand_on_tasks_only() -> None:
    wrong = [
        f"{m} -> {t}"
        for m, targets in GRAPH.items()
        if m.startswith("flows")
        for t in targets
        if t.startswith("winnow")
    ]
    assert wrong == []


def test_no_modules_import_each_other_in_a_circle() -> None:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in GRAPH.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for module in sorted(GRAPH):
        if module not in index:
            visit(module)
    assert circles == []
