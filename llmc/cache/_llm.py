"""An LLM wrapper that answers repeated calls from a cache."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

from ..budget import Price
from ..llm.base import LLM, Chunk, GenerateOptions, Message, Usage, open_stream
from ._cache import MISSING, Cache

#: The usage a replayed completion reports: no call was made, no token spent.
REPLAYED = Usage()


class CachedLLM:
    """An :class:`~llmc.llm.LLM` that replays cached completions and records new ones.

    A call whose key (model, messages, options: see :meth:`Cache.llm_key`) is in the cache
    streams the stored text back, line by line, with a final chunk carrying the stored
    finish reason and a usage of zero tokens and zero calls. Any other call goes to the
    wrapped model, streams through unchanged, and is stored once it ran to its end (a
    stream left early or failing stores nothing). Other attributes are the wrapped model's.

    Args:
        llm: the model to wrap.
        cache: where completions are kept.

    Attributes:
        model: the wrapped model's name.

    Example:
        >>> llm = CachedLLM(llmc.OpenAI("gpt-4o-mini"), llmc.Cache())   # doctest: +SKIP
    """

    def __init__(self, llm: LLM, cache: Cache) -> None:
        self.llm = llm
        self.cache = cache
        self.model = llm.model

    async def stream(
        self, messages: Sequence[Message], options: GenerateOptions | None = None
    ) -> AsyncIterator[Chunk]:
        """Stream a completion: from the cache when it has it, else from the model."""
        key = self.cache.llm_key(self.llm, messages, options)
        if key is not None:
            found = await self.cache.aget(key, kind="llm")
            if found is not MISSING and isinstance(found, dict) and "text" in found:
                for chunk in _replay(found):
                    yield chunk
                return
        parts: list[str] = []
        finish: str | None = None
        usage: Usage | None = None
        async with open_stream(self.llm, messages, options) as chunks:
            async for chunk in chunks:
                parts.append(chunk.text)
                finish = chunk.finish_reason or finish
                usage = chunk.usage or usage
                yield chunk
        if key is not None:
            spent = usage or Usage(calls=1)
            record: dict[str, Any] = {
                "text": "".join(parts),
                "finish_reason": finish,
                "usage": [spent.prompt_tokens, spent.completion_tokens, spent.cached_tokens],
            }
            await self.cache.aset(key, record, ttl=self.cache.ttl, kind="llm")

    @property
    def price(self) -> Price | None:
        """The wrapped model's price (None: the price table decides by its name)."""
        own = getattr(self.llm, "price", None)
        return own if isinstance(own, Price) else None

    def __getattr__(self, name: str) -> Any:
        """Everything else is the wrapped model's (its tokenizer, ``aload``, ...)."""
        if name == "llm":
            raise AttributeError(name)
        return getattr(self.llm, name)

    def __repr__(self) -> str:
        return f"CachedLLM({self.llm!r})"


def _replay(record: dict[str, Any]) -> list[Chunk]:
    """A stored completion as chunks: one per line, then the finish reason and zero usage."""
    text = str(record["text"])
    lines = text.splitlines(keepends=True) or [""]
    finish = record.get("finish_reason")
    chunks = [Chunk(line) for line in lines[:-1]]
    chunks.append(Chunk(lines[-1], REPLAYED, finish if isinstance(finish, str) else None))
    return chunks
