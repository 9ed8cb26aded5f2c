"""What ``llmc run`` shows while a question is answered: every phase as it happens.

Loading, the plan as it streams, each task starting and ending (or dropped by the planner,
with the reason), the joiner's reply as it streams, each replan with its reason, and the
time of each phase at the end. A small local
model takes seconds per phase, so a line that says what is going on appears whenever nothing
else was written for a second: the user never waits in silence.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import TextIO

from .compiler import Answer, Joining, Replanning
from .joiner import AnswerText, JoinerText
from .planner import PlanText
from .result import error_text, text_form
from .trace import (
    Event,
    TaskDropped,
    TaskEvent,
    TaskFailed,
    TaskFinished,
    TaskSkipped,
    TaskStarted,
    Trace,
)

#: How an answer that no joiner call streams came about, by its ``AnswerText.by``.
_ANSWERED_BY = {
    "plan": "from the plan's finish()",
    "observation": "from the observation itself (no LLM call)",
}

#: Seconds without output after which a line says what is still going on.
QUIET_SECONDS = 1.0


class Progress:
    """Writes a run's progress to ``out``, streamed text included, with no silent second.

    Args:
        out: where to write (the command uses stderr, so stdout holds only the answer).
        quiet_seconds: how long a silence may last before a "still ..." line.
    """

    def __init__(self, out: TextIO, *, quiet_seconds: float = QUIET_SECONDS) -> None:
        self.out = out
        self.quiet_seconds = quiet_seconds
        self.phase = "starting"
        self.phase_started = self.last_output = time.perf_counter()
        self._label = ""  # the label of the line being streamed, if one is open
        self._open = ""  # what that line holds so far

    # -- phases and lines ----------------------------------------------------------------

    def begin(self, phase: str, note: str = "") -> None:
        """A new phase starts (``"loading the model"``, ``"planning"``, ``"joining"``)."""
        self.phase, self.phase_started = phase, time.perf_counter()
        self.line(f"{phase}{' ' + note if note else ''} ...")

    def line(self, text: str) -> None:
        """One whole line; a streamed line that is open is closed first and shown again after."""
        label, held = self._label, self._open
        if label:
            self.out.write("\n")
            self._label = self._open = ""
        self.out.write(f"  {text}\n")
        if label and held:
            self.stream(label, held)
        self._wrote()

    def stream(self, label: str, text: str) -> None:
        """Streamed text under ``label`` (``plan``, ``join``): written as it comes, one
        labelled line per line of the text."""
        for index, piece in enumerate(text.split("\n")):
            if index:  # a newline in the text ends the open line
                if self._label:
                    self.out.write("\n")
                self._label = self._open = ""
            if not piece:
                continue
            if self._label != label:
                if self._label:
                    self.out.write("\n")
                self.out.write(f"  {label:<8} ")
                self._label, self._open = label, ""
            self.out.write(piece)
            self._open += piece
        self._wrote()

    def close(self) -> None:
        """End an open streamed line."""
        if self._label:
            self.out.write("\n")
            self._label = self._open = ""
            self._wrote()

    def _wrote(self) -> None:
        self.out.flush()
        self.last_output = time.perf_counter()

    async def heartbeat(self) -> None:
        """Run until cancelled: after a quiet second, say which phase is still going on."""
        while True:
            await asyncio.sleep(self.quiet_seconds / 4)
            now = time.perf_counter()
            if now - self.last_output >= self.quiet_seconds:
                self.line(f"... still {self.phase} ({now - self.phase_started:.0f} s)")

    # -- events --------------------------------------------------------------------------

    def event(self, event: Event) -> None:
        """Show one compiler event."""
        if isinstance(event, PlanText):
            if self.phase != "planning":
                self.begin("planning", f"(plan {event.round})")
            self.stream("plan", event.text)
        elif isinstance(event, Joining):
            self.close()
            self.begin("joining", f"(plan {event.round}'s observations)")
        elif isinstance(event, JoinerText):
            self.stream("join", event.text)
        elif isinstance(event, AnswerText) and event.by in _ANSWERED_BY:
            self.line(f"answer   {_ANSWERED_BY[event.by]}: {shorten(event.text, 160)}")
        elif isinstance(event, Replanning):
            self.close()
            self.line(f"replanning (plan {event.round}): {event.reason}")
            self.phase = "replanning"
        elif isinstance(event, TaskDropped):
            self.line(f"dropped  ${event.task_id} {event.tool}: {event.reason}")
        elif isinstance(event, TaskEvent):
            self.task(event)

    def task(self, event: TaskEvent) -> None:
        """One line for a task that starts or ends."""
        if isinstance(event, TaskStarted):
            self.line(f"started  ${event.task_id} {event.tool}")
        elif isinstance(event, TaskFinished):
            self.line(f"done     ${event.task_id} {event.tool} ({event.duration * 1000:.0f} ms)")
        elif isinstance(event, TaskFailed):
            failure = shorten(error_text(event.error), 160)
            self.line(f"FAILED   ${event.task_id} {event.tool}: {failure}")
        elif isinstance(event, TaskSkipped):
            self.line(f"skipped  ${event.task_id} {event.tool}")

    def summary(self, answer: Answer, load_seconds: float | None = None) -> None:
        """The closing lines: time per phase, LLM calls and tokens."""
        self.close()
        usage = answer.usage
        phases = ", ".join(f"{name} {seconds:.2f} s" for name, seconds in phase_times(answer.trace))
        loaded = f"load {load_seconds:.2f} s, " if load_seconds is not None else ""
        self.line(f"time: {loaded}{phases}; answered in {answer.trace.makespan:.2f} s")
        self.line(
            f"{usage.calls} LLM calls, {usage.prompt_tokens} prompt + "
            f"{usage.completion_tokens} completion tokens"
        )


def phase_times(trace: Trace) -> Sequence[tuple[str, float]]:
    """Seconds spent planning, running tools (first start to last end), joining, and in
    any other spans (an estimator, a plan's ``finish``), in that order."""
    spent: dict[str, float] = {}
    for span in trace.spans:
        name = {"planner": "plan", "joiner": "join"}.get(span.kind, span.kind)
        spent[name] = spent.get(name, 0.0) + (span.duration or 0.0)
    starts = [r.started for r in trace.tasks.values() if r.started is not None]
    ends = [r.finished for r in trace.tasks.values() if r.finished is not None]
    if starts and ends:
        spent["tools"] = max(ends) - min(starts)
    first = [name for name in ("plan", "tools", "join") if name in spent]
    return [(name, spent[name]) for name in [*first, *sorted(set(spent) - set(first))]]


def shorten(text: object, limit: int) -> str:
    """An output's text form, cut to ``limit`` characters."""
    shown = text_form(text)
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."
