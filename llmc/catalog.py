"""The catalogs that ship with llmc: planner templates (``planners/``) and tool packs (``tools/``).

Both live at the top of the source tree and are packed into the wheel under
``llmc/_catalog``; this module finds them in either place. Users' own folders work the
same way: a tool pack is any ``.py`` file of ``@llmc.tool`` functions, loaded by path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from .errors import ToolLoadError
from .tool import Tool
from .toolbox import load_tools

_HERE = Path(__file__).resolve().parent


def catalog_dir(kind: Literal["planners", "tools"]) -> Path:
    """The folder of llmc's own planners or tool packs, installed or in a source checkout."""
    for candidate in (_HERE / "_catalog" / kind, _HERE.parent / kind):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(
        f"llmc's {kind}/ folder is missing next to {_HERE}; reinstall llmc: pip install "
        "--force-reinstall . in llmc's source tree"
    )


def tool_packs() -> list[str]:
    """Names of the ready-made tool packs, e.g. ``["files", "math", "text"]``."""
    return sorted(p.stem for p in catalog_dir("tools").glob("*.py") if not p.stem.startswith("_"))


def pack_path(name_or_path: str | Path) -> Path:
    """The file of a tool pack: a ready-made pack's name (``"files"``) or a path to a .py file.

    Raises:
        ToolLoadError: neither a known pack nor an existing file.
    """
    text = str(name_or_path)
    if text.endswith(".py") or "/" in text or "\\" in text:
        return Path(text).expanduser()
    path = catalog_dir("tools") / f"{text}.py"
    if not path.is_file():
        raise ToolLoadError(
            f"no tool pack named {text!r}; ready-made packs: {', '.join(tool_packs())} "
            "(or give the path of a .py file)"
        )
    return path


def load_pack(name_or_path: str | Path) -> list[Tool]:
    """The tools of a ready-made pack (by name) or of a module file (by path)."""
    return load_tools(pack_path(name_or_path))


def planner_dir(name: str = "default") -> Path:
    """The template folder of one of llmc's planners.

    Raises:
        FileNotFoundError: no planner of that name; the message lists the ones there are.
    """
    root = catalog_dir("planners")
    path = root / name
    if not path.is_dir():
        known = ", ".join(sorted(p.name for p in root.iterdir() if p.is_dir()))
        raise FileNotFoundError(f"no planner named {name!r}; llmc has: {known}")
    return path
