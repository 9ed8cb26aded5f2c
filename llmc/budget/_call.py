"""One metered LLM call: a span in the run's trace, the budget checked before, usage after.

Every LLM call a run makes (planner, repair, joiner, estimator, summarizer) is one
:func:`metered_stream`: the meter may refuse it or cap its ``max_tokens``, a :class:`Span`
records its start, first output, end and usage, and the meter records what it spent, also
when the call fails or is left early. Callers depend on :class:`LLMMeter`, the two methods
they need, not on :class:`~llmc.budget.Meter` itself, which keeps the accounting.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Protocol, runtime_checkable

from ..llm.base import LLM, Chunk, GenerateOptions, Message, Usage, open_stream
from ..trace import Span, Trace


@runtime_checkable
class LLMMeter(Protocol):
    """What a metered call needs of a run's meter (:class:`~llmc.budget.Meter` is one)."""

    def before_llm_call(
        self, llm: LLM, messages: Sequence[Message], options: GenerateOptions, *, kind: str
    ) -> GenerateOptions:
        """Check that the call fits the budget; its options, ``max_tokens`` capped."""
        ...

    def after_llm_call(
        self, llm: LLM, messages: Sequence[Message], text: str, span: Span, *, kind: str
    ) -> Usage:
        """Record the finished (or failed) call's usage and cost."""
        ...


class MeteredStream:
    """The reply of one metered call as it streams: ``async for text in stream``.

    Only chunks with text are yielded; the usage chunk goes onto the span, and the first
    text sets its ``first_output``.

    Attributes:
        span: the call's span.
        options: the call's options, as the meter capped them.
    """

    __slots__ = ("_chunks", "_parts", "options", "span")

    def __init__(self, chunks: AsyncIterator[Chunk], span: Span, options: GenerateOptions) -> None:
        self._chunks = chunks
        self._parts: list[str] = []
        self.span = span
        self.options = options

    def __aiter__(self) -> MeteredStream:
        return self

    async def __anext__(self) -> str:
        span = self.span
        while True:
            chunk = await self._chunks.__anext__()
            if chunk.usage is not None:
                span.usage = chunk.usage
            if chunk.text:
                if span.first_output is None:
                    span.first_output = time.perf_counter()
                self._parts.append(chunk.text)
                return chunk.text

    async def drain(self) -> None:
        """Read the rest of the reply for its usage only: its text is neither kept nor
        counted (a planner that saw the end of its plan)."""
        async for chunk in self._chunks:
            if chunk.usage is not None:
                self.span.usage = chunk.usage

    async def read(self) -> str:
        """Read the whole reply; its text."""
        async for _ in self:
            pass
        return self.text

    @property
    def text(self) -> str:
        """The text read so far (what :meth:`drain` skipped is not in it)."""
        return "".join(self._parts)


@asynccontextmanager
async def metered_stream(
    llm: LLM,
    messages: Sequence[Message],
    options: GenerateOptions,
    *,
    kind: str,
    label: str,
    trace: Trace | None = None,
    meter: LLMMeter | None = None,
) -> AsyncIterator[MeteredStream]:
    """One LLM call, checked by ``meter`` before it starts and recorded as a span.

    The span (of ``kind``, with ``label``) goes into ``trace`` once the meter let the call
    go; leaving the context early closes the stream (and its request). However the call
    ends, the span gets its end and the meter its usage.

    Example:
        >>> async with metered_stream(llm, messages, options, kind="joiner", label="join 1",
        ...                           trace=trace, meter=meter) as reply:   # doctest: +SKIP
        ...     async for text in reply:
        ...         print(text, end="")

    Raises:
        BudgetExceeded: the meter refused the call (no span is recorded).
    """
    if meter is not None:
        options = meter.before_llm_call(llm, messages, options, kind=kind)
    span = Span(kind, label, time.perf_counter())
    if trace is not None:
        trace.spans.append(span)
    reply: MeteredStream | None = None
    try:
        async with open_stream(llm, messages, options) as chunks:
            reply = MeteredStream(chunks, span, options)
            yield reply
    finally:
        span.finished = time.perf_counter()
        if meter is not None:
            text = reply.text if reply is not None else ""
            meter.after_llm_call(llm, messages, text, span, kind=kind)
