"""Saved runs: Trace.to_json and Trace.from_json keep every record, span and batch."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import llmc
from llmc.cli import main
from llmc.errors import RecordedError, TraceFormatError
from llmc.llm.base import Usage
from llmc.result import error_text
from llmc.testing import ScriptedLLM
from llmc.trace import Batch, Span, TaskRecord, TaskStatus, Trace


@llmc.tool(pure=True)
async def double(x: int) -> int:
    """Double a number."""
    await asyncio.sleep(0.01)
    return 2 * x


@llmc.tool(timeout=0.05)
async def stall(x: int) -> int:
    """Never answers in time."""
    await asyncio.sleep(10)
    return x


@llmc.tool(batch=True, batch_window=0.02)
async def square(x: list[int]) -> list[int]:
    """Square numbers, in batches."""
    return [v * v for v in x]


def _same(a: Trace, b: Trace) -> None:
    """``b`` is ``a`` read back: every field equal, times shifted to start at 0."""
    shift = a.started

    def at(t: float | None) -> float | None:
        return None if t is None else t - shift

    assert b.run_id == a.run_id and b.wall_started == a.wall_started
    assert b.finished == pytest.approx(at(a.finished), abs=1e-8)
    assert list(b.tasks) == list(a.tasks)
    for task_id, old in a.tasks.items():
        new = b.tasks[task_id]
        assert (new.tool, new.dependencies, new.status, new.attempts) == (
            old.tool,
            old.dependencies,
            old.status,
            old.attempts,
        )
        assert (new.blocked_by, new.served_by, new.batch, new.cached) == (
            old.blocked_by,
            old.served_by,
            old.batch,
            old.cached,
        )
        for name in ("queued", "ready", "started", "finished"):
            assert getattr(new, name) == pytest.approx(at(getattr(old, name)), abs=1e-8)
        if old.error is None:
            assert new.error is None
        else:
            assert isinstance(new.error, RecordedError)
            assert error_text(new.error) == error_text(old.error)
    assert [(s.kind, s.label, s.usage, s.cost, s.model) for s in b.spans] == [
        (s.kind, s.label, s.usage, s.cost, s.model) for s in a.spans
    ]
    assert [(c.tool, c.task_ids, c.attempts, c.fallback) for c in b.batches] == [
        (c.tool, c.task_ids, c.attempts, c.fallback) for c in a.batches
    ]


async def test_a_run_with_failures_skips_batches_and_shared_calls_round_trips(
    tmp_path: Path,
) -> None:
    plan = llmc.Plan.parse(
        "1. double(2)\n2. double(2)\n3. stall(1)\n4. double($3)\n"
        "5. square(3)\n6. square(4)\njoin()",
        tools=[double, stall, square],
    )
    result = await llmc.run_plan(plan)
    trace = result.trace
    assert trace.tasks[2].served_by == 1 and trace.batches  # the run has what we check
    text = trace.to_json(tmp_path / "run.json", plan=plan, indent=2)
    assert (tmp_path / "run.json").read_text(encoding="utf-8") == text
    back = Trace.from_json(text)
    _same(trace, back)
    assert back.tasks[4].status is TaskStatus.SKIPPED
    assert "ToolTimeoutError" in error_text(back.tasks[3].error or RecordedError())
    assert llmc.Plan.from_dict(json.loads(text)["plan"]).to_text() == plan.to_text()
    assert Trace.from_json(back.to_json()).to_json() == back.to_json()  # a fixed point
    assert back.makespan == pytest.approx(trace.makespan)


async def test_a_compiler_run_keeps_its_llm_calls_with_model_usage_and_cost() -> None:
    llm = ScriptedLLM(["1. double(21)\njoin()", "Thought: done.\nAction: Finish(42)"])
    answer = await llmc.Compiler(tools=[double], llm=llm).run("Double 21?")
    back = Trace.from_json(answer.trace.to_json(plan=answer.plan))
    _same(answer.trace, back)
    assert [s.kind for s in back.spans] == ["planner", "joiner"]
    assert all(s.model == llm.model for s in back.spans)
    assert all(s.usage is not None and s.usage.calls == 1 for s in back.spans)


times = st.one_of(st.none(), st.floats(0, 1e4, allow_nan=False))


@given(
    records=st.lists(
        st.tuples(
            st.sampled_from(list(TaskStatus)),
            times,
            times,
            st.integers(0, 5),
            st.booleans(),
            st.one_of(st.none(), st.text(max_size=30)),
        ),
        max_size=8,
    ),
    spans=st.lists(
        st.tuples(st.text(min_size=1, max_size=10), times, st.integers(0, 10**6)), max_size=4
    ),
)
def test_any_trace_round_trips(
    records: list[tuple[TaskStatus, float | None, float | None, int, bool, str | None]],
    spans: list[tuple[str, float | None, int]],
) -> None:
    trace = Trace("r", started=100.0, finished=200.0)
    for number, (status, started, finished, attempts, cached, error) in enumerate(records, 1):
        trace.tasks[number] = TaskRecord(
            task_id=number,
            tool="t",
            dependencies=frozenset(range(1, number)),
            queued=100.0,
            status=status,
            started=None if started is None else 100 + started,
            finished=None if finished is None else 100 + finished,
            attempts=attempts,
            cached=cached,
            error=None if error is None else ValueError(error),
        )
    for kind, finished, tokens in spans:
        usage = Usage(tokens, tokens // 2, 0, 1)
        trace.spans.append(Span(kind, kind, 100.0, finished, usage=usage, cost=tokens * 1e-6))
    trace.batches.append(Batch("t", (1, 2), 101.0, None, 1, KeyError("k")))
    _same(trace, Trace.from_json(trace.to_json()))


def test_text_that_is_not_a_saved_run_says_what_it_is() -> None:
    with pytest.raises(TraceFormatError, match="must be JSON"):
        Trace.from_json("{oops")
    with pytest.raises(TraceFormatError, match=r"Trace\.to_json"):
        Trace.from_json('{"tasks": []}')
    with pytest.raises(TraceFormatError, match="version 99"):
        Trace.from_json('{"format": "llmc-trace", "version": 99}')
    with pytest.raises(TraceFormatError, match="broken record"):
        Trace.from_json('{"format": "llmc-trace", "version": 2, "run_id": "x"}')


def test_llmc_exec_saves_a_run_that_llmc_viz_draws(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "tools.py").write_text(
        "import llmc\n\n\n@llmc.tool\ndef double(x: int) -> int:\n"
        '    """Double a number."""\n    return 2 * x\n',
        encoding="utf-8",
    )
    (tmp_path / "run.plan").write_text("1. double(1)\n2. double($1)\njoin()\n", encoding="utf-8")
    saved = tmp_path / "run.json"
    tools = str(tmp_path / "tools.py")
    assert main(["exec", str(tmp_path / "run.plan"), "--tools", tools, "--trace", str(saved)]) == 0
    assert Trace.from_json(saved.read_text()).statuses() == {1: "done", 2: "done"}
    capsys.readouterr()
    assert main(["viz", str(saved), "-o", str(tmp_path / "timeline.svg")]) == 0
    picture = (tmp_path / "timeline.svg").read_text(encoding="utf-8")
    assert picture.startswith("<svg") and "double" in picture
    assert picture == Trace.from_json(saved.read_text()).to_svg(plan=llmc.Plan.from_dict(
        json.loads(saved.read_text())["plan"]))  # fmt: skip
    # a plan in JSON is still drawn as a plan
    plan = llmc.Plan.parse("1. double(1)\n2. double($1)\njoin()", tools=[double])
    (tmp_path / "plan.json").write_text(plan.to_json(), encoding="utf-8")
    assert main(["viz", str(tmp_path / "plan.json")]) == 0
    assert capsys.readouterr().out.startswith("<svg")


async def test_a_saved_run_is_drawn_as_svg_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = await llmc.run_plan(llmc.Plan.parse("1. double(1)\njoin()", tools=[double]))
    saved = tmp_path / "run.json"
    result.trace.to_json(saved)
    assert main(["viz", str(saved), "--format", "mermaid"]) == 2
    assert "SVG timeline" in capsys.readouterr().err
