"""A frozen store is skipped after a few failures: a cached run does not wait out every call."""

from __future__ import annotations

import signal
import warnings

import pytest
from cache_helpers import redis_server_process

import llmc
from llmc.cache import Cache, CacheWarning, RedisStore, StoreUnavailable


@llmc.tool(pure=True)
def square(x: int) -> int:
    """Square a number.

    Args:
        x: the number.
    """
    return x * x


def plan_of(count: int) -> llmc.Plan:
    plan = llmc.Plan()
    for i in range(count):
        plan.add("square", i)
    return plan


@pytest.mark.timeout(90)  # without the breaker: 2 store calls x 60 tasks x 0.3 s
async def test_a_frozen_redis_is_skipped_after_a_few_timeouts_with_one_warning() -> None:
    with redis_server_process() as (url, process):
        cache = Cache(RedisStore(url, timeout=0.3))
        warm = await llmc.run_plan(plan_of(60), tools=[square], cache=cache)
        assert warm.ok and cache.stats.errors == 0
        process.send_signal(signal.SIGSTOP)  # it keeps its sockets and answers nothing
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                result = await llmc.run_plan(plan_of(60), tools=[square], cache=cache)
        finally:
            process.send_signal(signal.SIGCONT)
        assert result.ok and result[60] == 59 * 59  # misses: every call made afresh
        # (calls already on their way when the breaker opened fail too: a few, not 120)
        assert cache.stats.errors <= 16 and cache.stats.skipped >= 100
        skipping = [w for w in caught if "is skipped" in str(w.message)]
        assert len(skipping) == 1 and issubclass(skipping[0].category, CacheWarning)
        # once the store answers again (after the pause), the cache uses it again
        cache._shared.breaker._until = 1.0  # the pause is over
        again = await llmc.run_plan(plan_of(3), tools=[square], cache=cache)
        assert again.ok and cache._shared.breaker.failures == 0


def test_store_unavailable_is_an_llmc_error() -> None:
    assert issubclass(StoreUnavailable, llmc.LLMCError)
