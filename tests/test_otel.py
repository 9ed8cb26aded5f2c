"""Runs exported as OpenTelemetry spans, read back from the SDK's in-memory exporter."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk", reason="pip install -e '.[otel]'")

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import llmc
from llmc import observe, otel
from llmc.budget import Price
from llmc.testing import ScriptedLLM
from llmc.trace import Trace


@llmc.tool(pure=True)
async def lookup(word: str) -> str:
    """Look a word up."""
    await asyncio.sleep(0.01)
    return word.upper()


attempts: dict[str, int] = {}


@llmc.tool(retries=2, retry_on=(llmc.RetryableToolError,))
async def flaky(key: str) -> str:
    """Fails once per key, then answers."""
    attempts[key] = attempts.get(key, 0) + 1
    if attempts[key] == 1:
        raise llmc.RetryableToolError("try again")
    return key


@llmc.tool
async def broken(word: str) -> str:
    """Always fails."""
    raise ValueError(f"no {word}")


@llmc.tool(batch=True, batch_window=0.02)
async def lengths(word: list[str]) -> list[int]:
    """Lengths of words, in batches."""
    return [len(w) for w in word]


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    """Spans of every run while the test runs, instrumented with a provider of its own."""
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    otel.instrument(provider, capture_content=True)
    try:
        yield memory
    finally:
        otel.uninstrument()
        provider.shutdown()


def by_name(spans: tuple[ReadableSpan, ...], prefix: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name.startswith(prefix)]


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


async def test_a_question_is_one_trace_with_llm_calls_tasks_and_batches(
    exporter: InMemorySpanExporter,
) -> None:
    attempts.clear()
    plan = (
        '1. lookup("sea")\n2. lookup("sea")\n3. flaky("k")\n4. broken("x")\n'
        '5. lookup("$4")\n6. lengths("ab")\n7. lengths("abc")\njoin()'
    )
    llm = ScriptedLLM([plan, "Thought: enough.\nAction: Finish(SEA)"], model="m-1")
    budget = llmc.Budget(prices={"m-1": Price(prompt=1.0, completion=2.0)})
    answer = await llmc.Compiler(tools=[lookup, flaky, broken, lengths], llm=llm).run(
        "Shout sea?", budget=budget
    )
    spans = exporter.get_finished_spans()
    assert len({s.context.trace_id for s in spans}) == 1  # one trace per question
    (root,) = by_name(spans, "invoke_agent llmc")
    assert root.parent is None
    assert all(s.parent is not None and s.parent.span_id == root.context.span_id
               for s in spans if s is not root)  # fmt: skip
    root_attrs = attrs(root)
    assert root_attrs["gen_ai.operation.name"] == "invoke_agent"
    assert root_attrs["llmc.question"] == "Shout sea?" and root_attrs["llmc.answer"] == "SEA"
    assert root_attrs["gen_ai.usage.input_tokens"] == answer.usage.prompt_tokens
    assert root_attrs["gen_ai.usage.output_tokens"] == answer.usage.completion_tokens
    assert root_attrs["llmc.cost_usd"] == pytest.approx(answer.cost)
    assert root_attrs["llmc.tasks.failed"] == 1 and root_attrs["llmc.tasks.skipped"] == 1

    chats = by_name(spans, "chat m-1")
    assert [attrs(s)["llmc.llm.kind"] for s in chats] == ["planner", "joiner"]
    for chat, span in zip(chats, answer.trace.spans, strict=True):
        assert attrs(chat)["gen_ai.request.model"] == "m-1"
        assert span.usage is not None
        assert attrs(chat)["gen_ai.usage.input_tokens"] == span.usage.prompt_tokens
        assert attrs(chat)["gen_ai.usage.output_tokens"] == span.usage.completion_tokens
        assert attrs(chat)["llmc.cost_usd"] == pytest.approx(span.cost)

    tasks = {attrs(s)["llmc.task.id"]: s for s in by_name(spans, "execute_tool ")}
    assert set(tasks) == set(answer.trace.tasks)
    assert attrs(tasks[2])["llmc.task.served_by"] == 1  # an identical pure call shared
    assert attrs(tasks[3])["llmc.task.attempts"] == 2
    assert attrs(tasks[3])["llmc.task.retries"] == 1
    assert tasks[4].status.status_code is StatusCode.ERROR
    assert "no x" in (tasks[4].status.description or "")
    assert attrs(tasks[5])["llmc.task.status"] == "skipped"
    assert attrs(tasks[5])["llmc.task.blocked_by"] == 4
    assert tasks[1].status.status_code is StatusCode.OK
    (batch,) = by_name(spans, "llmc.batch lengths")
    assert attrs(batch)["llmc.batch.task_ids"] == (6, 7)
    for member in (6, 7):
        assert [link.context.span_id for link in tasks[member].links] == [batch.context.span_id]
    # spans sit where the run's own records put them, in order
    record = answer.trace.tasks[1]
    assert record.started is not None and record.finished is not None
    assert tasks[1].end_time is not None and tasks[1].start_time is not None
    took = (tasks[1].end_time - tasks[1].start_time) / 1e9
    assert took == pytest.approx(record.finished - record.started, abs=1e-6)
    assert root.start_time is not None and chats[0].start_time is not None
    assert root.start_time <= chats[0].start_time


async def test_a_plan_run_alone_is_a_trace_and_a_failed_question_says_why(
    exporter: InMemorySpanExporter,
) -> None:
    await llmc.run_plan(llmc.Plan.parse('1. lookup("a")\njoin()', tools=[lookup]))
    (root,) = exporter.get_finished_spans()[-1:]
    assert root.name == "llmc.run_plan" and attrs(root)["llmc.tasks"] == 1
    exporter.clear()
    llm = ScriptedLLM(["1. nosuchtool()\njoin()", "1. still_wrong()\njoin()"])
    with pytest.raises(llmc.PlanError):
        await llmc.Compiler(tools=[lookup], llm=llm).run("Broken?")
    (root,) = by_name(exporter.get_finished_spans(), "invoke_agent")
    assert root.status.status_code is StatusCode.ERROR
    description = root.status.description or ""
    assert description.startswith("Error: PlanError:") and "still_wrong" in description


async def test_nothing_is_exported_when_not_instrumented() -> None:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    otel.instrument(provider)
    otel.uninstrument()
    assert not otel.instrumented() and observe.observers == []
    await llmc.run_plan(llmc.Plan.parse('1. lookup("a")\njoin()', tools=[lookup]))
    assert memory.get_finished_spans() == ()
    # by hand, a saved run goes out with the times it was saved with
    result = await llmc.run_plan(llmc.Plan.parse('1. lookup("b")\njoin()', tools=[lookup]))
    saved = Trace.from_json(result.trace.to_json())
    otel.export(saved, tracer_provider=provider, question="b?")
    root = next(s for s in memory.get_finished_spans() if s.name == "invoke_agent llmc")
    assert root.start_time == int(saved.wall_started * 1e9)
    assert "llmc.question" not in attrs(root)  # content only when asked for
    provider.shutdown()


async def test_a_failing_observer_never_changes_a_run() -> None:
    def observer(run: observe.FinishedRun) -> None:
        raise RuntimeError("telemetry backend down")

    observe.add_observer(observer)
    try:
        result = await llmc.run_plan(llmc.Plan.parse('1. lookup("a")\njoin()', tools=[lookup]))
    finally:
        observe.remove_observer(observer)
    assert result.outputs[1] == "A"


def test_without_opentelemetry_the_error_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    with pytest.raises(llmc.LLMCError, match=r'pip install -e "\.\[otel\]"'):
        otel.instrument()
    assert not otel.instrumented()
