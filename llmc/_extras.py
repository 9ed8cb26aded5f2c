"""Optional extras: importing one, and how to install it, for error messages.

llmc is installed from its source tree (the ``llmc-framework`` distribution is on no package
index), so messages name the command that works there rather than an index install.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import ModuleType


def install_hint(extra: str) -> str:
    """The command that adds ``extra``: ``pip install -e ".[semantic]"`` in llmc's source tree."""
    return f'pip install -e ".[{extra}]" in llmc\'s source tree'


def require(
    module: str,
    *,
    extra: str,
    needed_by: str,
    package: str | None = None,
    error: Callable[[str], Exception] = ImportError,
) -> ModuleType:
    """Import ``module``, or raise ``error`` saying what needs it and which extra brings it.

    Args:
        module: the dotted module name, e.g. ``"redis.asyncio"``.
        extra: llmc's extra that installs it.
        needed_by: what needs it, for the message (``"RayPool"``).
        package: the distribution's name in the message (default: the top-level module).
        error: the exception type to raise (an ``ImportError`` unless llmc's tree has a better one).
    """
    top = module.split(".")[0]
    try:
        importlib.import_module(top)  # as an import statement does: a missing parent fails
        return importlib.import_module(module)
    except ImportError as exc:
        raise error(f"{needed_by} needs {package or top} ({exc}): {install_hint(extra)}") from exc
