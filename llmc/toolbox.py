"""Toolbox: the tools one run may call, by name, and loading tools from module files."""

from __future__ import annotations

import difflib
import hashlib
import importlib.util
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Union

from .errors import DuplicateToolError, ToolLoadError, UnknownToolError
from .tool import Tool, tool

ToolLike = Tool | Callable[..., Any]
#: Tools as users give them: a Toolbox, or any iterable of tools and plain functions.
Tools = Union["Toolbox", Iterable[ToolLike]]


class Toolbox(Mapping[str, Tool]):
    """An ordered name -> :class:`Tool` mapping with helpful errors.

    Plain functions are turned into tools with default options. Looking up an unknown
    name raises :class:`UnknownToolError` listing the known names and the closest match.
    """

    def __init__(self, tools: Tools | None = None) -> None:
        self._tools: dict[str, Tool] = {}
        for item in tools.values() if isinstance(tools, Toolbox) else tools or ():
            self.add(item)

    @classmethod
    def of(cls, tools: Tools | None) -> Toolbox:
        """Return ``tools`` if it already is a Toolbox, else a new Toolbox of them."""
        return tools if isinstance(tools, Toolbox) else cls(tools)

    def add(self, item: ToolLike) -> Tool:
        """Add a tool (or a function, wrapped with default options) and return it.

        Raises:
            DuplicateToolError: another tool already has this name.
        """
        new = item if isinstance(item, Tool) else tool(item)
        old = self._tools.get(new.name)
        if old is not None and old is not new:
            raise DuplicateToolError(
                f"two tools are named {new.name!r} ({old.fn.__module__}.{old.fn.__qualname__} and "
                f"{new.fn.__module__}.{new.fn.__qualname__}); give one another name with "
                "@llmc.tool(name=...)"
            )
        self._tools[new.name] = new
        return new

    def __getitem__(self, name: str) -> Tool:
        try:
            return self._tools[name]
        except KeyError:
            raise UnknownToolError(self.unknown_message(name)) from None

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def unknown_message(self, name: str) -> str:
        """Explain that ``name`` is not a tool here: the closest match and the known names."""
        known = ", ".join(self._tools) or "none"
        close = difflib.get_close_matches(name, self._tools, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return f"unknown tool {name!r}{hint} (known tools: {known})"

    def __iter__(self) -> Iterator[str]:
        return iter(self._tools)

    def __len__(self) -> int:
        return len(self._tools)

    def __repr__(self) -> str:
        return f"Toolbox({', '.join(self._tools)})"

    def signatures(self) -> str:
        """Every tool's one-line signature, one per line (for planner prompts)."""
        return "\n".join(t.signature_line() for t in self._tools.values())

    @classmethod
    def from_path(cls, *paths: str | Path) -> Toolbox:
        """A Toolbox of every tool defined in the given module files."""
        box = cls()
        for path in paths:
            for item in load_tools(path):
                box.add(item)
        return box


def load_tools(path: str | Path) -> list[Tool]:
    """Import a Python file by path and return the tools it defines, in definition order.

    This is how llmc loads its ready-made packs (``tools/``) and users' own tool folders:
    the file is imported under a private module name, so it never collides with other imports.

    Raises:
        ToolLoadError: the file is missing, is not Python, fails to import, or defines no tool.
    """
    file = Path(path).expanduser().resolve()
    if not file.is_file():
        raise ToolLoadError(f"no tool module at {file}: give the path of a .py file")
    if file.suffix != ".py":
        raise ToolLoadError(f"{file} is not a Python file (.py)")
    digest = hashlib.sha256(str(file).encode()).hexdigest()[:12]
    module_name = f"llmc_toolpack_{file.stem}_{digest}"
    spec = importlib.util.spec_from_file_location(module_name, file)
    if spec is None or spec.loader is None:
        raise ToolLoadError(f"cannot import {file}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[module_name]
        raise ToolLoadError(f"importing {file} failed: {type(exc).__name__}: {exc}") from exc
    found = [value for value in vars(module).values() if isinstance(value, Tool)]
    if not found:
        raise ToolLoadError(f"{file} defines no tools; decorate functions with @llmc.tool")
    return found
