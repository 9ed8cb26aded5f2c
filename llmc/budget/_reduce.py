"""Fitting observations into token shares: fair allocation, truncation, summaries.

:func:`allocate` divides a room of tokens among observations max-min fairly: an observation
smaller than an equal share keeps all of it and leaves the rest to the others. An observation
over its share goes through a :class:`Reducer`: :class:`Truncate` (the default) keeps its head
and tail around a marker that says what was cut; :class:`Summarize` asks an LLM for a summary
within the share, a node with a budget of its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from ..llm.base import LLM, GenerateOptions, Message
from ..trace import Trace
from ._call import LLMMeter, metered_stream
from ._count import TokenCounter, count_upto

if TYPE_CHECKING:
    from ..task import Task

#: Fewest tokens an observation is cut to: below this a marker is all that is left.
MIN_SHARE = 16


def allocate(
    demands: Mapping[int, int], room: int, caps: Mapping[int, int | None] | None = None
) -> dict[int, int]:
    """Divide ``room`` tokens among observations, max-min fairly (water-filling).

    Args:
        demands: each observation's tokens (a count capped at ``room`` is enough).
        room: tokens for all of them together.
        caps: the most tokens each may get (a per-tool or per-observation limit), if any.

    Returns:
        Each observation's share: never more than it needs or its cap, and all of them
        together never more than ``room`` (at least :data:`MIN_SHARE` each when cut).
    """
    caps = caps or {}
    wants = {}
    for key, demand in demands.items():
        cap = caps.get(key)
        wants[key] = demand if cap is None else min(demand, max(cap, 0))
    shares: dict[int, int] = {}
    left = max(room, 0)
    pending = sorted(wants, key=lambda key: wants[key])
    while pending:
        equal = left // len(pending)
        key = pending[0]
        if wants[key] <= equal:
            shares[key] = wants[key]
            left -= wants[key]
            pending.pop(0)
            continue
        for index, key in enumerate(pending):  # the rest all want more than an equal share
            extra = 1 if index < left - equal * len(pending) else 0
            shares[key] = max(min(equal + extra, wants[key]), min(MIN_SHARE, wants[key]))
        break
    return shares


def truncate(text: str, limit: int, counter: TokenCounter, *, head: float = 2 / 3) -> str:
    """Keep the head and the tail of ``text`` within ``limit`` tokens, with a marker between.

    The marker (``[... 12345 characters cut to fit a budget of 300 tokens ...]``) tells the
    reader that something is missing, and how much. Cuts fall on word boundaries when one is
    near. The result's count (by ``counter``) is at most ``limit``.

    Args:
        text: the observation.
        limit: the most tokens the result may have.
        counter: how tokens are counted.
        head: the part of the kept tokens that goes to the head (the rest to the tail).
    """
    if count_upto(counter, text, limit) <= limit:
        return text
    marker_tokens = counter.count(_marker(len(text), limit))
    room = max(limit - marker_tokens, 0)
    head_tokens = int(room * head)
    tail_tokens = room - head_tokens
    chars_per_token = _chars_per_token(text, counter)
    start = _fit(text, head_tokens, counter, chars_per_token, from_end=False)
    end = _fit(text, tail_tokens, counter, chars_per_token, from_end=True)
    for _ in range(8):
        result = _join(text, start, end, limit)
        over = counter.count(result) - limit
        if over <= 0:
            return result
        cut = max(int(over * chars_per_token) + 1, 1)  # the joins tokenized differently
        if end < len(text) and (len(text) - end >= start or start == 0):
            end = min(len(text), end + cut)
        else:
            start = max(0, start - cut)
    return _join(text, 0, len(text), limit) if limit >= marker_tokens else ""


def _marker(cut: int, limit: int) -> str:
    return f"\n[... {cut} characters cut to fit a budget of {limit} tokens ...]\n"


def _join(text: str, start: int, end: int, limit: int) -> str:
    """Head ``text[:start]``, the marker, tail ``text[end:]``."""
    end = max(end, start)
    return f"{text[:start]}{_marker(end - start, limit)}{text[end:]}"


def _chars_per_token(text: str, counter: TokenCounter) -> float:
    """Characters per token in a sample from the head of ``text``."""
    sample = text[:4096]
    tokens = counter.count(sample)
    return max(len(sample) / max(tokens, 1), 0.25)


def _fit(
    text: str, tokens: int, counter: TokenCounter, chars_per_token: float, *, from_end: bool
) -> int:
    """Where to cut so that the head (or the tail) of ``text`` has at most ``tokens`` tokens.

    Returns:
        The head's end, or the tail's start, as a character position.
    """
    if tokens <= 0:
        return len(text) if from_end else 0
    size = min(len(text), int(tokens * chars_per_token))
    best = 0
    for _ in range(6):
        piece = text[len(text) - size :] if from_end else text[:size]
        got = counter.count(piece)
        if got <= tokens:
            best = max(best, size)
            if got >= tokens * 0.95 or size >= len(text):
                break
            size = min(len(text), int(size * tokens / max(got, 1)))
        else:
            size = int(size * tokens / got * 0.97)
        if size <= 0:
            break
    best = _word_boundary(text, best, from_end=from_end)
    return len(text) - best if from_end else best


def _word_boundary(text: str, size: int, *, from_end: bool) -> int:
    """``size`` made at most 40 characters smaller so that the piece ends (or, for a tail,
    starts) right after whitespace."""
    if size <= 0 or size >= len(text):
        return size
    if from_end:
        start = len(text) - size
        window = text[start : start + 40]
        space = next((i for i, ch in enumerate(window) if ch in " \n"), -1)
        return size - space - 1 if 0 <= space < size - 1 else size
    low = max(size - 40, 0)
    space = max(text.rfind(" ", low, size), text.rfind("\n", low, size))
    return space + 1 if space > 0 else size


@dataclass(frozen=True, slots=True)
class ReduceContext:
    """What a reducer may use besides the text and its share.

    Attributes:
        question: the user's question (what a summary should keep).
        task: the task whose observation it is, if known.
        counter: how tokens are counted.
        meter: the run's meter: a reducer that calls an LLM checks and records it here.
        trace: where a reducer's LLM calls are recorded as spans.
    """

    question: str
    counter: TokenCounter
    task: Task | None = None
    meter: LLMMeter | None = None
    trace: Trace | None = None


@runtime_checkable
class Reducer(Protocol):
    """Shrinks an observation that is over its share of a prompt."""

    async def reduce(self, text: str, limit: int, context: ReduceContext) -> str:
        """``text`` within ``limit`` tokens (by ``context.counter``)."""
        ...


@dataclass(frozen=True, slots=True)
class Truncate:
    """The default reducer: head and tail with a marker (see :func:`truncate`).

    Attributes:
        head: the part of the kept tokens that goes to the head.
    """

    head: float = 2 / 3

    async def reduce(self, text: str, limit: int, context: ReduceContext) -> str:
        """The head and tail of ``text`` within ``limit`` tokens."""
        return truncate(text, limit, context.counter, head=self.head)


_SUMMARY_PROMPT = (
    "Summarize the tool output below for someone answering this question: {question}\n"
    "Keep every name, number and date that could matter; drop everything else. "
    "Use less than {limit} tokens. Write only the summary.\n\nTool output:\n{text}"
)


@dataclass(frozen=True, slots=True)
class Summarize:
    """A summarizing LLM node: an observation over its share becomes a summary within it.

    Its input is cut first (head and tail) to ``max_input_tokens``; its output is capped at
    the share (``max_tokens``) and, should the model overrun, truncated. Each call is a span
    of kind ``"summarizer"`` and counts towards the run's budget.

    Attributes:
        llm: the model that summarizes (a small, cheap one is the point).
        max_input_tokens: the most tokens of the observation it reads.
        prompt: the instruction, with ``{question}``, ``{limit}`` and ``{text}``.
    """

    llm: LLM
    max_input_tokens: int = 4000
    prompt: str = _SUMMARY_PROMPT

    async def reduce(self, text: str, limit: int, context: ReduceContext) -> str:
        """A summary of ``text`` within ``limit`` tokens."""
        source = truncate(text, self.max_input_tokens, context.counter)
        content = self.prompt.format(question=context.question, limit=limit, text=source)
        messages: list[Message] = [{"role": "user", "content": content}]
        options = GenerateOptions(max_tokens=max(limit, 1), temperature=0.0)
        label = f"summarize ${context.task.id}" if context.task is not None else "summarize"
        async with metered_stream(
            self.llm,
            messages,
            options,
            kind="summarizer",
            label=label,
            trace=context.trace,
            meter=context.meter,
        ) as reply:
            summary = (await reply.read()).strip()
        return truncate(summary, limit, context.counter)
