"""Limits shared by tool calls and LLM calls: rate limiters and retry backoff."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Protocol

__all__ = ["Backoff", "RateLimiter"]


class RateLimiter(Protocol):
    """Anything with ``await acquire()`` that returns when one more call may start.

    ``asyncio_throttle.Throttler`` (what ``@llmc.tool(rate_limit=...)`` creates) is one.
    The scheduler acquires a tool's limiter before every attempt, after its concurrency slot,
    so the limit holds for call starts; LLM clients take a limiter the same way.
    """

    async def acquire(self) -> None:
        """Wait until one more call may start, and count it."""
        ...


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with jitter between a task's attempts.

    The delay before attempt ``n + 1`` is ``min(max_delay, base * factor ** (n - 1))``, less a
    random fraction of up to ``jitter`` of it, so retries of many tasks spread out.

    Attributes:
        base: seconds before the first retry (before jitter).
        factor: growth per further retry.
        max_delay: the longest delay.
        jitter: the largest fraction taken off at random, from 0 (none) to 1.
    """

    base: float = 0.5
    factor: float = 2.0
    max_delay: float = 30.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if self.base < 0 or self.max_delay < 0 or self.factor < 1:
            raise ValueError("Backoff needs base >= 0, max_delay >= 0 and factor >= 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("Backoff jitter is a fraction between 0 and 1")

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1 for the first)."""
        full = min(self.max_delay, self.base * self.factor ** (attempt - 1))
        return full * (1 - self.jitter * random.random())
