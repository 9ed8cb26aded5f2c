"""The picture of a plan: boxes in dependency levels, curved arrows, status colours, groups."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from itertools import pairwise
from typing import TYPE_CHECKING, Unpack

from ..plan import Plan
from ..task import Task
from ..trace import Trace
from ._layout import Box, Spacing, layout
from ._svg import (
    LEGEND_SIZE,
    PLAIN,
    STATUS_STYLES,
    LegendItem,
    StatusStyle,
    clean,
    duration_text,
    lay_out_legend,
    one_line,
    render,
    shorten,
    status_entries,
    text_width,
)
from ._tasks import PlanView, arguments_text, plan_text, shown

if TYPE_CHECKING:
    pass

MARGIN = 16.0
PAD_X = 10.0
MIN_WIDTH = 96.0
MAX_WIDTH = 248.0
HEAD_SIZE = 12.0
ARGS_SIZE = 11.0
EXTRA_SIZE = 10.0
LINE = 15.0
TITLE_SIZE = 14.0
SPACING = {
    "TB": Spacing(node_gap=24.0, rank_gap=40.0),
    "LR": Spacing(node_gap=16.0, rank_gap=48.0),
}


@dataclass(frozen=True, slots=True)
class _Node:
    id: int
    box: Box
    style: StatusStyle
    head: tuple[str, str]
    lines: tuple[tuple[str, float], ...]
    tooltip: str

    @property
    def centre(self) -> float:
        return self.box.x + self.box.width / 2


@dataclass(frozen=True, slots=True)
class _Outline:
    name: str
    label: str
    label_width: float
    x: float
    y: float
    width: float
    height: float
    first: bool


#: The most boxes side by side on one level; a wider level wraps onto more rows, so a plan
#: of many parallel tasks is a block, not a strip thousands of pixels wide.
PER_ROW = 6


def plan_svg(
    plan: Plan,
    *,
    budgets: Mapping[int, int | str] | None = None,
    title: str | None = None,
    legend: bool = True,
    per_row: int = PER_ROW,
    **view: Unpack[PlanView],
) -> str:
    """Draw a plan as SVG: one box per task, in dependency levels, arrows from inputs to users.

    Args:
        plan: the plan.
        budgets: a token budget (a number, shown as ``"≤ N tok"``) or any short label per
            task id.
        title: a line of text above the picture.
        legend: whether to explain the colours and marks in use.
        per_row: the most boxes side by side; a level with more tasks wraps onto more rows
            (columns, left to right).
        **view: see :class:`PlanView`: the direction, and a run's statuses (with how long
            each task ran and the critical path's arrows marked) and groups (each group's
            tasks on one level side by side).

    Returns:
        the SVG document's text. The same arguments give the same bytes.

    Raises:
        TypeError: an unknown option.
        ValueError: an unknown direction or status.
    """
    drawn = shown(plan, view)
    records, status_of, group_map = drawn.trace, drawn.status_of, drawn.groups
    direction = drawn.direction
    budget_of = dict(budgets or getattr(plan, "budgets", None) or {})
    extras = {task.id: _extra(task.id, records, budget_of) for task in plan}
    lines_per_box = 3 if any(extras.values()) else 2
    height = 10.0 + lines_per_box * LINE
    texts = {task.id: _texts(task, extras[task.id]) for task in plan}
    sizes = {i: (_box_width(*texts[i]), height) for i in texts}
    clusters = {
        task_id: number for number, members in enumerate(group_map.values()) for task_id in members
    }
    critical = records.critical_chain() if records is not None else []
    critical_edges = set(pairwise(critical))

    legend_items = _legend(plan, status_of, group_map, critical_edges) if legend else []
    header = (TITLE_SIZE + 10 if title else 0.0) + (LEGEND_SIZE + 14 if legend_items else 0.0)
    spacing = SPACING[direction]
    pad = spacing.cluster_pad + (LEGEND_SIZE if group_map else 0.0)
    origin = (MARGIN + pad, MARGIN + header + pad)
    ranks = wrapped_ranks(plan.levels(), per_row)
    edges = [(dep, task.id) for task in plan for dep in sorted(task.dependencies)]
    placed = layout(
        [task.id for task in plan],
        edges,
        ranks,
        sizes,
        direction=direction,
        clusters=clusters,
        spacing=spacing,
        origin=origin,
    )
    nodes = [
        _Node(
            task.id,
            placed.boxes[task.id],
            _style(status_of.get(task.id)),
            texts[task.id][0],
            texts[task.id][1],
            _tooltip(task, records, status_of.get(task.id), budget_of, group_map),
        )
        for task in plan
    ]
    outlines = _outlines(group_map, placed.boxes, spacing.cluster_pad)
    legend_width = legend_items[-1].x + legend_items[-1].width if legend_items else 0.0
    title_width = text_width(title, TITLE_SIZE) if title else 0.0
    width = max(
        placed.width + 2 * pad + 2 * MARGIN,
        legend_width + MARGIN,
        title_width + 2 * MARGIN,
        160.0,
    )
    body = placed.height + 2 * pad if plan else 24.0
    total_height = MARGIN + header + body + MARGIN
    return render(
        "plan.svg.j2",
        width=width,
        height=total_height,
        direction=direction,
        title=one_line(title) if title else "",
        caption=f"plan of {len(plan)} task{'s' if len(plan) != 1 else ''}",
        nodes=nodes,
        routes=[(route, (route.source, route.target) in critical_edges) for route in placed.routes],
        outlines=outlines,
        legend=legend_items,
        legend_y=MARGIN + (TITLE_SIZE + 10 if title else 0.0),
        margin=MARGIN,
        title_size=TITLE_SIZE,
        legend_size=LEGEND_SIZE,
        head_size=HEAD_SIZE,
        line=LINE,
        empty=not plan,
    )


# -- statuses, groups, labels ----------------------------------------------------------------


def wrapped_ranks(levels: list[list[int]], per_row: int = PER_ROW) -> dict[int, int]:
    """Each task's row: its level's, with a level of more than ``per_row`` tasks spread over
    as many rows as it needs (tasks of one level never depend on each other, so every edge
    still goes down)."""
    if per_row < 1:
        raise ValueError(f"per_row must be at least 1, got {per_row}")
    ranks: dict[int, int] = {}
    row = 0
    for level in levels:
        for start in range(0, len(level), per_row):
            for task_id in level[start : start + per_row]:
                ranks[task_id] = row
            row += 1
    return ranks


def _style(status: str | None) -> StatusStyle:
    return PLAIN if status is None else STATUS_STYLES[status]


def _extra(task_id: int, trace: Trace | None, budgets: Mapping[int, int | str]) -> str:
    parts: list[str] = []
    budget = budgets.get(task_id)
    if isinstance(budget, int) and not isinstance(budget, bool):
        parts.append(f"≤ {budget} tok")
    elif budget is not None:
        parts.append(str(budget))
    record = trace.tasks.get(task_id) if trace is not None else None
    if record is not None and record.duration is not None:
        parts.append(duration_text(record.duration))
    if record is not None and record.attempts > 1:
        parts.append(f"{record.attempts} tries")
    return " · ".join(parts)


def _texts(task: Task, extra: str) -> tuple[tuple[str, str], tuple[tuple[str, float], ...]]:
    room = MAX_WIDTH - 2 * PAD_X
    number = f"${task.id}"
    tool = shorten(one_line(task.tool), HEAD_SIZE, room - text_width(number + " ", HEAD_SIZE))
    head = (number, tool)
    lines = [(shorten(one_line(arguments_text(task)), ARGS_SIZE, room), ARGS_SIZE)]
    if extra:
        lines.append((shorten(one_line(extra), EXTRA_SIZE, room), EXTRA_SIZE))
    return head, tuple(lines)


def _box_width(head: tuple[str, str], lines: tuple[tuple[str, float], ...]) -> float:
    first = text_width(f"{head[0]} {head[1]}", HEAD_SIZE)
    widest = max([first] + [text_width(t, s) for t, s in lines])
    return float(round(min(MAX_WIDTH, max(MIN_WIDTH, widest + 2 * PAD_X))))


def _tooltip(
    task: Task,
    trace: Trace | None,
    status: str | None,
    budgets: Mapping[int, int | str],
    groups: Mapping[str, list[int]],
) -> str:
    lines = [plan_text(task) or f"{task.id}. {task.tool}{arguments_text(task)}"]
    if task.thought:
        lines.append(f"Thought: {task.thought}")
    record = trace.tasks.get(task.id) if trace is not None else None
    if status is not None:
        took = ""
        if record is not None and record.duration is not None:
            took = f" in {duration_text(record.duration)}"
        lines.append(f"status: {status}{took}")
    if record is not None and record.attempts > 1:
        lines.append(f"attempts: {record.attempts}")
    if record is not None and record.error is not None:
        lines.append(f"error: {type(record.error).__name__}: {record.error}")
    if task.id in budgets:
        lines.append(f"budget: {budgets[task.id]}")
    lines += [f"group: {name}" for name, members in groups.items() if task.id in members]
    return clean("\n".join(lines))


def _outlines(
    groups: Mapping[str, list[int]], boxes: Mapping[int, Box], pad: float
) -> list[_Outline]:
    outlines: list[_Outline] = []
    for name, members in groups.items():
        by_rank: dict[int, list[Box]] = {}
        for task_id in members:
            by_rank.setdefault(boxes[task_id].rank, []).append(boxes[task_id])
        for i, rank in enumerate(sorted(by_rank)):
            found = by_rank[rank]
            left = min(b.x for b in found) - pad
            top = min(b.y for b in found) - pad
            right = max(b.x + b.width for b in found) + pad
            bottom = max(b.y + b.height for b in found) + pad
            label = shorten(one_line(name), LEGEND_SIZE - 1, max(right - left - 12, 24.0))
            label_width = text_width(label, LEGEND_SIZE - 1) + 6
            outlines.append(
                _Outline(name, label, label_width, left, top, right - left, bottom - top, i == 0)
            )
    return outlines


def _legend(
    plan: Plan,
    statuses: Mapping[int, str],
    groups: Mapping[str, list[int]],
    critical: set[tuple[int, int]],
) -> list[LegendItem]:
    entries = status_entries(statuses[t.id] for t in plan if t.id in statuses)
    if groups:
        entries.append(("group", "fused group", PLAIN))
    if critical:
        entries.append(("critical", "critical path", PLAIN))
    return lay_out_legend(entries, MARGIN)
