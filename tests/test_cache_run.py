"""Caches in runs: tool calls in the scheduler, LLM calls and plans in the compiler.

A second identical run makes no LLM call and no call of a cached tool; a paraphrase reuses
the plan and a near-miss does not; namespaces isolate; a broken cache never breaks a run.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
import warnings
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest

import llmc
from llmc.cache import (
    MISSING,
    Cache,
    CachedLLM,
    CacheWarning,
    Entry,
    HashingEmbedder,
    StoreUnavailable,
    VectorBatch,
)
from llmc.errors import ToolDefinitionError
from llmc.llm import GenerateOptions, generate
from llmc.llm.base import Chunk, Message, Usage
from llmc.testing import ScriptedLLM, ScriptedOpenAIServer

DEPTHS = {"Mariana Trench": "10994 m", "Puerto Rico Trench": "8376 m", "Java Trench": "7290 m"}
CALLS: Counter[str] = Counter()


@llmc.tool(pure=True)
async def search(query: str) -> str:
    """Search the encyclopedia.

    Args:
        query: a topic, e.g. "Eiffel Tower".
    """
    CALLS["search"] += 1
    return DEPTHS.get(query, f"nothing found for {query!r}")


@llmc.tool(pure=True)
def deeper(a: str, b: str) -> str:
    """Name the deeper of two depths given as text like '8376 m'."""
    CALLS["deeper"] += 1
    return "first" if float(a.split()[0]) > float(b.split()[0]) else "second"


@llmc.tool
def now() -> float:
    """The time (never cached: not pure)."""
    CALLS["now"] += 1
    return time.time()


@pytest.fixture(autouse=True)
def _count_calls() -> None:
    CALLS.clear()


def plan_for(a: str, b: str) -> str:
    return (
        f'Thought: look both up.\n1. search("{a}")\n2. search("{b}")\n3. deeper($1, $2)\n'
        "join()\n<END_OF_PLAN>"
    )


def script(messages: Sequence[Message]) -> str:
    """Plans for planner calls (the trench names come from the question), answers for joiner
    calls."""
    user = messages[-1]["content"]
    if "Observation" in user:
        return "Thought: $3 says which.\nAction: Finish(The first one is deeper.)"
    names = sorted((user.find(name), name) for name in DEPTHS if name.split()[0] in user)
    found = [name for position, name in names if position >= 0] or list(DEPTHS)[:2]
    return plan_for(found[0], found[-1] if len(found) > 1 else "Java Trench")


def make_cache(tmp_path: Path, **options: Any) -> Cache:
    return Cache(tmp_path / "cache.sqlite3", **options)


# -- tool calls in runs ----------------------------------------------------------------------


async def test_pure_tools_are_served_from_the_cache_on_the_next_run(tmp_path: Path) -> None:
    cache = make_cache(tmp_path)
    plan = llmc.Plan.parse(
        '1. search("Mariana Trench")\n2. search("Java Trench")\n3. deeper($1, $2)\n4. now()',
        tools=[search, deeper, now],
    )
    first = await llmc.run_plan(plan, cache=cache)
    assert CALLS == {"search": 2, "deeper": 1, "now": 1}
    assert not any(record.cached for record in first.trace.tasks.values())
    second = await llmc.run_plan(plan, cache=cache)
    assert CALLS == {"search": 2, "deeper": 1, "now": 2}  # only the impure tool ran again
    assert {i: r.cached for i, r in second.trace.tasks.items()} == {
        1: True,
        2: True,
        3: True,
        4: False,
    }
    assert second.outputs[3] == first.outputs[3] == "first"
    assert all(second.trace.tasks[i].attempts == 0 for i in (1, 2, 3))
    assert cache.stats.hits["tool"] == 3


async def test_identical_calls_in_one_run_store_once(tmp_path: Path) -> None:
    cache = make_cache(tmp_path)
    plan = llmc.Plan.parse('1. search("Java Trench")\n2. search("Java Trench")', tools=[search])
    result = await llmc.run_plan(plan, cache=cache)
    second = result.trace.tasks[2]
    assert CALLS["search"] == 1 and (second.served_by == 1 or second.cached)
    assert cache.stats.writes["tool"] == 1


async def test_tool_cache_options_and_overrides(tmp_path: Path) -> None:
    seen: Counter[str] = Counter()

    @llmc.tool(cache=True, cache_ttl=0.3)
    def lookup(q: str) -> str:
        seen["lookup"] += 1
        return q.upper()

    @llmc.tool(pure=True, cache=False)
    def pure_but_not_cached(q: str) -> str:
        seen["pure_but_not_cached"] += 1
        return q

    @llmc.tool(pure=True)
    def falsy(kind: str) -> Any:
        seen["falsy"] += 1
        return {"zero": 0, "empty": "", "none": None, "list": []}[kind]

    cache = make_cache(tmp_path)
    tools = [lookup, pure_but_not_cached, falsy]
    text = '1. lookup("a")\n2. pure_but_not_cached("b")\n' + "\n".join(
        f'{n}. falsy("{k}")' for n, k in enumerate(["zero", "empty", "none", "list"], 3)
    )
    plan = llmc.Plan.parse(text, tools=tools)
    first = await llmc.run_plan(plan, cache=cache)
    second = await llmc.run_plan(plan, cache=cache)
    assert seen == {"lookup": 1, "pure_but_not_cached": 2, "falsy": 4}
    assert second.outputs == first.outputs
    await asyncio.sleep(0.4)  # lookup's entries live 0.3 s
    await llmc.run_plan(plan, cache=cache)
    assert seen["lookup"] == 2
    override = cache.with_namespace("default")
    override.tool_ttl = {"lookup": 0, "pure_but_not_cached": None}
    await llmc.run_plan(plan, cache=override)
    await llmc.run_plan(plan, cache=override)
    assert seen["lookup"] == 4 and seen["pure_but_not_cached"] == 4


def test_cache_ttl_must_be_positive() -> None:
    with pytest.raises(ToolDefinitionError, match="cache_ttl"):

        @llmc.tool(cache_ttl=0)
        def f() -> None: ...


async def test_errors_are_not_cached_and_versions_separate_entries(tmp_path: Path) -> None:
    attempts: Counter[str] = Counter()

    def flaky(n: int) -> int:
        attempts["flaky"] += 1
        if attempts["flaky"] == 1:
            raise ValueError("first call fails")
        return n * 2

    v1 = llmc.tool(pure=True, name="double", version="1")(flaky)
    v2 = llmc.tool(pure=True, name="double", version="2")(flaky)
    cache = make_cache(tmp_path)
    plan = llmc.Plan.parse("1. double(4)", tools=[v1])
    failed = await llmc.run_plan(plan, cache=cache)
    assert failed.trace.tasks[1].error is not None
    assert (await llmc.run_plan(plan, cache=cache)).outputs == {1: 8}
    assert (await llmc.run_plan(plan, cache=cache)).trace.tasks[1].cached
    assert attempts["flaky"] == 2
    other = await llmc.run_plan(llmc.Plan.parse("1. double(4)", tools=[v2]), cache=cache)
    assert not other.trace.tasks[1].cached and attempts["flaky"] == 3


async def test_batched_calls_are_cached_one_by_one(tmp_path: Path) -> None:
    batches: list[list[str]] = []

    @llmc.tool(batch=True, pure=True)
    async def price(symbol: list[str]) -> list[float]:
        batches.append(list(symbol))
        return [float(len(s)) for s in symbol]

    cache = make_cache(tmp_path)
    first = llmc.Plan.parse('1. price("A")\n2. price("BB")', tools=[price])
    await llmc.run_plan(first, cache=cache)
    result = await llmc.run_plan(
        llmc.Plan.parse('1. price("A")\n2. price("CCC")', tools=[price]), cache=cache
    )
    assert batches == [["A", "BB"], ["CCC"]]
    assert result.outputs == {1: 1.0, 2: 3.0} and result.trace.tasks[1].cached


# -- the compiler ----------------------------------------------------------------------------

QUESTION = "Is the Mariana Trench deeper than the Puerto Rico Trench?"


async def test_a_second_identical_run_calls_no_llm_and_no_cached_tool(tmp_path: Path) -> None:
    llm = ScriptedLLM(script)
    compiler = llmc.Compiler([search, deeper], llm, cache=make_cache(tmp_path))
    first = await compiler.run(QUESTION)
    assert len(llm.calls) == 2 and CALLS == {"search": 2, "deeper": 1}
    second = await compiler.run(QUESTION)
    assert len(llm.calls) == 2 and CALLS == {"search": 2, "deeper": 1}
    assert second.text == first.text == "The first one is deeper."
    assert second.rounds[0].cached and second.rounds[0].text == first.rounds[0].text
    assert all(record.cached for record in second.trace.tasks.values())
    assert [span.kind for span in second.trace.spans] == ["cache", "joiner"]
    assert (first.llm_calls, second.llm_calls) == (2, 0)  # the joiner's reply was replayed
    # a fresh compiler over the same file (another process, tomorrow) finds it all too
    again = llmc.Compiler([search, deeper], llm, cache=make_cache(tmp_path))
    assert (await again.run(QUESTION)).text == first.text
    assert len(llm.calls) == 2 and CALLS == {"search": 2, "deeper": 1}


async def test_a_second_identical_run_over_http_sends_no_request(tmp_path: Path) -> None:
    with ScriptedOpenAIServer(lambda body: script(body["messages"])) as server:
        llm = llmc.OpenAI("scripted", base_url=server.base_url, api_key="sk-secret-test")
        cache = make_cache(tmp_path, plans=False)  # the LLM cache alone replays both calls
        compiler = llmc.Compiler([search, deeper], llm, cache=cache)
        first = await compiler.run(QUESTION)
        sent = len(server.chat_requests())
        second = await compiler.run(QUESTION)
        assert len(server.chat_requests()) == sent == 2
    assert second.text == first.text and CALLS == {"search": 2, "deeper": 1}
    assert [span.kind for span in second.trace.spans] == ["planner", "joiner"]
    assert cache.stats.hits["llm"] == 2
    with sqlite3.connect(tmp_path / "cache.sqlite3") as db:  # keys are hashes; no secret
        rows = db.execute("SELECT namespace, key, value FROM entries").fetchall()
    assert rows and all(len(key) == 64 and int(key, 16) >= 0 for _, key, _ in rows)
    assert not any(b"sk-secret-test" in bytes(value) for _, _, value in rows)


async def test_a_paraphrase_reuses_the_plan_and_near_misses_do_not(tmp_path: Path) -> None:
    llm = ScriptedLLM(script)
    cache = make_cache(tmp_path, embedder=HashingEmbedder(), threshold=0.6)
    compiler = llmc.Compiler([search, deeper], llm, cache=cache)
    await compiler.run("Is the Mariana Trench deeper than the Puerto Rico Trench?")
    planner_calls = len(llm.calls)
    paraphrase = await compiler.run("Is the Mariana Trench any deeper than the Puerto Rico Trench?")
    assert paraphrase.rounds[0].cached and len(llm.calls) == planner_calls + 1  # the joiner
    assert paraphrase.results[0].outputs == {1: "10994 m", 2: "8376 m", 3: "first"}
    for near_miss in (
        "Is the Puerto Rico Trench deeper than the Mariana Trench?",  # swapped
        "Is the Mariana Trench deeper than the Java Trench?",  # another entity
        "Is the Mariana Trench not deeper than the Puerto Rico Trench?",  # negated
    ):
        calls = len(llm.calls)
        answer = await compiler.run(near_miss)
        assert not answer.rounds[0].cached, near_miss
        assert len(llm.calls) == calls + 2  # planner and joiner
    assert cache.stats.rejected["plan"] >= 3


async def test_namespaces_isolate_runs(tmp_path: Path) -> None:
    llm = ScriptedLLM(script)
    alice = make_cache(tmp_path, namespace="alice")
    await llmc.Compiler([search, deeper], llm, cache=alice).run(QUESTION)
    calls = len(llm.calls), CALLS["search"]
    bob = alice.with_namespace("bob")
    answer = await llmc.Compiler([search, deeper], llm, cache=bob).run(QUESTION)
    assert not answer.rounds[0].cached
    assert (len(llm.calls), CALLS["search"]) == (calls[0] + 2, calls[1] + 2)


async def test_a_cached_plan_needs_the_same_tools(tmp_path: Path) -> None:
    llm = ScriptedLLM(script)
    cache = make_cache(tmp_path)
    await llmc.Compiler([search, deeper], llm, cache=cache).run(QUESTION)
    renamed = llmc.tool(pure=True, version="2")(deeper.fn)  # a new version: a new scope
    answer = await llmc.Compiler([search, renamed], llm, cache=cache).run(QUESTION)
    assert not answer.rounds[0].cached and answer.rounds[0].text.startswith("Thought")
    planner = llmc.Compiler([search], llm, cache=cache).planner
    assert planner.reread(plan_for("Mariana Trench", "Java Trench")) is None  # deeper is gone
    assert planner.reread('1. search("x")\njoin()') is not None


async def test_a_replanned_answer_does_not_cache_its_first_plan(tmp_path: Path) -> None:
    replies = [
        plan_for("Mariana Trench", "Java Trench"),
        "Action: Replan(need more)",
        '4. search("Puerto Rico Trench")\n5. deeper($1, $4)\njoin()\n<END_OF_PLAN>',
        "Action: Finish(done)",
    ]
    llm = ScriptedLLM(replies)
    cache = make_cache(tmp_path, llm=False)
    await llmc.Compiler([search, deeper], llm, cache=cache).run(QUESTION)
    assert cache.stats.writes["plan"] == 0


# -- LLM calls -------------------------------------------------------------------------------


async def test_cached_llm_replays_chunks_and_bypasses_sampling(tmp_path: Path) -> None:
    inner = ScriptedLLM(lambda messages: "line one\nline two\nend", chunk_size=3)
    cache = make_cache(tmp_path)
    llm = CachedLLM(inner, cache)
    messages: list[Message] = [{"role": "user", "content": "hi"}]
    greedy = GenerateOptions(temperature=0.0, max_tokens=50)
    first = await generate(llm, messages, greedy)
    replayed = [chunk async for chunk in llm.stream(messages, greedy)]
    assert len(inner.calls) == 1 and llm.model == "scripted"
    assert "".join(c.text for c in replayed) == first.text == "line one\nline two\nend"
    assert [c.text for c in replayed] == ["line one\n", "line two\n", "end"]
    assert replayed[-1].usage == Usage() and replayed[-1].finish_reason == first.finish_reason
    await generate(llm, messages, GenerateOptions(temperature=0.0, max_tokens=51))  # other key
    await generate(llm, [*messages, {"role": "user", "content": "more"}], greedy)
    assert len(inner.calls) == 3
    for sampled in (GenerateOptions(temperature=0.7), GenerateOptions(), None):
        await generate(llm, messages, sampled)
        await generate(llm, messages, sampled)
    assert len(inner.calls) == 9  # sampled calls bypass the cache
    opted_in = CachedLLM(inner, make_cache(tmp_path, sampled=True))
    await generate(opted_in, messages, GenerateOptions(temperature=0.7))
    await generate(opted_in, messages, GenerateOptions(temperature=0.7))
    assert len(inner.calls) == 10


async def test_a_stream_left_early_or_failing_stores_nothing(tmp_path: Path) -> None:
    inner = ScriptedLLM(["a long reply in pieces", RuntimeError("down"), "whole"], chunk_size=2)
    cache = make_cache(tmp_path)
    llm = CachedLLM(inner, cache)
    messages: list[Message] = [{"role": "user", "content": "hi"}]
    greedy = GenerateOptions(temperature=0)
    stream = llm.stream(messages, greedy)
    assert (await anext(stream)).text == "a "
    await stream.aclose()  # type: ignore[attr-defined]
    with pytest.raises(RuntimeError):
        await generate(llm, messages, greedy)
    assert (await generate(llm, messages, greedy)).text == "whole"
    assert (await generate(llm, messages, greedy)).text == "whole"
    assert len(inner.calls) == 3 and cache.stats.writes["llm"] == 1


# -- a broken cache never breaks a run -------------------------------------------------------


async def test_a_corrupted_cache_file_is_rebuilt_and_the_run_goes_on(tmp_path: Path) -> None:
    llm = ScriptedLLM(script)
    await llmc.Compiler([search, deeper], llm, cache=make_cache(tmp_path)).run(QUESTION)
    overwrite(tmp_path / "cache.sqlite3")
    with pytest.warns(CacheWarning, match="corrupted"):
        cache = make_cache(tmp_path)
    answer = await llmc.Compiler([search, deeper], llm, cache=cache).run(QUESTION)
    assert answer.text == "The first one is deeper." and not answer.rounds[0].cached
    assert (await llmc.Compiler([search, deeper], llm, cache=cache).run(QUESTION)).rounds[0].cached


def overwrite(path: Path) -> None:
    """Replace a cache file by garbage (and drop its WAL files)."""
    path.write_bytes(b"\x00garbage" * 4096)
    for suffix in ("-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)


class BrokenStore:
    """A store whose every call fails, like an unreachable server."""

    remote = False

    def get(self, namespace: str, key: str) -> Entry | None:
        raise StoreUnavailable("down")

    def put(self, namespace: str, key: str, value: bytes, **kwargs: Any) -> None:
        raise StoreUnavailable("down")

    def delete(self, namespace: str, key: str) -> None:
        raise StoreUnavailable("down")

    def vectors(self, namespace: str, scope: str, after: int) -> VectorBatch:
        raise StoreUnavailable("down")

    def clear(self, namespace: str | None = None) -> None:
        raise StoreUnavailable("down")

    def count(self) -> int:
        raise StoreUnavailable("down")

    def close(self) -> None:
        pass


async def test_a_failing_store_is_a_miss_and_the_run_goes_on() -> None:
    llm = ScriptedLLM(script)
    cache = Cache(BrokenStore(), embedder=HashingEmbedder())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        answer = await llmc.Compiler([search, deeper], llm, cache=cache).run(QUESTION)
    assert answer.text == "The first one is deeper." and len(llm.calls) == 2
    assert cache.stats.errors > 0
    assert all(issubclass(w.category, CacheWarning) for w in caught) and caught


async def test_remote_stores_are_called_off_the_event_loop(tmp_path: Path) -> None:
    threads: set[bool] = set()

    class Remote(BrokenStore):
        remote = True

        def get(self, namespace: str, key: str) -> Entry | None:
            try:
                asyncio.get_running_loop()
                threads.add(False)
            except RuntimeError:
                threads.add(True)
            return None

        def put(self, namespace: str, key: str, value: bytes, **kwargs: Any) -> None:
            return None

    cache = Cache(Remote())
    assert await cache.aget("k") is MISSING
    assert threads == {True}


def test_stream_signature_is_the_llm_protocol() -> None:
    llm = CachedLLM(ScriptedLLM(["x"]), Cache.__new__(Cache))
    assert isinstance(llm, llmc.LLM)
    chunks: AsyncIterator[Chunk] = llm.stream([])
    assert hasattr(chunks, "__anext__")


async def test_entries_never_cross_models(tmp_path: Path) -> None:
    cache = make_cache(tmp_path)
    first, second = ScriptedLLM(script, model="model-a"), ScriptedLLM(script, model="model-b")
    await llmc.Compiler([search, deeper], first, cache=cache).run(QUESTION)
    answer = await llmc.Compiler([search, deeper], second, cache=cache).run(QUESTION)
    assert len(second.calls) == 2 and not answer.rounds[0].cached  # its own plan and reply
    await llmc.Compiler([search, deeper], first, cache=cache).run(QUESTION)
    assert len(first.calls) == 2
