"""How to install one of llmc's optional extras, for error messages.

llmc is installed from its source tree (the ``llmc-framework`` distribution is on no package
index), so messages name the command that works there rather than an index install.
"""

from __future__ import annotations


def install_hint(extra: str) -> str:
    """The command that adds ``extra``: ``pip install -e ".[semantic]"`` in llmc's source tree."""
    return f'pip install -e ".[{extra}]" in llmc\'s source tree'
