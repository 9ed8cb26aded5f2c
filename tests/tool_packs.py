"""The tool packs of tools/ imported the way their tests need them: from the file, under a
fresh module name each time, so each copy has its own state (tools/ is no package)."""

from __future__ import annotations

import importlib.util
import sys
import uuid
from pathlib import Path
from types import ModuleType

TOOLS = Path(__file__).resolve().parents[1] / "tools"


def pack_path(name: str) -> Path:
    """The file of the pack ``name``: ``pack_path("math")`` is tools/math.py."""
    return TOOLS / f"{name}.py"


def import_pack(name: str, *, register: bool = True) -> ModuleType:
    """A fresh copy of the pack ``name`` under an arbitrary module name, registered in
    ``sys.modules`` as ``llmc.load_tools`` registers the packs it loads (unless not
    ``register``: a pack must work either way)."""
    module_name = f"{name}_pack_{uuid.uuid4().hex}"
    spec = importlib.util.spec_from_file_location(module_name, pack_path(name))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    if register:
        sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module
