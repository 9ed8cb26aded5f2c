"""Plans as JSON, for models with structured outputs: parsed as they stream.

The model writes ``{"tasks": [{"id": 1, "tool": "search", "args": ["x"]}, ...]}`` (the schema
is :data:`PLAN_SCHEMA`); each task is dispatched the moment its object closes, exactly like
a line of the plan language. A whole-argument reference is ``{"$ref": N}``; ``$N`` inside
strings works as in plan text. An optional ``"finish"`` after the tasks is the plan's own
answer (a string with ``$N`` placeholders, or ``{"$ref": N}``; see :class:`~llmc.task.Finish`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import pydantic

from .errors import PlanError
from .task import (
    JSON_ARGUMENT_DEPTH,
    MAX_NESTING,
    Finish,
    Task,
    TaskChecker,
    TaskModel,
    check_finish,
    finish_from_json,
    nesting_error,
    task_from_model,
    text_position,
)
from .toolbox import Toolbox, Tools

_VALUE: dict[str, Any] = {}  # any JSON value: arguments are checked against the tool later

#: The JSON Schema given to models with structured outputs.
PLAN_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "tasks": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "thought": {"type": "string"},
                    "id": {"type": "integer", "minimum": 1},
                    "tool": {"type": "string"},
                    "args": {"type": "array", "items": _VALUE},
                    "kwargs": {"type": "object", "additionalProperties": _VALUE},
                },
                "required": ["id", "tool"],
            },
        },
        "finish": {
            "description": "the answer written from task outputs ($N inside a string, or "
            '{"$ref": N}), when no further reading of the results is needed'
        },
    },
    "required": ["tasks"],
}

_TASK_DEPTH = 3  # the root object, the "tasks" array, a task object
_MAX_DEPTH = JSON_ARGUMENT_DEPTH + MAX_NESTING  # deeper is refused before json.loads sees it


def plan_object(text: str | bytes) -> dict[str, Any]:
    """The JSON object a plan's text holds.

    Raises:
        PlanError: the text is not JSON (with the line and column), or not an object.
    """
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PlanError(
            f"plan JSON does not parse: {exc.msg} (line {exc.lineno}, column {exc.colno})",
            line=exc.lineno,
            column=exc.colno,
        ) from None
    if not isinstance(data, dict):
        raise PlanError('a JSON plan must be an object like {"tasks": [...]}')
    return data


class JsonPlanParser:
    """Reads a JSON plan as it streams; :meth:`feed` returns each task once its object closes.

    Tasks are checked on arrival like :class:`~llmc.parse.PlanParser`'s (ids, references,
    tools). The scan tracks only brackets and strings, so it costs little per character;
    each complete task object is then read with :func:`json.loads`.
    """

    def __init__(self, *, tools: Tools | None = None, earlier: Iterable[int] = ()) -> None:
        self.tools = Toolbox.of(tools) if tools is not None else None
        self.checker = TaskChecker(self.tools, earlier)
        self.tasks: list[Task] = []
        #: The plan's own answer (its ``"finish"``), once :meth:`close` has read it.
        self.finish: Finish | None = None
        #: Whether the plan has ended: only :meth:`close` knows (the object must parse whole).
        self.ended = False
        self._text: list[str] = []
        self._object: list[str] = []
        self._depth = 0
        self._in_string = False
        self._escaped = False

    def feed(self, chunk: str) -> list[Task]:
        """Add text; return the tasks whose objects it completed.

        Raises:
            PlanError: a completed task object is not valid JSON, does not fit the schema,
                or fails the checks; or arguments nest deeper than
                :data:`~llmc.task.MAX_NESTING` (raised at the first bracket too many).
        """
        self._text.append(chunk)
        out: list[Task] = []
        for index, char in enumerate(chunk):
            if self._depth >= _TASK_DEPTH:
                self._object.append(char)
            if self._in_string:
                if self._escaped:
                    self._escaped = False
                elif char == "\\":
                    self._escaped = True
                elif char == '"':
                    self._in_string = False
            elif char == '"':
                self._in_string = True
            elif char in "{[":
                self._depth += 1
                if self._depth > _MAX_DEPTH:
                    text = "".join(self._text)
                    raise nesting_error(**text_position(text, len(text) - len(chunk) + index))
                if self._depth == _TASK_DEPTH:
                    self._object = [char]
            elif char in "}]":
                self._depth -= 1
                if self._depth == _TASK_DEPTH - 1 and char == "}":
                    out.append(self._task("".join(self._object)))
        return out

    def close(self) -> list[Task]:
        """Check that the whole text is one JSON plan object; read its ``"finish"``.

        Raises:
            PlanError: the text is not valid JSON or not of the form ``{"tasks": [...]}``,
                or its ``"finish"`` refers to a task that does not exist.
        """
        data = plan_object("".join(self._text))
        if not isinstance(data.get("tasks"), list):
            raise PlanError('a JSON plan must be an object like {"tasks": [...]}')
        finish = finish_from_json(data.get("finish"))
        if finish is not None:
            check_finish(finish, self.checker.ids)
            self.finish = finish
        self.ended = True
        return []

    def _task(self, text: str) -> Task:
        try:
            model = TaskModel.model_validate_json(text)
        except pydantic.ValidationError as exc:
            raise PlanError(f"not a valid task object {text[:200]!r}: {exc}") from None
        task = task_from_model(model)
        self.checker.accept(task)
        self.tasks.append(task)
        return task
