"""The benchmark simulator (benchmarks/sim): SSE streaming, usage, tool calls, latency, and the
workload policy answering each framework's request shape. Runs without the peer frameworks."""

from __future__ import annotations

import dataclasses
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import openai
import pytest

import llmc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.chart import render_chart
from benchmarks.compare import main as compare_main
from benchmarks.sim import (
    PROFILES,
    GoldTask,
    Policy,
    PolicyError,
    Profile,
    Question,
    Simulator,
    World,
    load_workload,
)
from benchmarks.sim.tokens import chars_tokenizer, prompt_tokens
from benchmarks.sim.workloads import DATA, SAMPLE, entities

INSTANT = PROFILES["instant"]
# ParallelQA's shape, k = 2: two searches, a computation on each, one combination.
PQA = Question(
    "pqa",
    "If the Mariana Trench were 20% shallower, which trench would be deeper?",
    (
        GoldTask(1, "search", "Mariana Trench"),
        GoldTask(2, "search", "Puerto Rico Trench"),
        GoldTask(3, "math", "Mariana depth * 0.8", (1,)),
        GoldTask(4, "math", "Puerto Rico depth", (2,)),
        GoldTask(5, "math", "max of both", (3, 4)),
    ),
    "Puerto Rico Trench",
)
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": name,
            "description": "a tool",
            "parameters": {"type": "object", "properties": {key: {"type": "string"}}},
        },
    }
    for name, key in (("search", "query"), ("math", "problem"))
]


def fast_world() -> World:
    """Tools a hundred times faster than configured, so tests stay short."""
    return World(time_scale=0.01)


def post(sim: Simulator, body: dict[str, Any], tag: str = "") -> tuple[int, bytes]:
    connection = http.client.HTTPConnection(sim.host, sim.port, timeout=10)
    prefix = f"/t/{tag}" if tag else ""
    connection.request("POST", f"{prefix}/v1/chat/completions", json.dumps(body))
    response = connection.getresponse()
    data = response.read()
    connection.close()
    return response.status, data


def events(data: bytes) -> list[Any]:
    """The JSON events of an SSE body (``[DONE]`` as the string)."""
    found = []
    for line in data.decode().splitlines():
        if line.startswith("data: "):
            payload = line[len("data: ") :]
            found.append(payload if payload == "[DONE]" else json.loads(payload))
    return found


def planner_body(system: str, stream: bool = True) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": system},
            {"role": "user", "content": f"Question: {PQA.text}"},
        ],
        "stream": stream,
    }
    if stream:
        body["stream_options"] = {"include_usage": True}
    return body


LLMC_SYSTEM = (
    "Given a user question, create a plan.\n1. search(query: str)\nEnd with <END_OF_PLAN>."
)
LLAMAINDEX_SYSTEM = (
    "Given a user query, create a plan to solve it with the utmost parallelizability.\n"
    "1. Tool Name: search\nTool Description: ...\n"
    "Say '<END_OF_PLAN>' after you call join"
)


# -- the HTTP server -------------------------------------------------------------------------


def test_streams_text_as_sse_with_usage_counted_from_the_request() -> None:
    body = planner_body(LLMC_SYSTEM)
    with Simulator(Policy([PQA], fast_world()), INSTANT) as sim:
        status, data = post(sim, body, tag="run-1")
        call = sim.calls_of("run-1")[0]
    assert status == 200
    found = events(data)
    assert found[-1] == "[DONE]"
    chunks = [e for e in found[:-1] if e["choices"]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert text.startswith('1. search("Mariana Trench")\n') and text.endswith("<END_OF_PLAN>")
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    usage = found[-2]["usage"]
    assert found[-2]["choices"] == []
    assert usage["prompt_tokens"] == prompt_tokens(body, chars_tokenizer()) == call.prompt_tokens
    assert usage["completion_tokens"] == (len(text) + 3) // 4 == call.completion_tokens
    assert (call.framework, call.role, call.question) == ("llmc", "planner", "pqa")


def test_stop_strings_cut_the_reply_and_no_usage_unless_asked() -> None:
    body = planner_body(LLMC_SYSTEM)
    body["stop"] = ["<END_OF_PLAN>"]
    del body["stream_options"]
    with Simulator(Policy([PQA], fast_world()), INSTANT) as sim:
        _, data = post(sim, body)
    found = events(data)
    assert all("usage" not in e for e in found[:-1])
    text = "".join(e["choices"][0]["delta"].get("content") or "" for e in found[:-1])
    assert text.endswith("join()\n") and "<END_OF_PLAN>" not in text


def test_tool_calls_stream_as_the_openai_api_streams_them() -> None:
    body: dict[str, Any] = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": PQA.text}],
        "tools": TOOLS,
        "stream": True,
    }
    with Simulator(Policy([PQA], fast_world()), INSTANT) as sim:
        client = openai.OpenAI(base_url=sim.base_url(), api_key="x", max_retries=0)
        stream = client.chat.completions.create(**body)
        calls: dict[int, dict[str, str]] = {}
        finish = None
        for chunk in stream:
            for choice in chunk.choices:
                finish = choice.finish_reason or finish
                for item in choice.delta.tool_calls or ():
                    call = calls.setdefault(item.index, {"id": "", "name": "", "arguments": ""})
                    if item.id:
                        assert not call["id"], "the id comes once, in the call's first piece"
                        call["id"] = item.id
                        call["name"] = item.function.name
                    call["arguments"] += item.function.arguments or ""
        client.close()
    assert finish == "tool_calls"
    assert [c["name"] for c in calls.values()] == ["search", "search"]  # both ready: parallel
    assert [json.loads(c["arguments"]) for c in calls.values()] == [
        {"query": "Mariana Trench"},
        {"query": "Puerto Rico Trench"},
    ]
    assert all(re.match(r"call_t[12]_", c["id"]) for c in calls.values())


def test_a_reply_without_streaming_is_one_completion_with_usage() -> None:
    body = {
        "messages": [{"role": "user", "content": PQA.text}],
        "tools": TOOLS,
        "parallel_tool_calls": False,
    }
    with Simulator(Policy([PQA], fast_world()), INSTANT) as sim:
        status, data = post(sim, body)
    reply = json.loads(data)
    assert status == 200
    message = reply["choices"][0]["message"]
    assert reply["choices"][0]["finish_reason"] == "tool_calls"
    assert len(message["tool_calls"]) == 1  # parallel tool calls off: one per turn
    assert reply["usage"]["prompt_tokens"] == prompt_tokens(body, chars_tokenizer())
    assert reply["usage"]["completion_tokens"] > 0


def test_latency_follows_the_profile() -> None:
    profile = Profile("test", 0.2, 10_000, 100.0, 1.0, 2.0, "gpt-4o-mini")
    body = planner_body(LLMC_SYSTEM)
    with Simulator(Policy([PQA], fast_world()), profile) as sim:
        client = openai.OpenAI(base_url=sim.base_url(), api_key="x", max_retries=0)
        start = time.perf_counter()
        first = None
        for chunk in client.chat.completions.create(**body):
            if first is None and chunk.choices and chunk.choices[0].delta.content:
                first = time.perf_counter() - start
        total = time.perf_counter() - start
        client.close()
        call = sim.calls[0]
    expected_first = 0.2 + call.prompt_tokens / 10_000
    expected_total = expected_first + (call.completion_tokens - 1) / 100.0
    assert first is not None
    assert expected_first - 0.01 <= first <= expected_first + 0.25
    assert expected_total - 0.01 <= total <= expected_total + 0.35
    assert profile.cost(1_000_000, 1_000_000) == 3.0


def test_jitter_changes_latency_but_not_the_reply() -> None:
    body = planner_body(LLMC_SYSTEM, stream=False)
    profile = Profile("test", 0.05, 1e9, 1e6, 1.0, 1.0, "gpt-4o-mini")
    with Simulator(Policy([PQA], fast_world()), profile, jitter=0.5, seed=3) as sim:
        replies = [post(sim, body)[1] for _ in range(4)]
        waits = [c.finished - c.arrived for c in sim.calls]
    texts = {json.loads(r)["choices"][0]["message"]["content"] for r in replies}
    assert len(texts) == 1
    assert max(waits) - min(waits) > 0.005


def test_an_unrecognised_request_is_answered_400_and_recorded() -> None:
    body = {"messages": [{"role": "user", "content": PQA.text}]}
    with Simulator(Policy([PQA], fast_world()), INSTANT) as sim:
        status, data = post(sim, body, tag="bad")
        unknown, _ = post(sim, {"messages": [{"role": "user", "content": "hello"}]}, tag="bad")
        calls = sim.calls_of("bad")
    assert status == unknown == 400
    assert "cannot tell which framework" in json.loads(data)["error"]["message"]
    assert [c.error is not None for c in calls] == [True, True]


# -- the policy ------------------------------------------------------------------------------


def test_the_question_is_the_one_quoted_last() -> None:
    other = Question(
        "other", "Which magazine was started first?", (GoldTask(1, "search", "x"),), "y"
    )
    policy = Policy([PQA, other], World())
    messages = [{"role": "user", "content": f"Example: {PQA.text}\nQuestion: {other.text}"}]
    assert policy.question_of(messages) is other
    with pytest.raises(PolicyError):
        policy.question_of([{"role": "system", "content": PQA.text}])  # system text is ignored


def test_llamaindex_plan_is_what_the_llmcompiler_parser_reads() -> None:
    plan = Policy([PQA], World()).reply(planner_body(LLAMAINDEX_SYSTEM)).text or ""
    # The pack's own patterns (llama_index.packs.agents_llm_compiler.output_parser).
    action = r"\n*(\d+)\. (\w+)\((.*)\)(\s*#\w+\n)?"
    matches = re.findall(rf"(?:Thought: ([^\n]*)\n)?{action}", plan)
    parsed = [(int(idx), tool, args) for _, idx, tool, args, _ in matches]
    assert [tool for _, tool, _ in parsed] == ["search", "search", "math", "math", "math", "join"]
    deps = {idx: {int(n) for n in re.findall(r"\$\{?(\d+)\}?", args)} for idx, _, args in parsed}
    assert deps[3] == {1} and deps[5] == {3, 4}
    assert parsed[0][2] == '"Mariana Trench"'
    assert plan.endswith("6. join()<END_OF_PLAN>")


def test_joiners_answer_in_their_format_only_with_the_results_in_the_prompt() -> None:
    world = World()
    policy = Policy([PQA], world)
    observed = "\n".join(f"Observation: {world.fact(t.tool, t.key)}" for t in PQA.tasks)
    llmc_body = {
        "messages": [
            {"role": "system", "content": "Action: Finish(<answer>) or Replan(<missing>)"},
            {"role": "user", "content": f"Question: {PQA.text}\n{observed}"},
        ]
    }
    reply = policy.reply(llmc_body)
    assert (reply.framework, reply.role, reply.complete) == ("llmc", "joiner", True)
    assert reply.text == f"Finish({PQA.answer})"  # no thought asked for: the action alone
    llmc_body["messages"][0]["content"] = (
        "Reply with one `Thought:` line, then exactly one `Action:` line: Finish(...), Replan(...)"
    )
    reply = policy.reply(llmc_body)
    assert reply.text and reply.text.startswith("Thought: ")
    assert reply.text.endswith(f"\nAction: Finish({PQA.answer})")
    llamaindex_body = {
        "messages": [
            {
                "role": "user",
                "content": "Action can be only one type: (1) finish(answer) ...\n"
                f"Question: {PQA.text}\n\nsearch(x)\nObservation: nothing useful\n",
            }
        ]
    }
    reply = policy.reply(llamaindex_body)
    assert (reply.framework, reply.complete) == ("llamaindex", False)
    assert reply.text and "Action: Replan(" in reply.text


PQA_FINISH = dataclasses.replace(PQA, id="pqa-finish", answer_task=5)


def test_an_llmc_plan_finishes_when_the_prompt_offers_it_and_the_answer_is_an_output() -> None:
    world = World()
    policy = Policy([PQA_FINISH], world)
    offered = LLMC_SYSTEM + "\nfinish(answer): ends the plan with the answer."
    body = planner_body(offered)
    body["messages"][1]["content"] = f"Question: {PQA_FINISH.text}"
    plan = policy.reply(body).text or ""
    assert plan.endswith('\n5. math("max of both", [$3, $4])\nfinish($5)\n<END_OF_PLAN>')
    assert (policy.reply(planner_body(LLMC_SYSTEM)).text or "").endswith("join()\n<END_OF_PLAN>")
    assert world.math_output("max of both") == PQA.answer  # the final computation answers
    with pytest.raises(ValueError, match="same computation"):
        world.answer([dataclasses.replace(PQA_FINISH, answer="something else")])


def test_every_workload_but_movies_ends_in_a_computation_that_answers() -> None:
    for name in ("parallelqa", "chain", "fanout", "diamond", "wide-deep", "movies"):
        workload = load_workload(name, 4)
        world = World()
        world.answer(workload.questions)  # final computations are distinct per question
        for question in workload.questions:
            if name == "movies":
                assert question.answer_task is None
                continue
            assert question.answer_task == question.tasks[-1].id
            assert [t.id for t in question.sinks] == [question.answer_task]


def test_function_calling_agent_turns_follow_the_dag() -> None:
    world = World()
    policy = Policy([PQA], world)

    def turns(parallel: bool) -> list[list[str]]:
        messages: list[dict[str, Any]] = [{"role": "user", "content": PQA.text}]
        seen: list[list[str]] = []
        for _ in range(10):
            body = {"messages": messages, "tools": TOOLS, "parallel_tool_calls": parallel}
            reply = policy.reply(body)
            if not reply.calls:
                assert reply.complete and reply.text and PQA.answer in reply.text
                return seen
            seen.append([c.name for c in reply.calls])
            messages.append(
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": c.id,
                            "type": "function",
                            "function": {"name": c.name, "arguments": c.arguments},
                        }
                        for c in reply.calls
                    ],
                }
            )
            for call in reply.calls:
                key = next(iter(json.loads(call.arguments).values()))
                messages.append(
                    {
                        "role": "tool",
                        "tool_call_id": call.id,
                        "content": world.output(call.name, key),
                    }
                )
        raise AssertionError("the agent never answered")

    assert turns(parallel=True) == [["search", "search"], ["math", "math"], ["math"]]
    assert turns(parallel=False) == [["search"], ["search"], ["math"], ["math"], ["math"]]


def test_a_dependent_call_carries_the_facts_it_read() -> None:
    world = World()
    call = Policy([PQA], world)._call(PQA, PQA.task(3))
    assert json.loads(call.arguments) == {
        "problem": "Mariana depth * 0.8",
        "context": [world.search_fact("Mariana Trench")],
    }


# -- tools and workloads ---------------------------------------------------------------------


async def test_tools_are_deterministic_and_record_their_calls() -> None:
    world = World(seed=1, time_scale=0.01)
    tools = world.functions()
    first = await tools["search"]("Nile")
    assert first == World(seed=1).search_output("Nile") != World(seed=2).search_output("Nile")
    assert world.search_fact("Nile") in first
    assert await tools["math"]("1 + 1", ["a"]) == await tools["math"]("1 + 1")
    batch = await tools["search_batch"]([{"query": "Nile"}, {"query": "Ob"}])
    assert batch == [first, world.search_output("Ob")]
    assert [(c.tool, c.keys) for c in world.reset()] == [
        ("search", ("Nile",)),
        ("math", ("1 + 1",)),
        ("math", ("1 + 1",)),
        ("search_batch", ("Nile", "Ob")),
    ]
    assert world.latency("search", "Nile") == world.latency("search", "Nile")
    world.run = 1
    assert world.batch_latency(["Nile", "Ob"]) >= world.latency("search", "Ob")


def test_latency_distributions_have_the_configured_medians() -> None:
    world = World()
    searches = sorted(world.latency("search", f"q{i}") for i in range(400))
    maths = sorted(world.latency("math", f"p{i}") for i in range(400))
    assert 0.27 < searches[200] < 0.33
    assert 0.0045 < maths[200] < 0.0055


def test_workload_shapes() -> None:
    shapes = {name: load_workload(name, 2) for name in ("chain", "fanout", "diamond", "wide-deep")}
    assert [q.depth for q in shapes["chain"].questions] == [5, 5]
    assert len(shapes["fanout"].questions[0].tasks) == 7
    assert shapes["fanout"].questions[0].depth == 2
    assert shapes["diamond"].questions[0].depth == 3
    assert len(shapes["wide-deep"].questions[0].sinks) == 1
    assert entities("If Mariana Trench was deeper than the Puerto Rico Trench", 3) == [
        "Mariana Trench",
        "Puerto Rico Trench",
        "item 3 of the question",
    ]


@pytest.mark.skipif(not (DATA / "parallelqa_dataset.json").is_file(), reason="no question sets")
def test_question_sets_give_their_shapes() -> None:
    parallelqa = load_workload("parallelqa", 4)
    for question, k in zip(parallelqa.questions, (2, 3, 4, 5), strict=True):
        assert [t.tool for t in question.tasks] == ["search"] * k + ["math"] * (k + 1)
    movies = load_workload("movies", 2)
    assert all(len(q.tasks) == 4 and q.depth == 1 for q in movies.questions)
    assert "movies-0" not in [q.id for q in movies.questions]


# -- llmc end to end, through its real client ------------------------------------------------


@pytest.mark.parametrize("fused", [False, True])
async def test_llmc_answers_through_the_simulator(fused: bool) -> None:
    world = fast_world()
    tools = world.functions()
    search = llmc.tool(pure=True, batch=tools["search_batch"])(tools["search"])
    math = llmc.tool(pure=True)(tools["math"])
    extra = [llmc.fuse(search, (math, "context"))] if fused else []
    async with Simulator(Policy([PQA], world), INSTANT) as sim:
        llm = llmc.OpenAI("gpt-4o-mini", base_url=sim.base_url("e2e"), max_retries=0)
        answer = await llmc.Compiler([search, math], llm, fused=extra).run(PQA.text)
        await llm.aclose()
        calls = sim.calls_of("e2e")
    assert answer.text == PQA.answer
    assert [(c.framework, c.role) for c in calls] == [("llmc", "planner"), ("llmc", "joiner")]
    assert answer.usage.prompt_tokens == sum(c.prompt_tokens for c in calls)
    tools_written = [t.tool for t in answer.rounds[0].tasks]
    expected = ["search_then_math"] * 2 + ["math"] if fused else [t.tool for t in PQA.tasks]
    assert tools_written == expected


async def test_a_finished_plan_answers_through_the_simulator_without_a_joiner() -> None:
    from benchmarks.peers.llmc_compiler import latency_floor

    world = fast_world()
    tools = world.functions()
    async with Simulator(Policy([PQA_FINISH], world), INSTANT) as sim:
        llm = llmc.OpenAI("gpt-4o-mini", base_url=sim.base_url("fin"), max_retries=0)
        compiler = llmc.Compiler([llmc.tool(tools["search"]), llmc.tool(tools["math"])], llm)
        answer = await compiler.run(PQA_FINISH.text)
        await llm.aclose()
        calls = sim.calls_of("fin")
    assert answer.text == PQA.answer and answer.answered_by == "plan"
    assert [(c.framework, c.role) for c in calls] == [("llmc", "planner")]
    floor = latency_floor(answer)
    assert floor is not None and answer.trace.started < floor <= (answer.trace.finished or 0)
    last_tool = max(r.finished or 0 for r in answer.trace.tasks.values())
    assert floor >= last_tool  # every task was needed by the answer here


def test_the_command_writes_tables_json_and_svg(tmp_path: Path, capsys: Any) -> None:
    status = compare_main(
        [
            "--workloads=fanout,chain",
            "--questions=1",
            "--contenders=llmc,llmc-today,llmc-fused",
            "--profile=instant",
            "--time-scale=0.02",
            "--tokenizer=chars",
            f"--out={tmp_path}",
        ]
    )
    printed = capsys.readouterr().out
    assert status == 0
    assert "| llmc (fusion off) |" in printed and "fanout: 6 independent searches" in printed
    report = json.loads((tmp_path / "results.json").read_text())
    assert {s["contender"] for s in report["samples"]} == {"llmc", "llmc-today", "llmc-fused"}
    assert all(s["correct"] for s in report["samples"])
    assert "| llmc (fusion off), as it was |" in printed and "wall / floor" in printed
    by = {(s["contender"], s["workload"]): s for s in report["samples"]}
    assert by["llmc", "fanout"]["answered_by"] == "plan" and by["llmc", "fanout"]["llm_calls"] == 1
    assert by["llmc-today", "fanout"]["answered_by"] == "joiner"
    assert by["llmc-today", "fanout"]["llm_calls"] == 2
    assert all(0 < s["floor"] <= s["wall"] for s in report["samples"])
    fused_fanout = next(
        s for s in report["samples"] if s["contender"] == "llmc-fused" and s["workload"] == "fanout"
    )
    assert fused_fanout["tool_calls"] == 7 and fused_fanout["tool_requests"] < 7  # batched
    svg = (tmp_path / "chart.svg").read_text()
    assert svg.startswith("<svg") and "llmc (fusion on)" in svg


def test_chart_escapes_labels() -> None:
    class Row:
        workload, contender, wall, cost = "w", "a", 1.0, 0.001

    svg = render_chart([Row()], ["w"], ["a"], {"a": "<a & b>"})
    assert "&lt;a &amp; b&gt;" in svg and "<a & b>" not in svg


def test_the_shipped_slice_of_the_question_sets_loads() -> None:
    pqa = load_workload("parallelqa", 12, data=SAMPLE)
    assert len(pqa.questions) == 12
    assert {sum(t.tool == "search" for t in q.tasks) for q in pqa.questions} == {2, 3, 4, 5}
    movies = load_workload("movies", 8, data=SAMPLE)
    assert len(movies.questions) == 8 and movies.questions[0].id == "movies-1"


def test_a_missing_question_set_is_a_clear_error(tmp_path: Path, capsys: Any) -> None:
    status = compare_main(["--workloads=parallelqa", f"--data={tmp_path}", "--questions=1"])
    err = capsys.readouterr().err
    assert status == 2
    assert f"no question set parallelqa_dataset.json in {tmp_path}" in err
    assert "--data DIR" in err and "LLMC_DATA" in err


@pytest.mark.timeout(300)  # beyond the subprocess's own limit
def test_the_smoke_run_works_from_a_fresh_clone_without_the_question_sets(tmp_path: Path) -> None:
    """The documented ``python -m benchmarks --questions 1 --profile instant``, in a copy of
    the repository with nothing beside it, falls back on the shipped slice."""
    repo = Path(__file__).resolve().parents[1]
    clone = tmp_path / "clone"
    for part in ("llmc", "benchmarks", "planners", "tools"):
        shutil.copytree(repo / part, clone / part, ignore=shutil.ignore_patterns("results"))
    env = {k: v for k, v in os.environ.items() if k != "LLMC_DATA"}
    env["PYTHONPATH"] = str(clone)
    command = [sys.executable, "-m", "benchmarks", "--questions", "1", "--profile", "instant"]
    command += ["--workloads", "parallelqa,movies", "--contenders", "llmc", "--time-scale", "0.05"]
    done = subprocess.run(
        command, cwd=clone, env=env, capture_output=True, text=True, timeout=240, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"questions: the slice in {clone / 'benchmarks' / 'data' / 'llmcompiler'}" in done.stdout
    assert "parallelqa:" in done.stdout and "movies:" in done.stdout
