"""Pictures of runs: one bar per task at its times, LLM calls, the critical path, the axis."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from viz_helpers import NS, find, findtext, parse

import llmc
from llmc import Plan, Ref
from llmc.trace import Span, TaskRecord, TaskStatus, Trace
from llmc.viz import timeline_svg

T0 = 1000.0


def record(
    task_id: int,
    tool: str,
    deps: set[int],
    times: tuple[float | None, float | None, float | None, float | None],
    status: TaskStatus = TaskStatus.DONE,
) -> TaskRecord:
    queued, ready, started, finished = (None if t is None else T0 + t for t in times)
    assert queued is not None
    return TaskRecord(
        task_id,
        tool,
        frozenset(deps),
        queued,
        status=status,
        ready=ready,
        started=started,
        finished=finished,
        attempts=0 if started is None else 1,
    )


def two_branch_trace() -> Trace:
    """Two searches, two maths, a compare; a failed fetch and the task it skipped."""
    trace = Trace("run-1", started=T0, finished=T0 + 1.2)
    for rec in (
        record(1, "search", set(), (0.05, 0.05, 0.06, 0.46)),
        record(2, "search", set(), (0.07, 0.07, 0.08, 0.30)),
        record(3, "math", {1}, (0.10, 0.46, 0.47, 0.60)),
        record(4, "math", {2}, (0.11, 0.30, 0.35, 0.80)),
        record(5, "compare", {3, 4}, (0.12, 0.80, 0.80, 0.85)),
        record(6, "fetch", set(), (0.13, 0.13, 0.20, 0.25), TaskStatus.FAILED),
        record(7, "use", {6}, (0.14, None, None, 0.25), TaskStatus.SKIPPED),
    ):
        trace.tasks[rec.task_id] = rec
    trace.spans.append(Span("planner", "plan 1", T0 - 0.1, T0 + 0.15, T0 + 0.02))
    trace.spans.append(Span("joiner", "join 1", T0 + 0.86, T0 + 1.1, T0 + 0.95))
    return trace


def axis(root):
    group = find(root, ".//svg:g[@class='axis']")
    return float(group.attrib["data-x0"]), float(group.attrib["data-px-per-second"])


def test_critical_chain_follows_the_latest_dependency() -> None:
    trace = two_branch_trace()
    assert trace.critical_chain() == [2, 4, 5]
    assert Trace("empty", started=0.0).critical_chain() == []


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(0.001, 1.0), st.lists(st.integers(0, 50), max_size=3)),
        min_size=1,
        max_size=25,
    )
)
def test_without_waiting_the_critical_chain_is_a_longest_path(
    tasks: list[tuple[float, list[int]]],
) -> None:
    """Each task starts the moment its last input is there: the chain the run waited on is
    a dependency path as long as the plan's critical path."""
    plan = Plan()
    duration: dict[int, float] = {}
    for seconds, picks in tasks:
        deps = sorted({pick % plan.next_id for pick in picks} - {0})
        duration[plan.next_id] = seconds
        plan.add("work", *(Ref(d) for d in deps))
    trace = Trace("no-waiting", started=0.0)
    finished: dict[int, float] = {}
    for task in plan:
        start = max((finished[d] for d in task.dependencies), default=0.0)
        finished[task.id] = start + duration[task.id]
        trace.tasks[task.id] = TaskRecord(
            task.id,
            "work",
            task.dependencies,
            queued=0.0,
            status=TaskStatus.DONE,
            ready=start,
            started=start,
            finished=finished[task.id],
        )
    chain = trace.critical_chain()
    assert all(a in plan[b].dependencies for a, b in itertools.pairwise(chain))
    assert not plan[chain[0]].dependencies
    assert finished[chain[-1]] == max(finished.values())
    longest, _ = plan.critical_path(duration)
    assert sum(duration[i] for i in chain) == pytest.approx(longest)


def test_one_bar_per_task_at_its_times() -> None:
    trace = two_branch_trace()
    root = parse(timeline_svg(trace))
    x0, scale = axis(root)
    zero = T0 - 0.1  # the planner started before the run
    bars = {
        int(g.attrib["data-task"]): find(g, "svg:rect")
        for g in root.iterfind(".//svg:g[@class='bars']/svg:g", NS)
        if g.find("svg:rect", NS) is not None
    }
    assert sorted(bars) == [1, 2, 3, 4, 5, 6]
    assert scale == pytest.approx(880 / 1.3, rel=1e-6)
    for task_id, rect in bars.items():
        rec = trace.tasks[task_id]
        assert rec.started is not None and rec.finished is not None
        assert float(rect.attrib["x"]) == pytest.approx(x0 + (rec.started - zero) * scale, abs=0.11)
        assert float(rect.attrib["width"]) == pytest.approx(rec.duration * scale, abs=0.11)
    # the skipped task never ran: a marker where it was skipped, no bar
    marker = find(root, ".//svg:g[@data-task='7']")
    assert "marker" in marker.attrib["class"] and "status-skipped" in marker.attrib["class"]
    # rows keep the trace's order, between the planner and the joiner
    labels = [t.text for t in root.iterfind(".//svg:text[@class='row-label']", NS)]
    assert labels == [
        "planner",
        "$1 search",
        "$2 search",
        "$3 math",
        "$4 math",
        "$5 compare",
        "$6 fetch",
        "$7 use",
        "joiner",
    ]
    ys = {i: float(bars[i].attrib["y"]) for i in bars}
    assert ys[1] < ys[2] < ys[3] < ys[4] < ys[5] < ys[6]


def test_critical_path_is_marked() -> None:
    root = parse(timeline_svg(two_branch_trace()))
    critical = sorted(
        int(g.attrib["data-task"])
        for g in root.iterfind(".//svg:g[@data-task]", NS)
        if "critical" in g.attrib["class"].split()
    )
    assert critical == [2, 4, 5]
    assert find(root, ".//svg:g[@class='bars']").attrib["data-critical"] == "2 4 5"
    arrows = {
        (int(p.attrib["data-source"]), int(p.attrib["data-target"])): p.attrib["class"]
        for p in root.iterfind(".//svg:path[@data-source]", NS)
    }
    assert arrows == {
        (1, 3): "dependency",
        (2, 4): "dependency critical",
        (3, 5): "dependency",
        (4, 5): "dependency critical",
    }
    summary = findtext(root, ".//svg:text[@class='summary']")
    assert "critical path $2 → $4 → $5 (720 ms)" in summary
    assert summary.startswith("7 tasks · makespan 1.2 s")


def test_llm_calls_and_waits() -> None:
    trace = two_branch_trace()
    root = parse(timeline_svg(trace))
    x0, scale = axis(root)
    planner = find(root, ".//svg:g[@class='span span-planner']")
    bar = find(planner, "svg:rect[@class='span-bar']")
    assert float(bar.attrib["x"]) == pytest.approx(x0, abs=0.11)
    assert float(bar.attrib["width"]) == pytest.approx(0.25 * scale, abs=0.11)
    first = find(planner, "svg:line[@class='first-output']")
    assert float(first.attrib["x1"]) == pytest.approx(x0 + 0.12 * scale, abs=0.11)
    assert "first output after 120 ms" in findtext(planner, "svg:title")
    assert root.find(".//svg:g[@class='span span-joiner']", NS) is not None
    slots = {
        line.attrib["data-task"]: line
        for line in root.iterfind(".//svg:line[@class='wait wait-slot']", NS)
    }
    assert sorted(slots) == ["1", "2", "3", "4", "6"]  # 5 started the moment it was ready
    slot = slots["4"]
    assert float(slot.attrib["x2"]) - float(slot.attrib["x1"]) == pytest.approx(
        0.05 * scale, abs=0.1
    )


def test_time_axis_has_round_ticks() -> None:
    root = parse(timeline_svg(two_branch_trace()))
    x0, scale = axis(root)
    ticks = root.findall(".//svg:text[@class='tick']", NS)
    labels = [t.text for t in ticks]
    assert labels == ["0.0 s", "0.2 s", "0.4 s", "0.6 s", "0.8 s", "1.0 s", "1.2 s"]
    for tick in ticks:
        seconds = float(tick.attrib["data-seconds"])
        assert float(tick.attrib["x"]) == pytest.approx(x0 + seconds * scale, abs=0.11)
    short = Trace("short", started=0.0, finished=0.004)
    short.tasks[1] = TaskRecord(1, "t", frozenset(), 0.0, TaskStatus.DONE, 0.0, 0.001, 0.004, 1)
    labels = [t.text for t in parse(timeline_svg(short)).iterfind(".//svg:text[@class='tick']", NS)]
    assert labels[:3] == ["0.0 ms", "0.5 ms", "1.0 ms"] and labels[-1] == "4.0 ms"


def test_lanes_pack_tasks_into_as_many_rows_as_ran_at_once() -> None:
    root = parse(timeline_svg(two_branch_trace(), lanes=True))
    labels = [t.text for t in root.iterfind(".//svg:text[@class='row-label']", NS)]
    assert labels == ["planner", "lane 1", "lane 2", "lane 3", "joiner"]
    bars = root.findall(".//svg:rect[@class='bar']", NS)
    assert len(bars) == 6
    by_row: dict[str, list[tuple[float, float]]] = {}
    for bar in bars:
        x, w = float(bar.attrib["x"]), float(bar.attrib["width"])
        by_row.setdefault(bar.attrib["y"], []).append((x, x + w))
    for spans in by_row.values():
        spans.sort()
        assert all(a[1] <= b[0] + 0.11 for a, b in itertools.pairwise(spans))
    assert "at most 3" in "".join(find(root, ".//svg:g[@class='concurrency']").itertext())
    # in lanes only the critical path's arrows are drawn unless asked otherwise
    classes = {p.attrib["class"] for p in root.iterfind(".//svg:path[@data-source]", NS)}
    assert classes == {"dependency critical"}
    every = parse(timeline_svg(two_branch_trace(), lanes=True, arrows="all"))
    assert len(every.findall(".//svg:path[@data-source]", NS)) == 4
    none = parse(timeline_svg(two_branch_trace(), arrows="none"))
    assert none.findall(".//svg:path[@data-source]", NS) == []
    with pytest.raises(ValueError, match="arrows"):
        timeline_svg(two_branch_trace(), arrows="some")  # type: ignore[arg-type]


def test_running_tasks_and_empty_runs() -> None:
    trace = Trace("live", started=0.0)
    trace.tasks[1] = TaskRecord(1, "slow", frozenset(), 0.0, TaskStatus.RUNNING, 0.0, 0.1)
    trace.tasks[2] = TaskRecord(2, "fast", frozenset(), 0.0, TaskStatus.DONE, 0.0, 0.1, 0.3, 1)
    trace.spans.append(Span("planner", "plan 1", 0.0))  # still streaming
    root = parse(timeline_svg(trace))
    bar = find(root, ".//svg:g[@data-task='1']/svg:rect")
    assert bar.attrib["stroke-dasharray"] == "4 2"  # open end
    assert float(bar.attrib["width"]) > 0
    empty = parse(timeline_svg(Trace("nothing", started=5.0)))
    assert empty.findall(".//svg:rect[@class='bar']", NS) == []
    with pytest.raises(ValueError, match="width"):
        timeline_svg(trace, width=0)


def test_same_trace_same_bytes_and_escaped_text() -> None:
    trace = two_branch_trace()
    trace.tasks[1].tool = 'sea<rch> & "co"'
    trace.tasks[6].error = ValueError('bad <input> & \x00 "quoted"')
    first = timeline_svg(trace, title="Which <is> taller & why?")
    assert first == timeline_svg(trace, title="Which <is> taller & why?")
    root = parse(first)
    assert findtext(root, ".//svg:text[@class='title']") == "Which <is> taller & why?"
    tooltip = findtext(root, ".//svg:g[@data-task='6']/svg:title")
    assert 'error: ValueError: bad <input> & \ufffd "quoted"' in tooltip


async def test_a_real_run_draws(tmp_path: Path) -> None:
    @llmc.tool
    async def echo(text: str) -> str:
        """Echo.

        Args:
            text: what to say.
        """
        return text

    plan = llmc.Plan.parse('1. echo("a")\n2. echo("b")\n3. echo("$1 $2")\n', tools=[echo])
    result = await llmc.run_plan(plan)
    svg = result.trace.to_svg(tmp_path / "t.svg", plan=plan, lanes=True)
    assert (tmp_path / "t.svg").read_text(encoding="utf-8") == svg
    assert timeline_svg(result) == result.trace._repr_svg_()
    root = parse(svg)
    assert len(root.findall(".//svg:rect[@class='bar']", NS)) == 3
    tooltip = findtext(root, ".//svg:g[@data-task='3']/svg:title")
    assert tooltip.startswith("$3 echo('$1 $2')")
