"""The compiler end to end: planner stream -> scheduler -> joiner, with replans.

Most tests go over real HTTP: the unmodified openai client inside llmc.OpenAI talks to a
scripted OpenAI-compatible server on loopback.
"""

from __future__ import annotations

import asyncio
import time

import pytest

import llmc
from llmc import Answered, AnswerText, Compiler, PlanText, Replanning
from llmc.llm import OpenAI
from llmc.testing import ScriptedLLM, ScriptedOpenAIServer
from llmc.trace import TaskStarted

DEPTHS = {"Mariana Trench": "10994 m", "Puerto Rico Trench": "8376 m", "Java Trench": "7290 m"}


@llmc.tool
async def search(query: str) -> str:
    """Search the encyclopedia.

    Args:
        query: a topic, e.g. "Eiffel Tower".
    """
    await asyncio.sleep(0.05)
    return DEPTHS.get(query, f"nothing found for {query!r}")


@llmc.tool
def deeper(a: str, b: str) -> str:
    """Name the deeper of two depths given as text like '8376 m'."""
    return "first" if float(a.split()[0]) > float(b.split()[0]) else "second"


PLAN = """Thought: look both up at once.
1. search("Mariana Trench")
2. search("Puerto Rico Trench")
3. deeper($1, $2)
join()
<END_OF_PLAN>"""
FINISH = "Thought: $3 says the first.\nAction: Finish(The Mariana Trench (10994 m) is deeper.)"


def llm_for(server: ScriptedOpenAIServer, **kwargs: object) -> OpenAI:
    return OpenAI("scripted", base_url=server.base_url, api_key="sk-test", **kwargs)  # type: ignore[arg-type]


async def test_answer_over_http_with_tasks_starting_while_the_plan_streams() -> None:
    with ScriptedOpenAIServer([PLAN, FINISH], chunk_size=6, chunk_delay=0.02) as server:
        compiler = Compiler([search, deeper], llm_for(server))
        answer = await compiler.run("Which trench is deeper?")
    assert answer.text == "The Mariana Trench (10994 m) is deeper."
    assert answer.finished and answer.replans == 0
    assert answer.results[0].outputs == {1: "10994 m", 2: "8376 m", 3: "first"}
    planner = answer.trace.spans[0]
    assert planner.kind == "planner" and planner.finished is not None
    first_start = answer.trace.tasks[1].started
    assert first_start is not None and first_start < planner.finished  # before the plan ended
    assert set(answer.dispatch_delays) == {1, 2}
    assert all(0 <= d < 0.5 for d in answer.dispatch_delays.values())
    assert answer.llm_calls == 2
    assert answer.usage.calls == 2 and answer.usage.completion_tokens > 0
    # the planner call streamed, and the joiner saw every observation
    assert server.requests[0].body["stream"] is True
    joiner_prompt = server.requests[1].body["messages"][1]["content"]
    assert "Observation: 10994 m" in joiner_prompt and "Observation: first" in joiner_prompt


async def test_static_prompt_prefix_is_byte_identical_across_calls() -> None:
    llm = ScriptedLLM([PLAN, FINISH, PLAN, FINISH])
    compiler = Compiler([search, deeper], llm)
    await compiler.run("Which trench is deeper?")
    await compiler.run("Is the Java Trench deeper than the Puerto Rico Trench?")
    first, second = llm.calls[0].messages[0], llm.calls[2].messages[0]
    assert first == second and first["role"] == "system"
    assert "search(query: str) -> str  # Search the encyclopedia." in first["content"]


async def test_replan_continues_numbering_and_reuses_outputs() -> None:
    replan = "Thought: I lack the Java Trench.\nAction: Replan(look up the Java Trench)"
    second_plan = '4. search("Java Trench")\n5. deeper($1, $4)\njoin()'
    finish = "Action: Finish(Mariana)"
    llm = ScriptedLLM([PLAN, replan, second_plan, finish])
    events: list[object] = []
    answer = await Compiler([search, deeper], llm).run("Deepest?", on_event=events.append)
    assert answer.text == "Mariana" and answer.replans == 1
    assert [t.id for t in answer.plan] == [1, 2, 3, 4, 5]
    assert answer.results[1].outputs == {4: "7290 m", 5: "first"}  # $1 came from plan 1
    assert [r.reason for r in answer.rounds] == ["look up the Java Trench", None]
    replanner = llm.calls[2].messages[1]["content"]
    assert "look up the Java Trench" in replanner and "Number new tasks from 4" in replanner
    assert "Observation: 10994 m" in replanner
    assert any(isinstance(e, Replanning) and e.round == 2 for e in events)
    started = [e.task_id for e in events if isinstance(e, TaskStarted)]
    assert sorted(started) == [1, 2, 3, 4, 5]  # nothing ran twice


async def test_max_replans_then_the_joiner_must_answer() -> None:
    replan = "Action: Replan(need more)"
    llm = ScriptedLLM([PLAN, replan, '4. search("x")\njoin()', "Action: Replan(still)"])
    answer = await Compiler([search, deeper], llm, max_replans=1).run("?")
    assert not answer.finished and answer.text == "still"
    assert "No new plan is possible" in llm.calls[-1].messages[1]["content"]


async def test_one_repair_round_then_continue() -> None:
    broken = '1. search("Mariana Trench")\n2. search(Puerto Rico Trench)\njoin()'
    repaired = '2. search("Puerto Rico Trench")\n3. deeper($1, $2)\njoin()'
    llm = ScriptedLLM([broken, repaired, FINISH])
    answer = await Compiler([search, deeper], llm).run("Which is deeper?")
    assert answer.results[0].outputs[3] == "first"
    repair = llm.calls[1].messages[-1]["content"]
    assert "line 2, column 11" in repair and "Tasks 1 were accepted" in repair
    assert "numbering tasks from 2" in repair
    assert [s.label for s in answer.trace.spans] == ["plan 1", "repair 1", "join 1"]


async def test_a_second_parse_failure_is_a_clear_plan_error() -> None:
    llm = ScriptedLLM(["1. search(oops)\n", "1. search(still oops)\n"])
    with pytest.raises(llmc.PlanError, match="even after a repair round") as info:
        await Compiler([search], llm).run("?")
    assert info.value.line == 1


async def test_unknown_tool_is_repaired_too() -> None:
    llm = ScriptedLLM(
        ['1. lookup("x")\njoin()', '1. search("Java Trench")\njoin()', "Finish(7290 m)"]
    )
    answer = await Compiler([search], llm).run("?")
    assert answer.text == "7290 m"
    assert "unknown tool 'lookup'" in llm.calls[1].messages[-1]["content"]


async def test_stream_yields_plan_text_task_events_and_answer_text() -> None:
    llm = ScriptedLLM([PLAN, FINISH], chunk_size=4)
    kinds: list[type] = []
    answer_text = ""
    async for event in Compiler([search, deeper], llm).stream("Which is deeper?"):
        kinds.append(type(event))
        if isinstance(event, AnswerText):
            answer_text += event.text
        if isinstance(event, Answered):
            final = event.answer
    assert kinds[-1] is Answered and PlanText in kinds and TaskStarted in kinds
    assert answer_text.strip() == final.text


async def test_rate_limited_then_served(monkeypatch: pytest.MonkeyPatch) -> None:
    with ScriptedOpenAIServer([PLAN, FINISH]) as server:
        server.fail(429, retry_after=0.3)
        started = time.perf_counter()
        answer = await Compiler([search, deeper], llm_for(server)).run("?")
    assert time.perf_counter() - started >= 0.3
    assert answer.finished and len(server.requests) == 3


async def test_stream_breaking_off_is_an_llm_error_and_nothing_is_left_running() -> None:
    before = set(asyncio.all_tasks())
    with ScriptedOpenAIServer([PLAN]) as server:
        server.break_stream(after_chunks=3)
        with pytest.raises(llmc.LLMConnectionError, match="broke off"):
            await Compiler([search, deeper], llm_for(server, max_retries=0)).run("?")
    assert set(asyncio.all_tasks()) - before == set()


async def test_server_down_is_a_clear_error() -> None:
    llm = OpenAI("m", base_url="http://127.0.0.1:9/v1", max_retries=0, connect_timeout=1)
    with pytest.raises(llmc.LLMConnectionError, match=r"127\.0\.0\.1:9"):
        await Compiler([search], llm).run("?")


async def test_json_planner_dispatches_each_task_object() -> None:
    plan = (
        '{"tasks": [{"id": 1, "tool": "search", "args": ["Mariana Trench"]},'
        ' {"id": 2, "tool": "search", "args": ["Puerto Rico Trench"]},'
        ' {"id": 3, "tool": "deeper", "args": [{"$ref": 1}, {"$ref": 2}]}]}'
    )
    decision = '{"thought": "compare", "action": "finish", "text": "Mariana (deeper)"}'
    with ScriptedOpenAIServer([plan, decision], chunk_size=10, chunk_delay=0.01) as server:
        answer = await Compiler([search, deeper], llm_for(server), json=True).run("?")
        formats = [r.body.get("response_format") for r in server.requests]
    assert answer.text == "Mariana (deeper)"
    assert answer.results[0].outputs[3] == "first"
    assert formats[0]["type"] == "json_schema" and formats[1]["type"] == "json_schema"
    started, finished = answer.trace.tasks[1].started, answer.trace.spans[0].finished
    assert started is not None and finished is not None and started < finished


def test_no_llm_configured_says_how_to_configure(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OPENAI_MODEL", "OPENAI_BASE_URL", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr("llmc.llm.default._local_available", lambda: False)  # not installed
    with pytest.raises(llmc.LLMError, match=r"pip install -e \"\.\[local\]\".*OPENAI_BASE_URL"):
        Compiler([search])


def test_configured_endpoint_wins_over_the_local_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_MODEL", "some-model")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    compiler = Compiler([search])
    assert isinstance(compiler.llm, OpenAI) and compiler.llm.model == "some-model"
    assert compiler.llm.base_url == "http://127.0.0.1:9/v1"


async def test_backends_that_take_grammars_get_the_plan_and_joiner_grammars() -> None:
    llm = ScriptedLLM([PLAN, FINISH])
    llm.supports_grammar = True  # type: ignore[attr-defined]  # as llmc.llm.Local declares
    await Compiler([search, deeper], llm).run("Which is deeper?")
    planner_grammar, joiner_grammar = (call.options.grammar for call in llm.calls)
    assert planner_grammar is not None and '"search("' in planner_grammar
    assert joiner_grammar is not None and "Finish" in joiner_grammar
    plain = ScriptedLLM([PLAN, FINISH])
    await Compiler([search, deeper], plain).run("Which is deeper?")
    assert [call.options.grammar for call in plain.calls] == [None, None]


async def test_replan_over_http() -> None:
    replan = "Thought: I lack the Java Trench.\nAction: Replan(look up the Java Trench)"
    second_plan = '4. search("Java Trench")\n5. deeper($1, $4)\njoin()'
    script = [PLAN, replan, second_plan, "Action: Finish(the Mariana Trench)"]
    with ScriptedOpenAIServer(script, chunk_size=9) as server:
        answer = await Compiler([search, deeper], llm_for(server)).run("Deepest of three?")
        bodies = [request.body for request in server.requests]
    assert answer.text == "the Mariana Trench" and answer.replans == 1
    assert answer.results[1].outputs == {4: "7290 m", 5: "first"}
    replanner = bodies[2]["messages"][1]["content"]
    assert "look up the Java Trench" in replanner and "Observation: 10994 m" in replanner
    assert bodies[0]["messages"][0] == bodies[2]["messages"][0]  # the same static prefix
