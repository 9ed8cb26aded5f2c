"""Limits that hold across processes and machines, kept in Redis.

Every limit of :mod:`llmc.limits` and every ``max_concurrency`` lives in one process. When N
processes (or Ray workers) call one API, they must share the limit, or together they send N
times the rate. The limiters here keep their state in Redis and change it only in Lua scripts,
which Redis runs atomically, with Redis's own clock (``TIME``), so the processes need not agree
on the time.

- :class:`RedisRateLimiter`: a token bucket; ``await acquire()`` like any
  :class:`~llmc.limits.RateLimiter`, so it fits ``@llmc.tool(rate_limit=...)`` and
  ``llmc.OpenAI(rate_limit=...)``.
- :class:`RedisSemaphore`: at most ``limit`` holders at once, each holding a lease that ends
  by itself if its process dies.
- :class:`RedisLedger`: the tokens, cost and questions of a batch, shared by its processes,
  with limits checked before each question starts (see :meth:`llmc.Compiler.map`).

They need the ``redis`` extra (``pip install -e ".[redis]"`` from a checkout) and a Redis
server of version 5 or later. Each call is one round trip (about 0.1 ms on loopback): cheap
beside an LLM call or a remote tool, too dear for a tool that takes microseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from ._extras import require
from .errors import BudgetExceeded

# A token bucket: `capacity` tokens at most, refilled at `per_us` tokens per microsecond.
# Returns 0 when a token was taken, else the microseconds until one will be there.
_BUCKET = """
local capacity = tonumber(ARGV[1])
local per_us = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or capacity
local at = tonumber(state[2]) or now
tokens = math.min(capacity, tokens + math.max(0, now - at) * per_us)
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = math.ceil((1 - tokens) / per_us)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(capacity / per_us / 1000) + 1000)
return wait
"""

# Holders in a sorted set scored by the end of their lease; expired leases are dropped first.
# Returns 1 when `holder` got a place, else 0.
_TAKE = """
local limit = tonumber(ARGV[1])
local lease_us = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) < limit then
  redis.call('ZADD', KEYS[1], now + lease_us, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], math.ceil(lease_us / 1000) + 1000)
  return 1
end
return 0
"""


def _client(url: str | None, client: Any) -> Any:
    if client is not None:
        return client
    redis_asyncio = require(
        "redis.asyncio", extra="redis", needed_by="llmc.redis_limits", package="redis-py"
    )
    return redis_asyncio.Redis.from_url(url or "redis://localhost:6379/0")


class _RedisHeld:
    """What the Redis limits share: a client (an own one, or the caller's) and a key."""

    def __init__(self, key: str, url: str | None, client: Any) -> None:
        if not key:
            raise ValueError("a Redis limit needs a key: the name every process shares")
        self.key = key
        self.url = url
        self._owns_client = client is None
        self._given = client
        self._clients: dict[int, Any] = {}  # per event loop: an asyncio client is loop-bound

    @property
    def redis(self) -> Any:
        """The asyncio Redis client for the running event loop."""
        if not self._owns_client:
            return self._given
        loop = id(asyncio.get_running_loop())
        client = self._clients.get(loop)
        if client is None:
            client = self._clients[loop] = _client(self.url, None)
        return client

    async def aclose(self) -> None:
        """Close the clients this limit opened (not one the caller passed)."""
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            with contextlib.suppress(RuntimeError):  # a client of a loop that has closed
                await client.aclose()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.key!r})"


class RedisRateLimiter(_RedisHeld):
    """At most ``rate`` call starts per ``period`` seconds, together, for every process.

    A token bucket of ``burst`` tokens refilled at ``rate / period`` per second: with the
    default ``burst=1`` calls start evenly spaced, and in any window of ``t`` seconds at most
    ``1 + t * rate / period`` calls start, whatever the number of processes. A larger burst
    lets a quiet limiter start ``burst`` calls at once.

    Args:
        key: the Redis key; every process that shares the limit uses the same one.
        rate: calls per ``period``.
        period: seconds.
        burst: the most calls that may start at once after a quiet time.
        url: the Redis server (default ``redis://localhost:6379/0``).
        client: a ``redis.asyncio.Redis`` to use instead of ``url``.

    Example:
        >>> limiter = RedisRateLimiter("llm:openai", rate=50)      # doctest: +SKIP
        >>> llm = llmc.OpenAI("gpt-4o-mini", rate_limit=limiter)  # doctest: +SKIP
    """

    def __init__(
        self,
        key: str,
        rate: float,
        period: float = 1.0,
        *,
        burst: int = 1,
        url: str | None = None,
        client: Any = None,
    ) -> None:
        if rate <= 0 or period <= 0:
            raise ValueError("RedisRateLimiter needs rate > 0 and period > 0")
        if burst < 1:
            raise ValueError("RedisRateLimiter needs burst >= 1")
        super().__init__(key, url, client)
        self.rate = rate
        self.period = period
        self.burst = burst
        self._per_us = rate / period / 1e6

    async def acquire(self) -> None:
        """Wait until one more call may start, and count it."""
        while True:
            wait_us = int(await self.redis.eval(_BUCKET, 1, self.key, self.burst, self._per_us))
            if wait_us <= 0:
                return
            await asyncio.sleep(wait_us / 1e6)

    def __repr__(self) -> str:
        return f"RedisRateLimiter({self.key!r}, rate={self.rate:g}, period={self.period:g})"


class RedisSemaphore(_RedisHeld):
    """At most ``limit`` holders at once across processes: ``async with semaphore.hold():``.

    Each holder has a lease of ``lease`` seconds; a holder whose process died without
    releasing loses its place when the lease ends, so a crash never leaks a slot. The lease
    must be longer than the longest hold (a tool's timeout is a good bound), or two holders
    may overlap. Waiting is polling, every ``poll`` seconds.

    Args:
        key: the Redis key every process shares.
        limit: the most holders at once.
        lease: seconds a hold lasts at most.
        poll: seconds between tries while full.
        url: the Redis server (default ``redis://localhost:6379/0``).
        client: a ``redis.asyncio.Redis`` to use instead of ``url``.
    """

    def __init__(
        self,
        key: str,
        limit: int,
        *,
        lease: float = 60.0,
        poll: float = 0.01,
        url: str | None = None,
        client: Any = None,
    ) -> None:
        if limit < 1:
            raise ValueError("RedisSemaphore needs limit >= 1")
        if lease <= 0 or poll <= 0:
            raise ValueError("RedisSemaphore needs lease > 0 and poll > 0")
        super().__init__(key, url, client)
        self.limit = limit
        self.lease = lease
        self.poll = poll

    async def acquire(self) -> str:
        """Wait for a place and take it; return the holder's id, for :meth:`release`."""
        holder = uuid.uuid4().hex
        lease_us = math.ceil(self.lease * 1e6)
        # Polling: the state is in Redis, where no asyncio.Event can watch it.
        while not await self.redis.eval(  # noqa: ASYNC110
            _TAKE, 1, self.key, self.limit, lease_us, holder
        ):
            await asyncio.sleep(self.poll)
        return holder

    async def release(self, holder: str) -> None:
        """Give a place back (a holder whose lease ended has nothing to give)."""
        await self.redis.zrem(self.key, holder)

    @contextlib.asynccontextmanager
    async def hold(self) -> AsyncIterator[None]:
        """Hold a place for the duration of the ``async with`` block."""
        holder = await self.acquire()
        try:
            yield
        finally:
            await asyncio.shield(self.release(holder))

    def __repr__(self) -> str:
        return f"RedisSemaphore({self.key!r}, limit={self.limit})"


@dataclass(frozen=True, slots=True)
class LedgerTotals:
    """What a batch has spent so far, by every process together.

    Attributes:
        tokens: LLM tokens (input and output).
        cost: US dollars (calls without a price count 0).
        questions: questions started.
    """

    tokens: int
    cost: float
    questions: int


class RedisLedger(_RedisHeld):
    """The spending of a batch of questions, shared by the processes that answer it.

    Each question is admitted before it starts (:meth:`admit`): refused with
    :class:`~llmc.errors.BudgetExceeded` once the batch has reached a limit, counted
    otherwise; its tokens and cost are added as it spends them (:meth:`spend`). A question is
    never stopped halfway, so a batch can pass a limit by what its questions already in
    flight spend: at most ``concurrency`` questions' worth. Give each question its own
    :class:`~llmc.Budget` to bound that.

    Args:
        key: the Redis key prefix of the ledger (``<key>:tokens``, ``<key>:cost``, ...).
        max_tokens: the batch's tokens.
        max_cost: the batch's US dollars.
        max_questions: questions the batch may start.
        url: the Redis server (default ``redis://localhost:6379/0``).
        client: a ``redis.asyncio.Redis`` to use instead of ``url``.
    """

    def __init__(
        self,
        key: str,
        *,
        max_tokens: int | None = None,
        max_cost: float | None = None,
        max_questions: int | None = None,
        url: str | None = None,
        client: Any = None,
    ) -> None:
        super().__init__(key, url, client)
        self.max_tokens = max_tokens
        self.max_cost = max_cost
        self.max_questions = max_questions

    async def totals(self) -> LedgerTotals:
        """What the batch has spent so far."""
        tokens, cost, questions = await self.redis.mget(
            f"{self.key}:tokens", f"{self.key}:cost", f"{self.key}:questions"
        )
        return LedgerTotals(int(tokens or 0), float(cost or 0.0), int(questions or 0))

    async def admit(self) -> None:
        """Count one more question, or refuse it if the batch has reached a limit.

        Raises:
            BudgetExceeded: the batch's tokens, cost or questions are used up (``limit`` is
                ``"tokens"``, ``"cost"`` or ``"questions"``).
        """
        totals = await self.totals()
        over = self._over(totals)
        if over is None:
            started = int(await self.redis.incr(f"{self.key}:questions"))
            if self.max_questions is not None and started > self.max_questions:
                over = ("questions", self.max_questions, started - 1)  # another took the last
        if over is not None:
            limit, maximum, used = over
            shown = f"${maximum:g}" if limit == "cost" else f"{maximum:g} {limit}"
            raise BudgetExceeded(
                f"the batch's budget of {shown} is spent (ledger {self.key!r} has {used:g}); "
                "no more questions start under it",
                limit=limit,
                maximum=maximum,
                used=used,
            )

    def _over(self, totals: LedgerTotals) -> tuple[str, float, float] | None:
        """The first limit the batch has reached: its name, value and what was used."""
        for limit, maximum, used in (
            ("tokens", self.max_tokens, totals.tokens),
            ("cost", self.max_cost, totals.cost),
            ("questions", self.max_questions, totals.questions),
        ):
            if maximum is not None and used >= maximum:
                return limit, maximum, used
        return None

    async def spend(self, tokens: int, cost: float | None) -> None:
        """Add one LLM call's tokens and cost to the batch."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.incrby(f"{self.key}:tokens", tokens)
            pipe.incrbyfloat(f"{self.key}:cost", cost or 0.0)
            await pipe.execute()

    async def reset(self) -> None:
        """Forget what the batch spent."""
        await self.redis.delete(f"{self.key}:tokens", f"{self.key}:cost", f"{self.key}:questions")

    def __repr__(self) -> str:
        return f"RedisLedger({self.key!r})"
