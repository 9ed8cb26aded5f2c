"""llmc's modules stand on floors, and imports only go down: the map of docs/architecture.md.

The floors are read from the "Floors" table of docs/architecture.md, so the page and the code
cannot disagree. The import graph is built with :mod:`ast` from every ``import`` in llmc/:
those at module level (class bodies and ``try`` blocks included, since they run on import)
and those inside functions; ``if TYPE_CHECKING:`` imports are annotations only and are left
out. Importing ``llmc.a.b`` also runs the package ``llmc.a``, so such an import counts as one
of ``llmc.a`` too (the root package ``llmc``, which every import passes through first,
counts only when it is imported by name).

Three rules hold:

- module-level imports form no cycle (Python could not load such modules in every order);
- every import goes to the importer's floor or one below it, except through :data:`DOORS`;
- no cycle hides behind an import inside a function either, except :data:`KNOWN_CIRCLES`.
"""

from __future__ import annotations

import ast
import functools
import re
from dataclasses import dataclass
from pathlib import Path

import networkx as nx

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "llmc"
MAP = REPO / "docs" / "architecture.md"

#: The upward imports that are there by design: the pictures of a plan and of a run, which
#: ``Plan.to_svg`` / ``Trace.to_svg`` and Jupyter's ``_repr_svg_`` draw, live a floor up in
#: llmc.viz, which reads plans and traces; the import is made inside those methods.
DOORS = frozenset({("llmc.plan", "llmc.viz"), ("llmc.trace", "llmc.viz")})

#: Circles that still exist, each dodged by an import inside a function (the first module
#: imports the second late). Remove an entry once its circle is gone.
KNOWN_CIRCLES = {
    ("llmc.llm.base", "llmc.budget"): "open_stream's token counter; budget imports llm.base",
    ("llmc.tool", "llmc.grammar"): "Tool.choices resolution; grammar imports toolbox -> tool",
    ("llmc.tool", "llmc.tool_doc"): "Tool.planner_doc; tool_doc imports tool",
    ("llmc.executors", "llmc.executors.ray"): "ray imports tool, which imports executors",
    ("llmc.otel", "llmc"): "otel reads llmc.__version__; llmc imports otel",
}


@dataclass(frozen=True)
class Import:
    """One import of an llmc module by another."""

    source: str
    target: str
    line: int
    top: bool  # at module level (runs when the module is imported)

    def __str__(self) -> str:
        where = "" if self.top else " (inside a function)"
        path = PACKAGE.parent / (self.source.replace(".", "/"))
        file = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
        return f"{file.relative_to(REPO)}:{self.line}: {self.source} -> {self.target}{where}"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


@functools.cache
def floors() -> dict[str, int]:
    """Each floor entry of docs/architecture.md (a module or a package) and its number."""
    text = MAP.read_text(encoding="utf-8")
    section = text.split("\n## Floors\n", 1)[1].split("\n## ", 1)[0]
    found: dict[str, int] = {}
    for row in re.finditer(r"^\|\s*(\d+)\s*\|[^|]*\|([^|]*)\|", section, re.MULTILINE):
        for name in re.findall(r"`(llmc[\w.]*)`", row.group(2)):
            found[name] = int(row.group(1))
    assert found, "docs/architecture.md has no Floors table"
    return found


def floor_of(module: str, table: dict[str, int]) -> int | None:
    """The floor of the most specific entry that holds ``module`` (``llmc`` holds only itself)."""
    holders = [e for e in table if e == module or (e != "llmc" and module.startswith(e + "."))]
    return table[max(holders, key=len)] if holders else None


@functools.cache
def imports() -> tuple[Import, ...]:
    """Every import of an llmc module by another, TYPE_CHECKING blocks left out."""
    return tuple(i for source, path in MODULES.items() for i in imports_of(source, path))


def imports_of(source: str, path: Path) -> list[Import]:
    """The imports of llmc modules in one module's source."""
    package = source if path.name == "__init__.py" else source.rpartition(".")[0]
    found: list[Import] = []

    def targets(node: ast.Import | ast.ImportFrom) -> list[str]:
        if isinstance(node, ast.Import):
            return [alias.name for alias in node.names]
        base = node.module or ""
        if node.level:
            parts = package.split(".")[: len(package.split(".")) - node.level + 1]
            base = ".".join([*parts, base] if base else parts)
        return [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]

    def visit(nodes: list[ast.stmt], top: bool) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                visit(node.orelse, top)
                continue
            if isinstance(node, ast.Import | ast.ImportFrom):
                for target in targets(node):
                    for module in with_packages(target, source):
                        found.append(Import(source, module, node.lineno, top))
            inner = top and not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.stmt):
                    visit([child], inner)
                elif isinstance(child, ast.ExceptHandler):
                    visit(child.body, inner)

    visit(ast.parse(path.read_text(encoding="utf-8")).body, True)
    return found


def with_packages(target: str, source: str) -> list[str]:
    """``target`` and the packages its import runs first (not the root, not the importer's)."""
    parts = target.split(".")
    chain = [".".join(parts[:i]) for i in range(2, len(parts))] + [target]
    return [
        m
        for m in chain
        if m in MODULES and m != source and (m == target or not source.startswith(m + "."))
    ]


def graph(edges: list[Import] | tuple[Import, ...]) -> nx.DiGraph[str]:
    found: nx.DiGraph[str] = nx.DiGraph()
    for edge in edges:
        found.add_edge(edge.source, edge.target, imports=edge)
    return found


def cycle_text(found: nx.DiGraph[str]) -> str | None:
    try:
        cycle = nx.find_cycle(found)
    except nx.NetworkXNoCycle:
        return None
    return "\n".join(str(found.edges[a, b]["imports"]) for a, b in cycle)


def test_every_module_stands_on_a_floor() -> None:
    table = floors()
    homeless = [m for m in MODULES if floor_of(m, table) is None]
    assert not homeless, (
        f"{homeless} are on no floor: add each to the row of the Floors table in "
        "docs/architecture.md whose modules it imports at most"
    )
    stale = [entry for entry in table if entry not in MODULES]
    assert not stale, f"the Floors table names modules that do not exist: {stale}"


def test_module_level_imports_form_no_cycle() -> None:
    cycle = cycle_text(graph([i for i in imports() if i.top]))
    assert cycle is None, f"module-level imports go round in a circle:\n{cycle}"


def test_imports_only_go_down_the_floors() -> None:
    table = floors()
    upward = [
        str(i)
        for i in imports()
        if (floor_of(i.target, table) or 0) > (floor_of(i.source, table) or 0)
        and (i.source, i.target) not in DOORS | KNOWN_CIRCLES.keys()
    ]
    assert not upward, (
        "these imports go up a floor (docs/architecture.md, Floors): move the name they "
        "need down, or the importer up\n" + "\n".join(upward)
    )


def test_no_circle_hides_behind_a_late_import() -> None:
    allowed = DOORS | KNOWN_CIRCLES.keys()
    cycle = cycle_text(graph([i for i in imports() if (i.source, i.target) not in allowed]))
    assert cycle is None, (
        "imports go round in a circle (counting those inside functions); give the names "
        f"both sides need a module of their own on a lower floor:\n{cycle}"
    )


def test_the_doors_and_known_circles_are_still_there() -> None:
    edges = {(i.source, i.target) for i in imports() if not i.top}
    gone = sorted((DOORS | KNOWN_CIRCLES.keys()) - edges)
    assert not gone, f"no longer imported inside a function, remove from this file: {gone}"
    table = floors()
    level = {m: floor_of(m, table) or 0 for door in DOORS for m in door}
    level_doors = [(a, b) for a, b in DOORS if level[b] <= level[a]]
    assert not level_doors, f"these doors no longer go up a floor, remove them: {level_doors}"
