"""Prompt templates: a folder of Jinja2 files, with llmc's defaults behind it.

A template folder holds the planner's and joiner's prompts (``planner.jinja``,
``planner_user.jinja``, ``joiner.jinja``, ``joiner_user.jinja``, ``repair.jinja``) and
``exemplars.txt``, example plans separated by lines of ``###``. A user's folder needs only the
files it changes: the rest come from llmc's default planner (``planners/default``).
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any

import jinja2

from .catalog import planner_dir


class Templates:
    """Renders the prompt templates of one folder (or llmc's default planner).

    Args:
        folder: a template folder, or the name of one of llmc's planners; None for the
            default. Files missing from it are taken from the default planner.

    Raises:
        FileNotFoundError: the folder does not exist.
    """

    def __init__(self, folder: str | Path | None = None) -> None:
        default = planner_dir("default")
        if folder is None:
            self.folder = default
        elif isinstance(folder, str) and "/" not in folder and not Path(folder).is_dir():
            self.folder = planner_dir(folder)
        else:
            self.folder = Path(folder).expanduser()
            if not self.folder.is_dir():
                raise FileNotFoundError(f"no template folder at {self.folder}")
        loaders = [jinja2.FileSystemLoader(str(self.folder))]
        if self.folder != default:
            loaders.append(jinja2.FileSystemLoader(str(default)))
        self.env = jinja2.Environment(
            loader=jinja2.ChoiceLoader(loaders),
            undefined=jinja2.StrictUndefined,  # a misspelt variable is an error, not ""
            keep_trailing_newline=False,
            autoescape=False,  # prompts are plain text
            auto_reload=False,  # read once: editing a template never changes a run midway
        )

    def render(self, name: str, **variables: Any) -> str:
        """Render ``name`` (e.g. ``"planner.jinja"``) with the given variables."""
        return self.env.get_template(name).render(**variables).strip()

    @cached_property
    def exemplars(self) -> list[str]:
        """The example plans of ``exemplars.txt`` (empty when there is none)."""
        for folder in (self.folder, planner_dir("default")):
            path = folder / "exemplars.txt"
            if path.is_file():
                parts = path.read_text(encoding="utf-8").split("\n###")
                return [part.strip() for part in parts if part.strip()]
        return []

    def __repr__(self) -> str:
        return f"Templates({str(self.folder)!r})"
