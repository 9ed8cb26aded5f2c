"""The picture of a run: a Gantt chart of its tasks and LLM calls on one time axis."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import pairwise
from typing import TYPE_CHECKING, Literal

from ..trace import Span, TaskRecord, TaskStatus, Trace
from ._svg import (
    STATUS_STYLES,
    LegendItem,
    StatusStyle,
    clean,
    duration_text,
    lay_out_legend,
    nice_step,
    num,
    one_line,
    render,
    shorten,
    status_entries,
    text_width,
)
from ._tasks import arguments_text

if TYPE_CHECKING:
    from ..plan import Plan
    from ..result import Result

MARGIN = 16.0
ROW = 22.0
BAR = 14.0
LABEL_SIZE = 11.0
SMALL = 10.0
TITLE_SIZE = 14.0
MAX_LABEL = 220.0
STRIP = 36.0

_XAt = Callable[[float], float]
_YAt = Callable[[int], float]

#: Fill and outline of LLM-call rows, by span kind.
SPAN_COLOURS = {
    "planner": ("#ede9fe", "#7c3aed"),
    "joiner": ("#ccfbf1", "#0d9488"),
    "finish": ("#dcfce7", "#16a34a"),  # the plan answered itself: no joiner call
}
#: Span kinds drawn below the tasks: what answers once they are done.
_ANSWER_KINDS = frozenset({"joiner", "finish"})
OTHER_SPAN = ("#f1f5f9", "#64748b")


#: The narrowest task bar, in px: a call of a few milliseconds stays visible.
MIN_TASK_BAR = 4.0


@dataclass(frozen=True, slots=True)
class _Row:
    kind: str
    label: str
    y: float
    tooltip: str


@dataclass(frozen=True, slots=True)
class _Bar:
    task_id: int
    x: float
    y: float
    width: float
    style: StatusStyle
    critical: bool
    open_end: bool
    text: str
    tooltip: str
    outside: bool = False  # the text goes right of the bar, which is too narrow for it


@dataclass(frozen=True, slots=True)
class _Marker:
    task_id: int
    x: float
    y: float
    style: StatusStyle
    tooltip: str


@dataclass(frozen=True, slots=True)
class _Wait:
    task_id: int
    kind: str
    x1: float
    x2: float
    y: float


@dataclass(frozen=True, slots=True)
class _SpanBar:
    index: int
    kind: str
    x: float
    y: float
    width: float
    first: float | None
    fill: str
    stroke: str
    open_end: bool
    text: str
    tooltip: str


@dataclass(frozen=True, slots=True)
class _Arrow:
    source: int
    target: int
    path: str
    critical: bool


@dataclass(frozen=True, slots=True)
class _Tick:
    x: float
    seconds: float
    label: str


def timeline_svg(
    trace: Trace | Result,
    *,
    plan: Plan | None = None,
    width: float = 880.0,
    lanes: bool = False,
    arrows: Literal["all", "critical", "none"] | None = None,
    title: str | None = None,
    legend: bool = True,
) -> str:
    """Draw a run as a timeline (Gantt chart) in SVG.

    One row per task (or, with ``lanes``, tasks packed into as few rows as ran at once), a
    row per kind of LLM call (the planner's stream above the tasks with its first token
    marked, the joiner's calls below), arrows from each dependency's end to its user's
    start, the critical path (:meth:`~llmc.trace.Trace.critical_chain`) outlined, a time
    axis, and a strip that shows how many tasks ran at each moment.

    Args:
        trace: the run's :class:`~llmc.trace.Trace` (or its :class:`~llmc.Result`).
        plan: the plan that ran, for fuller tooltips (each task's call as plan text).
        width: the width of the time axis in px.
        lanes: pack tasks into lanes instead of one row per task.
        arrows: which dependency arrows to draw: ``"all"``, ``"critical"`` (the critical
            path's only) or ``"none"``. Default: all of them in rows, the critical path's
            in lanes (where all of them would tangle).
        title: a line of text above the picture.
        legend: whether to explain the colours and marks in use.

    Returns:
        the SVG document's text.

    Raises:
        ValueError: ``width`` is not positive, or ``arrows`` is not one of the three.
    """
    if not width > 0:
        raise ValueError(f"width must be positive, got {width!r}")
    if arrows is None:
        arrows = "critical" if lanes else "all"
    if arrows not in ("all", "critical", "none"):
        raise ValueError(f"arrows must be 'all', 'critical' or 'none', got {arrows!r}")
    run = trace if isinstance(trace, Trace) else trace.trace
    records = list(run.tasks.values())
    before = [s for s in run.spans if s.kind not in _ANSWER_KINDS]
    after = [s for s in run.spans if s.kind in _ANSWER_KINDS]
    zero = min([run.started] + [s.started for s in run.spans] + [r.queued for r in records])
    end = max(
        [run.finished or zero]
        + [t for r in records for t in (r.queued, r.started, r.finished) if t is not None]
        + [t for s in run.spans for t in (s.started, s.first_output, s.finished) if t is not None]
    )
    span = max(end - zero, 1e-3)
    scale = width / span
    chain = run.critical_chain()
    on_chain = set(chain)

    # rows
    task_rows = _pack(records) if lanes else {r.task_id: i for i, r in enumerate(records)}
    row_count = (max(task_rows.values()) + 1) if task_rows else 0
    labels: list[tuple[str, str, str]] = []  # kind, label, tooltip
    span_kinds = _kinds(before)
    labels += [("span", kind, f"{kind} calls") for kind in span_kinds]
    if lanes:
        labels += [
            ("lane", f"lane {i + 1}", f"tasks run in lane {i + 1}") for i in range(row_count)
        ]
    else:
        labels += [("task", f"${r.task_id} {r.tool}", _task_text(r, plan)) for r in records]
    after_kinds = _kinds(after)
    labels += [("span", kind, f"{kind} calls") for kind in after_kinds]
    label_width = min(
        MAX_LABEL,
        max([text_width(label, LABEL_SIZE) for _, label, _ in labels] + [60.0]),
    )

    summary = _summary(run, records, chain)
    header_y = MARGIN
    title_y = header_y + TITLE_SIZE if title else header_y
    summary_y = title_y + (8 if title else 0) + LABEL_SIZE + 2
    legend_y = summary_y + 8
    visible = 1.0 / scale  # a wait shorter than a pixel is not drawn
    legend_items = _legend(records, run.spans, chain, visible) if legend else []
    axis_y = legend_y + (22 if legend_items else 0) + 14
    top = axis_y + 6
    plot_x = MARGIN + label_width + 12

    def x_at(moment: float) -> float:
        return plot_x + (moment - zero) * scale

    rows: list[_Row] = []
    for i, (kind, label, tooltip) in enumerate(labels):
        rows.append(
            _Row(kind, shorten(one_line(label), LABEL_SIZE, label_width), top + i * ROW, tooltip)
        )
    first_task_row = len(span_kinds)

    def task_y(task_id: int) -> float:
        return top + (first_task_row + task_rows[task_id]) * ROW + (ROW - BAR) / 2

    bars: list[_Bar] = []
    markers: list[_Marker] = []
    waits: list[_Wait] = []
    for record in records:
        style = STATUS_STYLES[_status(record)]
        y = task_y(record.task_id)
        tooltip = _tooltip(record, plan, zero)
        if record.started is None:
            moment = record.finished if record.finished is not None else record.queued
            markers.append(_Marker(record.task_id, x_at(moment), y + BAR / 2, style, tooltip))
            continue
        stop = record.finished if record.finished is not None else end
        # A tool call of milliseconds next to seconds of LLM time is still a visible bar,
        # and its duration is written beside it when it does not fit inside.
        bar_width = max((stop - record.started) * scale, MIN_TASK_BAR)
        text = f"${record.task_id} {record.tool} · " if lanes else ""
        text += duration_text(stop - record.started)
        room = bar_width - 8
        outside = room < 3 * SMALL
        if outside:
            room = plot_x + width - (x_at(record.started) + bar_width) - 6
        text = shorten(one_line(text), SMALL, room) if room >= 3 * SMALL else ""
        bars.append(
            _Bar(
                record.task_id,
                x_at(record.started),
                y,
                bar_width,
                style,
                record.task_id in on_chain,
                record.finished is None,
                "" if text == "…" else text,
                tooltip,
                outside,
            )
        )
        ready = record.ready if record.ready is not None else record.started
        if ready - record.queued >= visible and not lanes:
            waits.append(
                _Wait(record.task_id, "inputs", x_at(record.queued), x_at(ready), y + BAR / 2)
            )
        if record.started - ready >= visible and not lanes:
            waits.append(
                _Wait(record.task_id, "slot", x_at(ready), x_at(record.started), y + BAR / 2)
            )

    span_bars: list[_SpanBar] = []
    for group, kinds, first_row in (
        (before, span_kinds, 0),
        (after, after_kinds, first_task_row + row_count),
    ):
        for span_ in group:
            index = run.spans.index(span_)
            y = top + (first_row + kinds.index(span_.kind)) * ROW + (ROW - BAR) / 2
            span_bars.append(_span_bar(index, span_, x_at, y, end, zero, scale))

    links = _arrows(records, task_rows, task_y, x_at, chain) if arrows != "none" else []
    if arrows == "critical":
        links = [link for link in links if link.critical]
    rows_bottom = top + len(labels) * ROW
    strip_top = rows_bottom + 10
    strip, most = _concurrency(records, x_at, end, strip_top + STRIP)
    ticks = _ticks(span, scale, plot_x, width)
    total_width = plot_x + width + MARGIN + 24
    legend_width = legend_items[-1].x + legend_items[-1].width if legend_items else 0.0
    total_width = max(
        total_width, legend_width + MARGIN, text_width(summary, LABEL_SIZE) + 2 * MARGIN
    )
    height = strip_top + STRIP + 16 + MARGIN
    return render(
        "timeline.svg.j2",
        width=total_width,
        height=height,
        title=one_line(title) if title else "",
        title_y=title_y,
        summary=summary,
        summary_y=summary_y,
        legend=legend_items,
        legend_y=legend_y,
        margin=MARGIN,
        label_size=LABEL_SIZE,
        small=SMALL,
        title_size=TITLE_SIZE,
        plot_x=plot_x,
        plot_width=width,
        axis_y=axis_y,
        top=top,
        rows_bottom=rows_bottom,
        row=ROW,
        bar=BAR,
        rows=rows,
        ticks=ticks,
        bars=bars,
        markers=markers,
        waits=waits,
        spans=span_bars,
        arrows=links,
        strip=strip,
        strip_top=strip_top,
        strip_height=STRIP,
        most=most,
        scale=scale,
        zero=zero,
        critical_ids=" ".join(str(i) for i in chain),
    )


# -- pieces ----------------------------------------------------------------------------------


def _status(record: TaskRecord) -> str:
    return "cached" if getattr(record, "cached", False) else record.status.value


def _kinds(spans: Iterable[Span]) -> list[str]:
    kinds: list[str] = []
    for span in spans:
        if span.kind not in kinds:
            kinds.append(span.kind)
    return kinds


def _pack(records: list[TaskRecord]) -> dict[int, int]:
    """Lanes: each task in the first lane that is free when it starts."""
    lane_of: dict[int, int] = {}
    free_at: list[float] = []
    timed = sorted(
        records,
        key=lambda r: (r.started if r.started is not None else (r.finished or r.queued), r.task_id),
    )
    for record in timed:
        start = record.started if record.started is not None else (record.finished or record.queued)
        stop = record.finished if record.finished is not None else float("inf")
        stop = max(stop, start)
        for lane, moment in enumerate(free_at):
            if moment <= start:
                free_at[lane] = stop
                lane_of[record.task_id] = lane
                break
        else:
            lane_of[record.task_id] = len(free_at)
            free_at.append(stop)
    return lane_of


def _task_text(record: TaskRecord, plan: Plan | None) -> str:
    if plan is not None and record.task_id in plan:
        task = plan[record.task_id]
        return clean(f"${task.id} {task.tool}{arguments_text(task)}")
    return clean(f"${record.task_id} {record.tool}")


def _tooltip(record: TaskRecord, plan: Plan | None, zero: float) -> str:
    lines = [_task_text(record, plan), f"status: {_status(record)}"]
    if record.started is not None:
        lines.append(f"started at {duration_text(record.started - zero)}")
    if record.duration is not None:
        lines.append(f"ran {duration_text(record.duration)}")
    if record.wait is not None and record.wait > 0:
        lines.append(f"waited {duration_text(record.wait)} for a slot")
    if record.attempts > 1:
        lines.append(f"attempts: {record.attempts}")
    if record.error is not None:
        lines.append(f"error: {type(record.error).__name__}: {record.error}")
    return clean("\n".join(lines))


def _span_bar(
    index: int,
    span: Span,
    x_at: _XAt,
    y: float,
    end: float,
    zero: float,
    scale: float,
) -> _SpanBar:
    fill, stroke = SPAN_COLOURS.get(span.kind, OTHER_SPAN)
    stop = span.finished if span.finished is not None else end
    width = (stop - span.started) * scale
    lines = [clean(f"{span.kind}: {span.label}"), f"from {duration_text(span.started - zero)}"]
    lines.append(f"took {duration_text(stop - span.started)}")
    if span.first_output is not None:
        lines.append(f"first output after {duration_text(span.first_output - span.started)}")
    if span.usage is not None:
        usage = span.usage
        lines.append(f"tokens: {usage.prompt_tokens} in, {usage.completion_tokens} out")
    room = width - 8
    text = shorten(one_line(span.label), SMALL, room) if room >= 3 * SMALL else ""
    return _SpanBar(
        index,
        span.kind,
        x_at(span.started),
        y,
        width,
        x_at(span.first_output) if span.first_output is not None else None,
        fill,
        stroke,
        span.finished is None,
        "" if text == "…" else text,
        "\n".join(lines),
    )


def _arrows(
    records: list[TaskRecord],
    rows: dict[int, int],
    task_y: _YAt,
    x_at: _XAt,
    chain: list[int],
) -> list[_Arrow]:
    critical = set(pairwise(chain))
    found: list[_Arrow] = []
    by_id = {r.task_id: r for r in records}
    for record in records:
        if record.started is None:
            continue
        for dep in sorted(record.dependencies):
            source = by_id.get(dep)
            if source is None or source.started is None or source.finished is None:
                continue
            x1, y1 = x_at(source.finished), task_y(dep) + BAR / 2
            x2 = x_at(record.started)
            top = task_y(record.task_id)
            if rows[dep] == rows[record.task_id]:
                if x2 - x1 < 6:
                    continue
                path = f"M{num(x1)},{num(y1)} L{num(x2)},{num(y1)}"
            else:
                below = rows[record.task_id] > rows[dep]
                y2 = top if below else top + BAR
                x2 += 3
                reach = max(10.0, (x2 - x1) / 2)
                bend = min(ROW, abs(y2 - y1) / 2) * (1 if below else -1)
                path = (
                    f"M{num(x1)},{num(y1)} C{num(x1 + reach)},{num(y1)} "
                    f"{num(x2)},{num(y2 - bend)} {num(x2)},{num(y2)}"
                )
            found.append(_Arrow(dep, record.task_id, path, (dep, record.task_id) in critical))
    found.sort(key=lambda a: a.critical)  # critical arrows on top
    return found


def _concurrency(
    records: list[TaskRecord], x_at: _XAt, end: float, bottom: float
) -> tuple[str, int]:
    """A step path of how many tasks ran at each moment, and the most at once."""
    events: list[tuple[float, int]] = []
    for record in records:
        if record.started is not None:
            events.append((record.started, 1))
            events.append((record.finished if record.finished is not None else end, -1))
    if not events:
        return "", 0
    events.sort()
    running = most = 0
    for _, delta in events:
        running += delta
        most = max(most, running)
    step = STRIP / max(most, 1)
    parts = [f"M{num(x_at(events[0][0]))},{num(bottom)}"]
    running = shown = 0
    group_x = x_at(events[0][0])
    for i, (moment, delta) in enumerate(events):
        running += delta
        if i + 1 < len(events) and x_at(events[i + 1][0]) - group_x < 1.0:
            continue  # changes within one pixel are drawn as one step
        if running != shown:
            parts.append(f"H{num(x_at(moment))} V{num(bottom - running * step)}")
            shown = running
        if i + 1 < len(events):
            group_x = x_at(events[i + 1][0])
    parts.append("Z")
    return " ".join(parts), most


def _ticks(span: float, scale: float, plot_x: float, width: float) -> list[_Tick]:
    step = nice_step(span, max(2, int(width // 90)))
    in_ms = span < 1.0
    unit_step = step * 1000 if in_ms else step
    decimals = 0
    while decimals < 6 and abs(round(unit_step, decimals) - unit_step) > 1e-9 * max(unit_step, 1):
        decimals += 1
    ticks: list[_Tick] = []
    k = 0
    while k * step <= span * (1 + 1e-9):
        seconds = k * step
        value = seconds * 1000 if in_ms else seconds
        label = f"{value:.{decimals}f} {'ms' if in_ms else 's'}"
        ticks.append(_Tick(plot_x + seconds * scale, seconds, label))
        k += 1
    return ticks


def _summary(run: Trace, records: list[TaskRecord], chain: list[int]) -> str:
    count = len(records)
    parts = [f"{count} task{'s' if count != 1 else ''}", f"makespan {duration_text(run.makespan)}"]
    if chain:
        work = sum(run.tasks[i].duration or 0.0 for i in chain)
        names = " → ".join(f"${i}" for i in chain) if len(chain) <= 6 else f"{len(chain)} tasks"
        parts.append(f"critical path {names} ({duration_text(work)})")
    failed = sum(r.status is TaskStatus.FAILED for r in records)
    if failed:
        parts.append(f"{failed} failed")
    return " · ".join(parts)


def _legend(
    records: list[TaskRecord], spans: list[Span], chain: list[int], visible: float
) -> list[LegendItem]:
    entries = status_entries(_status(r) for r in records)
    if chain:
        entries.append(("critical", "critical path", None))
    if any(r.ready is not None and r.ready - r.queued >= visible for r in records):
        entries.append(("inputs", "waiting for inputs", None))
    if any((r.wait or 0.0) >= visible for r in records):
        entries.append(("slot", "waiting for a slot", None))
    if any(s.first_output is not None for s in spans):
        entries.append(("first-output", "first output", None))
    return lay_out_legend(entries, MARGIN)
