"""A tool's documentation as the planner reads it: every fact its docs give, compactly.

The planner's prompt in text mode shows each tool as :func:`tool_doc`: the signature line,
then one indented line for each further paragraph of the docstring, for each parameter the
docs describe (its ``Args:`` text, the choices of an enum), and for each pydantic model a
parameter takes (its fields with their types, defaults and descriptions, nested models
too)::

    locate(place: Place, zoom: int = 3) -> str  # Find a place on the map.
        place: where to look.
        zoom: how close, 1 to 10.
        Place = {"name": str (the city), "population": int | None = None}

The text depends only on the tool, so the planner's system prompt stays byte-identical
across calls (servers' prefix caches hit).
"""

from __future__ import annotations

import enum
import json
import typing
from typing import TYPE_CHECKING, Any

import pydantic
from pydantic.fields import FieldInfo

from .tool import type_name

if TYPE_CHECKING:
    from .tool import Tool

_INDENT = "    "


def tool_doc(tool: Tool) -> str:
    """The tool's documentation for planner prompts: :meth:`~llmc.tool.Tool.signature_line`
    and the indented lines described in this module's docstring."""
    lines = [_signature(tool)]
    for paragraph in _more_paragraphs(tool):
        lines.append(_INDENT + paragraph)
    hints = _hints(tool)
    models: dict[str, type[pydantic.BaseModel]] = {}
    for name in tool.parameters:
        hint = hints.get(name, Any)
        text = _described(tool.docstring.params.get(name, ""), _enum_choices(hint))
        _collect_models(hint, models)
        if text:
            lines.append(f"{_INDENT}{name}: {text}")
    for name, model in models.items():
        lines.append(f"{_INDENT}{name} = {_model_shape(model)}")
    return "\n".join(lines)


def _signature(tool: Tool) -> str:
    """:meth:`~llmc.tool.Tool.signature_line`, with enum defaults written as their values
    (what a plan writes), not as ``<Unit.M: 'm'>``."""
    params = []
    for p in tool.signature.parameters.values():
        text = f"{p.name}: {type_name(p.annotation)}"
        if p.default is not p.empty:
            default = p.default.value if isinstance(p.default, enum.Enum) else p.default
            text += f" = {default!r}"
        params.append(text)
    line = f"{tool.name}({', '.join(params)}) -> {type_name(tool.signature.return_annotation)}"
    return f"{line}  # {tool.description}" if tool.description else line


def _more_paragraphs(tool: Tool) -> list[str]:
    """The docstring's paragraphs besides the one the signature line already shows."""
    paragraphs = [_one_line(p) for p in tool.docstring.description.split("\n\n") if p.strip()]
    shown = _one_line(tool.description)
    return [p for p in paragraphs if p and p != shown and p != _one_line(tool.docstring.summary)]


def _hints(tool: Tool) -> dict[str, Any]:
    try:
        return typing.get_type_hints(tool.fn)
    except Exception:  # the tool was built, so its hints resolved once; be safe anyway
        return {}


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _described(description: str, choices: list[str]) -> str:
    """A parameter's description, with its enum choices after it."""
    text = _one_line(description)
    if not choices:
        return text
    listed = "one of " + ", ".join(choices)
    return f"{text} ({listed})" if text else listed


def _parts(hint: Any) -> list[Any]:
    """A hint and the types inside it (unions, containers, Annotated), flattened."""
    found = [hint]
    for arg in typing.get_args(hint):
        if not isinstance(arg, str | int | float | bool | bytes | enum.Enum | type(None)):
            found += _parts(arg)
    return found


def _enum_choices(hint: Any) -> list[str]:
    """The values of the enums in a hint, as literals (``Literal`` shows in the signature)."""
    choices: list[str] = []
    for part in _parts(hint):
        if isinstance(part, type) and issubclass(part, enum.Enum):
            choices += [repr(member.value) for member in part]
    return choices


def _collect_models(hint: Any, models: dict[str, type[pydantic.BaseModel]]) -> None:
    """Every pydantic model in a hint, and the models inside their fields, once each."""
    for part in _parts(hint):
        if isinstance(part, type) and issubclass(part, pydantic.BaseModel):
            if part.__name__ in models:
                continue
            models[part.__name__] = part
            for info in part.model_fields.values():
                _collect_models(info.annotation, models)


def _model_shape(model: type[pydantic.BaseModel]) -> str:
    """A model as the dict a plan writes for it: each field's type, default, description;
    its docstring's first line after it."""
    fields = [_field(name, info) for name, info in model.model_fields.items()]
    shape = "{" + ", ".join(fields) + "}"
    doc = _one_line((model.__doc__ or "").strip().split("\n\n", 1)[0])
    return f"{shape}  # {doc}" if doc else shape


def _field(name: str, info: FieldInfo) -> str:
    text = f"{json.dumps(info.alias or name)}: {type_name(info.annotation)}"
    if not info.is_required():
        default = info.get_default(call_default_factory=True)
        default = default.value if isinstance(default, enum.Enum) else default
        text += f" = {default!r}"
    note = _described(info.description or "", _enum_choices(info.annotation))
    return f"{text} ({note})" if note else text  # e.g. "unit": Unit = 'km' (one of ...)
