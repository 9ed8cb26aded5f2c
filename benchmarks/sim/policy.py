"""The workload policy: what the simulated LLM answers to each framework's request.

For a question's gold decomposition (:mod:`benchmarks.sim.workloads`) the policy writes what
a capable model would: llmc's planner gets the plan in llmc's plan language, LlamaIndex's
LLMCompiler planner the plan in the original LLMCompiler format its parser reads, each
joiner a ``Finish`` line in its own format, and a function-calling agent the next tool calls
and then the answer.

How a request is recognised (first match wins; anything else is answered with HTTP 400 that
says what was seen, so a contender fails loudly instead of being measured on nonsense):

1. ``tools`` in the body: a **function-calling agent** (LangGraph's ReAct agent over
   ``ChatOpenAI``). ``parallel_tool_calls: false`` gets one tool call per turn, otherwise
   (the API's default) every call whose inputs are ready. Tool call ids carry the gold task
   id (``call_t<N>_<nonce>``), so the conversation's history says which tasks are done.
2. A system message that mentions ``<END_OF_PLAN>``: a **planner**. Tools listed as
   ``Tool Name: ...`` (the original LLMCompiler prompt) mean **LlamaIndex's pack**; any other
   listing is **llmc's** planner. llmc's plan calls ``search_then_math`` for a search whose
   only reader is a computation when the prompt offers that fused tool (plan-time fusion),
   and ends in ``finish($N)`` when the prompt offers ``finish(answer)`` and the answer is a
   task's output (``Question.answer_task``), else in ``join()``.
3. ``Finish(`` with ``Replan(`` in a system message: **llmc's joiner** (its reply is the
   action alone unless the prompt asks for a thought line first); ``finish(answer)``
   with ``Observation:`` in a user message: **LlamaIndex's joiner** (the LLMCompiler joiner
   prompt, sent as one user message).

The question is the known question whose text occurs *last* in the non-system messages
(prompts quote example questions before the real one). A joiner answers with the gold answer
only if the output of every sink of the decomposition (a task no other task reads) appears in
its prompt; otherwise it asks for a new plan, and the run's answer shows it.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .tokens import content_text
from .workloads import GoldTask, Question
from .world import World

__all__ = ["Call", "Policy", "PolicyError", "Reply", "THOUGHT"]

#: The joiners' and agents' reasoning line, the same words for every framework.
THOUGHT = "The observations answer the question."
FUSED_TOOL = "search_then_math"
_CALL_ID = re.compile(r"^call_t(\d+)_")
_NEXT_ID = re.compile(r"Number new tasks from (\d+)")
#: What llmc's planner prompt says when plans may answer themselves.
_OFFERS_FINISH = "finish(answer)"
#: What llmc's joiner prompt said while it wanted a thought before the action.
_THOUGHT_REQUIRED = "Reply with one `Thought:` line"


class PolicyError(ValueError):
    """A request the policy cannot answer: unknown role or question."""


@dataclass(frozen=True, slots=True)
class Call:
    """A tool call in a reply.

    Attributes:
        id: the call id (``call_t<task>_<nonce>``).
        name: the tool.
        arguments: the arguments, as a JSON object text.
    """

    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class Reply:
    """What the simulated model says.

    Attributes:
        framework: ``"llmc"``, ``"llamaindex"`` or ``"function-calling"``.
        role: ``"planner"``, ``"joiner"`` or ``"agent"``.
        question: the question's id.
        text: the reply's text (None for a reply that only calls tools).
        calls: the tool calls.
        complete: False when a joiner's prompt lacked a needed output.
    """

    framework: str
    role: str
    question: str
    text: str | None = None
    calls: tuple[Call, ...] = field(default=())
    complete: bool = True


def _messages(body: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    messages = body.get("messages")
    if not isinstance(messages, list):
        raise PolicyError("the body has no messages list")
    return [m for m in messages if isinstance(m, Mapping)]


def _texts(messages: Sequence[Mapping[str, Any]], *, system: bool) -> list[str]:
    return [
        content_text(m.get("content"))
        for m in messages
        if (m.get("role") in ("system", "developer")) == system
    ]


class Policy:
    """Answers chat completion requests for a set of questions.

    Args:
        questions: the questions it may be asked.
        world: the simulated tools, whose outputs the answers refer to; each question's
            final computation is set to return its answer (:meth:`World.answer`).
    """

    def __init__(self, questions: Iterable[Question], world: World) -> None:
        self.questions = {q.id: q for q in questions}
        self.world = world
        world.answer(self.questions.values())  # final computations return the answers

    # -- recognising requests

    def question_of(self, messages: Sequence[Mapping[str, Any]]) -> Question:
        """The question the conversation is about: the one quoted last outside system messages.

        Raises:
            PolicyError: no known question occurs.
        """
        text = "\n".join(_texts(messages, system=False))
        best: tuple[int, int, Question] | None = None
        for question in self.questions.values():
            at = text.rfind(question.text.strip())
            if at >= 0:
                key = (at + len(question.text.strip()), len(question.text), question)
                if best is None or key[:2] > best[:2]:
                    best = key
        if best is None:
            raise PolicyError(f"no known question in the request: {text[:200]!r}")
        return best[2]

    def reply(self, body: Mapping[str, Any]) -> Reply:
        """The reply to one chat completion request body.

        Raises:
            PolicyError: the request's framework, role or question is not recognised.
        """
        messages = _messages(body)
        question = self.question_of(messages)
        system = "\n".join(_texts(messages, system=True))
        user = "\n".join(_texts(messages, system=False))
        if body.get("tools"):
            parallel = body.get("parallel_tool_calls", True) is not False
            return self._agent(question, messages, parallel)
        if "<END_OF_PLAN>" in system:
            if "Tool Name:" in system:
                return Reply("llamaindex", "planner", question.id, self._llamaindex_plan(question))
            fused = f"{FUSED_TOOL}(" in system
            start = _NEXT_ID.search(user)
            first = int(start.group(1)) if start else 1
            plan = self._llmc_plan(question, fused, first, finish=_OFFERS_FINISH in system)
            return Reply("llmc", "planner", question.id, plan)
        if "Finish(" in system and "Replan(" in system:
            thought = _THOUGHT_REQUIRED in system
            return self._join("llmc", question, user, "Finish", "Replan", thought=thought)
        if "finish(answer)" in user and "Observation:" in user:
            return self._join("llamaindex", question, user, "finish", "Replan")
        raise PolicyError(
            "cannot tell which framework and role sent this request (no tools, no "
            f"<END_OF_PLAN> planner prompt, no joiner format); system prompt: {system[:200]!r}"
        )

    # -- planners

    def _llmc_plan(self, question: Question, fused: bool, first: int, *, finish: bool) -> str:
        """The gold plan in llmc's plan language, numbered from ``first``; with ``finish``,
        a question whose answer is a task's output ends in ``finish($N)``, as a model taught
        to would write it, others in ``join()``."""
        readers: dict[int, list[GoldTask]] = {t.id: [] for t in question.tasks}
        for task in question.tasks:
            for dep in task.deps:
                readers[dep].append(task)
        into: dict[int, GoldTask] = {}  # a search -> the computation fused with it
        if fused:
            for task in question.tasks:
                only = readers[task.id]
                alone = len(only) == 1 and only[0].deps == (task.id,)
                if task.tool == "search" and alone and only[0].tool == "math":
                    into[task.id] = only[0]
        number: dict[int, int] = {}
        lines: list[str] = []
        for task in question.tasks:
            if any(task.id == m.id for m in into.values()):
                continue  # written with its search
            number[task.id] = first + len(lines)
            refs = ", ".join(f"${number[d]}" for d in task.deps)
            context = f", [{refs}]" if task.deps else ""
            if task.id in into:
                computation = into[task.id]
                number[computation.id] = number[task.id]
                line = f"{FUSED_TOOL}({_quote(task.key)}, {_quote(computation.key)}{context})"
            else:
                line = f"{task.tool}({_quote(task.key)}{context})"
            lines.append(f"{number[task.id]}. {line}")
        end = "join()"
        if finish and question.answer_task is not None:
            end = f"finish(${number[question.answer_task]})"
        return "\n".join([*lines, end, "<END_OF_PLAN>"])

    def _llamaindex_plan(self, question: Question) -> str:
        """The gold plan as LLMCompiler's prompt asks (and LlamaIndex's parser reads it)."""
        lines = []
        for task in question.tasks:
            context = ", [" + ", ".join(f'"${d}"' for d in task.deps) + "]" if task.deps else ""
            lines.append(f"{task.id}. {task.tool}({json.dumps(task.key)}{context})")
        lines.append("Thought: I can answer the question now.")
        lines.append(f"{len(question.tasks) + 1}. join()<END_OF_PLAN>")
        return "\n".join(lines)

    # -- joiners

    def missing(self, question: Question, prompt: str) -> list[GoldTask]:
        """The sinks whose outputs do not appear in ``prompt``."""
        return [t for t in question.sinks if self.world.fact(t.tool, t.key) not in prompt]

    def _join(
        self,
        framework: str,
        question: Question,
        prompt: str,
        finish: str,
        replan: str,
        *,
        thought: bool = True,
    ) -> Reply:
        """A joiner's reply: with ``thought``, a thought line and ``Action: ...``, else the
        action alone (what a prompt that makes the thought optional gets)."""
        missing = self.missing(question, prompt)
        if missing:
            needed = ", ".join(f"{t.tool}({t.key!r})" for t in missing)
            action = f"{replan}(find {needed})"
            text = f"Thought: Results are missing.\nAction: {action}" if thought else action
            return Reply(framework, "joiner", question.id, text, complete=False)
        action = f"{finish}({question.answer})"
        text = f"Thought: {THOUGHT}\nAction: {action}" if thought else action
        return Reply(framework, "joiner", question.id, text)

    # -- function-calling agents

    def _agent(
        self, question: Question, messages: Sequence[Mapping[str, Any]], parallel: bool
    ) -> Reply:
        issued: dict[str, int] = {}
        for message in messages:
            for call in message.get("tool_calls") or ():
                match = (
                    _CALL_ID.match(str(call.get("id", ""))) if isinstance(call, Mapping) else None
                )
                if match:
                    issued[str(call["id"])] = int(match.group(1))
        done = {
            issued[str(m.get("tool_call_id"))]
            for m in messages
            if m.get("role") == "tool" and str(m.get("tool_call_id")) in issued
        }
        asked = set(issued.values())
        ready = [t for t in question.tasks if t.id not in asked and set(t.deps) <= done]
        if not ready:
            complete = {t.id for t in question.sinks} <= done
            text = f"{THOUGHT} Answer: {question.answer}" if complete else "I could not find out."
            return Reply("function-calling", "agent", question.id, text, complete=complete)
        calls = tuple(self._call(question, task) for task in (ready if parallel else ready[:1]))
        return Reply("function-calling", "agent", question.id, None, calls)

    def _call(self, question: Question, task: GoldTask) -> Call:
        """A tool call for ``task``, with the facts of its dependencies written in, as a model
        that read the earlier results would."""
        name = "query" if task.tool == "search" else "problem"
        arguments: dict[str, Any] = {name: task.key}
        if task.deps:
            deps = [question.task(d) for d in task.deps]
            arguments["context"] = [self.world.fact(d.tool, d.key) for d in deps]
        call_id = f"call_t{task.id}_{uuid.uuid4().hex[:12]}"
        return Call(call_id, task.tool, json.dumps(arguments))


def _quote(text: str) -> str:
    """A string literal in double quotes, as models write them (valid Python too)."""
    return json.dumps(text, ensure_ascii=False)
