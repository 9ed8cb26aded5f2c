"""The compiler: plan, run and answer a question, replanning when the joiner asks.

One :meth:`Compiler.run` is a loop of rounds. In each, the planner's LLM stream flows through
the parser straight into the scheduler, so tools start while the plan is still being written;
then the joiner reads every observation so far and answers or asks for a new plan. A new plan
continues the task numbering and may use every earlier output as ``$N``.

A plan that ends with ``finish(...)`` answers itself: the answer is rendered from the outputs
it names the moment they are done, and no joiner is asked. If one of them failed or returned
nothing, the joiner answers (and may replan) as if the plan had ended with ``join()``.

With a ``cache`` (:class:`llmc.cache.Cache`), LLM calls are replayed when they repeat, tool
calls as the cache's policy says, and the first plan of a question is taken from the cache
when the same question, or a verified paraphrase of it, was answered before by one plan: it
is re-read against the current tools and run again, and only the planner call is saved.

With an ``output_type`` (see :mod:`llmc.typed`) the answer is an object of that type: a
plan's ``finish(...)`` answers when its value fits, the joiner is asked for JSON of the
type's schema otherwise, and an answer that does not fit gets one repair round.
"""

from __future__ import annotations

import dataclasses
import html
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Unpack

from . import observe
from ._sync import run_sync
from .budget import Budget, Meter, estimate_budget, fit_observations
from .context import RunContext
from .errors import BudgetExceeded, OutputValidationError
from .fuser import FusedTool, Fuser
from .joiner import AnswerText, Decision, Joiner
from .llm.base import LLM, Message, Usage
from .llm.default import default_llm
from .llm.openai_compat import OpenAI
from .mapping import Outcome, answer_all, outcome_of
from .plan import Plan
from .planner import Planner, PlanStream, PlanText
from .result import Result, error_text, text_form
from .scheduler import RunOptions, Scheduler, resolve_references
from .task import Finish, Task, fill_question
from .templates import Templates
from .toolbox import Toolbox, Tools
from .trace import Event, Span, TaskFinished, Trace, stream_events
from .typed import TypedOutput, typed_output

if TYPE_CHECKING:
    from .redis_limits import RedisLedger


@dataclass(frozen=True, slots=True, kw_only=True)
class Replanning(Event):
    """The joiner asked for a new plan.

    Attributes:
        round: the number of the plan that comes next.
        reason: what the joiner said is missing.
    """

    round: int
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Joining(Event):
    """The joiner is asked about a plan's observations (no event when the plan answered).

    Attributes:
        round: the plan's number.
    """

    round: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Answered(Event):
    """The last event of a compiler run.

    Attributes:
        answer: the answer, with its plans, trace and usage.
    """

    answer: Answer


@dataclass(slots=True, eq=False)
class Round:
    """One plan of a question and what became of it: the compiler's record, from what the
    planner wrote (its :class:`~llmc.planner.PlanStream`), what the tasks observed and what
    the joiner said (the memory later plans and the joiner read).

    Attributes:
        number: 1 for the first plan, 2 for the first replan, ...
        tasks: the tasks the planner wrote, in order.
        text: the planner's raw output (repair rounds included).
        parsed_at: when each task's line was complete (:func:`time.perf_counter`).
        observations: each task's observation text, once the plan ran.
        reason: the joiner's reason for asking for another plan, if it did.
        ran: the tasks as they went to the scheduler: ``tasks`` with each call of a fused
            tool replaced by its members (see :mod:`llmc.fuser`).
        cached: the plan came from a cache (:class:`llmc.cache.Cache`), not from the LLM.
        dropped: tasks the planner wrote that did not run, each with the reason (a repeat,
            a veto); a plan stopped early names the task it stopped at.
        finish: the plan's own answer (``finish(...)``), when it ended with one.
        answered_by: who answered after this round: ``"plan"`` (its ``finish``, no joiner
            call), ``"joiner"``, or None (the joiner asked for a new plan, or the run stopped).
    """

    number: int
    tasks: list[Task] = field(default_factory=list)
    text: str = ""
    parsed_at: dict[int, float] = field(default_factory=dict)
    observations: dict[int, str] = field(default_factory=dict)
    reason: str | None = None
    ran: list[Task] = field(default_factory=list)
    cached: bool = False
    dropped: list[tuple[Task, str]] = field(default_factory=list)
    finish: Finish | None = None
    answered_by: str | None = None


@dataclass(slots=True, eq=False)
class Answer:
    """The answer to a question, and how it was reached.

    Attributes:
        question: the question.
        text: the answer (with an ``output_type``: the output's text, compact JSON, or the
            string itself for a ``str`` output).
        finished: True when the plan or the joiner answered; False when the joiner still
            wanted another plan but none was left (``text`` is then its last word).
        rounds: each plan with its tasks, raw text, observations and the joiner's reason.
        results: each plan's run :class:`~llmc.result.Result`.
        trace: the whole run: every task, and every LLM call as a span.
        fused_groups: the members of each call of a fused tool (see :mod:`llmc.fuser`).
        meter: the run's budget meter: limits, counts, the TALE budget, observation shares
            (see :mod:`llmc.budget`).
        output: with an ``output_type``, the validated answer (an instance of the type);
            None without one, or when the run ended without an answer.
    """

    question: str
    text: str
    finished: bool
    rounds: list[Round]
    results: list[Result]
    trace: Trace
    tools: Toolbox = field(repr=False)
    fused_groups: dict[str, tuple[int, ...]] = field(default_factory=dict, repr=False)
    meter: Meter | None = field(default=None, repr=False)
    output: Any = field(default=None, repr=False)

    @property
    def plan(self) -> Plan:
        """Every task that ran, of every round, as one plan (for pictures and statistics).

        Calls of fused tools appear as their member tasks; ``plan.fused_groups`` names the
        members of each, and each batch and shared call of the run.
        """
        plan = Plan((task for r in self.rounds for task in _ran(r)), tools=self.tools)
        plan.fused_groups = {**self.fused_groups, **self.trace.fused_groups()}
        if self.meter is not None:  # each cut observation's share, under its box
            plan.budgets = dict(self.meter.shares)
        return plan

    @property
    def plans(self) -> list[Plan]:
        """Each round's plan as it ran; a later plan may refer to tasks of earlier ones."""
        return [Plan(_ran(r)) for r in self.rounds]

    @property
    def answered_by(self) -> str | None:
        """``"plan"`` when the last plan's ``finish(...)`` answered (no joiner call),
        ``"joiner"`` when the joiner did, None when the run stopped before an answer."""
        return self.rounds[-1].answered_by if self.rounds else None

    @property
    def replans(self) -> int:
        """How many times the joiner asked for a new plan that was then made."""
        return len(self.rounds) - 1

    @property
    def llm_calls(self) -> int:
        """How many LLM calls the answer took (planner, repairs, joiner, estimator, summaries);
        a reply replayed from a cache (a usage of zero calls) is no call."""
        return sum(
            1
            for span in self.trace.spans
            if span.kind in _LLM_KINDS and (span.usage is None or span.usage.calls > 0)
        )

    @property
    def usage(self) -> Usage:
        """Tokens of all LLM calls together (a call whose server sent none counts as 0)."""
        total = Usage()
        for span in self.trace.spans:
            total = total + (span.usage or Usage(calls=1))
        return total

    @property
    def usage_by_call(self) -> list[tuple[str, Usage]]:
        """Each LLM call's label (``"plan 1"``, ``"join 1"``, ...) and its tokens."""
        return [(span.label, span.usage or Usage()) for span in self.trace.spans]

    @property
    def usage_by_node(self) -> dict[str, Usage]:
        """Tokens per node: ``"planner"``, ``"joiner"``, ``"estimator"``, ``"summarizer"``."""
        nodes: dict[str, Usage] = {}
        for span in self.trace.spans:
            if span.kind in _LLM_KINDS:
                nodes[span.kind] = nodes.get(span.kind, Usage()) + (span.usage or Usage(calls=1))
        return nodes

    @property
    def cost(self) -> float | None:
        """US dollars of all LLM calls together; None when a model has no price (see
        :class:`llmc.budget.PriceTable`)."""
        costs = [span.cost for span in self.trace.spans if span.kind in _LLM_KINDS]
        if any(cost is None for cost in costs):
            return None
        return sum(cost for cost in costs if cost is not None)

    @property
    def dispatch_delays(self) -> dict[int, float]:
        """Seconds from the end of each task's line in the planner's stream to its start.

        Only tasks that could start at once (no dependencies) are listed: the others wait
        for their inputs, which is not the scheduler's delay.
        """
        delays = {}
        for r in self.rounds:
            for task in _ran(r):
                record = self.trace.tasks.get(task.id)
                if record is None or record.started is None or task.dependencies:
                    continue
                delays[task.id] = record.started - r.parsed_at[task.id]
        return delays

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        text = self.text if len(self.text) <= 60 else self.text[:57] + "..."
        cost = self.cost
        spent = f", ${cost:.4f}" if cost is not None else ""
        counts = ", ".join(
            _count(n, what)
            for n, what in (
                (len(self.rounds), "plan"),
                (len(self.trace.tasks), "task"),
                (self.llm_calls, "LLM call"),
                (self.usage.total_tokens, "token"),
            )
        )
        return f"<Answer {text!r}: {counts}{spent}, {self.trace.makespan:.2f} s>"

    def _repr_html_(self) -> str:
        """Jupyter shows an answer as its text, its plan after the run, and its timeline."""
        plan = self.plan
        return (
            f"<p>{html.escape(self.text)}</p>"
            f"<div>{plan.to_svg(trace=self.trace)}</div>"
            f"<div>{self.trace.to_svg(plan=plan)}</div>"
        )


class Compiler:
    """Answers questions by compiling them into task graphs over ``tools``.

    Args:
        tools: the tools plans may call (functions, Tools, or a Toolbox).
        llm: the model for the planner and the joiner. Default: the model configured by
            the environment (see :func:`llmc.llm.default_llm`).
        joiner_llm: a different model for the joiner, if wanted.
        templates: a prompt template folder (see :class:`~llmc.templates.Templates`).
        json: plan and join with structured JSON outputs instead of text (for models with
            response schemas).
        max_replans: how many new plans the joiner may ask for (default 2).
        fused: fused tools (:func:`llmc.fuse`) to offer the planner besides ``tools``; fused
            tools among ``tools`` count too. Each call of one is expanded into its member
            tasks before it runs; the members need not be among ``tools``.
        budget: what each run may spend and how its prompts are shared out
            (:class:`llmc.Budget`); a run's own ``budget=`` replaces it. Without one, runs
            have no limits, and observations still get token shares of the context window.
        planner: a :class:`~llmc.planner.Planner` of your own (its grammar, repeat rule,
            veto), used instead of one built from ``llm``, ``templates`` and ``json``; its
            tools should be ``tools`` (and ``fused``).
        joiner: a :class:`~llmc.joiner.Joiner` of your own (its mode, options), used
            instead of one built from ``joiner_llm`` or ``llm``.
        plan_answers: let a plan that ends with ``finish(...)`` answer without a joiner call
            (default). False: the joiner always answers, as before ``finish`` existed.
        joiner_observations: ``"leaves"`` (default): the joiner sees in full the outputs no
            other task used and a short head of the others; ``"all"``: every output in full
            (see :class:`~llmc.joiner.Joiner`).
        output_type: the type every answer must be (a pydantic ``BaseModel``, a dataclass,
            a ``TypedDict``, ``int``, ``list[str]``, ``Literal[...]``: whatever pydantic's
            ``TypeAdapter`` validates); ``Answer.output`` holds it (see :mod:`llmc.typed`).
            A run's own ``output_type=`` replaces it.
        **options: run options for the scheduler (``max_concurrency``, ``timeout``, ...,
            see :class:`~llmc.scheduler.RunOptions`).

    Example:
        >>> compiler = llmc.Compiler(tools=[search], llm=llmc.OpenAI("gpt-4o-mini"))
        >>> answer = await compiler.run("Which trench is deeper?")   # doctest: +SKIP
    """

    def __init__(
        self,
        tools: Tools,
        llm: LLM | None = None,
        *,
        joiner_llm: LLM | None = None,
        templates: str | Path | None = None,
        json: bool = False,
        max_replans: int = 2,
        fused: Iterable[FusedTool] = (),
        budget: Budget | None = None,
        planner: Planner | None = None,
        joiner: Joiner | None = None,
        plan_answers: bool = True,
        joiner_observations: Literal["leaves", "all"] = "leaves",
        output_type: Any = None,
        **options: Unpack[RunOptions],
    ) -> None:
        if max_replans < 0:
            raise ValueError("max_replans must be 0 or more")
        if output_type is not None:
            typed_output(output_type)  # a type pydantic cannot validate fails here, not later
        self.output_type = output_type
        if llm is None:
            llm = default_llm()
        self.tools = Toolbox.of(tools)
        self.llm = llm
        extra = [t for t in fused if t.name not in self.tools or self.tools[t.name] is not t]
        self.fused = [t for t in self.tools.values() if isinstance(t, FusedTool)] + extra
        planner_tools = Toolbox([*self.tools.values(), *extra]) if extra else self.tools
        #: What tasks run with: ``tools`` and the members of the fused tools.
        self.run_tools = Toolbox(self.tools)
        for member in Fuser(self.fused).members():
            self.run_tools.add(member)
        self.cache = options.get("cache")
        if self.cache is not None and self.cache.llm:  # repeated LLM calls are replayed
            from .cache import CachedLLM

            llm = CachedLLM(llm, self.cache)
            joiner_llm = CachedLLM(joiner_llm, self.cache) if joiner_llm is not None else None
        shared = Templates(templates)
        self.planner = planner or Planner(llm, planner_tools, templates=shared, json=json)
        self.joiner = joiner or Joiner(
            joiner_llm or llm, templates=shared, json=json, observations=joiner_observations
        )
        self.scheduler = Scheduler(self.run_tools, **options)
        self.max_replans = max_replans
        self.budget = budget or Budget()
        self.plan_answers = plan_answers

    async def run(
        self,
        question: str,
        *,
        on_event: Callable[[Event], object] | None = None,
        budget: Budget | None = None,
        output_type: Any = None,
    ) -> Answer:
        """Plan, run and answer ``question``.

        Args:
            question: the question.
            on_event: called with every event: planner text, task events, LLM usage
                (:class:`llmc.budget.LLMUsage`), answer text.
            budget: this run's budget, instead of the compiler's.
            output_type: this run's answer type, instead of the compiler's (see
                :mod:`llmc.typed`).

        Raises:
            PlanError: the planner's output did not parse, even after a repair round.
            LLMError: an LLM call failed (after its retries).
            BudgetExceeded: the next call would have crossed the budget; the run stopped
                and the error's ``answer`` holds what it had done.
            OutputValidationError: with an output type, the joiner's answer did not fit it,
                even after a repair round; the error's ``answer`` holds what the run did.
            OutputTypeError: ``output_type`` is not a type pydantic can validate.
        """
        chosen = self.output_type if output_type is None else output_type
        output = typed_output(chosen) if chosen is not None else None
        return await _Session(self, question, on_event, budget or self.budget, output).run()

    def run_sync(
        self, question: str, *, budget: Budget | None = None, output_type: Any = None
    ) -> Answer:
        """:meth:`run` for synchronous code; Ctrl-C cancels the run cleanly.

        Inside a running event loop (Jupyter) the run goes on a private loop in a worker
        thread; ``await compiler.run(...)`` is the simpler choice there. The loop ends with
        the run, so the connections :class:`~llmc.llm.OpenAI` backends opened on it are
        closed before this returns.
        """
        return run_sync(lambda: self._run_then_close(question, budget, output_type))

    async def _run_then_close(
        self, question: str, budget: Budget | None, output_type: Any
    ) -> Answer:
        """Run on a loop that ends with the run, closing the HTTP connections opened on it."""
        try:
            return await self.run(question, budget=budget, output_type=output_type)
        finally:
            for backend in _http_backends(self.llm, self.joiner.llm):
                await backend.aclose()

    def stream(
        self, question: str, *, budget: Budget | None = None, output_type: Any = None
    ) -> AsyncGenerator[Event, None]:
        """Run ``question`` and yield its events as they happen; the last is :class:`Answered`.

        Events: :class:`PlanText` as the plan streams, the scheduler's task events,
        :class:`Replanning`, :class:`AnswerText` as the answer streams, then :class:`Answered`.
        Leaving the loop early cancels the run. ``budget`` and ``output_type`` are as
        :meth:`run` has them.
        """
        return stream_events(
            lambda on_event: self.run(
                question, on_event=on_event, budget=budget, output_type=output_type
            )
        )

    async def map(
        self,
        questions: Iterable[str],
        *,
        concurrency: int = 8,
        budget: Budget | None = None,
        ledger: RedisLedger | None = None,
        output_type: Any = None,
    ) -> AsyncIterator[Outcome]:
        """Answer many questions, at most ``concurrency`` at once, yielding each
        :class:`~llmc.mapping.Outcome` as it finishes (``outcome.index`` says which).

        A question that fails is an outcome with its ``error``; the batch goes on. Leaving
        the ``async for`` early cancels the questions in flight. For a batch on a Ray
        cluster, see :class:`llmc.ray_pool.RayPool`; for its totals,
        :class:`~llmc.mapping.BatchSummary`.

        Args:
            questions: the questions.
            concurrency: questions in flight at once (their LLM and tool calls share this
                compiler's limits: pass ``rate_limit=`` to the LLM for the endpoint's rate).
            budget: each question's budget, instead of the compiler's.
            ledger: a :class:`~llmc.redis_limits.RedisLedger` the batch's spending goes
                into; a question starts only while the ledger is within its limits.
            output_type: each answer's type, instead of the compiler's (see
                :mod:`llmc.typed`).
        """
        if output_type is not None:
            typed_output(output_type)  # a bad type fails the call, not every question

        async def one(index: int, question: str) -> Outcome:
            try:
                answer = await self.run(question, budget=budget, output_type=output_type)
            except Exception as exc:
                return outcome_of(index, question, None, exc)
            return outcome_of(index, question, answer, None)

        async for outcome in answer_all(questions, one, concurrency=concurrency, ledger=ledger):
            yield outcome

    def __repr__(self) -> str:
        return f"<Compiler tools: {', '.join(self.tools)}; llm: {self.llm.model}>"


class _Session:
    """One question's rounds of planning, running and joining."""

    def __init__(
        self,
        compiler: Compiler,
        question: str,
        on_event: Callable[[Event], object] | None,
        budget: Budget,
        output: TypedOutput | None = None,
    ) -> None:
        self.compiler = compiler
        self.output = output  # the answer's type, if it has one
        self.question = question
        self.run_id = uuid.uuid4().hex[:12]
        self.meter = Meter(budget, run_id=self.run_id, on_event=on_event, tools=compiler.run_tools)
        self.trace = Trace(self.run_id, time.perf_counter())
        self.context = RunContext(self.run_id, self.trace, self.meter, on_event)
        self.emit = self.context.emit
        self.rounds: list[Round] = []
        self.results: list[Result] = []
        self.values: dict[int, Any] = {}  # what later plans' references receive
        self.observations: dict[int, str] = {}
        self.fuser = Fuser(compiler.fused) if compiler.fused else None
        self.done: dict[int, Any] = {}  # outputs of the tasks that finished, every round
        self.plan_answer: str | None = None  # the current plan's finish(...), rendered
        self.plan_output: Any = None  # ... and as the output type, when there is one

    async def run(self) -> Answer:
        try:
            answer = await self._rounds()
        except BudgetExceeded as exc:  # nothing computed is lost: it rides on the error
            exc.answer = self._answer("", finished=False, announce=False)
            self._report(exc.answer, exc)
            raise
        except BaseException as exc:
            self._report(None, exc)
            raise
        self._report(answer, None)
        return answer

    def _report(self, answer: Answer | None, error: BaseException | None) -> None:
        """Tell the run's observers (telemetry, :mod:`llmc.observe`) that it ended."""
        if observe.observers:
            if self.trace.finished is None:
                self.trace.finished = time.perf_counter()
            run = observe.FinishedRun(self.trace, self.question, answer, error=error)
            observe.report(run)

    async def _rounds(self) -> Answer:
        compiler = self.compiler
        await self._prepare()
        for number in range(1, compiler.max_replans + 2):
            round_ = Round(number)
            self.plan_answer = self.plan_output = None
            await self._execute(round_)
            self._answer_from_plan(round_, round_.finish)
            if self.plan_answer is not None:
                round_.answered_by = "plan"
                await self._keep_plan(finished=True)
                return self._answer(self.plan_answer, finished=True, output=self.plan_output)
            final = number == compiler.max_replans + 1
            self.emit(Joining(run_id=self.run_id, time=time.perf_counter(), round=number))
            decision = await compiler.joiner.decide(
                self.question,
                [task for r in self.rounds for task in r.tasks],
                self.observations,
                final=final,
                current={task.id for task in round_.tasks},
                number=number,
                run=self.context,
                output=self.output,
            )
            if decision.action == "finish" or final:
                round_.answered_by = "joiner"
                text, output = decision.text, None
                if self.output is not None and decision.action == "finish":
                    text, output = await self._typed_answer(self.output, decision, round_)
                await self._keep_plan(finished=decision.action == "finish")
                return self._answer(text, finished=decision.action == "finish", output=output)
            round_.reason = decision.text
            self.emit(
                Replanning(
                    run_id=self.run_id,
                    time=time.perf_counter(),
                    round=number + 1,
                    reason=decision.text,
                )
            )
        raise AssertionError("unreachable: the last round always answers")

    async def _typed_answer(
        self, output: TypedOutput, decision: Decision, round_: Round
    ) -> tuple[str, Any]:
        """The joiner's answer as the output type, and its text: validated, and asked once
        more (the joiner told what did not fit) when it does not fit.

        Raises:
            OutputValidationError: the repaired answer does not fit either.
        """
        try:
            value = output.validate_text(decision.text)
        except OutputValidationError as error:
            joiner = self.compiler.joiner
            repaired = await joiner.decide(
                self.question,
                [task for r in self.rounds for task in r.tasks],
                self.observations,
                final=True,  # a repair answers: no new plan
                current={task.id for task in round_.tasks},
                number=round_.number,
                run=self.context,
                output=output,
                repair=[output.repair(error, json_mode=joiner.json)],
            )
            try:
                value = output.validate_text(repaired.text)
            except OutputValidationError as again:  # nothing is lost: the run rides on it
                failure = output.failed(again, repaired=True)
                failure.answer = self._answer(repaired.text, finished=False, announce=False)
                raise failure from again
        return output.text_of(value), value

    async def _prepare(self) -> None:
        """Load models that count tokens themselves; estimate the TALE output budget."""
        compiler, budget = self.compiler, self.meter.budget
        if budget.counter is None:
            for llm in (compiler.llm, compiler.joiner.llm):
                load = getattr(llm, "aload", None)
                if callable(load) and getattr(llm, "loaded", True) is False:
                    await load()  # its tokenizer counts; loading it now keeps the loop free
        if budget.tale:
            low, high = budget.tale_range
            self.meter.output_budget = await estimate_budget(
                budget.estimator or compiler.joiner.llm,
                self.question,
                templates=compiler.joiner.templates,
                meter=self.meter,
                trace=self.trace,
                low=low,
                high=high,
                fallback=budget.tale_fallback,
            )

    async def _history(self) -> list[Round]:
        """The earlier rounds as the planner sees them: observations within their shares."""
        if not self.rounds:
            return self.rounds
        planner = self.compiler.planner
        tasks = {task.id: task for r in self.rounds for task in r.tasks}

        def render(shown: Mapping[int, str]) -> list[Message]:
            return planner.messages(self.question, _with_observations(self.rounds, shown))

        shown = await fit_observations(
            self.meter,
            planner.llm,
            render,
            {i: text for r in self.rounds for i, text in r.observations.items()},
            tasks,
            question=self.question,
            current=(),
            reserve=self.meter.output_tokens("planner"),
            trace=self.trace,
        )
        return _with_observations(self.rounds, shown)

    def _plan_scope(self) -> str:
        """Where this compiler's plans are cached: its model, tools and planner prompt."""
        planner, cache = self.compiler.planner, self.compiler.cache
        assert cache is not None
        tools = planner.tools.values()
        return cache.plan_scope(planner.llm.model, tools, planner.system_prompt, json=planner.json)

    async def _cached_plan(self, round_: Round) -> PlanStream | None:
        """The first round's plan from the cache, re-read against the current tools; None
        when the cache has none that fits (the planner then writes one)."""
        cache = self.compiler.cache
        if cache is None or not cache.plans or round_.number != 1:
            return None
        started = time.perf_counter()
        match = await cache.find_plan(self.question, self._plan_scope())
        if match is None or not isinstance(match.value, str):
            return None
        plan = self.compiler.planner.replay(match.value)
        if plan is None:
            return None  # the tools changed under it: the planner writes a new plan
        round_.cached = True
        label = f"plan 1 from cache ({match.score:.2f})"
        span = Span("cache", label, started, time.perf_counter(), usage=Usage())  # no call
        self.trace.spans.append(span)
        self.emit(PlanText(run_id=self.run_id, time=time.perf_counter(), round=1, text=match.value))
        return plan

    async def _keep_plan(self, *, finished: bool) -> None:
        """Cache the plan of a question that one plan answered."""
        cache = self.compiler.cache
        if cache is None or not cache.plans or not finished or len(self.rounds) != 1:
            return
        round_ = self.rounds[0]
        if round_.cached or self.compiler.planner.reread(round_.text) is None:
            return  # (a repaired plan's text is two attempts, not one plan)
        await cache.put_plan(self.question, self._plan_scope(), round_.text)

    async def _execute(self, round_: Round) -> None:
        """Stream a plan into the scheduler and record what it observed."""
        compiler = self.compiler
        cached = await self._cached_plan(round_)
        plan = cached or compiler.planner.stream(
            self.question, earlier=await self._history(), number=round_.number, run=self.context
        )

        def on_event(event: Event) -> None:
            self.emit(event)
            if isinstance(event, TaskFinished):
                self.done[event.task_id] = event.output
                if plan.finish is not None:
                    self._answer_from_plan(round_, plan.finish)

        try:
            result = await compiler.scheduler.run(
                _tasks_of(
                    plan,
                    round_,
                    self.fuser,
                    self.question,
                    lambda: self._answer_from_plan(round_, plan.finish),
                ),
                run_id=self.run_id,
                prior=self.values,
                trace=self.trace,
                on_event=on_event,
                meter=self.meter if self.meter.budget.limits_tools else None,
            )
        except BudgetExceeded as exc:
            if exc.result is not None:  # keep what the round did before it stopped
                self._record(round_, exc.result)
            raise
        finally:
            round_.text, round_.finish = plan.text, plan.finish
            round_.dropped = list(plan.dropped)
        self._record(round_, result)

    def _answer_from_plan(self, round_: Round, finish: Finish | None) -> None:
        """Render the plan's ``finish(...)`` once every output it needs is there, and emit
        it; nothing when the compiler leaves answers to the joiner, or when it cannot yet
        (or, for a failed or empty output, ever) be rendered."""
        if finish is None or self.plan_answer is not None or not self.compiler.plan_answers:
            return
        if not finish.dependencies <= self.done.keys():
            return
        if not self._upstream(round_, finish.dependencies) <= self.done.keys():
            return  # a task they were made from failed (errors_as_observations): ask the joiner
        started = time.perf_counter()
        text = render_finish(finish, self.done, self.question)
        if text is None:
            return
        if self.output is not None:  # a typed answer: only a value that fits answers
            typed = self.output.from_finish(finish, self.done, self.question)
            if typed is None:
                return  # the joiner answers
            self.plan_output, text = typed
        self.plan_answer = text
        now = time.perf_counter()
        self.trace.spans.append(
            Span("finish", f"finish {round_.number}", started, now, now, Usage())
        )
        self.emit(AnswerText(run_id=self.run_id, time=now, text=text, by="plan"))

    def _upstream(self, round_: Round, ids: Iterable[int]) -> set[int]:
        """The tasks ``ids`` and every task their inputs came from, in any round."""
        by_id = {task.id: task for r in [*self.rounds, round_] for task in _ran(r)}
        found: set[int] = set()
        todo = list(ids)
        while todo:
            task_id = todo.pop()
            if task_id not in found:
                found.add(task_id)
                task = by_id.get(task_id)
                todo += task.dependencies if task is not None else ()
        return found

    def _record(self, round_: Round, result: Result) -> None:
        """Keep a round and what its plan observed."""
        self.rounds.append(round_)
        self.results.append(result)
        for task in round_.tasks:
            if task.id not in result.trace.tasks:
                continue  # the run stopped before it arrived
            observation = result.observation(task.id)
            round_.observations[task.id] = observation
            self.observations[task.id] = observation
            if task.id in result.outputs:
                self.values[task.id] = result.outputs[task.id]
            else:  # a later plan that refers to it gets the error, not a crash
                record = result.trace.tasks.get(task.id)
                error = record.error if record is not None else None
                self.values[task.id] = error_text(error) if error else observation

    def _answer(
        self, text: str, *, finished: bool, announce: bool = True, output: Any = None
    ) -> Answer:
        self.trace.finished = time.perf_counter()
        answer = Answer(
            self.question,
            text,
            finished,
            self.rounds,
            self.results,
            self.trace,
            self.compiler.run_tools,
            self.fuser.groups if self.fuser is not None else {},
            self.meter,
            output,
        )
        if announce:
            self.emit(Answered(run_id=self.run_id, time=time.perf_counter(), answer=answer))
        return answer


def render_finish(finish: Finish, outputs: Mapping[int, Any], question: str = "") -> str | None:
    """A plan's answer: its ``finish`` value with each reference replaced by its output
    (``$question`` by the question), as text.

    Returns None when the answer cannot stand: an output it needs is missing, None, or
    empty text, or the answer itself is empty. The compiler then asks the joiner.
    """
    for dep in finish.dependencies:
        if dep not in outputs or outputs[dep] is None or not text_form(outputs[dep]).strip():
            return None
    value = resolve_references(fill_question(finish.value, question), outputs)
    text = text_form(value).strip()
    return text or None


def _with_question(task: Task, question: str) -> Task:
    """The task with ``$question`` in its arguments replaced by the question."""
    args = fill_question(task.args, question)
    kwargs = fill_question(task.kwargs, question)
    if args is task.args and kwargs is task.kwargs:
        return task
    return dataclasses.replace(task, args=args, kwargs=kwargs)


async def _tasks_of(
    plan: PlanStream,
    round_: Round,
    fuser: Fuser | None,
    question: str,
    on_end: Callable[[], object],
) -> AsyncGenerator[Task, None]:
    """The planner's tasks, recorded in ``round_`` and on their way to the scheduler with
    ``$question`` filled in and calls of fused tools expanded into their members, as they
    come; ``on_end`` is called when the plan is complete. The plan is closed when the
    scheduler stops early."""
    try:
        async for planned in plan:
            round_.tasks.append(planned)
            round_.parsed_at[planned.id] = parsed = plan.parsed_at[planned.id]
            task = _with_question(planned, question)
            for item in fuser.expand(task) if fuser is not None else (task,):
                if item is not task:  # a member: its line is the fused call's
                    round_.parsed_at[item.id] = parsed
                round_.ran.append(item)
                yield item
        on_end()
    finally:
        await plan.aclose()


def _with_observations(rounds: list[Round], shown: Mapping[int, str]) -> list[Round]:
    """Copies of ``rounds`` whose observations are the ``shown`` texts."""
    return [
        dataclasses.replace(r, observations={i: shown.get(i, t) for i, t in r.observations.items()})
        for r in rounds
    ]


#: The kinds of spans that are LLM calls.
def _count(n: int, what: str) -> str:
    """``"1 plan"``, ``"2 plans"``."""
    return f"{n} {what}" if n == 1 else f"{n} {what}s"


def _http_backends(*llms: LLM) -> list[OpenAI]:
    """The distinct :class:`~llmc.llm.OpenAI` backends among ``llms``, cache wrappers removed."""
    from .cache import CachedLLM

    found: dict[int, OpenAI] = {}
    for llm in llms:
        while isinstance(llm, CachedLLM):
            llm = llm.llm
        if isinstance(llm, OpenAI):
            found[id(llm)] = llm
    return list(found.values())


_LLM_KINDS = frozenset({"planner", "joiner", "estimator", "summarizer"})


def _ran(round_: Round) -> list[Task]:
    """A round's tasks as they ran (rounds made by hand may only have the planner's)."""
    return round_.ran or round_.tasks
