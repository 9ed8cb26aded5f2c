"""One rule for what is public (see "What is public" in docs/architecture.md).

Public is what the namespaces of ``docs/reference.py``'s ``PLACES`` list in ``__all__``: each
public name has exactly one of them as its home, carries its own documentation (a docstring,
or a ``#:`` comment above a constant), and is on docs/reference.md. Every other module is
internal and has no ``__all__``, so nothing claims a second, unofficial home for a name.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import pkgutil
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import llmc

REPO = Path(__file__).resolve().parents[1]


def _reference() -> ModuleType:
    spec = importlib.util.spec_from_file_location("llmc_reference", REPO / "docs" / "reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


reference = _reference()
PLACES: tuple[str, ...] = reference.PLACES
PUBLIC = [(place, name, value) for place in PLACES for name, value in reference.public_names(place)]


def _modules() -> list[str]:
    return ["llmc", *(m.name for m in pkgutil.walk_packages(llmc.__path__, "llmc."))]


def test_every_public_name_has_exactly_one_home() -> None:
    homes: dict[str, list[str]] = {}
    for place, name, value in PUBLIC:
        if not inspect.ismodule(value):
            homes.setdefault(name, []).append(place)
    twice = {name: places for name, places in homes.items() if len(places) > 1}
    assert not twice, f"exported from more than one public namespace: {twice}"


def test_internal_modules_claim_no_public_names() -> None:
    claiming = [
        name
        for name in _modules()
        if name not in PLACES and hasattr(importlib.import_module(name), "__all__")
    ]
    assert not claiming, (
        f"internal modules with an __all__ (export from a public place): {claiming}"
    )


def test_every_public_namespace_lists_only_what_it_has() -> None:
    for place in PLACES:
        module = importlib.import_module(place)
        assert len(set(module.__all__)) == len(module.__all__), f"{place}.__all__ repeats a name"
        assert module.__doc__, f"{place} has no docstring"


@pytest.mark.parametrize(("place", "name", "value"), PUBLIC, ids=[f"{p}.{n}" for p, n, _ in PUBLIC])
def test_every_public_name_is_documented(place: str, name: str, value: Any) -> None:
    assert reference.summary(value, place, name), (
        f"{place}.{name} has no documentation of its own: a docstring, or for a constant a "
        "#: comment on the line above its assignment"
    )


def test_the_reference_page_is_up_to_date() -> None:
    written = (REPO / "docs" / "reference.md").read_text()
    assert written == reference.page(), "docs/reference.md is stale: run python docs/reference.py"
