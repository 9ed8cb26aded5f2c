"""Synchronous entry points, with and without a running event loop (as in Jupyter), and reprs."""

from __future__ import annotations

import asyncio
import gc
import signal
import threading
import time
import warnings

import pytest

import llmc
from llmc._sync import run_sync
from llmc.testing import ScriptedOpenAIServer


@llmc.tool
async def wait(seconds: float) -> float:
    """Sleep, then return how long.

    Args:
        seconds: how long to sleep.
    """
    await asyncio.sleep(seconds)
    return seconds


@llmc.tool
def fail(message: str) -> str:
    """Raise ``ValueError(message)``.

    Args:
        message: the error's text.
    """
    raise ValueError(message)


PLAN = "1. wait(0.01)\n2. wait(0.02)\n3. fail('no')\njoin()"


def test_run_plan_sync_without_a_loop() -> None:
    result = llmc.run_plan_sync(llmc.Plan.parse(PLAN, tools=[wait, fail]))
    assert result.outputs == {1: 0.01, 2: 0.02}
    assert result.status(3) is llmc.TaskStatus.FAILED


async def test_run_plan_sync_inside_a_running_loop_leaves_nothing_unawaited() -> None:
    loop_thread = threading.get_ident()
    seen: list[int] = []

    @llmc.tool
    def where() -> int:
        """The thread this call runs its event loop in."""
        seen.append(threading.get_ident())
        return 0

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "coroutine ... was never awaited" would be one
        result = llmc.run_plan_sync(llmc.Plan.parse(PLAN, tools=[wait, fail]))
        compiled = llmc.Scheduler([where], executor=None).run_sync([llmc.Task(1, "where")])
        gc.collect()
    assert result.outputs == {1: 0.01, 2: 0.02}
    assert isinstance(result.errors[3], ValueError)
    assert compiled.outputs == {1: 0} and seen and seen[0] != loop_thread
    await asyncio.sleep(0)  # this loop is still usable


async def test_compiler_run_sync_inside_a_running_loop() -> None:
    finish = "Action: Finish(both waited)"
    with ScriptedOpenAIServer(["1. wait(0.01)\n2. wait(0.01)\njoin()", finish]) as server:
        llm = llmc.OpenAI("scripted", base_url=server.base_url, api_key="sk-test")
        answer = llmc.Compiler([wait], llm).run_sync("Wait twice.")
    assert answer.text == "both waited"
    assert answer.results[0].outputs == {1: 0.01, 2: 0.01}


@pytest.mark.parametrize("inside_a_loop", [False, True])
def test_compiler_run_sync_closes_the_connections_of_its_loop(inside_a_loop: bool) -> None:
    def ask() -> llmc.Answer:
        with ScriptedOpenAIServer(["1. wait(0.01)\njoin()", "Action: Finish(done)"]) as server:
            llm = llmc.OpenAI("scripted", base_url=server.base_url, api_key="sk-test")
            return llmc.Compiler([wait], llm).run_sync("Wait.")

    async def in_a_loop() -> llmc.Answer:
        return ask()

    gc.collect()  # what earlier tests left behind is not this test's
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        answer = asyncio.run(in_a_loop()) if inside_a_loop else ask()
        gc.collect()
    assert answer.text == "done"
    unclosed = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert not unclosed


def test_errors_of_the_run_reach_the_caller_unchanged() -> None:
    async def broken() -> None:
        raise llmc.PlanError("bad plan")

    async def inside() -> None:
        with pytest.raises(llmc.PlanError, match="bad plan"):
            run_sync(broken)

    asyncio.run(inside())
    with pytest.raises(llmc.PlanError, match="bad plan"):
        run_sync(broken)


def test_ctrl_c_inside_a_running_loop_cancels_the_run_and_raises() -> None:
    cancelled = threading.Event()

    async def slow() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async def inside() -> float:
        main = threading.main_thread().ident
        assert main is not None and threading.get_ident() == main
        threading.Timer(0.2, signal.pthread_kill, (main, signal.SIGINT)).start()
        started = time.perf_counter()
        with pytest.raises(KeyboardInterrupt):
            run_sync(slow)
        return time.perf_counter() - started

    took = asyncio.run(inside())
    assert cancelled.is_set()
    assert took < 10  # a generous bound: only a hang fails it


def test_reprs_are_short_and_say_what_happened() -> None:
    plan = llmc.Plan.parse(PLAN, tools=[wait, fail])
    result = llmc.run_plan_sync(plan)
    assert repr(result).startswith(f"<Result {result.run_id}: 2 done, 1 failed in ")
    assert repr(result.trace).startswith(f"<Trace {result.run_id}: 2 done, 1 failed in ")
    assert result._repr_svg_().startswith("<svg")

    finish = "Action: Finish(" + "waited " * 20 + ")"
    with ScriptedOpenAIServer(["1. wait(0.01)\njoin()", finish]) as server:
        llm = llmc.OpenAI("gpt-4o-mini", base_url=server.base_url, api_key="sk-test")
        answer = llmc.Compiler([wait], llm).run_sync("Wait.")
    text = repr(answer)
    assert text.startswith("<Answer 'waited waited") and "...'" in text
    assert "1 plan, 1 task, 2 LLM calls" in text and len(text) < 160
    assert f"{answer.usage.total_tokens} tokens" in text
    picture = answer._repr_html_()
    assert picture.startswith("<p>waited") and picture.count("<svg") == 2
    assert "spans" in repr(answer.trace)


def test_viz_is_reachable_after_import_llmc() -> None:
    assert llmc.viz.timeline_svg is not None
