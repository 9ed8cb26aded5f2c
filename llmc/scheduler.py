"""Run a plan: every task starts the moment its last dependency finishes.

There is no polling loop and no level barrier. Each task keeps a counter of unfinished
dependencies and each task a list of its dependents; when a task finishes, its dependents'
counters drop, and a task whose counter reaches zero is started at once with
:func:`asyncio.create_task`. The work per task is O(1) amortised, whatever the plan's size.

Tasks may keep arriving while the run goes (an async iterable of :class:`~llmc.task.Task`,
as the streaming planner produces): a task whose dependencies are already done starts on
arrival. A task that cannot run (unknown tool, duplicate id, a reference to a task not seen
yet) is a broken plan: the run cancels what is running and raises that :class:`PlanError`
from :func:`run_plan`, so the caller (e.g. a replanning loop) decides what comes next.

Failures stay local: a failed task's dependents are skipped (``TaskStatus.SKIPPED``, with a
:class:`DependencyError` that names the failed task) and every independent branch goes on.
``fail_fast=True`` cancels the rest instead; ``errors_as_observations=True`` hands the error's
text (``"Error: ToolTimeoutError: ..."``) to the dependents in place of an output.

Fusion at dispatch (see :mod:`llmc.batching`): once a task's references are resolved, a call
identical to one made earlier in the run (same tool, declared ``pure=True``, same arguments)
is not made again: the task waits for the first and gets its outcome (``dedupe=False`` turns
this off). The calls
of a batchable tool (``@llmc.tool(batch=...)``) that become ready within its batch window go
out as one batch; each member gets its own output or error. For a batchable tool, its
``max_concurrency``, ``rate_limit``, ``timeout`` and ``retries`` apply to each batch (a
retryable error of the whole call retries the whole call; a retryable error of one item sends
that item again, in a later batch); the run-wide ``max_concurrency`` still counts tasks, so it
also bounds the size of a batch.

Caching: with a ``cache`` (:class:`llmc.cache.Cache`), a task whose tool the cache keeps
(pure tools, or ``@llmc.tool(cache=True, cache_ttl=...)``) first looks for its call's output
there, once its references are resolved: a hit is the task's output (``TaskRecord.cached``,
no call made); a miss calls the tool as usual and stores the output.

Limits: a run-wide ``max_concurrency``, each tool's ``max_concurrency`` (per run) and
``rate_limit`` (a throttler shared by every run), per-attempt timeouts, and retries with
exponential backoff and jitter. A task waiting for a concurrency slot holds no slot of any
other kind, so one saturated tool never blocks the others.

Logging: debug lines through structlog (logger ``llmc.scheduler``), bound with ``run_id`` and
carrying ``task_id``. llmc never configures structlog; it stays quiet until the application
does (structlog's defaults would print every line to stdout), and then follows its level.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import deque
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    Callable,
    Iterable,
    Mapping,
    Sequence,
)
from typing import Any, TypedDict, Unpack

import structlog

from . import observe
from . import trace as events
from ._sync import run_sync
from .batching import Closing, Dispatch
from .budget import Budget, Meter
from .cache import MISSING, Cache
from .errors import BudgetExceeded, DependencyError, PlanError, ToolTimeoutError
from .executors import AsyncioExecutor, Executor
from .limits import Backoff, release, retrying
from .plan import Plan
from .result import Result, error_text, text_form
from .task import PLACEHOLDER, Ref, Task, check_call
from .tool import Tool
from .toolbox import Toolbox, Tools
from .trace import Batch, Event, TaskRecord, TaskStatus, Trace, stream_events

#: What a run accepts as its plan: a built plan, tasks in order, or tasks as they arrive.
PlanSource = Plan | Iterable[Task] | AsyncIterable[Task]

_logger = structlog.get_logger("llmc.scheduler")
_now = time.perf_counter

_PENDING = TaskStatus.PENDING
_RUNNING = TaskStatus.RUNNING
_DONE = TaskStatus.DONE
_FAILED = TaskStatus.FAILED


class RunOptions(TypedDict, total=False):
    """Options of a run, the keyword arguments of :class:`Scheduler` and :func:`run_plan`.

    Attributes:
        max_concurrency: most tasks running at once in the run (None: no limit).
        timeout: seconds per attempt for tools without their own ``timeout``.
        fail_fast: on the first failure, cancel everything else and return.
        errors_as_observations: give a failed task's dependents its error text
            (``"Error: <Type>: <message>"``) in place of its output, instead of skipping them.
        backoff: the delays between retries.
        executor: where tool calls run; the caller owns (and closes) one passed here.
            By default each run uses, and closes, its own :class:`AsyncioExecutor`.
        on_event: called with every :class:`~llmc.trace.Event`, in order, on the event loop;
            it should return quickly. An exception from it ends the run and is raised.
        dedupe: let identical calls of pure tools (``@llmc.tool(pure=True)``; same arguments
            once references are resolved) run once per run and share the outcome. On by
            default; it touches only tools that declared themselves pure.
        cache: a :class:`~llmc.cache.Cache` for tool outputs: the calls of the tools it
            keeps (see :meth:`~llmc.cache.Cache.tool_policy`) are answered from it when it
            has them, and stored when it does not.
    """

    max_concurrency: int | None
    timeout: float | None
    fail_fast: bool
    errors_as_observations: bool
    backoff: Backoff
    executor: Executor | None
    on_event: Callable[[Event], object] | None
    dedupe: bool
    cache: Cache | None


# -- references ------------------------------------------------------------------------------


def resolve_references(value: Any, outputs: Mapping[int, Any]) -> Any:
    """Replace references to earlier tasks in an argument by what those tasks produced.

    A :class:`~llmc.task.Ref` becomes the output object itself (not a copy); ``$N`` and
    ``${N}`` inside a string become the output's :func:`~llmc.result.text_form`, and ``$$``
    becomes ``$``. Lists, tuples, sets and dicts (keys too) are resolved recursively; one
    that holds no reference is returned as it is, not copied.
    """
    # Exact-class checks first: this runs for every argument of every task.
    cls = value.__class__
    if cls is Ref:
        return outputs[value.task_id]
    if cls is str:
        return _fill_placeholders(value, outputs) if "$" in value else value
    if cls in _PLAIN:
        return value
    if isinstance(value, Ref):
        return outputs[value.task_id]
    if isinstance(value, str):
        return _fill_placeholders(value, outputs) if "$" in value else value
    if isinstance(value, list | tuple | set | frozenset):
        return _resolve_items(value, outputs)
    if isinstance(value, dict):
        return _resolve_dict(value, outputs)
    return value


_PLAIN = frozenset({int, float, bool, type(None), bytes})


def _resolve_items(
    value: list[Any] | tuple[Any, ...] | set[Any] | frozenset[Any], outputs: Mapping[int, Any]
) -> Any:
    items = []
    changed = False
    for item in value:
        new = resolve_references(item, outputs)
        changed = changed or new is not item
        items.append(new)
    if not changed:
        return value
    if isinstance(value, list):
        return items
    return tuple(items) if isinstance(value, tuple) else type(value)(items)


def _resolve_dict(value: dict[Any, Any], outputs: Mapping[int, Any]) -> dict[Any, Any]:
    pairs = []
    changed = False
    for key, item in value.items():
        new_key = resolve_references(key, outputs)
        new_item = resolve_references(item, outputs)
        changed = changed or new_key is not key or new_item is not item
        pairs.append((new_key, new_item))
    return dict(pairs) if changed else value


def _fill_placeholders(text: str, outputs: Mapping[int, Any]) -> str:
    def replace(match: Any) -> str:
        number = match.group(1) or match.group(2)
        return text_form(outputs[int(number)]) if number else "$"

    return PLACEHOLDER.sub(replace, text)


# -- the public entry points -----------------------------------------------------------------


class Scheduler:
    """Runs plans over a set of tools with one set of options; reusable across runs.

    Args:
        tools: the tools tasks may call (functions or :class:`~llmc.tool.Tool` objects, or a
            Toolbox); when None, each run uses its plan's own tools.
        budget: a :class:`~llmc.budget.Budget` whose ``max_tool_calls`` limits each run's
            tool calls (a batch counts once, a deduplicated call not at all, each retry
            once): the call past the limit is not made; the run stops and raises
            :class:`~llmc.errors.BudgetExceeded` with the partial result on it. A run
            without a tool-call limit does not pay for the check.
        **options: see :class:`RunOptions`.

    Example:
        >>> scheduler = Scheduler([search], max_concurrency=8, timeout=30)
        >>> result = await scheduler.run(plan)       # doctest: +SKIP
    """

    def __init__(
        self,
        tools: Tools | None = None,
        *,
        budget: Budget | None = None,
        **options: Unpack[RunOptions],
    ) -> None:
        self.tools = Toolbox.of(tools) if tools is not None else None
        self.max_concurrency = options.get("max_concurrency")
        self.timeout = options.get("timeout")
        self.fail_fast = options.get("fail_fast", False)
        self.errors_as_observations = options.get("errors_as_observations", False)
        self.backoff = options.get("backoff") or Backoff()
        self.executor = options.get("executor")
        self.on_event = options.get("on_event")
        self.dedupe = options.get("dedupe", True)
        self.cache = options.get("cache")
        self.budget = budget
        unknown = set(options) - set(RunOptions.__annotations__)
        if unknown:
            raise TypeError(f"unknown run option(s): {', '.join(sorted(unknown))}")
        if self.max_concurrency is not None and self.max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1 (or None for no limit)")
        if self.timeout is not None and self.timeout <= 0:
            raise ValueError("timeout must be a positive number of seconds (or None)")
        if self.fail_fast and self.errors_as_observations:
            raise ValueError("fail_fast and errors_as_observations exclude each other; pick one")

    async def run(
        self,
        plan: PlanSource,
        *,
        run_id: str | None = None,
        prior: Mapping[int, Any] | None = None,
        trace: Trace | None = None,
        on_event: Callable[[Event], object] | None = None,
        meter: Meter | None = None,
    ) -> Result:
        """Run a plan to the end and return its :class:`~llmc.result.Result`.

        Failed, skipped and cancelled tasks are recorded in the result, not raised.

        Args:
            plan: a Plan, tasks in order, or an async iterable of tasks as they arrive.
            run_id: an id for the run's events and logs (default: a random one).
            prior: outputs of tasks that ran before (an earlier plan of the same question):
                the plan may refer to them but not reuse their ids. They are not part of the
                result.
            trace: a Trace to record into (several runs can share one), else a new one.
            on_event: called with every event of this run, besides the scheduler's own.
            meter: a budget meter shared with other runs (a compiler's rounds), instead
                of a fresh one for the scheduler's ``budget``.

        Raises:
            PlanError: the plan cannot run (no tools, unknown tool, duplicate task id, a
                reference to a task not seen yet); running tasks are cancelled first.
            Exception: whatever the plan stream or ``on_event`` raised, likewise.
            BudgetExceeded: a tool call would cross the budget; its ``result`` is the
                partial result.
            asyncio.CancelledError: the run was cancelled; every running task was
                cancelled and awaited before this propagates.
        """
        callback = _both(self.on_event, on_event)
        if meter is None and self.budget is not None and self.budget.limits_tools:
            meter = Meter(self.budget, run_id=run_id or "")
        run = _Run(self, plan, run_id, callback, prior, trace, meter)
        if trace is not None or not observe.observers:  # a compiler reports its own runs
            return await run.run()
        try:
            result = await run.run()
        except BaseException as exc:
            observe.report(observe.FinishedRun(run.trace, error=exc))
            raise
        observe.report(observe.FinishedRun(run.trace, result=result))
        return result

    def run_sync(self, plan: PlanSource, *, run_id: str | None = None) -> Result:
        """Run a plan from synchronous code; Ctrl-C cancels it cleanly.

        It runs on a new event loop, or, where one is already running (Jupyter), on a
        private loop in a worker thread while this thread waits; there, ``await``
        :meth:`run` is the simpler choice.

        Raises:
            KeyboardInterrupt: after Ctrl-C, once every running task was cancelled.
            PlanError: as :meth:`run`.
        """
        return run_sync(lambda: self.run(plan, run_id=run_id))

    def stream(self, plan: PlanSource, *, run_id: str | None = None) -> AsyncGenerator[Event, None]:
        """Run a plan and yield its events as they happen; the last is a ``RunFinished``.

        Events are buffered without bound, so a slow reader never slows the run. Leaving the
        loop early cancels the run; use ``contextlib.aclosing`` to make that immediate.

        Raises:
            PlanError: as :meth:`run`, after the events that came before it.
        """
        return stream_events(lambda on_event: self.run(plan, run_id=run_id, on_event=on_event))

    def __repr__(self) -> str:
        tools = ", ".join(self.tools) if self.tools is not None else "the plan's"
        return f"<Scheduler tools: {tools}; max_concurrency={self.max_concurrency}>"


async def run_plan(
    plan: PlanSource,
    tools: Tools | None = None,
    *,
    budget: Budget | None = None,
    **options: Unpack[RunOptions],
) -> Result:
    """Run a plan: each task starts as soon as its dependencies are done.

    Args:
        plan: a :class:`~llmc.plan.Plan`, tasks in order, or an async iterable of tasks
            that arrive while the run goes.
        tools: the tools (functions, Tools or a Toolbox); defaults to the plan's own.
        budget: limits the run's tool calls (see :class:`Scheduler`).
        **options: see :class:`RunOptions`.

    Returns:
        outputs, per-task statuses and errors, and the run's trace.

    Raises:
        PlanError: see :meth:`Scheduler.run`.
        BudgetExceeded: a tool call would cross the budget; ``error.result`` holds the
            outputs of the tasks that finished.
    """
    return await Scheduler(tools, budget=budget, **options).run(plan)


def run_plan_sync(
    plan: PlanSource,
    tools: Tools | None = None,
    *,
    budget: Budget | None = None,
    **options: Unpack[RunOptions],
) -> Result:
    """:func:`run_plan` for synchronous code; Ctrl-C cancels the run and raises promptly.

    Raises:
        KeyboardInterrupt: after Ctrl-C, once every running task was cancelled.
        PlanError: see :meth:`Scheduler.run`.
    """
    return Scheduler(tools, budget=budget, **options).run_sync(plan)


def stream_plan(
    plan: PlanSource,
    tools: Tools | None = None,
    *,
    budget: Budget | None = None,
    **options: Unpack[RunOptions],
) -> AsyncGenerator[Event, None]:
    """Run a plan and yield its events: ``async for event in llmc.stream_plan(plan, tools)``.

    The last event is :class:`~llmc.trace.RunFinished`, which carries the result.
    """
    return Scheduler(tools, budget=budget, **options).stream(plan)


# -- one run ---------------------------------------------------------------------------------


class _Slots:
    """Concurrency slots of one tool within one run, and the tasks waiting for one."""

    __slots__ = ("free", "waiting")

    def __init__(self, limit: int) -> None:
        self.free = limit
        self.waiting: deque[_Node] = deque()


class _Node:
    """A task inside a run: its tool, record, unfinished-dependency count and dependents."""

    __slots__ = ("dependents", "handle", "record", "served", "slots", "task", "tool", "waiting")

    def __init__(self, task: Task, tool: Tool, record: TaskRecord, slots: _Slots | None) -> None:
        self.task = task
        self.tool = tool
        self.record = record
        self.slots = slots
        self.waiting = 0
        self.dependents: list[_Node] = []
        self.handle: asyncio.Task[None] | None = None  # while launched; a strong reference
        # Set when identical calls wait for this task's call; resolved when it ends.
        self.served: asyncio.Future[None] | None = None


def _both(
    first: Callable[[Event], object] | None, second: Callable[[Event], object] | None
) -> Callable[[Event], object] | None:
    """One event callback that calls both (either may be None)."""
    if first is None:
        return second
    if second is None:
        return first

    def call_both(event: Event) -> None:
        first(event)
        second(event)

    return call_both


def _debug_enabled(log: Any) -> bool:
    """Whether the run should log its debug lines; checked once per run, not per task.

    Not before the application configures structlog: its defaults print every debug line to
    stdout, which is no place for a library's chatter (nor for a CLI's JSON output).
    """
    if not structlog.is_configured():
        return False
    check = getattr(log, "is_enabled_for", None) or getattr(log, "isEnabledFor", None)
    return bool(check(logging.DEBUG)) if check is not None else True


class _Run:
    """The state of one run.

    All bookkeeping happens in synchronous methods, so it never interleaves with itself;
    only :meth:`run`, the feeder and the task bodies await.

    Slots, not an instance dict: the hot path reads ``self.x`` for every task, and CPython
    (3.11) stops sharing a class's instance-dict keys past 30 attributes, which slows every
    one of those reads; slots cannot silently grow past that.
    """

    __slots__ = (
        "backoff",
        "closing",
        "debug",
        "direct",
        "dispatch",
        "drain",
        "error",
        "executor",
        "fail_fast",
        "finished",
        "free",
        "log",
        "loop",
        "nodes",
        "observe_errors",
        "on_event",
        "open",
        "owns_executor",
        "parked",
        "prior",
        "run_id",
        "source",
        "source_done",
        "timeout",
        "tool_cache",
        "tool_slots",
        "toolbox",
        "trace",
        "trusted",
        "values",
    )

    def __init__(
        self,
        scheduler: Scheduler,
        source: PlanSource,
        run_id: str | None,
        on_event: Callable[[Event], object] | None,
        prior: Mapping[int, Any] | None,
        trace: Trace | None,
        meter: Meter | None = None,
    ) -> None:
        toolbox = scheduler.tools
        if toolbox is None and isinstance(source, Plan):
            toolbox = source.tools
        if toolbox is None:
            raise PlanError(
                "no tools to run the plan with: pass tools=[...] to run_plan, or "
                "build the plan with tools"
            )
        self.toolbox = toolbox
        self.source = source
        # A plan built with this very toolbox has checked its calls already.
        self.trusted = isinstance(source, Plan) and source.tools is toolbox
        self.fail_fast = scheduler.fail_fast
        self.observe_errors = scheduler.errors_as_observations
        self.timeout = scheduler.timeout
        self.backoff = scheduler.backoff
        self.owns_executor = scheduler.executor is None
        self.executor: Executor = scheduler.executor or AsyncioExecutor()
        if meter is not None:  # tool calls pass the budget's gate (and leave the fast path)
            self.executor = meter.gate(self.executor)
        self.on_event = on_event
        self.run_id = run_id or (trace.run_id if trace is not None else uuid.uuid4().hex[:12])
        self.log = _logger.bind(run_id=self.run_id)
        self.debug = _debug_enabled(self.log)
        self.trace = trace if trace is not None else Trace(self.run_id, _now())
        self.nodes: dict[int, _Node] = {}
        self.prior: Mapping[int, Any] = prior or {}
        # What references receive: outputs (and error texts), earlier plans' outputs included.
        self.values: dict[int, Any] = dict(self.prior)
        self.open = 0  # tasks received and not final yet
        self.source_done = False
        self.free = scheduler.max_concurrency  # free run-wide slots; None: unlimited
        self.parked: deque[_Node] = deque()  # ready, waiting for a run-wide slot
        self.tool_slots: dict[str, _Slots] = {}
        self.tool_cache: dict[str, tuple[Tool, _Slots | None]] = {}
        # Tools of the default executor are awaited here directly: one coroutine less per task.
        self.direct = type(self.executor) is AsyncioExecutor
        self.dispatch = Dispatch(self, scheduler.dedupe, scheduler.cache)
        self.closing = False
        self.error: BaseException | None = None
        self.loop = asyncio.get_running_loop()
        self.finished: asyncio.Future[None] = self.loop.create_future()
        self.drain: asyncio.Future[None] | None = None  # see _drain

    # -- the run's life ----------------------------------------------------------------------

    async def run(self) -> Result:
        if self.debug:
            self.log.debug("run started")
        if self.on_event is not None:
            self.emit(events.RunStarted(run_id=self.run_id, time=self.trace.started))
        feeder: asyncio.Task[None] | None = None
        try:
            if isinstance(self.source, AsyncIterable):
                feeder = self.loop.create_task(self._feed(self.source))
            else:
                for task in self.source:
                    self._arrive(task)
                self.source_done = True
                self._check_finished()
            await self.finished
        except asyncio.CancelledError:
            await self._shutdown(feeder)
            raise
        except Exception as exc:  # a broken task from a plain iterable or plan
            self.error = exc
        await self._shutdown(feeder)
        await self._settle()
        result = self._result()
        if self.debug:
            self.log.debug("run finished", makespan=self.trace.makespan, error=self.error)
        if self.on_event is not None:
            self.on_event(
                events.RunFinished(run_id=self.run_id, time=_now(), result=result, error=self.error)
            )
        if isinstance(self.error, BudgetExceeded):
            self.error.result = result  # nothing computed is lost
        if self.error is not None:
            raise self.error
        return result

    async def _feed(self, source: AsyncIterable[Task]) -> None:
        """Receive streamed tasks; a broken task or a failing stream ends the run."""
        try:
            async for task in source:
                if self.closing:
                    return
                self._arrive(task)
        except Exception as exc:
            self._abort(exc)
            return
        self.source_done = True
        self._check_finished()

    def _check_finished(self) -> None:
        if self.open == 0 and self.source_done and not self.finished.done():
            self.finished.set_result(None)

    def _abort(self, error: BaseException | None) -> None:
        """End the run early: cancel the rest; raise ``error`` from :meth:`run` if given."""
        if self.error is None:
            self.error = error
        self.closing = True
        if not self.finished.done():
            self.finished.set_result(None)

    def _drain(self, error: BaseException) -> None:
        """End the run like :meth:`_abort`, but let the tool calls already made finish: they
        are paid for, and their outputs go into the partial result. Tasks not yet calling
        their tool are cancelled; cancelling the run still cancels everything at once."""
        if self.closing:
            if self.error is None:
                self.error = error
            return
        self.closing = True  # nothing else starts, retries included
        self.error = error
        calling = []
        for node in self.nodes.values():
            handle = node.handle
            if handle is None or handle.done():
                continue
            if node.record.attempts > 0:
                calling.append(handle)
            else:
                handle.cancel()
        if not calling:
            self._abort(error)
            return
        # (held here: the loop holds tasks weakly)
        self.drain = asyncio.ensure_future(self._await_then_abort(calling, error))

    async def _await_then_abort(
        self, calling: list[asyncio.Task[Any]], error: BaseException
    ) -> None:
        await asyncio.wait(calling)  # a cancelled run cancels these, and so ends this too
        self._abort(error)

    async def _shutdown(self, feeder: asyncio.Task[None] | None) -> None:
        """Cancel and await whatever still runs, mark the rest cancelled, close the executor.

        Awaiting even when cancelled again is what keeps no task orphaned.
        """
        self.closing = True
        pending = [
            node.handle
            for node in self.nodes.values()
            if node.handle is not None and not node.handle.done()
        ]
        if feeder is not None and not feeder.done():
            pending.append(feeder)
        pending.extend(self.dispatch.close())
        for task in pending:
            task.cancel()
        cancelled_again = False
        while pending:
            try:
                await asyncio.wait(pending)
            except asyncio.CancelledError:
                cancelled_again = True
            pending = [task for task in pending if not task.done()]
        if self.open:
            for node in self.nodes.values():
                if not node.record.status.is_final:
                    self._cancelled(node)
        self.trace.finished = _now()
        if self.owns_executor:
            self.executor.close()
        if cancelled_again:
            raise asyncio.CancelledError

    async def _settle(self) -> None:
        """Let an executor that kept outputs elsewhere (Ray's object store) bring them here,
        so the result and the joiner see values, not handles."""
        executor = getattr(self.executor, "inner", self.executor)  # behind a budget gate
        settle = getattr(executor, "settle", None)
        if settle is not None:
            await settle(self.values)

    def _result(self) -> Result:
        values = self.values
        if self.observe_errors or self.prior:  # error texts and earlier outputs stay out
            nodes = self.nodes
            values = {
                i: v for i, v in values.items() if i in nodes and nodes[i].record.status is _DONE
            }
        return Result(self.run_id, values, self.trace)

    # -- events and logs ---------------------------------------------------------------------

    def emit(self, event: Event) -> None:
        """Hand an event to ``on_event``; if that raises, the run ends with its error."""
        assert self.on_event is not None
        try:
            self.on_event(event)
        except Exception as exc:
            self._abort(exc)

    def _emit_task(self, kind: type[events.TaskEvent], node: _Node, **fields: Any) -> None:
        self.emit(
            kind(
                run_id=self.run_id, time=_now(), task_id=node.task.id, tool=node.tool.name, **fields
            )
        )

    # -- tasks arrive ------------------------------------------------------------------------

    def _arrive(self, task: Task) -> None:
        """Register a task; start it now if its dependencies are done.

        Raises:
            PlanError: not a Task, a duplicate id, a dependency not seen yet, arguments that
                do not fit the tool; UnknownToolError: the tool does not exist.
        """
        if not isinstance(task, Task):
            raise PlanError(f"a plan stream must yield llmc.Task objects, got {task!r}")
        nodes, prior = self.nodes, self.prior
        if task.id in nodes or task.id in prior:
            where = "ran in an earlier plan" if task.id in prior else "arrived twice"
            raise PlanError(f"task {task.id} {where}; each task needs its own id", task_id=task.id)
        try:
            parents = [nodes[dep] for dep in task.dependencies if dep not in prior]
        except KeyError as missing:
            raise PlanError(
                f"task {task.id} refers to ${missing.args[0]}, which has not arrived; a task "
                "may only use the outputs of tasks sent before it",
                task_id=task.id,
            ) from None
        tool, slots = self._tool_for(task)
        record = TaskRecord(task.id, tool.name, task.dependencies, _now())
        node = _Node(task, tool, record, slots)
        nodes[task.id] = node
        self.trace.tasks[task.id] = record
        self.open += 1
        if self.on_event is not None:
            self._emit_task(events.TaskQueued, node, task=task)
        blocker: _Node | None = None
        for parent in parents:
            status = parent.record.status
            if status is _PENDING or status is _RUNNING:
                node.waiting += 1
                parent.dependents.append(node)
            elif status is not _DONE and not (status is _FAILED and self.observe_errors):
                blocker = parent
        if blocker is not None:
            self._skip(node, blocker)
            self._check_finished()
        elif node.waiting == 0:
            self._ready(node)

    def _tool_for(self, task: Task) -> tuple[Tool, _Slots | None]:
        """The task's tool (its call checked unless the plan did) and the tool's slots."""
        if self.trusted:
            known = self.tool_cache.get(task.tool)
            if known is not None:
                return known
            tool = self.toolbox[task.tool]
        else:
            tool = check_call(task, self.toolbox)
        known = self.tool_cache[tool.name] = (tool, self._slots_for(tool))
        return known

    def _slots_for(self, tool: Tool) -> _Slots | None:
        if tool.max_concurrency is None or tool.batch_tool is not None:
            return None  # a batchable tool's limit counts batches: see _batched
        slots = self.tool_slots.get(tool.name)
        if slots is None:
            slots = self.tool_slots[tool.name] = _Slots(tool.max_concurrency)
        return slots

    # -- dispatch ----------------------------------------------------------------------------

    def _ready(self, node: _Node) -> None:
        """All dependencies are done: start the task, or queue it for a free slot."""
        node.record.ready = _now()
        if self.closing:
            return
        slots = node.slots
        if slots is not None and slots.free == 0:
            slots.waiting.append(node)
            return
        if self.free is not None:
            if self.free == 0:
                self.parked.append(node)
                return
            self.free -= 1
        if slots is not None:
            slots.free -= 1
        self._launch(node)

    def _launch(self, node: _Node) -> None:
        node.handle = self.loop.create_task(self._execute(node))

    def _release(self, node: _Node) -> None:
        """Give a finished task's slots to waiting tasks: its own tool's first, then any."""
        slots = node.slots
        if self.free is not None:
            self.free += 1
        if slots is not None:
            slots.free += 1
            if slots.waiting and not self.closing:
                self._take_and_launch(slots.waiting.popleft())
        if self.free is None:
            return
        while self.free > 0 and self.parked and not self.closing:
            waiting = self.parked.popleft()
            if waiting.slots is not None and waiting.slots.free == 0:
                waiting.slots.waiting.append(waiting)  # its tool is full now: wait there
            else:
                self._take_and_launch(waiting)

    def _take_and_launch(self, node: _Node) -> None:
        if self.free is not None:
            self.free -= 1
        if node.slots is not None:
            node.slots.free -= 1
        self._launch(node)

    # -- a task runs -------------------------------------------------------------------------

    async def _execute(self, node: _Node) -> None:
        if self.closing:  # launched just before the run began to close: never call the tool
            self._cancelled(node)
            return
        record = node.record
        record.status = _RUNNING
        record.started = _now()
        if self.on_event is not None:
            self._emit_task(events.TaskStarted, node)
        if self.debug:
            self.log.debug("task started", task_id=node.task.id, tool=node.tool.name)
        tool = node.tool
        try:
            arguments = self._arguments(node)  # ToolArgumentError: the tool is not called
            dispatch = self.dispatch
            cache = dispatch.cache
            key = cache.tool_key(tool, arguments) if cache is not None else None
            if key is not None and (output := await dispatch.cached(key)) is not MISSING:
                record.cached = True  # a hit: the stored output, no call
            elif tool.pure and dispatch.dedupe and (leader := dispatch.leader(node, arguments)):
                output = await dispatch.follow(leader)
            elif tool.batch_tool is not None:
                output = await dispatch.batched(node, arguments)
            elif (
                tool.retries
                or tool.rate_limit is not None
                or (tool.timeout is not None or self.timeout is not None)
            ):
                output = await self.attempts(tool, arguments, (node,), (record,))
            else:  # the common case, kept short: one attempt, nothing to wait for first
                record.attempts = 1
                if self.direct and tool.is_async:
                    output = await tool.fn(**arguments)
                else:
                    output = await self.executor.call(tool, arguments)
            if key is not None and not record.cached and record.served_by is None:
                await dispatch.store(key, tool, output)  # (a deduplicated call's leader stores)
        except Closing:
            self._cancelled(node)
        except asyncio.CancelledError as exc:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                self._cancelled(node)
                raise
            self._failed(node, exc)  # the tool raised CancelledError on its own
        except Exception as exc:
            self._failed(node, exc)
        else:
            self._done(node, output)

    def _arguments(self, node: _Node) -> dict[str, Any]:
        """The task's arguments with references resolved, validated by the tool."""
        task, values = node.task, self.values
        args = [resolve_references(value, values) for value in task.args]
        if task.kwargs:
            kwargs = {k: resolve_references(value, values) for k, value in task.kwargs.items()}
            return node.tool.bind(args, kwargs)
        return node.tool.bind(args)

    async def attempts(
        self,
        tool: Tool,
        arguments: dict[str, Any],
        nodes: Sequence[_Node],
        counts: Sequence[TaskRecord | Batch],
        called: Tool | None = None,
    ) -> Any:
        """Call the tool (or ``called``, its batch tool) under its rate limit and timeout,
        retrying retryable errors; each attempt counts in ``counts``, each retry is told
        for ``nodes``."""
        timeout = tool.timeout if tool.timeout is not None else self.timeout
        limiter = tool.rate_limit
        target = called or tool

        async def attempt(number: int) -> Any:
            if limiter is not None:
                release(limiter)  # the call starts now: it is its own server
            if self.closing:  # woke from a wait just as the run began to close
                raise Closing
            for count in counts:
                count.attempts += 1
            if timeout is None:
                return await self.executor.call(target, arguments)
            return await self._call_with_limit(target, arguments, timeout)

        def after_failure(error: Exception, number: int) -> float | None:
            if number > tool.retries or not isinstance(error, tool.retry_on):
                return None
            delay = self.backoff.delay(number)
            for node in nodes:
                self.tell_retry(node, error, delay)
            return delay

        return await retrying(attempt, after_failure, limiter=limiter)

    async def _call_with_limit(self, tool: Tool, arguments: dict[str, Any], seconds: float) -> Any:
        scope = asyncio.timeout(seconds)
        try:
            async with scope:
                return await self.executor.call(tool, arguments)
        except TimeoutError:
            if scope.expired():
                raise ToolTimeoutError(
                    f"{tool.name}() took longer than its timeout of {seconds:g} s and was "
                    "cancelled; raise the tool's timeout or make the call faster"
                ) from None
            raise  # the tool's own TimeoutError

    # -- a task ends -------------------------------------------------------------------------

    def tell_retry(self, node: _Node, error: Exception, delay: float) -> None:
        """Tell the events and the log that ``node``'s call is tried again after ``delay``."""
        if self.on_event is not None:
            self._emit_task(
                events.TaskRetrying, node, attempt=node.record.attempts, error=error, delay=delay
            )
        if self.debug:
            self.log.debug(
                "task retrying",
                task_id=node.task.id,
                tool=node.tool.name,
                attempt=node.record.attempts,
                error=error_text(error),
                delay=delay,
            )

    def _done(self, node: _Node, output: Any) -> None:
        record = node.record
        record.status = _DONE
        record.finished = _now()
        node.handle = None
        self.values[node.task.id] = output
        if node.served is not None:
            _wake(node.served)
        if node.slots is not None or self.free is not None:
            self._release(node)
        if self.on_event is not None:
            self._emit_task(
                events.TaskFinished,
                node,
                output=output,
                duration=record.finished - (record.started or record.finished),
            )
        if self.debug:
            self.log.debug("task finished", task_id=node.task.id, tool=node.tool.name)
        self.open -= 1
        self._unblock_dependents(node)
        self._check_finished()

    def _unblock_dependents(self, node: _Node) -> None:
        for dependent in node.dependents:
            if dependent.record.status is _PENDING:
                dependent.waiting -= 1
                if dependent.waiting == 0:
                    self._ready(dependent)

    def _failed(self, node: _Node, error: BaseException) -> None:
        record = node.record
        record.status = _FAILED
        record.finished = _now()
        record.error = error
        node.handle = None
        if node.served is not None:
            _wake(node.served)
        if node.slots is not None or self.free is not None:
            self._release(node)
        if self.on_event is not None:
            self._emit_task(events.TaskFailed, node, error=error, attempts=record.attempts)
        if self.debug:
            self.log.debug(
                "task failed",
                task_id=node.task.id,
                tool=node.tool.name,
                error=error_text(error),
                attempts=record.attempts,
            )
        self.open -= 1
        if isinstance(error, BudgetExceeded):  # the budget is spent: stop the whole run
            self._drain(error)
            return
        if self.fail_fast:
            self._abort(None)
            return
        if self.observe_errors:
            self.values[node.task.id] = error_text(error)
            self._unblock_dependents(node)
        else:
            self._skip_dependents(node)
        self._check_finished()

    def _skip_dependents(self, failed: _Node) -> None:
        stack = [(dependent, failed) for dependent in failed.dependents]
        while stack:
            node, cause = stack.pop()
            if node.record.status is _PENDING:
                self._skip(node, cause)
                stack.extend((dependent, node) for dependent in node.dependents)

    def _skip(self, node: _Node, cause: _Node) -> None:
        """Mark a task skipped because ``cause`` (a dependency) failed or was skipped."""
        cause_record = cause.record
        root = cause_record.blocked_by or cause.task.id
        what = f"task {cause.task.id} ({cause.tool.name})"
        if cause_record.status is _FAILED and cause_record.error is not None:
            why = f"{what} failed: {error_text(cause_record.error)}"
        elif cause_record.status is TaskStatus.SKIPPED:
            why = f"{what} was skipped because task {root} failed"
        else:
            why = f"{what} was {cause_record.status.value}"
        record = node.record
        record.status = TaskStatus.SKIPPED
        record.finished = _now()
        record.error = reason = DependencyError(f"task {node.task.id} was not run: {why}")
        record.blocked_by = root
        self.open -= 1
        if self.on_event is not None:
            self._emit_task(events.TaskSkipped, node, reason=reason)
        if self.debug:
            self.log.debug(
                "task skipped", task_id=node.task.id, tool=node.tool.name, reason=str(reason)
            )

    def _cancelled(self, node: _Node) -> None:
        record = node.record
        record.status = TaskStatus.CANCELLED
        record.finished = _now()
        node.handle = None
        if node.served is not None:
            _wake(node.served)
        self.open -= 1
        if self.on_event is not None:
            self._emit_task(events.TaskCancelled, node)
        if self.debug:
            self.log.debug("task cancelled", task_id=node.task.id, tool=node.tool.name)


def _wake(future: asyncio.Future[None]) -> None:
    """Tell the tasks waiting for an identical call that it ended."""
    if not future.done():
        future.set_result(None)
