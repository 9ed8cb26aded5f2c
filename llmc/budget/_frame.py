"""The frame of a joiner prompt (the question and every round's task lines), fitted first.

Observations get token shares (:func:`~llmc.budget.fit_observations`), but they share
the prompt with its frame, which grows with every task and every round: across replans the
task lines alone outgrew an 8k window. :func:`fit_frame` holds the frame to its part of the
prompt (:data:`FRAME_SHARE`), so observations always keep the rest:

1. a question longer than an eighth of the frame keeps its head and tail;
2. a task line longer than an eighth of the frame keeps its head and tail;
3. while the frame is still too long, the oldest tasks give way, earlier rounds first (a
   joiner decides from the newest results): one line says which ids are not shown.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..llm.base import Message
from ..task import Task
from ._count import TokenCounter, count_messages, count_upto
from ._reduce import truncate

#: The part of a joiner prompt's room its frame may take; observations get at least the rest.
FRAME_SHARE = 0.5

#: Renders the prompt for a question, the tasks shown, and the note on those left out.
FrameRender = Callable[[str, Sequence["Task | ShownTask"], str | None], Sequence[Message]]


@dataclass(frozen=True, slots=True)
class ShownTask:
    """A task whose line was cut to fit: templates call ``to_text()`` and read ``id``."""

    id: int
    line: str

    def to_text(self) -> str:
        """The task's line as the prompt shows it."""
        return self.line


@dataclass(frozen=True, slots=True)
class Frame:
    """What a joiner prompt shows besides the observations.

    Attributes:
        question: the question, cut to fit if it had to be.
        tasks: the tasks shown, in order (the newest ones, when not all fit).
        omitted: a note saying which task ids are not shown, or None when all are.
    """

    question: str
    tasks: list[Task | ShownTask]
    omitted: str | None


def fit_frame(
    counter: TokenCounter, render: FrameRender, question: str, tasks: Sequence[Task], limit: int
) -> Frame:
    """The question and tasks cut and thinned until ``render`` of them fits ``limit`` tokens.

    Args:
        counter: how tokens are counted.
        render: the prompt's messages (with empty observations) for a frame.
        question: the user's question.
        tasks: every task so far, oldest first (earlier rounds before the current one).
        limit: the most tokens the frame may take.
    """
    part = max(limit // 8, 0)
    question = truncate(question, part, counter)
    shown = [_shown(task, part, counter) for task in tasks]
    costs = [count_upto(counter, task.to_text(), part + 1) for task in shown]
    per_task = counter.count("\nObservation: \n")
    note = _note([tasks[0].id, tasks[-1].id]) if tasks else None
    fixed = count_messages(counter, render(question, [], note))
    if fixed > limit:  # even the question alone: it gives way too
        question = truncate(question, max(counter.count(question) - (fixed - limit), 0), counter)
        fixed = count_messages(counter, render(question, [], note))
    first, total = 0, fixed + sum(costs) + per_task * len(shown)
    while first < len(shown) and total > limit:  # drop the oldest while the estimate says so
        total -= costs[first] + per_task
        first += 1
    for _ in range(8):  # then check the real prompt; the template may join things its own way
        note = _note([task.id for task in tasks[:first]]) if first else None
        over = count_messages(counter, render(question, shown[first:], note)) - limit
        if over <= 0 or first == len(shown):
            break
        first = min(len(shown), first + max(1, over // max(per_task, 1)))
    return Frame(
        question, shown[first:], _note([task.id for task in tasks[:first]]) if first else None
    )


def _shown(task: Task, limit: int, counter: TokenCounter) -> Task | ShownTask:
    line = task.to_text()
    if count_upto(counter, line, limit) <= limit:
        return task
    return ShownTask(task.id, truncate(line, limit, counter).replace("\n", " "))


def _note(ids: Sequence[int]) -> str:
    """``"tasks 1-250, 301 are not shown ..."``: the ids left out, as ranges."""
    ranges: list[str] = []
    start = previous = ids[0]
    for task_id in [*ids[1:], None]:
        if task_id is not None and task_id == previous + 1:
            previous = task_id
            continue
        ranges.append(str(start) if start == previous else f"{start}-{previous}")
        if task_id is not None:
            start = previous = task_id
    return (
        f"tasks {', '.join(ranges)} and their observations are not shown: the context window "
        "has no room for them (the newest are shown)"
    )
