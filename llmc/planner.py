"""The planner: renders the prompt, streams the LLM's plan through the parser, task by task.

Tasks come out of :meth:`Planner.stream` (a :class:`PlanStream`, which also says what was
written) while the LLM is still writing, so the scheduler starts the first tool call long
before the plan is complete. The system prompt depends only on
the tools and is rendered once: it stays byte-identical across calls, so servers' prompt (KV
prefix) caches hit. Output that does not parse gets one repair round (the error, with its line
and column, goes back to the LLM); a second failure is a :class:`~llmc.errors.PlanError`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Literal, Protocol

from .budget import metered_stream
from .context import RunContext
from .errors import PlanError
from .grammar import SMALL_MODEL_PLANS, PlanGrammar, RepeatMask
from .json_plan import PLAN_SCHEMA, JsonPlanParser
from .llm.base import LLM, GenerateOptions, Message
from .parse import END_OF_PLAN, PlanParser
from .task import Finish, Task
from .templates import Templates
from .toolbox import Toolbox, Tools
from .trace import Event, TaskDropped

#: What a veto says of a task as it streams: keep it, drop it (and the tasks that use it),
#: or stop the plan before it.
Verdict = Literal["keep", "drop", "stop"]
#: A function of a new task and the tasks kept so far (earlier plans' included); None keeps.
Veto = Callable[[Task, Sequence[Task]], Verdict | None]
#: A plan grammar for the tools, a plan's first task number and the question.
GrammarFactory = Callable[[Toolbox, int, str], str]
#: What happens to a task identical (same tool, same arguments) to an earlier one.
Repeats = Literal["allow", "drop", "stop", "mask"]


class PlanReader(Protocol):
    """What the planner needs of a plan's parser: :class:`~llmc.parse.PlanParser` for plan
    text, :class:`~llmc.json_plan.JsonPlanParser` for JSON.

    Attributes:
        tasks: every task read so far.
        finish: the plan's own answer, once it was read.
        ended: the plan has ended (``join()``, ``finish(...)``): what follows is not read.
    """

    tasks: list[Task]
    finish: Finish | None
    ended: bool

    def feed(self, chunk: str) -> list[Task]:
        """Add text; the tasks it completed."""
        ...

    def close(self) -> list[Task]:
        """The text is complete: the last tasks."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class PlanText(Event):
    """A piece of the planner's output, as it streams.

    Attributes:
        round: which plan (1 for the first).
        text: the new text.
    """

    round: int
    text: str


class EarlierPlan(Protocol):
    """What the planner reads of an earlier plan of the question (a compiler's
    :class:`~llmc.compiler.Round` is one): its tasks, what they observed, and why another
    plan is needed."""

    @property
    def tasks(self) -> Sequence[Task]:
        """The plan's tasks, in order."""
        ...

    @property
    def observations(self) -> Mapping[int, str]:
        """Each task's observation text."""
        ...

    @property
    def reason(self) -> str | None:
        """The joiner's reason for asking for another plan."""
        ...


class PlanStream:
    """One plan as the planner writes it: ``async for task in plan`` yields each task the
    moment its line is complete, and the attributes say what was written so far.

    Attributes:
        number: which plan of the question (1 for the first).
        tasks: the tasks kept so far, in order.
        parsed_at: when each task's line was complete (:func:`time.perf_counter`).
        text: the LLM's raw output (repair round included), as each call ends.
        dropped: tasks written that do not run, each with the reason (a repeat, a veto); a
            plan stopped early names the task it stopped at.
        finish: the plan's own answer (``finish(...)``), as soon as the plan's end was read
            (None: the plan ended with ``join()``, or its answer uses a dropped task).
    """

    __slots__ = ("_tasks", "dropped", "finish", "number", "parsed_at", "tasks", "text")

    def __init__(
        self, number: int, write: Callable[[PlanStream], AsyncGenerator[Task, None]]
    ) -> None:
        self.number = number
        self.tasks: list[Task] = []
        self.parsed_at: dict[int, float] = {}
        self.text = ""
        self.dropped: list[tuple[Task, str]] = []
        self.finish: Finish | None = None
        self._tasks = write(self)

    def __aiter__(self) -> AsyncGenerator[Task, None]:
        return self._tasks

    async def aclose(self) -> None:
        """Stop the plan where it is (an LLM call in progress is closed)."""
        await self._tasks.aclose()


class Planner:
    """Writes plans with an LLM.

    Args:
        llm: the model.
        tools: the tools plans may call.
        templates: a template folder (see :class:`~llmc.templates.Templates`), or None.
        json: ask for a JSON plan with a response schema (for models with structured
            outputs) instead of plan text.
        options: generation options; by default temperature 0 and, for plan text, a stop at
            ``<END_OF_PLAN>``.
        repair: give the LLM one chance to fix output that does not parse.
        grammar: how plans are constrained on backends that decode under a grammar
            (``supports_grammar``): a :class:`~llmc.grammar.PlanGrammar` (its options), a
            :data:`GrammarFactory`, or False for none. Default: ``PlanGrammar()``, or
            :data:`~llmc.grammar.SMALL_MODEL_PLANS` when the model asks for small-model
            aids (``llm.small_model_aids``, as the default local model does).
        repeats: a task identical to an earlier one (same tool and arguments, this plan or
            an earlier one): ``"allow"`` it, ``"drop"`` it (with the tasks that use it;
            ``PlanStream.dropped`` says so), or ``"stop"`` the plan there (generation stops
            too); ``"mask"``: on backends that change grammars while they decode (the local
            model), the plan grammar is rebuilt at each task line so that no repeat can be
            written (see :class:`~llmc.grammar.RepeatMask`), and the plan stops at a repeat
            the grammar cannot rule out. Default: ``"stop"`` on grammar backends, where a
            small model that repeats
            a task goes on repeating it; ``"allow"`` elsewhere, where pure tools' repeats
            already share one call.
        veto: called with each task as it streams, before it runs: ``"drop"`` or
            ``"stop"`` as for repeats, ``"keep"`` (or None) to let it run.
        brief: describe each tool by its signature line only, not its whole documentation.
            Default: True when the model asks for small-model aids.
    """

    def __init__(
        self,
        llm: LLM,
        tools: Tools,
        *,
        templates: Templates | str | Path | None = None,
        json: bool = False,
        options: GenerateOptions | None = None,
        repair: bool = True,
        grammar: PlanGrammar | GrammarFactory | bool = True,
        repeats: Repeats | None = None,
        veto: Veto | None = None,
        brief: bool | None = None,
    ) -> None:
        self.llm = llm
        self.tools = Toolbox.of(tools)
        self.templates = templates if isinstance(templates, Templates) else Templates(templates)
        self.json = json
        self.repair = repair
        if options is None:
            options = GenerateOptions(temperature=0.0, stop=() if json else (END_OF_PLAN,))
        if json and options.json_schema is None:
            options = dataclasses.replace(options, json_schema=PLAN_SCHEMA)
        self.options = options
        if grammar is True:
            grammar = (
                SMALL_MODEL_PLANS if getattr(llm, "small_model_aids", False) else PlanGrammar()
            )
        self.grammar: GrammarFactory | None = grammar or None
        if repeats is None:
            repeats = "stop" if getattr(llm, "supports_grammar", False) else "allow"
        self.repeats: Repeats = repeats
        self.veto = veto
        self.brief = getattr(llm, "small_model_aids", False) if brief is None else brief

    @cached_property
    def exemplars(self) -> list[str]:
        """The template folder's example plans that use only this planner's tools and, on a
        backend that decodes under a :class:`~llmc.grammar.PlanGrammar`, that its grammar
        admits (no more tasks than ``max_tasks``, no ``$N`` in tasks without
        ``references``): a model is never shown a plan it may not write."""
        grammar = self.grammar if getattr(self.llm, "supports_grammar", False) else None
        limits = grammar if isinstance(grammar, PlanGrammar) and not self.json else None
        return [text for text in self.templates.exemplars if _uses_only(text, self.tools, limits)]

    @cached_property
    def system_prompt(self) -> str:
        """The static part of every planner call: tools, rules and examples."""
        return self.templates.render(
            "planner.jinja",
            tools=self.tools,
            exemplars=self.exemplars,
            json=self.json,
            brief=self.brief,
        )

    def messages(self, question: str, rounds: Sequence[EarlierPlan] = ()) -> list[Message]:
        """The chat messages of a planner call: the static system prompt, then the question
        with what earlier plans did and why a new one is needed."""
        user = self.templates.render(
            "planner_user.jinja",
            question=question,
            rounds=rounds,
            reason=rounds[-1].reason if rounds else None,
            next_id=_next_id(rounds),
        )
        return [
            {"role": "system", "content": self.system_prompt},
            {"role": "user", "content": user},
        ]

    def reread(self, text: str) -> list[Task] | None:
        """The tasks of a whole plan written earlier (a cached one), read as this planner
        reads its LLM, against the current tools; None if it no longer reads (a tool is gone
        or changed) or has no task."""
        read = self._read(text)
        return read[0] if read is not None else None

    def replay(self, text: str, *, number: int = 1) -> PlanStream | None:
        """A whole plan written earlier (a cached one) as a :class:`PlanStream` whose tasks
        come at once, read as :meth:`reread` reads it; None where that finds nothing."""
        read = self._read(text)
        if read is None:
            return None
        tasks, finish = read

        async def replayed(plan: PlanStream) -> AsyncGenerator[Task, None]:
            for task in tasks:
                yield self._record(plan, task)

        plan = PlanStream(number, replayed)
        plan.text, plan.finish = text, finish
        return plan

    def _read(self, text: str) -> tuple[list[Task], Finish | None] | None:
        """A whole plan's tasks and its own answer; None if it does not read or is empty."""
        parser = self._parser(())
        try:
            tasks = [*parser.feed(text), *parser.close()]
        except PlanError:
            return None
        return (tasks, parser.finish) if tasks else None

    def stream(
        self,
        question: str,
        *,
        earlier: Sequence[EarlierPlan] = (),
        number: int | None = None,
        run: RunContext | None = None,
    ) -> PlanStream:
        """Write a plan: ``async for task in planner.stream(question)`` yields each task as
        soon as it is complete; the stream's attributes say what was written.

        Args:
            question: the user's question.
            earlier: the plans before this one (a replan), with what they observed; their
                task ids continue.
            number: which plan of the question this is (default: the one after
                ``earlier``), for span labels and events.
            run: the run's trace (each LLM call a span), meter (each call checked and
                recorded) and events (:class:`PlanText` as the output streams).

        Iterating raises:
            PlanError: the output did not parse, even after the repair round.
            LLMError: the LLM call failed.
            BudgetExceeded: a call would cross the run's budget.
        """
        number = len(earlier) + 1 if number is None else number
        context = run or RunContext()
        return PlanStream(number, lambda plan: self._write(question, earlier, plan, context))

    async def _write(
        self,
        question: str,
        earlier: Sequence[EarlierPlan],
        plan: PlanStream,
        run: RunContext,
    ) -> AsyncGenerator[Task, None]:
        """The tasks of one plan: the LLM's, then the repair round's if it needs one."""
        messages = self.messages(question, earlier)
        known = [task.id for r in earlier for task in r.tasks]
        state = _Streaming(question, [task for r in earlier for task in r.tasks])
        try:
            async for task in self._attempt(messages, plan, known, "plan", run, state):
                yield task
            return
        except PlanError as error:
            if not self.repair:
                raise
            first_error = error
        accepted = [task.id for task in plan.tasks]
        repair = self.templates.render(
            "repair.jinja",
            error=str(first_error),
            accepted=accepted,
            next_id=max([*known, *accepted], default=0) + 1,
        )
        messages = [
            *messages,
            {"role": "assistant", "content": plan.text},
            {"role": "user", "content": repair},
        ]
        try:
            async for task in self._attempt(
                messages, plan, [*known, *accepted], "repair", run, state
            ):
                yield task
        except PlanError as error:
            raise PlanError(
                f"the planner's output did not parse, even after a repair round: {error} "
                f"(first error: {first_error})",
                task_id=error.task_id,
                line=error.line,
                column=error.column,
            ) from error

    async def _attempt(
        self,
        messages: list[Message],
        plan: PlanStream,
        known: list[int],
        kind: str,
        run: RunContext,
        state: _Streaming,
    ) -> AsyncIterator[Task]:
        """One LLM call whose output is parsed as it streams."""
        parser = self._parser(known)
        options = self._constrained(
            self.options, max(known, default=0) + 1, state.question, state.kept
        )
        meter = run.meter
        if meter is not None:
            options = meter.with_output(options, "planner")
        stopped = False
        label = f"{kind} {plan.number}"
        async with metered_stream(
            self.llm, messages, options, kind="planner", label=label, trace=run.trace, meter=meter
        ) as reply:
            try:
                async for text in reply:
                    if run.on_event is not None:
                        now = time.perf_counter()
                        run.emit(
                            PlanText(run_id=run.run_id, time=now, round=plan.number, text=text)
                        )
                    for task in parser.feed(text):
                        verdict = self._judge(plan, task, state, run)
                        if verdict == "stop":
                            stopped = True
                            break
                        if verdict == "keep":
                            yield self._record(plan, task)
                    if stopped:
                        break  # leaving the stream stops the generation
                    if parser.ended:  # the answer may be rendered as soon as it can
                        plan.finish = _kept_finish(parser.finish, plan)
                        await reply.drain()  # after join(), read on only for the usage
                        break
                for task in () if stopped else parser.close():
                    if self._judge(plan, task, state, run) == "keep":
                        yield self._record(plan, task)
                plan.finish = None if stopped else _kept_finish(parser.finish, plan)
            finally:
                plan.text += reply.text
        if not parser.tasks:
            raise PlanError("the planner wrote no tasks; write at least one task before join()")

    def _parser(self, known: Sequence[int]) -> PlanReader:
        """A parser of this planner's plan format; ``known`` task ids came before."""
        if self.json:
            return JsonPlanParser(tools=self.tools, earlier=known)
        return PlanParser(tools=self.tools, earlier=known)

    def _judge(self, plan: PlanStream, task: Task, state: _Streaming, run: RunContext) -> Verdict:
        """The repeat rule and the veto on a new task; a dropped or stopping task is noted
        in ``plan.dropped`` and the run's trace, and a task that uses a dropped one is
        dropped too."""
        dropped = {t.id for t, _ in plan.dropped}
        verdict: Verdict | None = None
        reason = ""
        if dropped & task.dependencies:
            verdict, reason = "drop", "it uses a dropped task"
        elif self.repeats != "allow" and any(_same_call(task, t) for t in state.kept):
            verdict = "drop" if self.repeats == "drop" else "stop"
            reason = "it repeats an earlier task"
        elif self.veto is not None:
            verdict, reason = self.veto(task, tuple(state.kept)), "vetoed"
        if verdict == "stop":
            _drop(plan, task, f"the plan stopped here: {reason}", run)
        elif verdict == "drop":
            _drop(plan, task, f"dropped: {reason}", run)
        else:
            state.kept.append(task)
        return verdict or "keep"

    def _constrained(
        self, options: GenerateOptions, first_id: int, question: str, kept: Sequence[Task] = ()
    ) -> GenerateOptions:
        """Options with the plan grammar, for backends that decode under one (small local
        models ignore the plan format without it). Built for each call: tools' choices
        (the files under a root) and question spans change from call to call. With
        ``repeats="mask"``, the grammar excludes the ``kept`` tasks' calls and follows the
        plan as it is written."""
        if (
            self.json
            or options.grammar
            or self.grammar is None
            or not getattr(self.llm, "supports_grammar", False)
        ):
            return options
        if self.repeats == "mask" and isinstance(self.grammar, PlanGrammar):
            mask = RepeatMask(self.grammar, self.tools, question, first_id=first_id, earlier=kept)
            return dataclasses.replace(options, grammar=mask.initial(), next_grammar=mask)
        return dataclasses.replace(options, grammar=self.grammar(self.tools, first_id, question))

    @staticmethod
    def _record(plan: PlanStream, task: Task) -> Task:
        plan.parsed_at[task.id] = time.perf_counter()
        plan.tasks.append(task)
        return task


@dataclass(slots=True)
class _Streaming:
    """What one plan's veto and grammar need: the question, and the tasks kept so far."""

    question: str
    kept: list[Task]


def _kept_finish(finish: Finish | None, plan: PlanStream) -> Finish | None:
    """The plan's own answer, unless it uses a task that was dropped (the joiner answers)."""
    dropped = {task.id for task, _ in plan.dropped}
    return None if finish is None or finish.dependencies & dropped else finish


def _same_call(a: Task, b: Task) -> bool:
    """Whether two tasks call the same tool with the same arguments."""
    return a.tool == b.tool and a.args == b.args and a.kwargs == b.kwargs


def _next_id(rounds: Sequence[EarlierPlan]) -> int:
    return max((task.id for r in rounds for task in r.tasks), default=0) + 1


def _uses_only(exemplar: str, tools: Toolbox, grammar: PlanGrammar | None = None) -> bool:
    """Whether an example plan calls only the given tools (other lines are ignored) and
    fits the grammar's limits, if any."""
    parser = PlanParser()
    lines = [line for line in exemplar.splitlines() if not line.startswith("Question:")]
    try:
        tasks = parser.feed("\n".join(lines) + "\n") + parser.close()
    except PlanError:
        return False
    if grammar is not None and (
        len(tasks) > grammar.max_tasks
        or (not grammar.references and any(task.dependencies for task in tasks))
        or (not grammar.finish and parser.finish is not None)
    ):
        return False
    return bool(tasks) and all(task.tool in tools for task in tasks)


def _drop(plan: PlanStream, task: Task, reason: str, run: RunContext) -> None:
    """A task written that will not run: on the plan, in the trace, and out as an event."""
    plan.dropped.append((task, reason))
    dropped = TaskDropped(
        run_id=run.run_id,
        time=time.perf_counter(),
        task_id=task.id,
        tool=task.tool,
        call=task.to_text(),
        reason=reason,
        round=plan.number,
    )
    if run.trace is not None:
        run.trace.dropped.append(dropped)
    run.emit(dropped)
