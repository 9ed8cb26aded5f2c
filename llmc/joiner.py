"""The joiner (aggregator): reads the observations and answers, or asks for a new plan.

The LLM replies ``Thought: ...`` then ``Action: Finish(answer)`` or ``Action: Replan(reason)``.
:func:`parse_decision` reads that robustly: the answer runs to the *last* closing parenthesis,
so answers with parentheses, quotes and newlines survive (LLMCompiler cuts them at the first
``)``). With ``json=True`` the joiner asks for a structured reply instead.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .llm.base import LLM, GenerateOptions, Message, open_stream
from .plan import Task
from .templates import Templates
from .trace import Span, Trace

__all__ = ["DECISION_SCHEMA", "Decision", "Joiner", "parse_decision", "shorten"]

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


def _unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return text
        if isinstance(value, str):
            return value
    return text


def shorten(text: str, limit: int) -> str:
    """Keep the head and the tail of a long text, with a marker saying what was cut."""
    if len(text) <= limit:
        return text
    keep = max(limit - 60, 20)
    head, tail = text[: keep * 2 // 3], text[-(keep - keep * 2 // 3) :]
    return f"{head}\n[... {len(text) - len(head) - len(tail)} characters cut ...]\n{tail}"


class Joiner:
    """Decides, from a plan's observations, whether to answer or to plan again.

    Args:
        llm: the model.
        templates: a template folder (see :class:`~llmc.templates.Templates`), or None.
        json: ask for a structured reply (:data:`DECISION_SCHEMA`) instead of text.
        options: generation options (default: temperature 0).
        observation_chars: the most characters of one observation the joiner sees; longer
            ones keep their head and tail.
    """

    def __init__(
        self,
        llm: LLM,
        *,
        templates: Templates | str | Path | None = None,
        json: bool = False,
        options: GenerateOptions | None = None,
        observation_chars: int = 4000,
    ) -> None:
        self.llm = llm
        self.templates = templates if isinstance(templates, Templates) else Templates(templates)
        self.json = json
        options = options or GenerateOptions(temperature=0.0)
        if json and options.json_schema is None:
            options = dataclasses.replace(options, json_schema=DECISION_SCHEMA)
        self.options = options
        self.observation_chars = observation_chars

    def messages(
        self,
        question: str,
        tasks: Sequence[Task],
        observations: Mapping[int, str],
        *,
        final: bool = False,
    ) -> list[Message]:
        """The chat messages of a joiner call."""
        shown = {i: shorten(text, self.observation_chars) for i, text in observations.items()}
        user = self.templates.render(
            "joiner_user.jinja", question=question, tasks=tasks, observations=shown, final=final
        )
        system = self.templates.render("joiner.jinja", json=self.json)
        return [{"role": "system", "content": system}, {"role": "user", "content": user}]

    async def decide(
        self,
        question: str,
        tasks: Sequence[Task],
        observations: Mapping[int, str],
        *,
        final: bool = False,
        trace: Trace | None = None,
        label: str = "join",
        on_answer: Callable[[str], Any] | None = None,
    ) -> Decision:
        """Ask the LLM; return its decision.

        Args:
            question: the user's question.
            tasks: every task so far, in order.
            observations: each task's observation text.
            final: no replan is left; the joiner is told to answer.
            trace: where the call is recorded as a span.
            label: the span's label.
            on_answer: called with the answer's text as it streams (text replies only).

        Raises:
            LLMError: the LLM call failed.
        """
        messages = self.messages(question, tasks, observations, final=final)
        span = Span("joiner", label, time.perf_counter())
        if trace is not None:
            trace.spans.append(span)
        reply: list[str] = []
        stream = _AnswerStream(on_answer) if on_answer is not None and not self.json else None
        try:
            async with open_stream(self.llm, messages, self.options) as chunks:
                async for chunk in chunks:
                    if chunk.usage is not None:
                        span.usage = chunk.usage
                    if chunk.text:
                        if span.first_output is None:
                            span.first_output = time.perf_counter()
                        reply.append(chunk.text)
                        if stream is not None:
                            stream.feed(chunk.text)
        finally:
            span.finished = time.perf_counter()
        text = "".join(reply)
        decision = _parse_json_decision(text) if self.json else parse_decision(text)
        if stream is not None and decision.action == "finish":
            stream.finish(decision.text)
        return decision


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
