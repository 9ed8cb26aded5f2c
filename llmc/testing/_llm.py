"""The in-memory double: :class:`ScriptedLLM`, an LLM that answers from a script."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..llm.base import Chunk, GenerateOptions, Message
from ._script import ChunkSpec, Pacing, Reply, Script, as_reply, reply_usage, shape

if TYPE_CHECKING:
    from ..budget import Price


@dataclass(frozen=True, slots=True)
class ScriptedCall:
    """One call a :class:`ScriptedLLM` received.

    Attributes:
        messages: the messages, as sent.
        options: the options (``GenerateOptions()`` when the caller passed none).
    """

    messages: tuple[Message, ...]
    options: GenerateOptions

    @property
    def text(self) -> str:
        """Every message's content, joined by newlines: handy for ``"x" in call.text``."""
        return "\n".join(m["content"] for m in self.messages)


ScriptFunction = Callable[[Sequence[Message]], "str | Reply | Awaitable[str | Reply]"]


class ScriptedLLM:
    """An in-memory :class:`~llmc.llm.LLM` that answers from a script.

    Each call takes the next reply of a list, or calls a function of the messages (sync or
    async) for it. A script item that is an exception is raised instead, to test how callers
    handle a failing model. The reply streams in chunks, after ``first_chunk_delay`` and with
    ``chunk_delay`` between chunks. Like a server, it cuts the reply at the first of
    ``options.stop`` (finish reason ``"stop"``) and at ``options.max_tokens`` estimated tokens
    (finish reason ``"length"``). Usage is estimated (:func:`estimate_tokens`) unless a
    :class:`Reply` gives the counts.

    Attributes:
        model: the model name it reports, "scripted" by default.
        price: what its tokens cost (:class:`llmc.budget.Price`), or None.
        calls: every call received, in order: messages and options.
        pacing: how each reply streams (:class:`Pacing`).
    """

    def __init__(
        self,
        script: Sequence[str | Reply | BaseException] | ScriptFunction,
        *,
        model: str = "scripted",
        price: Price | None = None,
        chunk_size: ChunkSpec = 8,
        chunk_delay: float = 0.0,
        first_chunk_delay: float = 0.0,
    ) -> None:
        """Script the replies.

        Args:
            script: the replies in order, or a function from the messages to a reply.
            model: the model name to report.
            price: what its tokens cost (None: the price table decides by ``model``).
            chunk_size: characters per chunk, or the positions at which to cut each reply.
            chunk_delay: seconds to wait before every chunk after the first.
            first_chunk_delay: seconds to wait before the first chunk (time to first token).
        """
        self.model = model
        self.price = price
        self.pacing = Pacing(chunk_size, chunk_delay, first_chunk_delay)
        self.calls: list[ScriptedCall] = []
        self._script = Script(script, f"ScriptedLLM(model={model!r})")

    @property
    def remaining(self) -> int | None:
        """Replies not yet used (None when a function computes them)."""
        return self._script.remaining

    async def stream(
        self, messages: Sequence[Message], options: GenerateOptions | None = None
    ) -> AsyncIterator[Chunk]:
        """Stream the next scripted reply to ``messages``; the last chunk carries usage.

        Raises:
            ScriptExhaustedError: every reply of a list script was already used.
        """
        options = options or GenerateOptions()
        self.calls.append(ScriptedCall(tuple(messages), options))
        value = self._script.take(messages)
        if inspect.isawaitable(value):
            value = await value
        if isinstance(value, BaseException):
            raise value
        reply = as_reply(value)
        text, finish = shape(reply, options.stop, options.max_tokens)
        pieces = self.pacing.pieces(text)
        for index, (delay, piece) in enumerate(pieces):
            if delay > 0:
                await asyncio.sleep(delay)
            if index < len(pieces) - 1:
                yield Chunk(piece)
            else:
                yield Chunk(piece, reply_usage(reply, messages, text), finish)

    def __repr__(self) -> str:
        return f"ScriptedLLM(model={self.model!r}, calls={len(self.calls)})"
