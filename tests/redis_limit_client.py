"""One process of the shared-limit tests: calls through Redis limits, then exits.

Usage: python redis_limit_client.py REDIS_URL KEY BASE_URL CALLS RATE LIMIT HOLDS SECONDS

It prints "ready" once imported and waits for a line on stdin, so that every process starts
at once; then it makes CALLS calls to BASE_URL under a shared rate limit of RATE per second,
printing as JSON when the limiter let each one go, then HOLDS holds of SECONDS of a shared
semaphore of LIMIT places, printing their (start, end) times as JSON.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from llmc import OpenAI
from llmc.llm.base import generate
from llmc.redis_limits import RedisRateLimiter, RedisSemaphore


class Granted:
    """The shared limiter, noting when each acquire returned: what the limit promises (the
    server sees the calls later, by however long each took to get there)."""

    def __init__(self, limiter: RedisRateLimiter) -> None:
        self.limiter = limiter
        self.times: list[float] = []

    async def acquire(self) -> None:
        await self.limiter.acquire()
        self.times.append(time.time())


async def calls(url: str, key: str, base_url: str, count: int, rate: float) -> None:
    limiter = RedisRateLimiter(key, rate=rate, url=url)
    granted = Granted(limiter)
    llm = OpenAI("scripted", base_url=base_url, api_key="sk-test", rate_limit=granted)
    for _ in range(count):
        await generate(llm, [{"role": "user", "content": "hi"}])
    await llm.aclose()
    await limiter.aclose()
    print(json.dumps(granted.times), flush=True)


async def holds(url: str, key: str, limit: int, count: int, seconds: float) -> None:
    semaphore = RedisSemaphore(key, limit, lease=30, url=url)
    spans = []
    for _ in range(count):
        async with semaphore.hold():
            start = time.time()
            await asyncio.sleep(seconds)
            spans.append((start, time.time()))
    await semaphore.aclose()
    print(json.dumps(spans), flush=True)


if __name__ == "__main__":
    url, key, base_url, count, rate, limit, holding, seconds = sys.argv[1:]
    print("ready", flush=True)
    sys.stdin.readline()
    asyncio.run(calls(url, f"{key}:rate", base_url, int(count), float(rate)))
    asyncio.run(holds(url, f"{key}:sem", int(limit), int(holding), float(seconds)))
