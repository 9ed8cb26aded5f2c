"""What happened in a run: typed events as it goes, and a :class:`Trace` when it is over.

Events are small frozen dataclasses, one per thing that happens to a run or a task. Every
event carries the ``run_id`` and a ``time`` from :func:`time.perf_counter` (the clock of
every timestamp in this module); task events also carry the ``task_id`` and the tool's name::

    Event
    ├── RunStarted
    ├── RunFinished          the last event of a run: its Result, and the error that ended it
    ├── BatchStarted         a batch of one tool's calls went out as one call
    ├── BatchFinished        ... and came back (each member's own outcome follows)
    ├── TaskDropped          the planner wrote a task that will not run (a repeat, a veto)
    └── TaskEvent
        ├── TaskQueued       the scheduler received the task (from a plan or a stream)
        ├── TaskStarted      its dependencies are done and a slot was free: it is running now
        ├── TaskRetrying     an attempt failed with a retryable error; the next one follows
        ├── TaskFinished     done, with its output
        ├── TaskFailed       failed for good, with the error
        ├── TaskSkipped      not run because a task it needs failed (or was skipped)
        └── TaskCancelled    cancelled: fail-fast, a broken plan stream, or the run cancelled

A :class:`Trace` keeps one :class:`TaskRecord` per task: when it was queued, became ready,
started and finished, its status, attempts and error. Timelines and benchmarks read it.
What the fuser did is there too: each batch as a :class:`Batch` in ``Trace.batches``
(with ``TaskRecord.batch`` pointing at it), and each deduplicated task's
``TaskRecord.served_by``: the task whose call served it.
Tasks the planner wrote but did not
hand to the scheduler (see the planner's ``repeats`` and ``veto``) are in ``Trace.dropped``,
each a :class:`TaskDropped` with its reason.

:meth:`Trace.to_json` saves a finished run (times relative to its start, errors as their type
and message) and :meth:`Trace.from_json` reads it back, for diffs, pictures (``llmc viz
run.json``) and telemetry (:mod:`llmc.otel`) later.
"""

from __future__ import annotations

import asyncio
import enum
import json
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import RecordedError, TraceFormatError
from .llm.base import Usage

if TYPE_CHECKING:
    from os import PathLike

    from .errors import DependencyError
    from .plan import Plan
    from .result import Result
    from .task import Task


class TaskStatus(enum.StrEnum):
    """Where a task stands. A finished run leaves every task in one of the last four."""

    PENDING = "pending"  #: waiting for its dependencies or for a free slot
    RUNNING = "running"  #: started, not finished
    DONE = "done"  #: finished with an output
    FAILED = "failed"  #: raised an error (after any retries)
    SKIPPED = "skipped"  #: not run, because a task it needs failed or was skipped
    CANCELLED = "cancelled"  #: stopped or never started: fail-fast, or the run was cancelled

    @property
    def is_final(self) -> bool:
        """Whether the task can no longer change (done, failed, skipped or cancelled)."""
        return self not in (TaskStatus.PENDING, TaskStatus.RUNNING)


# -- events ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Something that happened in a run.

    Attributes:
        run_id: the run it belongs to.
        time: when, by :func:`time.perf_counter`.
    """

    run_id: str
    time: float


@dataclass(frozen=True, slots=True, kw_only=True)
class RunStarted(Event):
    """A run began; task events follow."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RunFinished(Event):
    """The last event of a run that was not cancelled from outside.

    Attributes:
        result: what the run produced (partial when ``error`` is set).
        error: the exception that ended the run early (e.g. a broken plan stream), or None.
    """

    result: Result
    error: BaseException | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskDropped(Event):
    """A task the planner wrote that never reaches the scheduler: it repeats an earlier
    task, a veto dropped it, or it uses a dropped task; or the plan stopped at it.

    Not a :class:`TaskEvent`: the scheduler never sees the task, and no record of it is in
    ``Trace.tasks`` (its id may be written again by a later plan).

    Attributes:
        task_id: the id the planner gave it.
        tool: the tool it would have called.
        call: the task as plan text (``2. read_file("a.txt")``).
        reason: why it does not run (``"the plan stopped here: it repeats an earlier task"``).
        round: the plan it was in (1 for the first).
    """

    task_id: int
    tool: str
    call: str
    reason: str
    round: int = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskEvent(Event):
    """Something that happened to one task.

    Attributes:
        task_id: the task's id in its plan.
        tool: the name of the tool it calls.
    """

    task_id: int
    tool: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskQueued(TaskEvent):
    """The scheduler received a task; it starts once its dependencies are done.

    Attributes:
        task: the task itself.
    """

    task: Task


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskStarted(TaskEvent):
    """A task started running (its first attempt)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskRetrying(TaskEvent):
    """An attempt failed with a retryable error; the next attempt starts after ``delay``.

    Attributes:
        attempt: the attempt that failed, from 1.
        error: what it raised.
        delay: seconds of backoff before the next attempt.
    """

    attempt: int
    error: BaseException
    delay: float


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskFinished(TaskEvent):
    """A task finished with an output.

    Attributes:
        output: what the tool returned.
        duration: seconds from start to finish, retries included.
    """

    output: Any
    duration: float


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskFailed(TaskEvent):
    """A task failed for good.

    Attributes:
        error: the last attempt's error (``ToolArgumentError`` when the tool was not called).
        attempts: how many attempts ran.
    """

    error: BaseException
    attempts: int


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskSkipped(TaskEvent):
    """A task was not run because a task it needs failed or was skipped.

    Attributes:
        reason: names the task that failed.
    """

    reason: DependencyError


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskCancelled(TaskEvent):
    """A task was cancelled, running or not yet started."""


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchStarted(Event):
    """Several calls of a batchable tool went out as one call, a batch.

    Attributes:
        tool: the tool's name.
        task_ids: the member tasks, in the order of the batch.
        index: the call's place in ``Trace.batches``.
    """

    tool: str
    task_ids: tuple[int, ...]
    index: int


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchFinished(Event):
    """A batch came back; each member's TaskFinished or TaskFailed follows.

    Attributes:
        tool: the tool's name.
        task_ids: the member tasks.
        index: the call's place in ``Trace.batches``.
        duration: seconds from start to end, retries included.
        error: why the call failed as a whole, or None.
    """

    tool: str
    task_ids: tuple[int, ...]
    index: int
    duration: float
    error: BaseException | None = None


# -- the trace -------------------------------------------------------------------------------


class _Timed:
    """A record with ``started`` and ``finished`` times (:func:`time.perf_counter` seconds)."""

    __slots__ = ()
    started: float | None
    finished: float | None

    @property
    def duration(self) -> float | None:
        """Seconds from start to end, or None while it runs (or if it never ran)."""
        if self.started is None or self.finished is None:
            return None
        return self.finished - self.started


@dataclass(slots=True, eq=False)
class TaskRecord(_Timed):
    """The life of one task in a run; times are :func:`time.perf_counter` seconds.

    Attributes:
        task_id: the task's id.
        tool: the tool's name.
        dependencies: ids of the tasks it waited for.
        status: where it stands.
        queued: when the scheduler received it.
        ready: when its last dependency finished (None if it never got there).
        started: when it started running.
        finished: when it reached its final status.
        attempts: tool calls made, retries included (0 if the tool was never called).
        error: why it failed, or the ``DependencyError`` it was skipped for.
        blocked_by: for a skipped task, the id of the failed task at the root of the skip.
        served_by: for a deduplicated task, the id of the identical task whose call served
            it (it made no call of its own).
        batch: for a member of a batch, its (last) batch's index in
            ``Trace.batches``.
        cached: its output came from a cache (:class:`llmc.cache.Cache`); no call was made.
    """

    task_id: int
    tool: str
    dependencies: frozenset[int]
    queued: float
    status: TaskStatus = TaskStatus.PENDING
    ready: float | None = None
    started: float | None = None
    finished: float | None = None
    attempts: int = 0
    error: BaseException | None = None
    blocked_by: int | None = None
    served_by: int | None = None
    batch: int | None = None
    cached: bool = False

    @property
    def wait(self) -> float | None:
        """Seconds between becoming ready and starting: the scheduler's latency plus limits."""
        if self.ready is None or self.started is None:
            return None
        return self.started - self.ready


@dataclass(slots=True, eq=False)
class Span(_Timed):
    """Something a run did besides tasks, such as an LLM call of the planner or the joiner.

    Attributes:
        kind: what it was: ``"planner"``, ``"joiner"``, ...
        label: a short text for pictures, e.g. ``"plan 1"``.
        started: when it began (:func:`time.perf_counter`).
        finished: when it ended; None while it goes on.
        first_output: when its first output arrived (an LLM's first token), if known.
        usage: tokens it used, for LLM calls.
        cost: US dollars it cost, for LLM calls whose model has a price (see
            :mod:`llmc.budget`).
        model: the model's name, for LLM calls.
    """

    kind: str
    label: str
    started: float
    finished: float | None = None
    first_output: float | None = None
    usage: Usage | None = None
    cost: float | None = None
    model: str | None = None


@dataclass(slots=True, eq=False)
class Batch(_Timed):
    """One call that served several tasks: a batch of a batchable tool's calls.

    Attributes:
        tool: the tool's name.
        task_ids: the member tasks, in the order of the batch.
        started: when it went out (:func:`time.perf_counter`).
        finished: when it came back; None while it runs.
        attempts: calls made, retries of the whole batch included.
        error: why it failed as a whole (after any retries), or None.
        fallback: whether its members then made their own calls (``batch_fallback``).
    """

    tool: str
    task_ids: tuple[int, ...]
    started: float
    finished: float | None = None
    attempts: int = 0
    error: BaseException | None = None
    fallback: bool = False


@dataclass(slots=True, eq=False)
class Trace:
    """Every task's record in a run, plus when the run started and finished.

    Attributes:
        run_id: the run's id.
        started: when the run started (:func:`time.perf_counter`).
        finished: when it finished; None while it runs.
        tasks: one record per task id, in the order the tasks arrived.
        spans: what else the run did, in order: LLM calls of the planner and the joiner.
        batches: every batch that went out as one call, in order.
        dropped: the tasks the planner wrote that did not run, with the reasons, in order.
        wall_started: when the run started on the wall clock (:func:`time.time`), which
            places its :func:`~time.perf_counter` times in the world (telemetry, saved runs).
    """

    run_id: str
    started: float
    finished: float | None = None
    tasks: dict[int, TaskRecord] = field(default_factory=dict)
    spans: list[Span] = field(default_factory=list)
    batches: list[Batch] = field(default_factory=list)
    dropped: list[TaskDropped] = field(default_factory=list)
    wall_started: float = field(default_factory=time.time)

    @property
    def makespan(self) -> float:
        """Seconds from the run's start to its end (to now's last record while it runs)."""
        end = self.finished
        if end is None:
            end = max(
                (r.finished or r.started or r.queued for r in self.tasks.values()),
                default=self.started,
            )
        return end - self.started

    def durations(self) -> dict[int, float]:
        """Seconds each task ran, for the tasks that ran to the end.

        Feed it to :meth:`llmc.Plan.critical_path` to compare a makespan with its bound.
        """
        return {i: r.duration for i, r in self.tasks.items() if r.duration is not None}

    def critical_chain(self) -> list[int]:
        """The tasks that decided when the run ended, first to last.

        Starts at the task that finished last and walks back, each time to the dependency
        that finished last: the one the task really waited for. Only tasks that ran count.
        Where :meth:`llmc.Plan.critical_path` is the longest chain the plan allows, this is
        the chain the run actually waited on; pictures outline it.

        Returns:
            task ids in the order they ran; empty when no task ran to the end.
        """
        ran = {
            i: r.finished
            for i, r in self.tasks.items()
            if r.started is not None and r.finished is not None
        }
        if not ran:
            return []
        chain = [max(sorted(ran), key=lambda i: ran[i])]
        while True:
            waited = [d for d in sorted(self.tasks[chain[-1]].dependencies) if d in ran]
            if not waited:
                return chain[::-1]
            chain.append(max(waited, key=lambda d: ran[d]))

    def statuses(self) -> dict[int, TaskStatus]:
        """Each task's status by id."""
        return {i: r.status for i, r in self.tasks.items()}

    def fused_groups(self) -> dict[str, tuple[int, ...]]:
        """What the run fused, as groups of task ids by label, for pictures
        (``plan.to_svg(groups=trace.fused_groups())``).

        Each batch is one group (``"batch 1: price"``), and so is each set of identical calls
        that shared one execution (``"same call: search $3"``, the serving task first).
        """
        groups: dict[str, tuple[int, ...]] = {}
        for number, call in enumerate(self.batches, 1):
            groups[f"batch {number}: {call.tool}"] = call.task_ids
        served: dict[int, list[int]] = {}
        for record in self.tasks.values():
            if record.served_by is not None:
                served.setdefault(record.served_by, []).append(record.task_id)
        for leader, followers in served.items():
            tool = self.tasks[leader].tool if leader in self.tasks else "?"
            groups[f"same call: {tool} ${leader}"] = (leader, *followers)
        return groups

    def to_svg(
        self, path: str | PathLike[str] | None = None, *, plan: Plan | None = None, **options: Any
    ) -> str:
        """The run as a timeline picture (SVG): tasks, LLM calls, the critical path.

        Args:
            path: a file to write the picture to, if any.
            plan: the plan that ran, for fuller tooltips.
            **options: see :func:`llmc.viz.timeline_svg`: ``width``, ``lanes=True`` (pack
                tasks into lanes), ``arrows="critical"``, ``title``, ``legend``.

        Returns:
            the SVG text.
        """
        from . import viz  # the door up a floor: pictures read plans and traces

        return viz.write(viz.timeline_svg(self, plan=plan, **options), path)

    def _repr_svg_(self) -> str:
        """Jupyter shows a trace as its timeline."""
        return self.to_svg()

    def summary(self) -> str:
        """How the tasks ended, in a few words: ``"3 done, 1 failed"`` (``"no tasks"``)."""
        counts: dict[str, int] = {}
        for record in self.tasks.values():
            counts[record.status.value] = counts.get(record.status.value, 0) + 1
        return ", ".join(f"{n} {s}" for s, n in counts.items()) or "no tasks"

    def __repr__(self) -> str:
        tasks = self.summary()
        spans = f"; {len(self.spans)} spans" if self.spans else ""
        batches = f"; {len(self.batches)} batches" if self.batches else ""
        return f"<Trace {self.run_id}: {tasks}{spans}{batches} in {self.makespan:.3f}s>"

    def to_json(
        self,
        path: str | PathLike[str] | None = None,
        *,
        plan: Plan | None = None,
        indent: int | None = None,
    ) -> str:
        """The run as JSON text: every record, span, batch and dropped task, to save, diff or
        draw.

        Times are seconds from the run's start (``wall_started`` places them on the wall
        clock); errors are kept as their type's name and message, outputs not at all (they
        need not be JSON). :meth:`from_json` reads it back.

        Args:
            path: a file to write the JSON to, if any.
            plan: the plan that ran, saved along (under ``"plan"``, in
                :meth:`llmc.Plan.to_dict` form) so pictures of the saved run show its calls.
            indent: indentation of the JSON text (None: one line).
        """
        zero = self.started

        def at(moment: float | None) -> float | None:
            return None if moment is None else round(moment - zero, 9)

        data: dict[str, Any] = {
            "format": TRACE_FORMAT,
            "version": TRACE_VERSION,
            "run_id": self.run_id,
            "wall_started": self.wall_started,
            "finished": at(self.finished),
            "tasks": [
                {
                    "task_id": r.task_id,
                    "tool": r.tool,
                    "dependencies": sorted(r.dependencies),
                    "status": r.status.value,
                    "queued": at(r.queued),
                    "ready": at(r.ready),
                    "started": at(r.started),
                    "finished": at(r.finished),
                    "attempts": r.attempts,
                    "error": _error_to_json(r.error),
                    "blocked_by": r.blocked_by,
                    "served_by": r.served_by,
                    "batch": r.batch,
                    "cached": r.cached,
                }
                for r in self.tasks.values()
            ],
            "spans": [
                {
                    "kind": s.kind,
                    "label": s.label,
                    "started": at(s.started),
                    "finished": at(s.finished),
                    "first_output": at(s.first_output),
                    "usage": None if s.usage is None else _usage_to_json(s.usage),
                    "cost": s.cost,
                    "model": s.model,
                }
                for s in self.spans
            ],
            "batches": [
                {
                    "tool": c.tool,
                    "task_ids": list(c.task_ids),
                    "started": at(c.started),
                    "finished": at(c.finished),
                    "attempts": c.attempts,
                    "error": _error_to_json(c.error),
                    "fallback": c.fallback,
                }
                for c in self.batches
            ],
            "dropped": [
                {
                    "task_id": d.task_id,
                    "tool": d.tool,
                    "call": d.call,
                    "reason": d.reason,
                    "round": d.round,
                    "time": at(d.time),
                }
                for d in self.dropped
            ],
        }
        if plan is not None:
            data["plan"] = plan.to_dict()
        text = json.dumps(data, indent=indent, ensure_ascii=False)
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
        return text

    @classmethod
    def from_json(cls, text: str | bytes) -> Trace:
        """Read a run saved by :meth:`to_json`; its times start at 0.0.

        Errors come back as :class:`RecordedError` instances whose class has the original
        error's name, so they read as before (``Error: ToolTimeoutError: ...``).

        Raises:
            TraceFormatError: the text is not JSON of a saved run.
        """
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise TraceFormatError(f"a saved run must be JSON: {exc}") from None
        if not isinstance(data, dict) or data.get("format") != TRACE_FORMAT:
            raise TraceFormatError(
                f'not a saved run: its JSON has no "format": "{TRACE_FORMAT}" '
                "(save one with Trace.to_json)"
            )
        if data.get("version") != TRACE_VERSION:
            raise TraceFormatError(
                f"a saved run of version {data.get('version')!r}; this llmc reads version "
                f"{TRACE_VERSION}"
            )
        try:
            return _trace_from_json(data)
        except (KeyError, TypeError, ValueError) as exc:
            raise TraceFormatError(f"a saved run with a broken record: {exc!r}") from None


#: The ``"format"`` of a saved run's JSON, and the version this llmc writes and reads.
TRACE_FORMAT = "llmc-trace"
TRACE_VERSION = 2  # 2: batches and each record's batch (were fused_calls, fused_call)


_recorded_types: dict[str, type[RecordedError]] = {}


def _recorded(type_name: str, message: str) -> RecordedError:
    kind = _recorded_types.get(type_name)
    if kind is None:  # a class of the original's name, so error_text reads as before
        kind = type(type_name, (RecordedError,), {"type_name": type_name})
        _recorded_types[type_name] = kind
    return kind(message)


def _error_to_json(error: BaseException | None) -> dict[str, str] | None:
    if error is None:
        return None
    return {"type": type(error).__name__, "message": str(error)}


def _error_from_json(data: Mapping[str, Any] | None) -> RecordedError | None:
    if data is None:
        return None
    return _recorded(str(data["type"]), str(data["message"]))


def _usage_to_json(usage: Usage) -> dict[str, int]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "cached_tokens": usage.cached_tokens,
        "calls": usage.calls,
    }


def _trace_from_json(data: Mapping[str, Any]) -> Trace:
    trace = Trace(str(data["run_id"]), 0.0, data["finished"])
    trace.wall_started = float(data["wall_started"])
    for r in data["tasks"]:
        record = TaskRecord(
            task_id=int(r["task_id"]),
            tool=str(r["tool"]),
            dependencies=frozenset(int(d) for d in r["dependencies"]),
            queued=float(r["queued"]),
            status=TaskStatus(r["status"]),
            ready=r["ready"],
            started=r["started"],
            finished=r["finished"],
            attempts=int(r["attempts"]),
            error=_error_from_json(r["error"]),
            blocked_by=r["blocked_by"],
            served_by=r["served_by"],
            batch=r["batch"],
            cached=bool(r["cached"]),
        )
        trace.tasks[record.task_id] = record
    for s in data["spans"]:
        usage = None if s["usage"] is None else Usage(**s["usage"])
        trace.spans.append(
            Span(
                kind=str(s["kind"]),
                label=str(s["label"]),
                started=float(s["started"]),
                finished=s["finished"],
                first_output=s["first_output"],
                usage=usage,
                cost=s["cost"],
                model=s.get("model"),
            )
        )
    for c in data["batches"]:
        trace.batches.append(
            Batch(
                tool=str(c["tool"]),
                task_ids=tuple(int(i) for i in c["task_ids"]),
                started=float(c["started"]),
                finished=c["finished"],
                attempts=int(c["attempts"]),
                error=_error_from_json(c["error"]),
                fallback=bool(c["fallback"]),
            )
        )
    for d in data.get("dropped", ()):  # runs saved before drops were recorded have none
        trace.dropped.append(
            TaskDropped(
                run_id=trace.run_id,
                time=float(d["time"]),
                task_id=int(d["task_id"]),
                tool=str(d["tool"]),
                call=str(d["call"]),
                reason=str(d["reason"]),
                round=int(d["round"]),
            )
        )
    return trace


async def stream_events(
    start: Callable[[Callable[[Event], object]], Awaitable[object]],
) -> AsyncGenerator[Event, None]:
    """Run ``start(on_event)`` as a task and yield its events as they happen.

    Events are buffered without bound, so a slow reader never slows the run. When the run
    fails, its error is raised after the events that came before it; leaving the loop early
    cancels the run (use ``contextlib.aclosing`` to make that immediate).
    """
    queue: asyncio.Queue[Event | None] = asyncio.Queue()
    running = asyncio.ensure_future(start(queue.put_nowait))
    running.add_done_callback(lambda _: queue.put_nowait(None))
    try:
        while (event := await queue.get()) is not None:
            yield event
        running.result()  # raises what ended the run
    finally:
        if not running.done():
            running.cancel()
            with suppress(asyncio.CancelledError):
                await running
        elif not running.cancelled():
            running.exception()  # mark it retrieved: the reader left early on purpose
