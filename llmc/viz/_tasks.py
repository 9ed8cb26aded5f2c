"""How every picture shows a plan's tasks: arguments as plan text, statuses from a run, and
the groups to outline. The SVG picture, the timeline and the text exports all read them here,
so a task looks the same in each."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, TypedDict

from ..errors import PlanError
from ..plan import Plan
from ..task import Task, render_value
from ..trace import TaskStatus, Trace
from ._svg import STATUS_STYLES

if TYPE_CHECKING:
    from ..result import Result

#: Which way a plan picture runs: top to bottom (``"TB"``) or left to right (``"LR"``).
Direction = Literal["TB", "LR"]


class PlanView(TypedDict, total=False):
    """What every picture of a plan (:func:`~llmc.viz.plan_svg`, :func:`~llmc.viz.plan_mermaid`,
    :func:`~llmc.viz.plan_dot`) takes beside the plan: which way it runs and what it shows of
    a run.

    Attributes:
        direction: ``"TB"`` (levels top to bottom, the default) or ``"LR"`` (left to right).
        trace: a run of the plan (its :class:`~llmc.trace.Trace` or :class:`~llmc.Result`):
            each task takes its status's colours (and, in the SVG, how long it ran and the
            critical path).
        statuses: a status per task id (``"done"``, ``"cached"``, ...; see
            :data:`~llmc.viz.STATUS_STYLES`), over those the trace gives.
        groups: outlined groups of tasks (batches), by name; a task belongs to one. Defaults
            to the plan's own ``fused_groups`` when it has some, else to the trace's batches.
    """

    direction: Direction
    trace: Trace | Result | None
    statuses: Mapping[int, str] | None
    groups: Mapping[str, Iterable[int]] | None


@dataclass(frozen=True, slots=True)
class Shown:
    """A :class:`PlanView` resolved against its plan: what a picture draws."""

    direction: Direction
    trace: Trace | None
    status_of: dict[int, str]
    groups: dict[str, list[int]]
    in_group: frozenset[int]  # the tasks of every group


def shown(plan: Plan, view: PlanView) -> Shown:
    """Resolve ``view`` against ``plan``: the trace, each task's status, the groups.

    Raises:
        TypeError: an option that is not one of :class:`PlanView`'s.
        ValueError: an unknown direction or status.
    """
    unknown = set(view) - set(PlanView.__annotations__)
    if unknown:
        known = ", ".join(PlanView.__annotations__)
        raise TypeError(f"unknown picture option(s): {', '.join(sorted(unknown))} (known: {known})")
    direction = view.get("direction", "TB")
    if direction not in ("TB", "LR"):
        raise ValueError(f"direction must be 'TB' or 'LR', got {direction!r}")
    trace = trace_of(view.get("trace"))
    groups = resolve_groups(plan, view.get("groups"), trace)
    return Shown(
        direction,
        trace,
        resolve_statuses(plan, trace, view.get("statuses")),
        groups,
        frozenset(i for members in groups.values() for i in members),
    )


def trace_of(trace: Trace | Result | None) -> Trace | None:
    """The run's trace, from a trace or a result (None stays None)."""
    if trace is None or isinstance(trace, Trace):
        return trace
    return trace.trace


def resolve_statuses(
    plan: Plan, trace: Trace | None, statuses: Mapping[int, str] | None
) -> dict[int, str]:
    """Each task's status name: from the trace (``"cached"`` when its record says so), then
    from ``statuses``. Without either a task has none.

    Raises:
        ValueError: a status that is not one of :data:`STATUS_STYLES`.
    """
    found: dict[int, str] = {}
    if trace is not None:
        for task in plan:
            record = trace.tasks.get(task.id)
            if record is None:
                found[task.id] = TaskStatus.PENDING.value
            elif getattr(record, "cached", False):
                found[task.id] = "cached"
            else:
                found[task.id] = record.status.value
    for task_id, status in (statuses or {}).items():
        name = str(getattr(status, "value", status))
        if name not in STATUS_STYLES:
            known = ", ".join(STATUS_STYLES)
            raise ValueError(f"task {task_id}: unknown status {name!r}; use one of {known}")
        found[task_id] = name
    return found


def resolve_groups(
    plan: Plan, groups: Mapping[str, Iterable[int]] | None, trace: Trace | None = None
) -> dict[str, list[int]]:
    """The groups to outline: those given, else the plan's ``fused_groups``, else the
    batches of the run; a task in several keeps its first."""
    source = groups if groups is not None else getattr(plan, "fused_groups", None)
    if groups is None and not source and trace is not None:
        calls = getattr(trace, "batches", None) or ()
        source = {
            f"batch {i}: {call.tool}, {len(call.task_ids)} tasks": call.task_ids
            for i, call in enumerate(calls, 1)
        }
    if not source:
        return {}
    taken: set[int] = set()
    found: dict[str, list[int]] = {}
    for name, members in source.items():
        kept = sorted({int(i) for i in members} & {t.id for t in plan} - taken)
        if kept:
            found[str(name)] = kept
            taken.update(kept)
    return found


def arguments_text(task: Task) -> str:
    """A task's arguments as plan text, inside parentheses."""
    try:
        parts = [render_value(v) for v in task.args]
        parts += [f"{k}={render_value(v)}" for k, v in task.kwargs.items()]
    except PlanError:  # a value plan text cannot write: show Python's view of it
        parts = [repr(v) for v in task.args] + [f"{k}={v!r}" for k, v in task.kwargs.items()]
    return f"({', '.join(parts)})"


def plan_text(task: Task) -> str | None:
    """The task as its plan-language line, or None when an argument has no literal form."""
    try:
        return task.to_text()
    except PlanError:
        return None
