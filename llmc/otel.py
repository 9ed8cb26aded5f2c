"""Runs as OpenTelemetry spans: one trace per question, with the GenAI semantic conventions.

::

    llmc.otel.instrument()              # every run from now on, to the global TracerProvider
    llmc.otel.instrument(provider)      # ... or to this one
    llmc.otel.export(answer)            # one run by hand (an Answer, a Result or a Trace)
    llmc.otel.uninstrument()

Each question is one trace: a root span ``invoke_agent llmc`` (the run, with its tokens and
cost in total), a ``chat MODEL`` span per LLM call of the planner, the joiner and the others
(``gen_ai.request.model``, ``gen_ai.usage.input_tokens`` / ``output_tokens``, the cost, the
time to the first token), an ``execute_tool TOOL`` span per task (``gen_ai.tool.name``, its
status, attempts and retries, whether a cache or an identical call served it, its
dependencies) and an ``llmc.batch TOOL`` span per batch, which its members' spans link
to. A plan run on its own (``llmc.run_plan``) is a trace of its tasks under a root
``llmc.run_plan``. Spans are made from the run's :class:`~llmc.trace.Trace` when it ends,
with the times it recorded, so a run pays nothing while it goes; the root span is a child of
whatever span is current where the run ran, so a run inside a traced request joins its trace.

Questions and answers are personal data in many applications: they are recorded
(``llmc.question``, ``llmc.answer``) only with ``capture_content=True``.

Needs the OpenTelemetry API and SDK: ``pip install -e ".[otel]"`` from a checkout. Without
them, or without :func:`instrument`, llmc runs as if this module did not exist.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import observe
from ._extras import require
from .errors import LLMCError
from .result import error_text
from .trace import Span, TaskStatus, Trace

if TYPE_CHECKING:
    from opentelemetry.trace import Span as OTelSpan
    from opentelemetry.trace import Tracer, TracerProvider

    from .compiler import Answer
    from .result import Result

__all__ = ["export", "instrument", "instrumented", "uninstrument"]

#: The instrumentation scope of llmc's spans.
SCOPE = "llmc"
#: The kinds of :class:`~llmc.trace.Span` that are LLM calls.
LLM_KINDS = frozenset({"planner", "joiner", "estimator", "summarizer"})


def instrument(
    tracer_provider: TracerProvider | None = None, *, capture_content: bool = False
) -> None:
    """Export every run that ends from now on as OpenTelemetry spans.

    Calling it again replaces the earlier settings.

    Args:
        tracer_provider: where spans go; default: OpenTelemetry's global provider (set it
            up with the SDK as usual, e.g. an OTLP exporter).
        capture_content: also record each question and answer text.

    Raises:
        LLMCError: the OpenTelemetry API is not installed.
    """
    tracer = _tracer(tracer_provider)
    uninstrument()
    global _observer
    _observer = _Observer(tracer, capture_content)
    observe.add_observer(_observer)


def uninstrument() -> None:
    """Stop exporting runs (those already exported stay exported)."""
    global _observer
    if _observer is not None:
        observe.remove_observer(_observer)
        _observer = None


def instrumented() -> bool:
    """Whether :func:`instrument` is on."""
    return _observer is not None


def export(
    run: Answer | Result | Trace,
    *,
    tracer_provider: TracerProvider | None = None,
    capture_content: bool = False,
    question: str | None = None,
) -> None:
    """Export one run as spans, by hand: a finished :class:`~llmc.Answer`, a
    :class:`~llmc.Result`, or a :class:`~llmc.Trace` (one read back with
    :meth:`~llmc.Trace.from_json` too: its ``wall_started`` places it in time).

    Args:
        run: the run.
        tracer_provider: where spans go (default: the global provider).
        capture_content: also record the question and the answer text.
        question: the question, for a bare trace (an Answer knows its own).
    """
    finished = _as_finished(run, question)
    _Observer(_tracer(tracer_provider), capture_content)(finished)


# -- inside ----------------------------------------------------------------------------------

_observer: _Observer | None = None


def _tracer(provider: TracerProvider | None) -> Tracer:
    otel_trace = require(
        "opentelemetry.trace",
        extra="otel",
        needed_by="llmc.otel",
        package="OpenTelemetry",
        error=LLMCError,
    )
    from . import __version__

    return otel_trace.get_tracer(SCOPE, __version__, tracer_provider=provider)


def _as_finished(run: Answer | Result | Trace, question: str | None) -> observe.FinishedRun:
    from .compiler import Answer
    from .result import Result

    if isinstance(run, Answer):
        return observe.FinishedRun(run.trace, run.question, run)
    if isinstance(run, Result):
        return observe.FinishedRun(run.trace, question, result=run)
    return observe.FinishedRun(run, question)


@dataclass(frozen=True, slots=True)
class _Observer:
    """Turns a finished run into spans (an observer of :mod:`llmc.observe`)."""

    tracer: Tracer
    capture_content: bool

    def __call__(self, run: observe.FinishedRun) -> None:
        from opentelemetry import trace as otel_trace
        from opentelemetry.trace import Link, SpanKind, Status, StatusCode

        trace = run.trace
        clock = _Clock(trace)
        end = trace.finished if trace.finished is not None else _latest(trace)
        is_question = run.question is not None or run.answer is not None
        name = "invoke_agent llmc" if is_question else "llmc.run_plan"
        root = self.tracer.start_span(
            name,
            kind=SpanKind.INTERNAL,
            start_time=clock(trace.started),
            attributes=self._root_attributes(run),
        )
        if run.error is not None:
            _fail(root, run.error, Status, StatusCode)
        context = otel_trace.set_span_in_context(root)

        batches: list[OTelSpan] = []
        for index, call in enumerate(trace.batches):
            batch = self.tracer.start_span(
                f"llmc.batch {call.tool}",
                context=context,
                start_time=clock(call.started),
                attributes={
                    "llmc.batch.index": index,
                    "llmc.batch.task_ids": list(call.task_ids),
                    "llmc.batch.size": len(call.task_ids),
                    "llmc.batch.attempts": call.attempts,
                    "llmc.batch.fallback": call.fallback,
                    "gen_ai.tool.name": call.tool,
                },
            )
            if call.error is not None:
                _fail(batch, call.error, Status, StatusCode)
            batch.end(end_time=clock(call.finished if call.finished is not None else end))
            batches.append(batch)

        for span in trace.spans:
            self._llm_span(span, context, clock, end, SpanKind)

        for record in trace.tasks.values():
            begin = record.started if record.started is not None else record.queued
            links = []
            if record.batch is not None and record.batch < len(batches):
                links.append(Link(batches[record.batch].get_span_context()))
            attributes: dict[str, Any] = {
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": record.tool,
                "gen_ai.tool.call.id": str(record.task_id),
                "llmc.task.id": record.task_id,
                "llmc.task.status": record.status.value,
                "llmc.task.attempts": record.attempts,
                "llmc.task.retries": max(record.attempts - 1, 0),
                "llmc.task.cached": record.cached,
                "llmc.task.dependencies": sorted(record.dependencies),
            }
            for key, value in (
                ("llmc.task.served_by", record.served_by),
                ("llmc.task.batch", record.batch),
                ("llmc.task.blocked_by", record.blocked_by),
                ("llmc.task.wait_s", record.wait),
            ):
                if value is not None:
                    attributes[key] = value
            task = self.tracer.start_span(
                f"execute_tool {record.tool}",
                context=context,
                start_time=clock(begin),
                attributes=attributes,
                links=links,
            )
            if record.status is TaskStatus.FAILED and record.error is not None:
                _fail(task, record.error, Status, StatusCode)
            elif record.status is TaskStatus.DONE:
                task.set_status(Status(StatusCode.OK))
            task.end(end_time=clock(record.finished if record.finished is not None else end))
        root.end(end_time=clock(end))

    def _root_attributes(self, run: observe.FinishedRun) -> dict[str, Any]:
        trace = run.trace
        llm_spans = [s for s in trace.spans if s.kind in LLM_KINDS]
        statuses = [r.status for r in trace.tasks.values()]
        attributes: dict[str, Any] = {
            "llmc.run_id": trace.run_id,
            "llmc.tasks": len(trace.tasks),
            "llmc.tasks.failed": statuses.count(TaskStatus.FAILED),
            "llmc.tasks.skipped": statuses.count(TaskStatus.SKIPPED),
            "llmc.tasks.cached": sum(1 for r in trace.tasks.values() if r.cached),
            "llmc.batches": len(trace.batches),
            "llmc.llm_calls": sum(1 for s in llm_spans if s.usage is None or s.usage.calls > 0),
            "gen_ai.usage.input_tokens": sum(s.usage.prompt_tokens for s in llm_spans if s.usage),
            "gen_ai.usage.output_tokens": sum(
                s.usage.completion_tokens for s in llm_spans if s.usage
            ),
        }
        costs = [s.cost for s in llm_spans]
        if costs and all(cost is not None for cost in costs):
            attributes["llmc.cost_usd"] = sum(cost for cost in costs if cost is not None)
        if run.question is not None or run.answer is not None:
            attributes["gen_ai.operation.name"] = "invoke_agent"
            attributes["gen_ai.agent.name"] = "llmc"
            attributes["gen_ai.conversation.id"] = trace.run_id
        if run.answer is not None:
            attributes["llmc.rounds"] = len(run.answer.rounds)
            attributes["llmc.finished"] = run.answer.finished
        if self.capture_content:
            if run.question is not None:
                attributes["llmc.question"] = run.question
            if run.answer is not None:
                attributes["llmc.answer"] = run.answer.text
        return attributes

    def _llm_span(self, span: Span, context: Any, clock: _Clock, end: float, kind: Any) -> None:
        """One LLM call (or a plan from a cache) as a span under the run's."""
        model = span.model or "unknown"
        attributes: dict[str, Any] = {"llmc.llm.kind": span.kind, "llmc.llm.label": span.label}
        if span.kind in LLM_KINDS:
            name = f"chat {model}"
            attributes["gen_ai.operation.name"] = "chat"
            attributes["gen_ai.request.model"] = model
            attributes["gen_ai.request.stream"] = True
        else:  # a plan served from a cache and the like: no LLM call was made
            name = f"llmc.{span.kind} {span.label}"
        if span.usage is not None:
            attributes["gen_ai.usage.input_tokens"] = span.usage.prompt_tokens
            attributes["gen_ai.usage.output_tokens"] = span.usage.completion_tokens
            attributes["gen_ai.usage.cache_read.input_tokens"] = span.usage.cached_tokens
            attributes["llmc.llm.replayed"] = span.usage.calls == 0
        if span.cost is not None:
            attributes["llmc.cost_usd"] = span.cost
        if span.first_output is not None:
            attributes["gen_ai.response.time_to_first_chunk"] = span.first_output - span.started
        otel_span = self.tracer.start_span(
            name,
            context=context,
            kind=kind.CLIENT if span.kind in LLM_KINDS else kind.INTERNAL,
            start_time=clock(span.started),
            attributes=attributes,
        )
        otel_span.end(end_time=clock(span.finished if span.finished is not None else end))


class _Clock:
    """A trace's :func:`time.perf_counter` seconds as wall-clock nanoseconds."""

    __slots__ = ("offset",)

    def __init__(self, trace: Trace) -> None:
        self.offset = trace.wall_started - trace.started

    def __call__(self, moment: float) -> int:
        return int((moment + self.offset) * 1e9)


def _latest(trace: Trace) -> float:
    """The last moment a run that did not record its end recorded anything (or now)."""
    moments = [trace.started]
    for r in trace.tasks.values():
        moments += [m for m in (r.queued, r.started, r.finished) if m is not None]
    for s in trace.spans:
        moments += [m for m in (s.started, s.finished) if m is not None]
    return max(moments) if moments else time.perf_counter()


def _fail(span: OTelSpan, error: BaseException, status: Any, code: Any) -> None:
    span.set_status(status(code.ERROR, error_text(error)))
    span.record_exception(error)
