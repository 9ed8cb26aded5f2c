"""The one loop of attempts (``llmc.limits.retrying``) that tool calls and LLM requests share."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llmc.limits import RateLimit, rate_limiter, release, retrying


class CountingLimiter:
    """Counts acquisitions and releases, and lets every call go."""

    def __init__(self) -> None:
        self.acquired = 0
        self.released = 0

    async def acquire(self) -> None:
        self.acquired += 1

    def release(self) -> None:
        self.released += 1


@given(failures=st.integers(0, 6), retries=st.integers(0, 6))
def test_attempts_until_success_or_the_retries_are_spent(failures: int, retries: int) -> None:
    limiter = CountingLimiter()
    seen: list[tuple[str, int]] = []

    async def attempt(number: int) -> str:
        release(limiter)
        seen.append(("attempt", number))
        if number <= failures:
            raise ConnectionError(f"down {number}")
        return f"done at {number}"

    def after_failure(error: Exception, number: int) -> float | None:
        seen.append(("failed", number))
        assert str(error) == f"down {number}"
        return 0.0 if number <= retries else None

    async def go() -> str:
        return await retrying(attempt, after_failure, limiter=limiter)

    if failures <= retries:
        assert asyncio.run(go()) == f"done at {failures + 1}"
        made = failures + 1
    else:
        with pytest.raises(ConnectionError, match=f"down {retries + 1}"):
            asyncio.run(go())
        made = retries + 1
    expected = []
    for number in range(1, made + 1):
        expected.append(("attempt", number))
        if number <= failures:
            expected.append(("failed", number))
    assert seen == expected
    assert limiter.acquired == limiter.released == made  # one acquisition per attempt


def test_after_failure_may_raise_its_own_error_and_waits_between_attempts() -> None:
    times: list[float] = []

    async def attempt(number: int) -> None:
        times.append(asyncio.get_running_loop().time())
        raise TimeoutError("slow")

    def after_failure(error: Exception, number: int) -> float | None:
        if number == 2:
            raise RuntimeError("gave up after 2")
        return 0.05

    with pytest.raises(RuntimeError, match="gave up after 2") as caught:
        asyncio.run(retrying(attempt, after_failure))
    assert isinstance(caught.value.__context__, TimeoutError)
    assert len(times) == 2 and times[1] - times[0] >= 0.05


def test_cancellation_is_not_a_failure() -> None:
    calls = []

    async def attempt(number: int) -> None:
        calls.append(number)
        raise asyncio.CancelledError

    def after_failure(error: Exception, number: int) -> float | None:
        raise AssertionError("cancellation must not reach after_failure")

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(retrying(attempt, after_failure))
    assert calls == [1]


def test_the_rate_limiter_builder() -> None:
    assert rate_limiter(None) is None
    limit = rate_limiter(4, 0.5)
    assert isinstance(limit, RateLimit) and (limit.calls, limit.period) == (4, 0.5)
    slow = rate_limiter(0.5)
    assert isinstance(slow, RateLimit) and (slow.calls, slow.period) == (1, 2.0)
    own = CountingLimiter()
    assert rate_limiter(own) is own
    with pytest.raises(ValueError, match="positive"):
        rate_limiter(0)
    with pytest.raises(TypeError, match="async acquire"):
        rate_limiter("4/s", error=TypeError)
