"""Limits shared by tool calls and LLM calls: the rate limiter protocol, retry backoff, and
the one loop of attempts that both make."""

from __future__ import annotations

import asyncio
import inspect
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar, runtime_checkable

T = TypeVar("T")


@runtime_checkable
class RateLimiter(Protocol):
    """Anything with ``await acquire()`` that returns when one more call may start.

    One protocol for every limit in llmc: ``@llmc.tool(rate_limit=...)`` and
    ``llmc.OpenAI(rate_limit=...)`` take any object that has it (llmc's own
    :class:`RateLimit`, ``asyncio_throttle.Throttler``, a limiter shared through Redis...).
    The scheduler acquires a tool's limiter before every attempt, after its concurrency slot;
    an LLM client acquires before every request it sends.

    A limiter may also have a plain ``release()`` method. llmc then calls it once after every
    ``acquire()``, when the call has reached its server (an LLM endpoint's reply began, or the
    attempt failed; a tool call started). :class:`RateLimit` uses it to count its period from
    that moment, so the limit holds for arrivals at the server, however long a request takes
    to get there. A limiter without ``release()`` counts from ``acquire()``.
    """

    async def acquire(self) -> None:
        """Wait until one more call may start, and count it."""
        ...


class RateLimit:
    """At most ``calls`` calls per ``period`` seconds, as the server sees them.

    A call holds its slot from :meth:`acquire` until ``period`` seconds after :meth:`release`
    (the moment it reached the server), so however long a request spends between the client
    and the server, no window of ``period`` seconds there sees more than ``calls`` arrivals.
    Every ``acquire()`` needs one ``release()``; llmc's scheduler and LLM clients pair them.
    One object may be shared by any number of tools,
    clients and runs on one event loop.

    Attributes:
        calls: the most calls per period.
        period: the window, in seconds.
    """

    def __init__(self, calls: int, period: float = 1.0) -> None:
        if calls < 1 or period <= 0:
            raise ValueError("a rate limit needs calls >= 1 and a period > 0 seconds")
        self.calls = int(calls)
        self.period = float(period)
        self._in_flight = 0
        self._released: deque[float] = deque()  # when each recent call reached its server

    async def acquire(self) -> None:
        """Wait until a slot is free, then take it."""
        # No lock (a lock belongs to one event loop, and tools outlive loops): the check and
        # the take below have no await between them, so they are atomic on the loop.
        while True:
            now = time.monotonic()
            while self._released and self._released[0] + self.period <= now:
                self._released.popleft()
            if self._in_flight + len(self._released) < self.calls:
                self._in_flight += 1
                return
            if self._released and self._in_flight < self.calls:
                await asyncio.sleep(max(0.001, self._released[0] + self.period - now))
            else:  # every slot is still on its way to its server: wait for a release
                await asyncio.sleep(min(0.005, self.period))

    def release(self) -> None:
        """One call acquired earlier has reached its server: its period starts now."""
        if self._in_flight > 0:
            self._in_flight -= 1
            self._released.append(time.monotonic())

    def __repr__(self) -> str:
        return f"RateLimit(calls={self.calls}, period={self.period})"


def rate_limiter(
    value: object, period: float = 1.0, *, error: type[Exception] = ValueError
) -> RateLimiter | None:
    """The limiter of a ``rate_limit`` option (of a tool or an LLM client): None for None; a
    number of calls per ``period`` seconds becomes a :class:`RateLimit`; a limiter is kept as
    it is.

    Raises:
        error: ``value`` is a number that is not positive, or neither a number nor an object
            with an async ``acquire()`` method.
    """
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        if value <= 0 or period <= 0:
            raise error(f"rate_limit and rate_period must be positive, not {value!r}")
        if value != int(value):  # a fractional rate: one call per stretched period
            return RateLimit(1, period / value)
        return RateLimit(int(value), period)
    if isinstance(value, RateLimiter) and inspect.iscoroutinefunction(value.acquire):
        return value
    raise error(
        "rate_limit must be a number of calls per rate_period, or a limiter with an async "
        f"acquire() method (llmc.limits.RateLimiter), not {value!r}"
    )


def release(limiter: RateLimiter) -> None:
    """Tell ``limiter`` that the call it let go reached its server, if it wants to know."""
    hook = getattr(limiter, "release", None)
    if callable(hook):
        hook()


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


async def retrying(
    attempt: Callable[[int], Awaitable[T]],
    after_failure: Callable[[Exception, int], float | None],
    *,
    limiter: RateLimiter | None = None,
) -> T:
    """Make attempts until one succeeds: the loop of a tool's calls and of an LLM client's
    requests.

    Attempt ``n`` (from 1) is ``await attempt(n)``, after ``limiter.acquire()``; the attempt
    calls :func:`release` on the limiter once its call reaches its server (only it knows
    when). When it raises an ``Exception``, ``after_failure(error, n)`` says how many seconds
    to wait before the next attempt, or None to give up and raise the error; it may also
    raise an error of its own in its place. Anything else (cancellation) ends the loop at
    once.

    Returns:
        what the successful attempt returned.
    """
    number = 0
    while True:
        number += 1
        if limiter is not None:
            await limiter.acquire()
        try:
            return await attempt(number)
        except Exception as exc:
            delay = after_failure(exc, number)
            if delay is None:
                raise
        await asyncio.sleep(delay)
