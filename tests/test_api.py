"""The public API: what `llmc` exports, and that every public name is documented."""

from __future__ import annotations

import inspect

import llmc


def test_every_exported_name_exists_and_is_documented() -> None:
    for name in llmc.__all__:
        value = getattr(llmc, name)
        if name == "__version__":
            continue
        assert inspect.getdoc(value), f"llmc.{name} has no docstring"


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
