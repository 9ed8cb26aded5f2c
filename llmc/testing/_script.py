"""Scripts of replies, shared by both doubles: what a reply is, how it is cut and counted."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..llm.base import Usage

#: How a reply is cut into chunks: a chunk length in characters, or absolute cut positions.
ChunkSpec = int | Sequence[int]


# -- replies ---------------------------------------------------------------------------------


def estimate_tokens(text: str) -> int:
    """Estimate the tokens of ``text`` as one per four characters, rounded up (0 for "")."""
    return (len(text) + 3) // 4


def _estimate_prompt(messages: Sequence[Any]) -> int:
    """Estimated prompt tokens: the sum over the messages' contents."""
    total = 0
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            total += estimate_tokens(content)
    return total


@dataclass(frozen=True, slots=True)
class Reply:
    """One scripted reply, when a plain string is not enough.

    Attributes:
        text: what the model says.
        finish_reason: why it ended, unless a stop string or ``max_tokens`` cut it first.
        prompt_tokens: prompt tokens to report (None: estimated from the messages).
        completion_tokens: completion tokens to report (None: estimated from the text sent).
        cached_tokens: prompt tokens to report as served from the server's prompt cache.
    """

    text: str
    finish_reason: str = "stop"
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int = 0


def as_reply(value: object) -> Reply:
    if isinstance(value, Reply):
        return value
    if isinstance(value, str):
        return Reply(value)
    raise TypeError(f"a script must give str or Reply, not {type(value).__name__}: {value!r}")


def shape(reply: Reply, stop: Sequence[str], max_tokens: int | None) -> tuple[str, str]:
    """Apply stop strings and ``max_tokens`` as a server would: the text sent and why it ended."""
    text, finish = reply.text, reply.finish_reason
    cuts = [text.find(s) for s in stop if s and s in text]
    if cuts:
        text, finish = text[: min(cuts)], "stop"
    if max_tokens is not None and estimate_tokens(text) > max_tokens:
        text, finish = text[: max(0, max_tokens) * 4], "length"
    return text, finish


def reply_usage(reply: Reply, messages: Sequence[Any], text: str) -> Usage:
    return Usage(
        prompt_tokens=(
            _estimate_prompt(messages) if reply.prompt_tokens is None else reply.prompt_tokens
        ),
        completion_tokens=(
            estimate_tokens(text) if reply.completion_tokens is None else reply.completion_tokens
        ),
        cached_tokens=reply.cached_tokens,
        calls=1,
    )


@dataclass(frozen=True, slots=True)
class Pacing:
    """How a scripted reply streams: where it is cut, and the wait before each piece.

    Attributes:
        chunk_size: characters per chunk, or the positions at which to cut a reply.
        chunk_delay: seconds to wait before every chunk after the first.
        first_chunk_delay: seconds to wait before the first chunk (time to first token).
    """

    chunk_size: ChunkSpec = 8
    chunk_delay: float = 0.0
    first_chunk_delay: float = 0.0

    def __post_init__(self) -> None:
        cut("", self.chunk_size)  # a bad size fails when the double is made, not when called

    def pieces(self, text: str) -> list[tuple[float, str]]:
        """``text``'s chunks in order, each with the seconds to wait before it."""
        return [
            (self.first_chunk_delay if index == 0 else self.chunk_delay, piece)
            for index, piece in enumerate(cut(text, self.chunk_size))
        ]


def cut(text: str, chunks: ChunkSpec) -> list[str]:
    """Split ``text`` into pieces: every ``chunks`` characters, or at the given positions."""
    if isinstance(chunks, int):
        if chunks < 1:
            raise ValueError("chunk_size must be at least 1 character")
        return [text[i : i + chunks] for i in range(0, len(text), chunks)] or [""]
    points = sorted({p for p in chunks if 0 < p < len(text)})
    bounds = [0, *points, len(text)]
    return [text[a:b] for a, b in itertools.pairwise(bounds)] or [""]


class ScriptExhaustedError(AssertionError):
    """A scripted double was called more often than its script has replies."""


class Script:
    """Replies in order from a list, or computed by a function; thread-safe."""

    def __init__(self, script: object, what: str) -> None:
        self._lock = threading.Lock()
        self._what = what
        self.function: Callable[..., Any] | None = None
        self.replies: list[object] = []
        if callable(script):
            self.function = script
        elif isinstance(script, str | Reply):
            raise TypeError(f"{what} needs a list of replies or a function; wrap one in a list")
        else:
            self.replies = list(script)  # type: ignore[call-overload]
        self.used = 0

    @property
    def remaining(self) -> int | None:
        return None if self.function is not None else len(self.replies) - self.used

    def take(self, argument: object, *, consume: bool = True) -> object:
        """The next reply (a function's result may still be awaitable)."""
        if self.function is not None:
            return self.function(argument)
        with self._lock:
            if self.used >= len(self.replies):
                raise ScriptExhaustedError(
                    f"{self._what} was scripted with {len(self.replies)} "
                    f"repl{'y' if len(self.replies) == 1 else 'ies'} and all were used; "
                    f"call number {self.used + 1} has none (add replies to the script)"
                )
            reply = self.replies[self.used]
            self.used += consume
            return reply
