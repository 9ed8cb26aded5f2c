"""Tasks the planner drops (a repeat, a veto) are in the run's trace, its saved JSON and
``llmc run``'s progress, whatever the backend: here a real HTTP server."""

from __future__ import annotations

import io

import llmc
from llmc.compiler import Compiler
from llmc.llm import OpenAI
from llmc.planner import Planner
from llmc.progress import Progress
from llmc.testing import EventRecorder, ScriptedOpenAIServer
from llmc.trace import TaskDropped, Trace


@llmc.tool
def length(river: str) -> str:
    """The length of a river in km."""
    return {"Nile": "6650", "Amazon": "6400", "Congo": "4700"}.get(river, "unknown")


PLAN = (
    '1. length("Nile")\n2. length("Nile")\n3. length("Congo")\n'
    '4. length("$3")\n5. length("Amazon")\njoin()\n'
)


def no_congo(task: llmc.Task, kept: object) -> str | None:
    return "drop" if "Congo" in task.args else None


async def test_dropped_tasks_are_in_the_trace_its_json_and_the_progress() -> None:
    events = EventRecorder()
    shown = io.StringIO()
    progress = Progress(shown)

    def on_event(event: llmc.Event) -> None:
        events(event)
        progress.event(event)

    with ScriptedOpenAIServer([PLAN, "Finish(6650 and 6400)"], chunk_size=5) as server:
        llm = OpenAI("scripted", base_url=server.base_url, api_key="sk-test")
        planner = Planner(llm, [length], repeats="drop", veto=no_congo)  # type: ignore[arg-type]
        answer = await Compiler([length], llm, planner=planner).run(
            "Nile and Amazon?", on_event=on_event
        )
    assert answer.text == "6650 and 6400"
    assert sorted(answer.trace.tasks) == [1, 5]  # the scheduler saw only the kept tasks
    noted = [(d.task_id, d.tool, d.call, d.reason) for d in answer.trace.dropped]
    assert noted == [
        (2, "length", "2. length('Nile')", "dropped: it repeats an earlier task"),
        (3, "length", "3. length('Congo')", "dropped: vetoed"),
        (4, "length", "4. length('$3')", "dropped: it uses a dropped task"),
    ]
    assert events.of_type(TaskDropped) == answer.trace.dropped  # each one also went out as it came
    assert [(t.id, why) for t, why in answer.rounds[0].dropped] == [(d[0], d[3]) for d in noted]

    saved = Trace.from_json(answer.trace.to_json())
    assert [(d.task_id, d.call, d.reason, d.round) for d in saved.dropped] == [
        (d.task_id, d.call, d.reason, 1) for d in answer.trace.dropped
    ]
    assert all(0 <= d.time <= saved.finished for d in saved.dropped)  # type: ignore[operator]
    for task_id, tool, _, reason in noted:
        assert f"dropped  ${task_id} {tool}: {reason}" in shown.getvalue()


async def test_a_stopped_plan_notes_the_task_it_stopped_at() -> None:
    with ScriptedOpenAIServer([PLAN, "Finish(6650)"]) as server:
        llm = OpenAI("scripted", base_url=server.base_url, api_key="sk-test")
        planner = Planner(llm, [length], repeats="stop")
        answer = await Compiler([length], llm, planner=planner).run("Nile?")
    assert sorted(answer.trace.tasks) == [1]
    assert [(d.task_id, d.reason) for d in answer.trace.dropped] == [
        (2, "the plan stopped here: it repeats an earlier task")
    ]


def test_saved_runs_without_drops_still_read() -> None:
    trace = Trace("r", 0.0, 1.0)
    data = trace.to_json().replace(', "dropped": []', "")
    assert '"dropped"' not in data
    assert Trace.from_json(data).dropped == []
