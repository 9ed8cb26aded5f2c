"""The public API of `llmc`: sorted exports, documented methods (each public name's home and
documentation: tests/test_public_api.py)."""

from __future__ import annotations

import inspect

import llmc


def test_exports_are_sorted_and_unique() -> None:
    names = [n for n in llmc.__all__ if n != "__version__"]
    assert len(names) == len(set(names))
    assert names == sorted(names)


def test_public_classes_document_their_public_methods() -> None:
    for name in llmc.__all__:
        value = getattr(llmc, name)
        if not inspect.isclass(value) or issubclass(value, BaseException):
            continue
        for attr, member in vars(value).items():
            if attr.startswith("_") or not callable(member):
                continue
            assert inspect.getdoc(member), f"llmc.{name}.{attr} has no docstring"


def test_core_names_are_exported() -> None:
    expected = {
        "tool",
        "Tool",
        "Toolbox",
        "Plan",
        "Task",
        "Ref",
        "PlanParser",
        "run_plan",
        "run_plan_sync",
        "Result",
        "LLMCError",
        "PlanError",
        "PlanSyntaxError",
    }
    assert expected <= set(llmc.__all__)
