"""The planner: renders the prompt, streams the LLM's plan through the parser, task by task.

Tasks come out of :meth:`Planner.stream` while the LLM is still writing, so the scheduler
starts the first tool call long before the plan is complete. The system prompt depends only on
the tools and is rendered once: it stays byte-identical across calls, so servers' prompt (KV
prefix) caches hit. Output that does not parse gets one repair round (the error, with its line
and column, goes back to the LLM); a second failure is a :class:`~llmc.errors.PlanError`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from .budget import Meter
from .errors import PlanError
from .grammar import plan_grammar
from .json_plan import PLAN_SCHEMA, JsonPlanParser
from .llm.base import LLM, GenerateOptions, Message, open_stream
from .parse import END_OF_PLAN, PlanParser
from .plan import Finish, Task
from .templates import Templates
from .toolbox import Toolbox, Tools
from .trace import Span, Trace

__all__ = ["Planner", "Round"]


@dataclass(slots=True, eq=False)
class Round:
    """One plan of a question and what became of it (the planner's and joiner's memory).

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
    finish: Finish | None = None
    answered_by: str | None = None


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
        self._grammars: dict[int, str] = {}

    @cached_property
    def exemplars(self) -> list[str]:
        """The template folder's example plans that use only this planner's tools."""
        return [text for text in self.templates.exemplars if _uses_only(text, self.tools)]

    @cached_property
    def system_prompt(self) -> str:
        """The static part of every planner call: tools, rules and examples."""
        return self.templates.render(
            "planner.jinja", tools=self.tools, exemplars=self.exemplars, json=self.json
        )

    def messages(self, question: str, rounds: Sequence[Round] = ()) -> list[Message]:
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
        read = self.read(text)
        return read[0] if read is not None else None

    def read(self, text: str) -> tuple[list[Task], Finish | None] | None:
        """Like :meth:`reread`, with the plan's own answer (its ``finish``, or None)."""
        parser = JsonPlanParser(tools=self.tools) if self.json else PlanParser(tools=self.tools)
        try:
            tasks = [*parser.feed(text), *parser.close()]
        except PlanError:
            return None
        return (tasks, parser.finish) if tasks else None

    async def stream(
        self,
        question: str,
        round_: Round,
        *,
        earlier: Sequence[Round] = (),
        trace: Trace | None = None,
        on_text: Callable[[str], Any] | None = None,
        meter: Meter | None = None,
    ) -> AsyncGenerator[Task, None]:
        """Write a plan and yield each task as soon as it is complete.

        Args:
            question: the user's question.
            round_: where this plan's tasks, text and parse times are recorded.
            earlier: the rounds before this one (a replan); their task ids continue.
            trace: where the LLM calls are recorded as spans.
            on_text: called with every chunk of the LLM's output.
            meter: the run's budget meter: each call is checked and recorded there.

        Raises:
            PlanError: the output did not parse, even after the repair round.
            LLMError: the LLM call failed.
            BudgetExceeded: a call would cross the run's budget.
        """
        messages = self.messages(question, earlier)
        known = [task.id for r in earlier for task in r.tasks]
        try:
            async for task in self._attempt(messages, round_, known, trace, on_text, "plan", meter):
                yield task
            return
        except PlanError as error:
            if not self.repair:
                raise
            first_error = error
        accepted = [task.id for task in round_.tasks]
        repair = self.templates.render(
            "repair.jinja",
            error=str(first_error),
            accepted=accepted,
            next_id=max([*known, *accepted], default=0) + 1,
        )
        messages = [
            *messages,
            {"role": "assistant", "content": round_.text},
            {"role": "user", "content": repair},
        ]
        try:
            async for task in self._attempt(
                messages, round_, [*known, *accepted], trace, on_text, "repair", meter
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
        round_: Round,
        known: list[int],
        trace: Trace | None,
        on_text: Callable[[str], Any] | None,
        kind: str,
        meter: Meter | None = None,
    ) -> AsyncIterator[Task]:
        """One LLM call whose output is parsed as it streams."""
        parser: PlanParser | JsonPlanParser
        if self.json:
            parser = JsonPlanParser(tools=self.tools, earlier=known)
        else:
            parser = PlanParser(tools=self.tools, earlier=known)
        options = self._constrained(self.options, max(known, default=0) + 1)
        if meter is not None:
            options = meter.with_output(options, "planner")
            options = meter.before_llm_call(self.llm, messages, options, kind="planner")
        span = Span("planner", f"{kind} {round_.number}", time.perf_counter())
        if trace is not None:
            trace.spans.append(span)
        text: list[str] = []
        try:
            async with open_stream(self.llm, messages, options) as chunks:
                async for chunk in chunks:
                    if chunk.usage is not None:
                        span.usage = chunk.usage
                    if not chunk.text or parser_done(parser):
                        continue  # after join(), read on only for the usage at the end
                    if span.first_output is None:
                        span.first_output = time.perf_counter()
                    text.append(chunk.text)
                    if on_text is not None:
                        on_text(chunk.text)
                    for task in parser.feed(chunk.text):
                        yield self._record(round_, task)
                    if parser_done(parser):  # the answer may be rendered as soon as it can
                        round_.finish = parser.finish
            for task in parser.close():
                yield self._record(round_, task)
            round_.finish = parser.finish
        finally:
            span.finished = time.perf_counter()
            round_.text += "".join(text)
            if meter is not None:
                meter.after_llm_call(self.llm, messages, "".join(text), span, kind="planner")
        if not parser.tasks:
            raise PlanError("the planner wrote no tasks; write at least one task before join()")

    def _constrained(self, options: GenerateOptions, first_id: int) -> GenerateOptions:
        """Options with the plan grammar, for backends that decode under one (small local
        models ignore the plan format without it); the grammar is built once per first id."""
        if self.json or options.grammar or not getattr(self.llm, "supports_grammar", False):
            return options
        grammar = self._grammars.get(first_id)
        if grammar is None:
            grammar = self._grammars[first_id] = plan_grammar(self.tools, first_id=first_id)
        return dataclasses.replace(options, grammar=grammar)

    @staticmethod
    def _record(round_: Round, task: Task) -> Task:
        round_.parsed_at[task.id] = time.perf_counter()
        round_.tasks.append(task)
        return task


def parser_done(parser: PlanParser | JsonPlanParser) -> bool:
    """Whether a parser has seen the end of the plan (join() or <END_OF_PLAN>)."""
    return isinstance(parser, PlanParser) and parser.ended


def _next_id(rounds: Sequence[Round]) -> int:
    return max((task.id for r in rounds for task in r.tasks), default=0) + 1


def _uses_only(exemplar: str, tools: Toolbox) -> bool:
    """Whether an example plan calls only the given tools (other lines are ignored)."""
    parser = PlanParser()
    lines = [line for line in exemplar.splitlines() if not line.startswith("Question:")]
    try:
        tasks = parser.feed("\n".join(lines) + "\n") + parser.close()
    except PlanError:
        return False
    return bool(tasks) and all(task.tool in tools for task in tasks)
