"""Write docs/reference.md: every public name of llmc, where it lives, and its first line.

Public is what the namespaces in ``PLACES`` list in ``__all__`` (see "What is public" in
docs/architecture.md); each name has exactly one of them as its home. Run it after changing
a public name (``python docs/reference.py``); tests/test_public_api.py fails while the page
is stale.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import sys
from pathlib import Path
from typing import Any

#: The public namespaces, in the order the page shows them. Every other module of llmc is
#: internal: its names may change without notice.
PLACES = (
    "llmc",
    "llmc.budget",
    "llmc.cache",
    "llmc.llm",
    "llmc.executors",
    "llmc.grammar",
    "llmc.testing",
    "llmc.viz",
    "llmc.mcp",
    "llmc.otel",
    "llmc.observe",
    "llmc.typed",
)

PAGE = Path(__file__).with_name("reference.md")


def public_names(place: str) -> list[tuple[str, Any]]:
    """The names a namespace exports, with their objects, in ``__all__``'s order."""
    module = importlib.import_module(place)
    return [(name, getattr(module, name)) for name in module.__all__]


def summary(value: Any, place: str = "", name: str = "") -> str:
    """The first paragraph of an object's own docstring, or of a constant's ``#:`` comment
    (``""`` when it has none)."""
    if not (inspect.isclass(value) or inspect.isroutine(value) or inspect.ismodule(value)):
        return constant_doc(place, name) if place else ""
    doc = value.__dict__.get("__doc__") if inspect.isclass(value) else value.__doc__
    if not doc or (inspect.isclass(value) and doc.startswith(f"{value.__name__}(")):
        return ""  # none, or the signature a dataclass writes for itself
    return inspect.cleandoc(doc).split("\n\n")[0].replace("\n", " ")


def constant_doc(place: str, name: str) -> str:
    """The ``#:`` comment above ``name``'s assignment, found by following the ``from ...
    import name`` lines from ``place`` to the module that assigns it."""
    spec = importlib.util.find_spec(place)
    if spec is None or spec.origin is None:
        return ""
    source = Path(spec.origin).read_text()
    lines = source.splitlines()
    for node in ast.parse(source).body:
        targets = [node.target] if isinstance(node, ast.AnnAssign) else getattr(node, "targets", [])
        if any(isinstance(t, ast.Name) and t.id == name for t in targets):
            comment: list[str] = []
            row = node.lineno - 2
            while row >= 0 and lines[row].lstrip().startswith("#:"):
                comment.insert(0, lines[row].lstrip()[2:].strip())
                row -= 1
            return " ".join(comment)
        if isinstance(node, ast.ImportFrom) and any(a.name == name for a in node.names):
            package = place if spec.submodule_search_locations else place.rpartition(".")[0]
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(filter(None, [base, node.module or ""]))
            return constant_doc(module, name)
    return ""


def kind(value: Any) -> str:
    if inspect.isclass(value):
        return "exception" if issubclass(value, BaseException) else "class"
    if inspect.isroutine(value):
        return "function"
    return "module" if inspect.ismodule(value) else "constant"


def page() -> str:
    lines = [
        "# Reference",
        "",
        "Every public name of llmc, in the one namespace it is exported from, with the first",
        "line of its documentation (`help(name)` has the rest). Written by",
        "`python docs/reference.py`; what is public, and why, is in",
        "[the architecture page](architecture.md#what-is-public).",
    ]
    for place in PLACES:
        module = importlib.import_module(place)
        lines += ["", f"## `{place}`", "", summary(module), "", "| name | kind | what |"]
        lines.append("| --- | --- | --- |")
        for name, value in public_names(place):
            what = summary(value, place, name) or f"`{_short_repr(value)}`"
            what = what.replace("|", "\\|")
            lines.append(f"| `{name}` | {kind(value)} | {what} |")
    return "\n".join(lines) + "\n"


def _short_repr(value: Any) -> str:
    text = repr(value).replace("`", "'")
    return text if len(text) <= 60 else text[:57] + "..."


if __name__ == "__main__":
    PAGE.write_text(page())
    print(f"wrote {PAGE} ({sum(len(public_names(p)) for p in PLACES)} names)", file=sys.stderr)
