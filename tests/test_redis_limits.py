"""Limits shared across processes, against a real redis-server on loopback.

Four processes call one server through one Redis limit; the server (the receiver) records
when each request arrived, and the limit must hold there.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

import llmc
from llmc.redis_limits import RedisLedger, RedisRateLimiter, RedisSemaphore
from llmc.testing import ScriptedOpenAIServer

HERE = Path(__file__).parent
PROCESSES = 4


def most_in_window(times: list[float], window: float) -> int:
    """The most moments that fall in any window of ``window`` seconds."""
    times = sorted(times)
    most, first = 0, 0
    for last, moment in enumerate(times):
        while moment - times[first] >= window:
            first += 1
        most = max(most, last - first + 1)
    return most


def most_at_once(spans: list[tuple[float, float]]) -> int:
    """The most spans that overlap at any moment."""
    changes = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    held = most = 0
    for _, change in changes:
        held += change
        most = max(most, held)
    return most


def test_shared_limits_hold_across_four_processes(redis_url: str) -> None:
    rate, each, places, holds = 20.0, 12, 2, 4
    total = PROCESSES * each
    key = f"test:{uuid.uuid4().hex}"
    path = os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")])
    with ScriptedOpenAIServer(["ok"] * total) as server:
        args = [redis_url, key, server.base_url, each, rate, places, holds, 0.1]
        processes = [
            subprocess.Popen(
                [sys.executable, str(HERE / "redis_limit_client.py"), *map(str, args)],
                env={**os.environ, "PYTHONPATH": path},
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(PROCESSES)
        ]
        try:
            for process in processes:  # every one imported: start them together
                assert process.stdout is not None and process.stdout.readline() == "ready\n"
            for process in processes:
                assert process.stdin is not None
                process.stdin.write("go\n")
                process.stdin.flush()
            outputs = [process.communicate(timeout=120) for process in processes]
        finally:
            for process in processes:
                if process.poll() is None:
                    process.kill()
        for process, (_, err) in zip(processes, outputs, strict=True):
            assert process.returncode == 0, err
        arrivals = [r.time for r in server.requests if r.path.endswith("/chat/completions")]
    assert len(arrivals) == total
    # Evenly spaced grants across the processes: in any second at most rate + 1 (the bucket
    # starts full with one). The server's arrivals add each request's own delay on top.
    granted = [moment for out, _ in outputs for moment in json.loads(out.splitlines()[-2])]
    assert len(granted) == total
    assert most_in_window(granted, 1.0) <= rate + 1
    # Four limiters of their own would take about 0.55 s; one shared limit >= 47 / 20 s.
    assert max(arrivals) - min(arrivals) >= (total - 1) / rate * 0.9
    spans = [tuple(span) for out, _ in outputs for span in json.loads(out.splitlines()[-1])]
    assert len(spans) == PROCESSES * holds
    assert most_at_once(spans) == places


async def test_a_lease_ends_when_its_holder_never_releases(redis_url: str) -> None:
    semaphore = RedisSemaphore(f"test:lease:{uuid.uuid4().hex}", 1, lease=0.2, url=redis_url)
    await semaphore.acquire()  # and never released, as by a process that died
    await asyncio.wait_for(semaphore.acquire(), 5)
    await semaphore.aclose()


async def test_the_limiter_fits_a_tool(redis_url: str) -> None:
    limiter = RedisRateLimiter(f"test:tool:{uuid.uuid4().hex}", rate=50, url=redis_url)
    calls: list[float] = []

    @llmc.tool(rate_limit=limiter)
    async def ping(n: int) -> int:
        """Return n.

        Args:
            n: a number.
        """
        calls.append(time.perf_counter())
        return n

    plan = llmc.Plan(tools=[ping])
    for n in range(10):
        plan.add("ping", n)
    result = await llmc.run_plan(plan)
    assert result.outputs == {n + 1: n for n in range(10)}
    assert max(calls) - min(calls) >= 9 / 50 * 0.9  # spaced by the limiter
    await limiter.aclose()


async def test_a_ledger_refuses_questions_past_its_limits(redis_url: str) -> None:
    ledger = RedisLedger(
        f"test:ledger:{uuid.uuid4().hex}", max_tokens=100, max_questions=3, url=redis_url
    )
    await ledger.admit()
    await ledger.spend(60, 0.01)
    await ledger.admit()
    await ledger.spend(50, None)
    with pytest.raises(llmc.BudgetExceeded, match="100 tokens"):
        await ledger.admit()
    totals = await ledger.totals()
    assert (totals.tokens, totals.questions) == (110, 2)
    assert totals.cost == pytest.approx(0.01)
    await ledger.reset()
    await ledger.admit()
    await ledger.admit()
    await ledger.admit()
    with pytest.raises(llmc.BudgetExceeded, match="3 questions"):
        await ledger.admit()
    await ledger.aclose()


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="rate > 0"):
        RedisRateLimiter("k", rate=0)
    with pytest.raises(ValueError, match="limit >= 1"):
        RedisSemaphore("k", 0)
    with pytest.raises(ValueError, match="needs a key"):
        RedisRateLimiter("", rate=1)
    with pytest.raises(llmc.ToolDefinitionError, match="limiter with an async acquire"):
        llmc.tool(rate_limit=object())(lambda: 1)  # type: ignore[call-overload]
