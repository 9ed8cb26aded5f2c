"""A plan's tasks as values: :class:`Task`, :class:`Ref`, :class:`Finish`, and the checks a
task passes on arrival.

A task's arguments are plain Python values in which two things point at earlier tasks:

- a :class:`Ref` (``$1`` in plan text) as an argument, or inside a list, tuple or dict,
  receives that task's output object;
- ``$1`` or ``${1}`` inside a string receives the output's text form. ``$$`` is a literal ``$``.

``$question`` (or ``${question}``), as an argument or inside a string, is the user's question,
so plans need not copy it; :func:`fill_question` writes it in before the tasks run.

A plan may end with its own answer, :class:`Finish` (``finish("The Nile: $3 km")`` in plan
text): the answer is rendered from task outputs once they are done, and no joiner is asked.

Every reader of plans (:class:`~llmc.plan.Plan`, the plan language's
:class:`~llmc.parse.PlanParser`, :class:`~llmc.json_plan.JsonPlanParser`) builds these values
and checks them with :class:`TaskChecker`; none of this module knows about whole plans.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pydantic

from .errors import PlanError, ToolArgumentError, UnknownToolError
from .tool import Tool
from .toolbox import Toolbox

#: How deep task arguments may nest: a list (tuple, set, dict) in a list, and so on, this many
#: levels down. Every reader of plans (the plan language, JSON plans, ``Plan.add``) refuses
#: deeper arguments with a :class:`~llmc.errors.PlanError`, which keeps parsing, checking,
#: rendering and JSON far from Python's recursion limit (and the plan language below the
#: tokenizer's 200 nested brackets).
MAX_NESTING = 100

#: ``$$`` (a literal dollar), ``${N}`` or ``$N`` inside strings.
PLACEHOLDER = re.compile(r"\$\$|\$\{(\d+)\}|\$(\d+)")

#: The user's question, as a whole argument (``$question``) or inside a string.
QUESTION = "$question"
_QUESTION_PLACEHOLDER = re.compile(r"\$\$|\$\{question\}|\$question\b")


@dataclass(frozen=True, slots=True)
class Ref:
    """The output of an earlier task, used as an argument (``$N`` in plan text).

    In an f-string a Ref becomes ``${N}``, so ``f"summary of {ref}"`` gets the text form.
    """

    task_id: int

    def __str__(self) -> str:
        return f"${{{self.task_id}}}"

    def __format__(self, spec: str) -> str:
        return str(self)


def string_references(text: str) -> list[int]:
    """The task ids that ``$N`` / ``${N}`` placeholders in a string point at."""
    if "$" not in text:
        return []
    return [int(m.group(1) or m.group(2)) for m in PLACEHOLDER.finditer(text) if m.group(0) != "$$"]


def references(value: Any) -> set[int]:
    """Every task id a value refers to: Refs anywhere and placeholders in strings."""
    found: set[int] = set()
    _collect_references(value, found, 1)
    return found


_COLLECTIONS = (list, tuple, set, frozenset)  # a tuple: isinstance is faster than with a union


def _collect_references(value: Any, found: set[int], depth: int) -> None:
    """Add the ids ``value`` refers to; ``depth`` is its nesting level (arguments are at 1)."""
    if isinstance(value, str):
        if "$" in value:
            found.update(string_references(value))
    elif isinstance(value, Ref):
        found.add(value.task_id)
    elif isinstance(value, _COLLECTIONS):
        if depth > MAX_NESTING:
            raise nesting_error()
        for item in value:
            _collect_references(item, found, depth + 1)
    elif isinstance(value, dict):
        if depth > MAX_NESTING:
            raise nesting_error()
        for key, item in value.items():
            _collect_references(key, found, depth + 1)
            _collect_references(item, found, depth + 1)


# Strings (closed or not) and brackets: what the JSON nesting check needs to see.
_JSON_SCAN = re.compile(r'"(?:[^"\\]|\\.)*"?|[\[\]{}]')
#: The JSON depth of a plan's argument values: the plan object, "tasks", a task, "args".
JSON_ARGUMENT_DEPTH = 4


def check_json_nesting(text: str, limit: int) -> None:
    """Refuse JSON text whose brackets nest deeper than ``limit``, before parsing it.

    Raises:
        PlanError: with the line and column of the first bracket past the limit.
    """
    depth = 0
    for match in _JSON_SCAN.finditer(text):
        char = match.group()
        if char in "[{":
            depth += 1
            if depth > limit:
                raise nesting_error(**text_position(text, match.start()))
        elif char in "]}":
            depth -= 1


def text_position(text: str, index: int) -> dict[str, int]:
    """``line`` and ``column`` (both 1-based) of character ``index`` in ``text``."""
    line_start = text.rfind("\n", 0, index) + 1
    return {"line": text.count("\n", 0, index) + 1, "column": index - line_start + 1}


def nesting_error(**position: Any) -> PlanError:
    """The error for arguments nested deeper than :data:`MAX_NESTING`."""
    return PlanError(
        f"arguments nest deeper than {MAX_NESTING} levels; pass flatter values (or let a tool "
        "build the structure and refer to its output with $N)",
        **position,
    )


def fill_question(value: Any, question: str) -> Any:
    """``value`` with ``$question`` / ``${question}`` in its strings replaced by ``question``.

    The question's own dollar signs become ``$$``, so it reaches the tool as written and is
    never read as a reference. A value without the placeholder is returned as it is.
    """
    if isinstance(value, str):
        if "question" not in value or "$" not in value:
            return value
        escaped = question.replace("$", "$$")
        return _QUESTION_PLACEHOLDER.sub(lambda m: m[0] if m[0] == "$$" else escaped, value)
    if isinstance(value, list | tuple | set | frozenset):
        items = [fill_question(item, question) for item in value]
        if all(new is old for new, old in zip(items, value, strict=False)):
            return value
        return type(value)(items)
    if isinstance(value, Mapping):
        pairs = [(fill_question(k, question), fill_question(v, question)) for k, v in value.items()]
        if all(k is old for (k, _), old in zip(pairs, value, strict=True)) and all(
            v is value[k] for k, v in pairs
        ):
            return value
        return dict(pairs)
    return value


def render_value(value: Any) -> str:
    """Plan-language text for a value: a Python literal, with Refs as ``$N``."""
    if isinstance(value, Ref):
        return f"${value.task_id}"
    if isinstance(value, list):
        return "[" + ", ".join(render_value(v) for v in value) + "]"
    if isinstance(value, tuple):
        inner = ", ".join(render_value(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    if isinstance(value, set | frozenset):
        if not value:
            raise PlanError("an empty set has no literal form; use a list")
        return "{" + ", ".join(sorted(render_value(v) for v in value)) + "}"
    if isinstance(value, dict):
        return (
            "{" + ", ".join(f"{render_value(k)}: {render_value(v)}" for k, v in value.items()) + "}"
        )
    if isinstance(value, float) and not math.isfinite(value):
        raise PlanError(f"{value!r} has no literal form in plan text")
    if value is None or isinstance(value, str | bytes | bool | int | float | complex):
        return repr(value)
    raise PlanError(f"{type(value).__name__} values cannot be written in plan text: {value!r}")


@dataclass(frozen=True, slots=True)
class Task:
    """One tool call of a plan.

    Attributes:
        id: a positive integer, unique in its plan.
        tool: the tool's name.
        args: positional arguments (values that may contain Refs and placeholders).
        kwargs: keyword arguments, likewise.
        thought: the planner's reasoning for this step, when it gave one.
        dependencies: ids of the tasks whose outputs the arguments use.
    """

    id: int
    tool: str
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    thought: str | None = None
    dependencies: frozenset[int] = field(init=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.id, bool) or not isinstance(self.id, int) or self.id < 1:
            raise PlanError(f"task ids are positive integers, got {self.id!r}")
        args = self.args if type(self.args) is tuple else tuple(self.args)
        kwargs = dict(self.kwargs)
        deps: set[int] = set()
        try:
            _collect_references(args, deps, 0)
            _collect_references(kwargs, deps, 0)
        except PlanError as exc:
            raise PlanError(f"task {self.id}: {exc}", task_id=self.id) from None
        object.__setattr__(self, "args", args)
        object.__setattr__(self, "kwargs", kwargs)
        object.__setattr__(self, "dependencies", frozenset(deps))

    def to_text(self) -> str:
        """The task as one plan-language line, without its thought."""
        parts = [render_value(v) for v in self.args]
        parts += [f"{k}={render_value(v)}" for k, v in self.kwargs.items()]
        return f"{self.id}. {self.tool}({', '.join(parts)})"


@dataclass(frozen=True, slots=True)
class Finish:
    """The plan's own answer, written from task outputs: ``finish($3)`` or
    ``finish("The Nile is longer: $3 km")`` in plan text, ``"finish"`` in a JSON plan.

    It ends the plan like ``join()``, but no joiner is asked: once the tasks it refers to are
    done, the answer is ``value`` with each reference replaced by its output's text form.
    When one of them failed or returned nothing, the joiner answers instead (see
    :class:`llmc.Compiler`).

    Attributes:
        value: a :class:`Ref` or a string with ``$N`` placeholders (any literal is allowed).
        thought: the planner's reason for answering this way, when it gave one.
        dependencies: ids of the tasks the answer uses.
    """

    value: Any
    thought: str | None = None
    dependencies: frozenset[int] = field(init=False, compare=False)

    def __post_init__(self) -> None:
        deps: set[int] = set()
        _collect_references(self.value, deps, 1)
        object.__setattr__(self, "dependencies", frozenset(deps))

    def to_text(self) -> str:
        """The plan-language line: ``finish(...)``."""
        return f"finish({render_value(self.value)})"


def check_finish(finish: Finish, known: Iterable[int]) -> None:
    """Check that a plan's answer refers only to tasks that exist.

    Raises:
        PlanError: it refers to a task that was never defined.
    """
    ids = set(known)
    for dep in sorted(finish.dependencies):
        if dep not in ids:
            raise PlanError(
                f"finish() refers to ${dep}, a task that was never defined; the answer may "
                "only use the outputs of the plan's tasks"
            )


# -- JSON form -------------------------------------------------------------------------------


def to_json_value(value: Any) -> Any:
    """A task argument in JSON form: Refs as ``{"$ref": N}``, tuples and sets as lists."""
    if isinstance(value, Ref):
        return {"$ref": value.task_id}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_json_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_json_value(v) for k, v in value.items()}
    return value


def _from_json_value(value: Any) -> Any:
    """The argument a JSON value stands for: ``{"$ref": N}`` becomes a Ref."""
    if isinstance(value, dict):
        if set(value) == {"$ref"}:
            target = value["$ref"]
            if isinstance(target, bool) or not isinstance(target, int):
                raise PlanError(f'{{"$ref": ...}} needs a task id (an integer), got {target!r}')
            return Ref(target)
        return {k: _from_json_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_json_value(v) for v in value]
    return value


class TaskModel(pydantic.BaseModel):
    """JSON form of a task. A whole-argument reference is written ``{"$ref": N}``."""

    model_config = pydantic.ConfigDict(extra="forbid")
    id: int = pydantic.Field(ge=1)
    tool: str
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    thought: str | None = None


def task_from_model(model: TaskModel) -> Task:
    """The Task a :class:`TaskModel` describes (``{"$ref": N}`` becomes a Ref)."""
    args = tuple(_from_json_value(model.args))
    return Task(model.id, model.tool, args, _from_json_value(model.kwargs), model.thought)


def finish_from_json(value: Any) -> Finish | None:
    """The :class:`Finish` of a JSON plan's ``"finish"`` value (None when it has none)."""
    return None if value is None else Finish(_from_json_value(value))


# -- checks on arrival ---------------------------------------------------------------------


class TaskChecker:
    """Checks tasks as they arrive, in order, before anything runs.

    A task may not reuse an id (its own plan's or an ``earlier`` plan's), may only refer to
    tasks that came before it, and, when ``tools`` are given, must call a known tool with
    arguments that fit its signature.
    """

    def __init__(self, tools: Toolbox | None, earlier: Iterable[int] = ()) -> None:
        self.tools = tools
        self.earlier = frozenset(earlier)
        self.ids: set[int] = set(self.earlier)

    def accept(self, task: Task) -> None:
        """Check a task and remember its id.

        Raises:
            PlanError / UnknownToolError: what is wrong with it.
        """
        if task.id in self.earlier:
            raise PlanError(
                f"task {task.id} already ran in an earlier plan; number new tasks from "
                f"{max(self.ids) + 1}",
                task_id=task.id,
            )
        if task.id in self.ids:
            raise PlanError(
                f"task {task.id} is defined twice; number each task once", task_id=task.id
            )
        for dep in sorted(task.dependencies):
            if dep not in self.ids:
                where = "a later task" if dep >= task.id else "a task that was never defined"
                raise PlanError(
                    f"task {task.id} refers to ${dep}, {where}; a task may only "
                    "use the outputs of tasks defined before it",
                    task_id=task.id,
                )
        if self.tools is not None:
            check_call(task, self.tools)
        self.ids.add(task.id)


def check_call(task: Task, tools: Toolbox) -> Tool:
    """Check that a task names a known tool and that its arguments fit the signature.

    Raises:
        UnknownToolError: the tool is not in ``tools``.
        PlanError: wrong number of arguments, an unknown keyword, or a missing one.
    """
    if task.tool not in tools:
        raise UnknownToolError(
            f"task {task.id}: {tools.unknown_message(task.tool)}", task_id=task.id
        )
    found = tools[task.tool]
    try:
        found.name_arguments(task.args, task.kwargs)
    except ToolArgumentError as exc:
        raise PlanError(f"task {task.id}: {exc}", task_id=task.id) from None
    return found
