"""The LLM seam: chat messages in, streamed text chunks out, usage at the end.

Every backend (an OpenAI-compatible endpoint, the embedded local model, the scripted test
double) implements one method, :meth:`LLM.stream`, an async iterator of :class:`Chunk`.
The last chunk of a stream carries the :class:`Usage`. :func:`generate` collects a stream
into a :class:`Completion` for callers that do not need the chunks.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol, TypedDict, runtime_checkable


class Message(TypedDict):
    """One chat message, in the OpenAI shape: ``{"role": "user", "content": "..."}``."""

    role: Literal["system", "user", "assistant"]
    content: str


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens one or more LLM calls used.

    Attributes:
        prompt_tokens: tokens read, cached ones included.
        completion_tokens: tokens written.
        cached_tokens: prompt tokens the server served from its prompt (KV prefix) cache.
        calls: how many LLM calls this counts.
    """

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    calls: int = 0

    @property
    def total_tokens(self) -> int:
        """Prompt plus completion tokens."""
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.cached_tokens + other.cached_tokens,
            self.calls + other.calls,
        )


@dataclass(frozen=True, slots=True)
class Price:
    """US dollars per million tokens.

    Attributes:
        prompt: per million prompt tokens read (not from the prompt cache).
        completion: per million tokens written.
        cached: per million prompt tokens served from the provider's prompt cache
            (None: the prompt price).
    """

    prompt: float
    completion: float
    cached: float | None = None

    def __post_init__(self) -> None:
        if self.prompt < 0 or self.completion < 0 or (self.cached or 0) < 0:
            raise ValueError("prices must be 0 or more")

    def cost(self, usage: Usage) -> float:
        """US dollars for ``usage``: cached prompt tokens at the cached price."""
        cached = min(usage.cached_tokens, usage.prompt_tokens)
        cached_price = self.prompt if self.cached is None else self.cached
        return (
            (usage.prompt_tokens - cached) * self.prompt
            + cached * cached_price
            + usage.completion_tokens * self.completion
        ) / 1e6


#: What a model running on your own machine costs per token (an LLM's ``price``).
FREE = Price(0.0, 0.0, 0.0)


@dataclass(frozen=True, slots=True)
class GenerateOptions:
    """How to generate.

    Attributes:
        max_tokens: most tokens to write (None: the backend's default).
        stop: strings that end the output (not included in it).
        temperature: sampling temperature (None: the backend's default).
        json_schema: constrain the output to JSON matching this schema, where supported.
        grammar: constrain the output to a GBNF grammar, where the backend supports one.
        next_grammar: with ``grammar``, on a backend that decodes under it itself (the local
            model): called with the output so far each time it ends a line; a grammar it
            returns replaces the current one from there on (the language of what may
            follow), None keeps it. Servers never see it. See :class:`llmc.grammar.RepeatMask`.
        extra: backend-specific request fields, passed through unchanged.
    """

    max_tokens: int | None = None
    stop: tuple[str, ...] = ()
    temperature: float | None = None
    json_schema: Mapping[str, Any] | None = None
    grammar: str | None = None
    next_grammar: Callable[[str], str | None] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def over(self, defaults: GenerateOptions | None) -> GenerateOptions:
        """These options over ``defaults``: a field left unset here takes the default's."""
        if defaults is None:
            return self
        return replace(
            self,
            max_tokens=defaults.max_tokens if self.max_tokens is None else self.max_tokens,
            stop=self.stop or defaults.stop,
            temperature=defaults.temperature if self.temperature is None else self.temperature,
            json_schema=defaults.json_schema if self.json_schema is None else self.json_schema,
            grammar=defaults.grammar if self.grammar is None else self.grammar,
            next_grammar=self.next_grammar or defaults.next_grammar,
            extra={**defaults.extra, **self.extra},
        )


@dataclass(frozen=True, slots=True)
class Chunk:
    """A piece of a streamed completion; the last one carries usage and the finish reason."""

    text: str = ""
    usage: Usage | None = None
    finish_reason: str | None = None


@runtime_checkable
class LLM(Protocol):
    """What llmc needs of a language model.

    Attributes:
        model: the model's name (part of cache keys and traces).

    A backend may also say what its tokens cost with a ``price`` attribute (a
    :class:`llmc.budget.Price`; the local model's is free). Without one, or with None, the
    run's price table decides by ``model`` (see :class:`llmc.budget.PriceTable`). A wrapper
    around another LLM passes the wrapped one's price on.
    """

    model: str

    def stream(
        self, messages: Sequence[Message], options: GenerateOptions | None = None
    ) -> AsyncIterator[Chunk]:
        """Generate a reply to ``messages``, chunk by chunk; the last chunk carries usage."""
        ...


@dataclass(frozen=True, slots=True)
class Completion:
    """A whole reply: its text, usage and why it ended."""

    text: str
    usage: Usage
    finish_reason: str | None = None


@asynccontextmanager
async def open_stream(
    llm: LLM, messages: Sequence[Message], options: GenerateOptions | None = None
) -> AsyncIterator[AsyncIterator[Chunk]]:
    """``llm.stream(...)`` as a context: leaving it early closes the stream (and its request).

    Example:
        >>> async with open_stream(llm, messages) as chunks:   # doctest: +SKIP
        ...     async for chunk in chunks:
        ...         if enough(chunk):
        ...             break
    """
    stream = llm.stream(messages, options)
    if options is not None and options.max_tokens is not None:
        stream = _capped(stream, options.max_tokens, _counter(llm))
    try:
        yield stream
    finally:
        await _close(stream)


async def _close(stream: AsyncIterator[Chunk]) -> None:
    close = getattr(stream, "aclose", None)
    if close is not None:
        await close()


def _counter(llm: LLM) -> Any:
    """The token counter the budget uses for ``llm`` (imported late: budget imports this)."""
    from ..budget import counter_for

    return counter_for(llm)


async def _capped(stream: AsyncIterator[Chunk], cap: int, counter: Any) -> AsyncIterator[Chunk]:
    """``stream``, cut once its text passes ``cap`` tokens (counted as it streams).

    An endpoint may ignore ``max_tokens``; llmc does not read on past it. A count made piece
    by piece errs high (a piece boundary may split a token, and an estimate errs high by
    design), so the cut comes a margin past the cap, never before a reply that honoured it:
    10% (at least 16 tokens) with the model's own tokenizer, 50% with any other count. The
    cut reply ends like one the server cut: a last chunk with ``finish_reason="length"`` and
    no usage (the budget then counts the prompt and the text that was read).
    """
    margin = max(16, cap // 10) if counter.exact else max(16, cap // 2)
    limit = cap + margin
    used = 0
    try:
        async for chunk in stream:
            if chunk.text:
                used += counter.count(chunk.text)
                if used > limit:
                    yield Chunk("", None, "length")
                    return
            yield chunk
    finally:
        await _close(stream)  # stop the request: nothing more is read


async def generate(
    llm: LLM, messages: Sequence[Message], options: GenerateOptions | None = None
) -> Completion:
    """Run ``llm`` to the end of its reply and return the whole :class:`Completion`."""
    parts: list[str] = []
    usage = Usage(calls=1)
    finish: str | None = None
    async with open_stream(llm, messages, options) as chunks:
        async for chunk in chunks:
            parts.append(chunk.text)
            if chunk.usage is not None:
                usage = chunk.usage
            finish = chunk.finish_reason or finish
    return Completion("".join(parts), usage, finish)
