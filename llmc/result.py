"""The result of running a plan, and the text form of task outputs.

:func:`text_form` is the one place that decides how an output reads as text: what a ``$N``
placeholder inside a string argument receives, and what an aggregator shows the LLM.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pydantic

from .trace import TaskStatus, Trace


def text_form(value: Any) -> str:
    """How an output reads inside a string: ``"depth: $1"`` with ``$1`` -> this text.

    A ``str`` is itself; a pydantic model, ``dict``, ``list`` or ``tuple`` is compact JSON
    (non-ASCII kept, values JSON cannot hold written with ``str``); ``bytes`` are decoded as
    UTF-8 (bad bytes replaced); anything else is ``str(value)``. An exception reads as
    :func:`error_text`.

    Never raises: an output whose text cannot be made (an int past Python's digit limit, a
    list nested past the recursion limit, an object whose ``__str__`` raises) reads as a
    marker, ``[... cannot be shown as text: why]``, so observations and runs go on.
    """
    try:
        return _text_form(value)
    except Exception as exc:  # whatever the output's own code raises: the text must exist
        return unshowable(value, exc)


def unshowable(value: Any, error: BaseException) -> str:
    """The marker that stands for an output whose text form failed with ``error``."""
    what = f"a {type(value).__qualname__} output"
    if isinstance(value, int) and not isinstance(value, bool):
        what = f"an int of about {int(value.bit_length() * 0.30103) + 1:,} digits"
    return f"[{what} cannot be shown as text: {_safe_message(error)}]"


def _safe_message(error: BaseException) -> str:
    try:
        message = str(error)
    except Exception:  # an exception whose own __str__ raises
        message = ""
    name = type(error).__name__
    return f"{name}: {message[:200]}" if message else name


def _text_form(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, BaseException):
        return error_text(value)
    if isinstance(value, pydantic.BaseModel):
        return value.model_dump_json()
    if isinstance(value, dict | list | tuple):
        try:
            return json.dumps(value, ensure_ascii=False, default=str)
        except (TypeError, ValueError):  # keys JSON cannot hold, circular references
            return str(value)
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", errors="replace")
    return str(value)


def error_text(error: BaseException) -> str:
    """An error as an observation for an LLM: ``"Error: ToolTimeoutError: search() timed out"``."""
    try:
        message = str(error)
    except Exception:  # an exception whose own __str__ raises still names its type
        message = ""
    name = type(error).__name__
    return f"Error: {name}: {message}" if message else f"Error: {name}"


@dataclass(slots=True, eq=False)
class Result:
    """What a run produced: outputs of the tasks that finished, and how every task ended.

    Attributes:
        run_id: the run's id (also in every event and log line of the run).
        outputs: each done task's output, by task id.
        trace: every task's record: status, times, attempts, error.
    """

    run_id: str
    outputs: dict[int, Any]
    trace: Trace

    def __getitem__(self, task_id: int) -> Any:
        """The output of a done task.

        Raises:
            KeyError: the task is unknown or has no output; the message says why.
        """
        try:
            return self.outputs[task_id]
        except KeyError:
            raise KeyError(self._why_no_output(task_id)) from None

    def _why_no_output(self, task_id: int) -> str:
        record = self.trace.tasks.get(task_id)
        if record is None:
            return f"task {task_id} is not part of this run"
        why = f": {error_text(record.error)}" if record.error is not None else ""
        return f"task {task_id} has no output: it was {record.status.value}{why}"

    def status(self, task_id: int) -> TaskStatus:
        """How a task ended."""
        return self.trace.tasks[task_id].status

    @property
    def statuses(self) -> dict[int, TaskStatus]:
        """Every task's status, by id."""
        return self.trace.statuses()

    @property
    def errors(self) -> dict[int, BaseException]:
        """The error of every failed task, by id."""
        return self._errors(TaskStatus.FAILED)

    @property
    def skipped(self) -> Mapping[int, BaseException]:
        """Why each skipped task was skipped (a ``DependencyError``), by id."""
        return self._errors(TaskStatus.SKIPPED)

    def _errors(self, status: TaskStatus) -> dict[int, BaseException]:
        return {
            i: r.error
            for i, r in self.trace.tasks.items()
            if r.status is status and r.error is not None
        }

    @property
    def ok(self) -> bool:
        """Whether every task is done."""
        return all(r.status is TaskStatus.DONE for r in self.trace.tasks.values())

    def observation(self, task_id: int) -> str:
        """What a task tells the reader: its output's text form, or why it has none."""
        if task_id in self.outputs:
            return text_form(self.outputs[task_id])
        record = self.trace.tasks[task_id]
        if record.error is not None:
            return error_text(record.error)
        return f"Error: task {task_id} was {record.status.value}"

    def __repr__(self) -> str:
        return f"<Result {self.run_id}: {self.trace.summary()} in {self.trace.makespan:.3f}s>"

    def _repr_svg_(self) -> str:
        """Jupyter shows a result as its run's timeline."""
        return self.trace.to_svg()
