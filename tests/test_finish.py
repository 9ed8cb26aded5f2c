"""Plans that answer themselves: ``finish(...)`` in every form of a plan, and the compiler's
path without a joiner call, with its fallback to the joiner; ``$question`` in arguments."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import llmc
from llmc import AnswerText
from llmc.compiler import Compiler, render_finish
from llmc.grammar import joiner_grammar, plan_grammar
from llmc.joiner import leaf_observations
from llmc.json_plan import JsonPlanParser
from llmc.llm import OpenAI
from llmc.parse import PlanParser
from llmc.plan import Plan
from llmc.task import QUESTION, Finish, Ref, fill_question
from llmc.testing import EventRecorder, ScriptedLLM, ScriptedOpenAIServer
from llmc.trace import TaskFinished

LENGTHS = {"Nile": "6650", "Amazon": "6400"}


@llmc.tool
async def length(river: str) -> str:
    """The length of a river in km.

    Args:
        river: the river's name.
    """
    await asyncio.sleep(0.02)
    return LENGTHS.get(river, "")


@llmc.tool
def longer(a: str, b: str) -> str:
    """Which of two lengths is the larger: 'first' or 'second'."""
    return "first" if float(a) > float(b) else "second"


@llmc.tool
async def slow_note(text: str) -> str:
    """Write a note (slowly)."""
    await asyncio.sleep(0.4)
    return f"noted {text}"


@llmc.tool
def broken(text: str) -> str:
    """Always fails."""
    raise RuntimeError("the service is down")


@llmc.tool
def echo(text: str) -> str:
    """Return the text as it came."""
    return text


TOOLS = [length, longer, slow_note, broken, echo]
PLAN = '1. length("Nile")\n2. length("Amazon")\n3. longer($1, $2)\n'
JOIN_ANSWER = "Thought: the Nile.\nAction: Finish(The Nile, by the joiner)"


# -- the plan language -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "value"),
    [
        ("finish($3)", Ref(3)),
        ('finish("The Nile: $1 km, the Amazon: ${2} km")', "The Nile: $1 km, the Amazon: ${2} km"),
        ("finish('$3 (of two)')<END_OF_PLAN>", "$3 (of two)"),
        ('4. finish("$3")', "$3"),
        ('finish("""two\nlines $1""")', "two\nlines $1"),
        ("finish(r'\\d $1')", "\\d $1"),
    ],
)
def test_finish_ends_a_plan_with_its_answer(line: str, value: object) -> None:
    parser = PlanParser(tools=TOOLS)
    tasks = parser.feed(PLAN + line + "\n1. length('ignored after the end')\n") + parser.close()
    assert [t.id for t in tasks] == [1, 2, 3]
    assert parser.ended and parser.finish == Finish(value)
    assert parser.finish is not None and parser.finish.dependencies <= {1, 2, 3}


def test_a_thought_before_finish_is_kept() -> None:
    plan = Plan.parse(PLAN + "Thought: the comparison says it.\nfinish($3)\n", tools=TOOLS)
    assert plan.finish == Finish(Ref(3), "the comparison says it.")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("finish($4)", "refers to $4, a task that was never defined"),
        ("finish($1, $2)", "finish() takes one answer"),
        ("finish()", "finish() takes one answer"),
        ("finish(answer=$1)", "finish() takes one answer"),
        ("finish(len($1))", "nested call"),
        ("finish($1", "never closed"),
    ],
)
def test_a_bad_finish_is_a_clear_error(line: str, message: str) -> None:
    parser = PlanParser(tools=TOOLS)
    parser.feed(PLAN)
    with pytest.raises(llmc.PlanError, match=re.escape(message)):
        parser.feed(line + "\n")
        parser.close()
    assert parser.finish is None


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=200), max_size=8))
def test_finish_does_not_depend_on_how_the_stream_was_cut(cuts: list[int]) -> None:
    text = PLAN + 'finish("Nile $1, Amazon ${2}: $3")\n<END_OF_PLAN>'
    points = sorted({min(c, len(text)) for c in cuts})
    parser = PlanParser(tools=TOOLS)
    tasks = []
    for start, end in zip([0, *points], [*points, len(text)], strict=True):
        tasks += parser.feed(text[start:end])
    tasks += parser.close()
    assert [t.id for t in tasks] == [1, 2, 3]
    assert parser.finish == Finish("Nile $1, Amazon ${2}: $3")


def test_a_plan_with_finish_round_trips_through_text_and_json() -> None:
    plan = Plan.parse(PLAN + 'finish("longer: $3 ($1 vs $2)")', tools=TOOLS)
    assert plan.to_text().endswith("finish('longer: $3 ($1 vs $2)')\n")
    assert Plan.parse(plan.to_text(), tools=TOOLS) == plan
    assert plan.to_dict()["finish"] == "longer: $3 ($1 vs $2)"
    assert Plan.from_json(plan.to_json(), tools=TOOLS) == plan
    whole = Plan.parse(PLAN + "finish($3)")
    assert whole.to_dict()["finish"] == {"$ref": 3}
    assert Plan.from_json(whole.to_json()) == whole
    assert Plan.parse(PLAN) != whole  # a plan without its answer is another plan


def test_json_plans_carry_finish_and_check_it() -> None:
    text = '{"tasks": [{"id": 1, "tool": "length", "args": ["Nile"]}], "finish": "Nile: $1 km"}'
    parser = JsonPlanParser(tools=TOOLS)
    assert [t.id for t in parser.feed(text)] == [1]
    parser.close()
    assert parser.finish == Finish("Nile: $1 km")
    bad = JsonPlanParser(tools=TOOLS)
    bad.feed('{"tasks": [{"id": 1, "tool": "length", "args": ["Nile"]}], "finish": {"$ref": 2}}')
    with pytest.raises(llmc.PlanError, match="refers to \\$2"):
        bad.close()
    with pytest.raises(llmc.PlanError, match="refers to \\$5"):
        Plan.from_json('{"tasks": [], "finish": "$5"}')


def test_the_plan_grammar_offers_finish_after_every_task() -> None:
    grammar = plan_grammar([length, longer], max_tasks=3)
    for level in (1, 2, 3):
        assert f'end-{level} ::= "join()\\n<END_OF_PLAN>" | "finish("' in grammar
        assert f"(str-{level} | ref-{level})" in grammar
    assert "task-3 ::= " in grammar and grammar.count("end-3") == 2  # defined and used
    assert "finish(" not in plan_grammar([length], finish=False)


# -- $question ---------------------------------------------------------------------------


def test_question_is_a_value_and_a_placeholder() -> None:
    parser = PlanParser(tools=TOOLS)
    tasks = parser.feed(
        '1. echo($question)\n2. echo("about ${question}: $1")\n3. echo(${question})\n'
        "4. echo('$$question is literal')\n5. echo(['$question'])\n"
    )
    assert [t.args[0] for t in tasks] == [
        QUESTION,
        "about ${question}: $1",
        QUESTION,
        "$$question is literal",
        ["$question"],
    ]
    assert tasks[0].dependencies == frozenset() and tasks[1].dependencies == {1}
    with pytest.raises(llmc.PlanSyntaxError, match="or by 'question'"):
        PlanParser(tools=TOOLS).feed("1. echo($questions)\n")


@given(st.text(max_size=30))
def test_fill_question_writes_the_question_as_it_is(question: str) -> None:
    from llmc.scheduler import resolve_references

    value = ["$question", {"q": "ask ${question} now"}, "$$question", 3]
    filled = resolve_references(fill_question(value, question), {})
    assert filled == [question, {"q": f"ask {question} now"}, "$question", 3]
    assert fill_question(["no placeholder", 1], question) == ["no placeholder", 1]


# -- the compiler ------------------------------------------------------------------------


def llm_for(server: ScriptedOpenAIServer) -> OpenAI:
    return OpenAI("scripted", base_url=server.base_url, api_key="sk-test")


async def test_a_plan_that_finishes_answers_without_a_joiner_call() -> None:
    plan = PLAN + 'finish("The Nile is longer: $1 km against $2 km ($3)")\n<END_OF_PLAN>'
    events = EventRecorder()
    with ScriptedOpenAIServer([plan], chunk_size=7) as server:
        answer = await Compiler(TOOLS, llm_for(server)).run("Nile or Amazon?", on_event=events)
        assert len(server.requests) == 1  # the planner only
    assert answer.text == "The Nile is longer: 6650 km against 6400 km (first)"
    assert answer.finished and answer.answered_by == "plan" and answer.llm_calls == 1
    assert "joiner" not in answer.usage_by_node and answer.usage.calls == 1
    assert [s.kind for s in answer.trace.spans] == ["planner", "finish"]
    texts = events.of_type(AnswerText)
    assert [(e.text, e.by) for e in texts] == [(answer.text, "plan")]
    assert answer.rounds[0].finish == Finish("The Nile is longer: $1 km against $2 km ($3)")
    assert "finish" in answer.plan.to_svg() or answer.trace.to_svg()  # drawable


async def test_the_answer_is_emitted_when_its_outputs_are_done_not_when_the_run_ends() -> None:
    plan = '1. length("Nile")\n2. slow_note("n")\nfinish("$1 km")\n'
    events = EventRecorder()
    answer = await Compiler(TOOLS, ScriptedLLM([plan])).run("How long?", on_event=events)
    assert answer.text == "6650 km" and answer.answered_by == "plan"
    emitted = events.of_type(AnswerText)[0].time
    note = answer.trace.tasks[2]
    assert note.finished is not None and emitted < note.finished  # the slow task still ran
    assert answer.results[0].outputs[2] == "noted n"


@pytest.mark.parametrize(
    ("plan", "why"),
    [
        ('1. broken("x")\nfinish($1)\n', "a failed task"),
        ('1. length("Danube")\nfinish("$1 km")\n', "an empty output"),
        ('1. length("Nile")\n2. broken($1)\n3. echo($2)\nfinish($3)\n', "a skipped task"),
    ],
)
async def test_the_joiner_answers_when_the_plan_cannot(plan: str, why: str) -> None:
    llm = ScriptedLLM([plan, JOIN_ANSWER])
    events = EventRecorder()
    answer = await Compiler(TOOLS, llm).run("Nile or Amazon?", on_event=events)
    assert answer.text == "The Nile, by the joiner", why
    assert answer.answered_by == "joiner" and len(llm.calls) == 2
    assert all(e.by == "joiner" for e in events.of_type(AnswerText))
    assert "finish" not in [s.kind for s in answer.trace.spans]


async def test_an_answer_made_from_an_error_goes_to_the_joiner() -> None:
    llm = ScriptedLLM(['1. broken("x")\n2. echo("from $1")\nfinish($2)\n', JOIN_ANSWER])
    compiler = Compiler(TOOLS, llm, errors_as_observations=True)
    answer = await compiler.run("Nile or Amazon?")
    assert answer.results[0].outputs[2].startswith("from Error: RuntimeError")  # echo ran
    assert answer.answered_by == "joiner" and answer.text == "The Nile, by the joiner"


async def test_the_joiner_may_replan_after_a_finish_that_failed() -> None:
    replan = "Action: Replan(the service was down)"
    second = '2. length("Nile")\nfinish("$2 km")\n'
    llm = ScriptedLLM(['1. broken("x")\nfinish($1)\n', replan, second])
    answer = await Compiler(TOOLS, llm).run("How long is the Nile?")
    assert answer.text == "6650 km" and answer.replans == 1 and answer.answered_by == "plan"
    assert [r.answered_by for r in answer.rounds] == [None, "plan"]


async def test_plan_answers_off_leaves_the_answer_to_the_joiner() -> None:
    llm = ScriptedLLM([PLAN + "finish($3)\n", JOIN_ANSWER])
    answer = await Compiler(TOOLS, llm, plan_answers=False).run("Nile or Amazon?")
    assert answer.text == "The Nile, by the joiner" and answer.answered_by == "joiner"
    assert "longer($1, $2)" in llm.calls[1].messages[1]["content"]


async def test_question_reaches_the_tools_and_stays_short_in_prompts() -> None:
    question = "What does $5 buy?"
    plan = '1. echo($question)\n2. echo("Q: ${question}")\nfinish("$1 | $2 | $question")\n'
    llm = ScriptedLLM([plan])
    events = EventRecorder()
    answer = await Compiler(TOOLS, llm).run(question, on_event=events)
    assert answer.results[0].outputs == {1: question, 2: f"Q: {question}"}
    assert answer.text == f"{question} | Q: {question} | {question}"
    assert answer.rounds[0].tasks[0].args == (QUESTION,)  # the planner's task, for prompts
    assert [e.task_id for e in events.of_type(TaskFinished)] == [1, 2]


async def test_json_plans_answer_themselves_too() -> None:
    plan = (
        '{"tasks": [{"id": 1, "tool": "length", "args": ["Nile"]}, '
        '{"id": 2, "tool": "length", "args": ["Amazon"]}], "finish": "$1 vs $2"}'
    )
    llm = ScriptedLLM([plan])
    answer = await Compiler(TOOLS, llm, json=True).run("Nile or Amazon?")
    assert answer.text == "6650 vs 6400" and answer.answered_by == "plan"


def test_render_finish_refuses_what_cannot_stand() -> None:
    assert render_finish(Finish(Ref(1)), {1: ["a", 1]}) == '["a", 1]'
    assert render_finish(Finish("x $1"), {}) is None
    assert render_finish(Finish(Ref(1)), {1: None}) is None
    assert render_finish(Finish(Ref(1)), {1: "  "}) is None
    assert render_finish(Finish("  "), {}) is None
    assert render_finish(Finish("cost $$5 for $question"), {}, "you") == "cost $5 for you"


# -- the joiner's observations and its short reply ---------------------------------------

SEARCH_TEXT = "The Nile is a river in Africa; " * 20


def test_leaf_observations_shorten_only_what_a_later_task_used() -> None:
    tasks = [
        llmc.Task(1, "length", ("Nile",)),
        llmc.Task(2, "length", ("Amazon",)),
        llmc.Task(3, "longer", (Ref(1), "$2")),
        llmc.Task(4, "echo", ("unrelated",)),
    ]
    observations = {1: SEARCH_TEXT, 2: "6400", 3: "first", 4: SEARCH_TEXT}
    shown = leaf_observations(tasks, observations)
    assert shown[2] == "6400" and shown[3] == "first" and shown[4] == SEARCH_TEXT
    assert shown[1].startswith("The Nile is a river") and shown[1].endswith("read by $3)")
    assert len(shown[1]) < 160 and f"{len(SEARCH_TEXT)} characters" in shown[1]


@given(st.dictionaries(st.integers(1, 6), st.text(max_size=400), min_size=1))
def test_leaves_are_always_whole_and_nothing_is_lost(observations: dict[int, str]) -> None:
    ids = sorted(observations)
    tasks = [llmc.Task(i, "echo", (Ref(ids[0]),) if i != ids[0] else ("x",)) for i in ids]
    shown = leaf_observations(tasks, observations)
    assert shown.keys() == observations.keys()
    for i in ids[1:]:
        assert shown[i] == observations[i]  # nothing reads them: whole
    first = shown[ids[0]]
    assert first == observations[ids[0]] or len(first) < len(observations[ids[0]])


async def test_the_joiner_sees_leaves_whole_and_consumed_outputs_short() -> None:
    @llmc.tool
    def lookup(topic: str) -> str:
        """Look a topic up."""
        return SEARCH_TEXT

    plan = '1. lookup("Nile")\n2. echo("summary of $1")\n3. lookup("Amazon")\njoin()\n'
    for mode, whole in (("leaves", 1), ("all", 2)):
        llm = ScriptedLLM([plan, "Finish(done)"])
        answer = await Compiler(
            [lookup, echo],
            llm,
            joiner_observations=mode,  # type: ignore[arg-type]
        ).run("?")
        prompt = llm.calls[1].messages[1]["content"]
        assert answer.text == "done" and answer.answered_by == "joiner"
        assert (
            prompt.count(SEARCH_TEXT.strip()) == whole + 1
        )  # task 3 whole; $2 holds task 1's text
    with pytest.raises(ValueError, match="'leaves' or 'all'"):
        Compiler([echo], ScriptedLLM([]), joiner_observations="some")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "reply",
    ["Finish(6650 km)", "Action: Finish(6650 km)", "Thought: easy.\nAction: Finish(6650 km)"],
)
async def test_the_joiner_reads_a_reply_with_or_without_a_thought(reply: str) -> None:
    events = EventRecorder()
    llm = ScriptedLLM(['1. length("Nile")\njoin()\n', reply], chunk_size=3)
    answer = await Compiler(TOOLS, llm).run("How long is the Nile?", on_event=events)
    assert answer.text == "6650 km"
    assert "".join(e.text for e in events.of_type(AnswerText)) == "6650 km"
    assert "A `Thought: ...` line before it is allowed" in llm.calls[1].messages[0]["content"]


def test_the_joiner_grammar_makes_the_thought_optional() -> None:
    assert joiner_grammar().startswith('root ::= ("Thought: " ')
    assert joiner_grammar(thought=False).startswith('root ::= "Action: "? action')


async def test_a_cached_plan_answers_itself_again_with_no_llm_call(tmp_path: Path) -> None:
    cache = llmc.Cache(tmp_path / "cache.sqlite3", llm=False)
    plan = PLAN + 'finish("$1 km against $2 km")\n'
    llm = ScriptedLLM([plan])
    first = await Compiler(TOOLS, llm, cache=cache).run("Nile or Amazon?")
    again = await Compiler(TOOLS, llm, cache=cache).run("Nile or Amazon?")
    assert first.text == again.text == "6650 km against 6400 km"
    assert again.answered_by == "plan" and again.rounds[0].cached and again.llm_calls == 0
    assert len(llm.calls) == 1
