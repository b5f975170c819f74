"""The package's rooms and the arrows between them (docs/architecture.md), read from the source.

Every import counts, including those inside functions and under TYPE_CHECKING: a lazy import
that points up is still an arrow up, and it is how cycles creep back in.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "snapsource"

# each room's floor: a module may import its own room and rooms on lower floors, never a room on
# its own floor or above (siblings stay apart: search and ingest, store and vision)
FLOORS = {
    "arrays": 0,
    "config": 0,
    "errors": 0,
    "jsontext": 0,
    "offer": 0,
    "metrics": 0,
    "__init__": 0,
    "client": 1,
    "store": 1,
    "vision": 1,
    "accounts": 2,
    "resources": 3,
    "search": 4,
    "ingest": 4,
    "upstream": 5,
    "api": 6,
    "tools": 7,
    "cli": 8,
    "__main__": 9,
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports() -> dict[str, set[str]]:
    """Each module of the package -> the modules of the package it imports."""
    modules = {module_name(p): p for p in SRC.rglob("*.py")}
    found: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    mod = ".".join([*base, node.module] if node.module else base)
                else:
                    mod = node.module or ""
                # `from package import module` imports the module
                targets |= {f"{mod}.{a.name}" if f"{mod}.{a.name}" in modules else mod for a in node.names}
        # importing a.b.c runs a/__init__ and a/b/__init__ first (but the importer's own packages
        # are already running)
        parents = {t.rsplit(".", n)[0] for t in targets for n in range(1, t.count("."))}
        targets |= {p for p in parents if not (name == p or name.startswith(p + "."))}
        found[name] = {t for t in targets if t in modules and t != name}
    return found


def room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_every_room_has_a_floor():
    assert {room(m) for m in imports()} <= set(FLOORS), "a new room: give it a floor here and in docs/architecture.md"


def test_no_import_cycles():
    graph = imports()
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    path: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                cycles.append(path[path.index(target) :] + [target])
            elif target not in state:
                visit(target)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_arrows_only_point_down():
    upward = sorted(
        f"{source} -> {target}"
        for source, targets in imports().items()
        for target in targets
        if room(source) != room(target) and FLOORS[room(target)] >= FLOORS[room(source)]
    )
    assert not upward, "imports that point up or sideways: " + ", ".join(upward)


def test_sql_stays_in_the_store():
    """Only store/ talks to a database: everything else asks it by method."""
    words = ("SELECT ", "INSERT INTO", "UPDATE ", "DELETE FROM", "CREATE TABLE", "ALTER TABLE")
    outside = sorted(
        str(path.relative_to(SRC))
        for path in SRC.rglob("*.py")
        if path.relative_to(SRC).parts[0] != "store" and any(w in path.read_text() for w in words)
    )
    assert not outside, f"SQL outside store/: {outside}"
