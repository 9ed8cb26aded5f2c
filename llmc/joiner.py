"""The joiner (aggregator): reads the observations and answers, or asks for a new plan.

The LLM replies ``Finish(answer)`` or ``Replan(reason)``, after an optional ``Thought: ...``
line and an optional ``Action:``. :func:`parse_decision` reads that robustly: the answer runs
to the *last* closing parenthesis, so answers with parentheses, quotes and newlines survive
(LLMCompiler cuts them at the first ``)``). With ``json=True`` the joiner asks for a
structured reply instead. With an ``output`` (a typed answer, :mod:`llmc.typed`) the answer
is JSON of the output's schema: the prompt shows the schema, a JSON reply's schema embeds
it, and the local model's grammar admits only such JSON inside ``Finish(...)``.

The prompt is budgeted in tokens (see :mod:`llmc.budget`): the question and the task lines
of every round take at most half of the room (long ones cut, the oldest tasks left out with a
note when they do not fit), every observation gets a share of the rest, and one over its
share is reduced (head and tail with a marker, by default) before it enters the prompt, so
the prompt never exceeds the window.

By default the joiner sees in full only the outputs that no other task used (the plan's
leaves): an output another task consumed is what that task worked from, and what it made of
it is in the prompt already. Consumed outputs show a short head and which tasks read them
(:func:`leaf_observations`); ``Joiner(observations="all")`` shows every output in full.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import re
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from .budget import (
    FRAME_SHARE,
    Budget,
    Frame,
    Meter,
    ShownTask,
    fit_frame,
    fit_observations,
    metered_stream,
)
from .context import RunContext
from .grammar import focused_value, joiner_grammar
from .llm.base import LLM, GenerateOptions, Message
from .task import Task
from .templates import Templates
from .trace import Event

if TYPE_CHECKING:
    from .typed import TypedOutput

#: How a joiner answers: ``"decide"`` Finish or Replan; ``"answer"`` always Finish;
#: ``"copy"`` always Finish, with the answer copied from the observations or the question
#: (on backends that decode under a grammar; elsewhere as ``"answer"``); ``"skip"`` no LLM
#: call: the answer is the last task's observation.
JoinerMode = Literal["decide", "answer", "copy", "skip"]

#: Characters of a consumed output's head that the joiner sees (see :func:`leaf_observations`).
CONSUMED_HEAD = 100

#: The JSON Schema of a structured joiner reply.
DECISION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "thought": {"type": "string"},
        "action": {"type": "string", "enum": ["finish", "replan"]},
        "text": {"type": "string", "description": "the answer, or what a new plan must find"},
    },
    "required": ["thought", "action", "text"],
    "additionalProperties": False,
}

_ACTION = re.compile(r"\b(Finish|Replan)\s*\(", re.IGNORECASE)
_THOUGHT = re.compile(r"^\s*Thought\s*:\s*(.*)$", re.IGNORECASE | re.MULTILINE)


@dataclass(frozen=True, slots=True, kw_only=True)
class JoinerText(Event):
    """A piece of the joiner's reply as it streams, thought and action included.

    Attributes:
        round: the plan's number.
        text: the new text.
    """

    round: int
    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AnswerText(Event):
    """A piece of the answer as it is written (``Answer.text`` is the final word).

    Attributes:
        text: the new text.
        by: ``"joiner"`` (as the joiner streams it), ``"plan"`` (the plan's ``finish``,
            all of it at once, the moment the outputs it needs are done) or
            ``"observation"`` (the one observation's item about the question, taken with no
            LLM call: see ``Joiner(direct=...)``).
    """

    text: str
    by: str = "joiner"


@dataclass(frozen=True, slots=True)
class Decision:
    """What the joiner decided.

    Attributes:
        action: ``"finish"`` (``text`` is the answer) or ``"replan"`` (``text`` says why).
        text: the answer or the reason.
        thought: the joiner's reasoning, when it gave one.
    """

    action: Literal["finish", "replan"]
    text: str
    thought: str | None = None


def parse_decision(reply: str) -> Decision:
    """Read a joiner reply: the last ``Finish(...)`` or ``Replan(...)`` in it wins.

    The text inside runs to the last ``)`` of the reply; a quoted Python string literal is
    unquoted. A reply with neither action is taken as the answer itself, so a model that
    ignores the format still answers.
    """
    thought_match = _THOUGHT.search(reply)
    thought = thought_match.group(1).strip() if thought_match else None
    actions = list(_ACTION.finditer(reply))
    if not actions:
        answer = _THOUGHT.sub("", reply).replace("Action:", "").strip()
        return Decision("finish", answer, thought)
    last = actions[-1]
    body = reply[last.end() :]
    close = body.rfind(")")
    text = (body[:close] if close >= 0 else body).strip()
    finish = last.group(1).lower() == "finish"
    action: Literal["finish", "replan"] = "finish" if finish else "replan"
    return Decision(action, _unquote(text), thought)


def leaf_observations(
    tasks: Sequence[Task], observations: Mapping[int, str], *, head: int = CONSUMED_HEAD
) -> dict[int, str]:
    """The observations as the joiner needs them: a task's output in full when no other
    task used it, else its first ``head`` characters and the tasks that read it.

    Example:
        >>> tasks = [Task(1, "search", ("x",)), Task(2, "math", ("$1",))]
        >>> leaf_observations(tasks, {1: "a" * 300, 2: "42"}, head=5)[1]
        'aaaaa… (300 characters, read by $2)'
    """
    readers: dict[int, list[int]] = {}
    for task in tasks:
        for dep in task.dependencies:
            readers.setdefault(dep, []).append(task.id)
    shown: dict[int, str] = {}
    for task_id, text in observations.items():
        users = readers.get(task_id)
        if not users or len(text) <= head + 40:  # a leaf, or short enough to keep whole
            shown[task_id] = text
            continue
        cut = text[:head]
        space = cut.rfind(" ")
        cut = cut[:space] if space > head // 2 else cut
        by = ", ".join(f"${i}" for i in sorted(users))
        shown[task_id] = f"{cut.rstrip()}… ({len(text)} characters, read by {by})"
    return shown


def _unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return text
        if isinstance(value, str):
            return value
    return text


class Joiner:
    """Decides, from a plan's observations, whether to answer or to plan again.

    Args:
        llm: the model.
        templates: a template folder (see :class:`~llmc.templates.Templates`), or None.
        json: ask for a structured reply (:data:`DECISION_SCHEMA`) instead of text.
        options: generation options (default: temperature 0).
        budget: how the prompt is shared out and reduced when :meth:`decide` gets no
            run's meter (a compiler passes its own): observation shares, the reducer, the
            output budget (see :class:`~llmc.budget.Budget`).
        mode: how it answers (see :data:`JoinerMode`); default ``"copy"`` when the model
            asks for small-model aids (``llm.small_model_aids``, as the default local model
            does), else ``"decide"``.
        focus: in ``"copy"`` mode, copy the answer only from the parts of the observations
            that share the question's words (:func:`llmc.grammar.focus`).
        direct: in ``"copy"`` mode with ``focus``, answer with no LLM call when the one
            observation is a JSON object whose one item about the question is the answer
            (:func:`llmc.grammar.focused_value`: ``{"lines": 8, ...}`` asked for lines).
        observations: ``"leaves"`` (default): outputs that another task used are shown as
            a short head (:func:`leaf_observations`), the others in full; ``"all"``: every
            output in full. Token shares apply on top, either way.
    """

    def __init__(
        self,
        llm: LLM,
        *,
        templates: Templates | str | Path | None = None,
        json: bool = False,
        options: GenerateOptions | None = None,
        budget: Budget | None = None,
        mode: JoinerMode | None = None,
        focus: bool = True,
        direct: bool = True,
        observations: Literal["leaves", "all"] = "leaves",
    ) -> None:
        if mode is None:
            mode = "copy" if getattr(llm, "small_model_aids", False) else "decide"
        if mode not in ("decide", "answer", "copy", "skip"):
            raise ValueError(f"Joiner mode must be decide, answer, copy or skip, not {mode!r}")
        if observations not in ("leaves", "all"):
            raise ValueError(f"observations must be 'leaves' or 'all', got {observations!r}")
        self.observations = observations
        self.llm = llm
        self.mode: JoinerMode = mode
        self.focus = focus
        self.direct = direct
        self.templates = templates if isinstance(templates, Templates) else Templates(templates)
        self.json = json
        options = options or GenerateOptions(temperature=0.0)
        if json and options.json_schema is None:
            options = dataclasses.replace(options, json_schema=DECISION_SCHEMA)
        self.options = options
        self.budget = budget or Budget()

    def messages(
        self,
        question: str,
        tasks: Sequence[Task | ShownTask],
        observations: Mapping[int, str],
        *,
        final: bool = False,
        output_budget: int | None = None,
        omitted: str | None = None,
        output_schema: str | None = None,
    ) -> list[Message]:
        """The chat messages of a joiner call, with the observations as given.

        Args:
            question: the user's question.
            tasks: the tasks to show, in order (objects with ``id`` and ``to_text()``).
            observations: each task's observation text (already within budget).
            final: no replan is left; the joiner is told to answer.
            output_budget: a TALE budget for the reply ("use less than N tokens"), if any.
            omitted: a note on the tasks left out to fit the window, if any.
            output_schema: the schema a typed answer must fit, as the prompt shows it
                (:attr:`llmc.typed.TypedOutput.prompt_schema`), if any.
        """
        user = self.templates.render(
            "joiner_user.jinja",
            question=question,
            tasks=tasks,
            observations=observations,
            final=final,
            output_budget=output_budget,
            omitted=omitted,
        )
        system = self.templates.render(
            "joiner.jinja",
            json=self.json,
            copy=self.mode == "copy" and output_schema is None,  # a typed answer is JSON
            output_schema=output_schema,
        )
        return [{"role": "system", "content": system}, {"role": "user", "content": user}]

    async def decide(
        self,
        question: str,
        tasks: Sequence[Task],
        observations: Mapping[int, str],
        *,
        final: bool = False,
        current: Collection[int] | None = None,
        number: int = 1,
        run: RunContext | None = None,
        output: TypedOutput | None = None,
        repair: Sequence[Message] = (),
    ) -> Decision:
        """Ask the LLM; return its decision.

        Each observation over its share of the prompt is reduced first (see
        :func:`llmc.budget.fit_observations`).

        Args:
            question: the user's question.
            tasks: every task so far, in order.
            observations: each task's observation text.
            final: no replan is left; the joiner is told to answer.
            current: ids of the tasks of the plan that just ran; the others are earlier
                plans' (the ``history`` share). None: all are current.
            number: the plan's number (the span is ``join N``; events carry it).
            run: the run's trace (the call as a span), meter (its budget, counts and
                limits; default: a fresh one for this joiner's ``budget``) and events
                (:class:`JoinerText` as the reply streams, :class:`AnswerText` as the
                answer does, for text replies).
            output: the type a typed answer must fit (see :mod:`llmc.typed`): the prompt
                shows its schema and the reply is constrained to it where the backend can;
                the answer's ``text`` is its JSON text (the caller validates it).
            repair: messages after the prompt (a typed answer's repair round).

        Raises:
            LLMError: the LLM call failed.
            BudgetExceeded: the call would cross the run's budget.
        """
        run = run or RunContext()
        if self.mode == "skip":
            return self._last_observation(tasks, observations, current, run)
        final = final or self.mode != "decide"
        meter = run.meter or Meter(self.budget)
        options = meter.with_output(self.options, "joiner")
        grammar = (
            not self.json and not options.grammar and getattr(self.llm, "supports_grammar", False)
        )
        if output is not None:  # the answer is JSON of its schema
            options = _typed_options(options, output, json=self.json, grammar=grammar, final=final)
        elif grammar and self.mode != "copy":
            options = dataclasses.replace(options, grammar=joiner_grammar(replan=not final))
        budget = meter.output_budget
        schema = output.prompt_schema if output is not None else None
        frame = self._frame(meter, question, tasks, final, budget, options.max_tokens, schema)

        def render(shown: Mapping[int, str]) -> list[Message]:
            return self.messages(
                frame.question,
                frame.tasks,
                shown,
                final=final,
                output_budget=budget,
                omitted=frame.omitted,
                output_schema=schema,
            )

        if self.observations == "leaves":
            observations = leaf_observations(tasks, observations)
        if grammar and self.mode == "copy" and self.focus and self.direct and output is None:
            texts = [observations[task.id] for task in tasks if task.id in observations]
            found = focused_value(texts[0], question) if len(texts) == 1 else None
            if found is not None:  # the observation answers by itself
                _answer_text(run, by="observation")(found)
                return Decision("finish", found, "the observation's item about the question")
        shown = await fit_observations(
            meter,
            self.llm,
            render,
            {task.id: observations[task.id] for task in frame.tasks},
            {task.id: task for task in tasks},
            question=question,
            current=current,
            reserve=options.max_tokens,
            input_limit=meter.budget.joiner_input,
            trace=run.trace,
        )
        messages = render(shown) + list(repair)
        if grammar and self.mode == "copy" and output is None:  # words of observations, calls
            texts = [shown[task.id] for task in tasks if task.id in shown]
            texts += [arg for task in tasks for arg in task.args if isinstance(arg, str)]
            copy = joiner_grammar(
                thought_chars=120,
                replan=False,
                copy_from=texts or [question],
                question=question,
                focused=self.focus,
            )
            options = dataclasses.replace(options, grammar=copy)
        listening = run.on_event is not None
        stream = _AnswerStream(_answer_text(run)) if listening and not self.json else None
        async with metered_stream(
            self.llm,
            messages,
            options,
            kind="joiner",
            label=f"join {number} repair" if repair else f"join {number}",
            trace=run.trace,
            meter=meter,
        ) as reply:
            async for piece in reply:
                if listening:
                    now = time.perf_counter()
                    run.emit(JoinerText(run_id=run.run_id, time=now, round=number, text=piece))
                if stream is not None:
                    stream.feed(piece)
        text = reply.text
        if output is not None:
            decision = output.read_decision(text, json_mode=self.json)
        else:
            decision = _parse_json_decision(text) if self.json else parse_decision(text)
        if decision.action == "replan" and self.mode != "decide":  # these modes always answer
            decision = Decision("finish", decision.text, decision.thought)
        if stream is not None and decision.action == "finish":
            stream.finish(decision.text)
        return decision

    def _frame(
        self,
        meter: Meter,
        question: str,
        tasks: Sequence[Task],
        final: bool,
        output_budget: int | None,
        reserve: int | None,
        output_schema: str | None = None,
    ) -> Frame:
        """The question and task lines, within their share of the prompt (see
        :func:`~llmc.budget.fit_frame`): observations share out the rest."""
        limit = meter.prompt_limit(self.llm, reserve=reserve, input_limit=meter.budget.joiner_input)

        def render(shown_question: str, shown: Sequence[Any], omitted: str | None) -> list[Message]:
            empty = {task.id: "" for task in shown}
            return self.messages(
                shown_question,
                shown,
                empty,
                final=final,
                output_budget=output_budget,
                omitted=omitted,
                output_schema=output_schema,
            )

        counter = meter.counter(self.llm)
        return fit_frame(counter, render, question, tasks, int(limit * FRAME_SHARE))

    @staticmethod
    def _last_observation(
        tasks: Sequence[Task],
        observations: Mapping[int, str],
        current: Collection[int] | None,
        run: RunContext,
    ) -> Decision:
        """The ``"skip"`` mode's answer: the observation of the plan's last task."""
        ran = [task.id for task in tasks if task.id in observations]
        latest = [i for i in ran if current is None or i in current] or ran
        text = observations[latest[-1]] if latest else ""
        if text:
            _answer_text(run)(text)
        return Decision("finish", text, "the last task's output is the answer")


def _answer_text(run: RunContext, by: str = "joiner") -> Callable[[str], None]:
    """Emits a piece of the answer as an :class:`AnswerText` event of ``run``."""

    def emit(text: str) -> None:
        run.emit(AnswerText(run_id=run.run_id, time=time.perf_counter(), text=text, by=by))

    return emit


def _typed_options(
    options: GenerateOptions, output: TypedOutput, *, json: bool, grammar: bool, final: bool
) -> GenerateOptions:
    """A typed answer's constraint: the reply schema with the output's inside (JSON mode),
    or the grammar of ``Finish(`` its JSON ``)`` (backends that decode under one)."""
    if json:
        return dataclasses.replace(options, json_schema=output.decision_schema())
    typed = output.joiner_grammar(replan=not final) if grammar else None
    return dataclasses.replace(options, grammar=typed) if typed is not None else options


def _parse_json_decision(text: str) -> Decision:
    try:
        data = json.loads(text)
        action = str(data["action"]).lower()
        if action not in ("finish", "replan"):
            raise ValueError(action)
        return Decision(action, str(data["text"]), data.get("thought"))  # type: ignore[arg-type]
    except (ValueError, KeyError, TypeError):
        return parse_decision(text)  # not the JSON asked for: read it as text


class _AnswerStream:
    """Passes on the raw text inside ``Finish(...)`` as it streams.

    Everything before the latest ``)`` is surely part of the answer (the answer runs to the
    last one), so it goes out at once; the rest waits for more text or for the end.
    ``Answer.text`` stays the authority (it is stripped and unquoted).
    """

    def __init__(self, emit: Callable[[str], Any]) -> None:
        self.emit = emit
        self.reply = ""
        self.sent = 0  # characters of the answer's text already passed on
        self.start: int | None = None

    def _body(self) -> str:
        assert self.start is not None
        body = self.reply[self.start :]
        close = body.rfind(")")
        return body if close < 0 else body[:close]

    def feed(self, text: str) -> None:
        self.reply += text
        if self.start is None:
            match = _ACTION.search(self.reply)
            if match is None or match.group(1).lower() != "finish":
                return
            self.start = match.end()
        body = self._body()
        if len(body) > self.sent:
            self.emit(body[self.sent :])
            self.sent = len(body)

    def finish(self, answer: str) -> None:
        """The reply is complete: pass on the answer if none of it went out yet."""
        if self.start is None and answer:
            self.emit(answer)
