"""llmc.grammar: the GBNF grammars of plans and joiner replies.

Three levels: the grammar text itself; llama.cpp's own grammar engine (does it load, and
which texts does it admit, token by token); and plans the real local model writes under it,
which must all parse with ``PlanParser(tools=...)`` and call only real tools with arguments
of the right types.
"""

from __future__ import annotations

import ctypes
from pathlib import Path
from typing import Any, Literal

import pydantic
import pytest

import llmc
from llmc.grammar import DEFAULT_MAX_TASKS, joiner_grammar, plan_grammar
from llmc.joiner import Joiner, parse_decision
from llmc.llm import GenerateOptions, Local, generate
from llmc.parse import END_OF_PLAN, PlanParser
from llmc.planner import Planner
from llmc.task import Ref, Task

REPO = Path(__file__).resolve().parents[1]


# -- tool sets -------------------------------------------------------------------------------


@llmc.tool
def search(query: str, k: int = 3) -> str:
    """Search the encyclopedia.

    Args:
        query: a topic.
        k: how many results.
    """
    return query


@llmc.tool
def compare(a: float, b: float, unit: Literal["m", "km"] = "m", strict: bool = False) -> str:
    """Compare two quantities."""
    return ""


@llmc.tool
def summarize(texts: list[str], style: dict[str, int] | None = None) -> str:
    """Summarize several texts."""
    return ""


class Place(pydantic.BaseModel):
    name: str
    population: int | None = None


@llmc.tool
def locate(place: Place, anything=None, pair: tuple[int, str] = (1, "a")) -> str:
    """Find a place on the map."""
    return ""


@llmc.tool
def today() -> str:
    """Today's date."""
    return ""


def file_tools() -> llmc.Toolbox:
    return llmc.Toolbox.from_path(REPO / "tools/files.py", REPO / "tools/math.py")


TOOLSETS: dict[str, Any] = {
    "search": [search],
    "search+compare": [search, compare],
    "mixed types": [search, compare, summarize, locate, today],
}


# -- the grammar text ------------------------------------------------------------------------


def test_plan_grammar_names_every_tool_and_numbers_tasks() -> None:
    grammar = plan_grammar([search, compare], max_tasks=3)
    assert grammar.startswith("root ::= thought? task-1\n")
    assert '"search("' in grammar and '"compare("' in grammar
    for task_id in (1, 2, 3):
        assert f'task-{task_id} ::= "{task_id}. "' in grammar
    assert "task-4" not in grammar
    assert '"join()\\n<END_OF_PLAN>"' in grammar


def test_plan_grammar_is_deterministic_and_has_one_rule_per_name() -> None:
    first, second = plan_grammar(TOOLSETS["mixed types"]), plan_grammar(TOOLSETS["mixed types"])
    assert first == second
    names = [line.split(" ::= ")[0] for line in first.splitlines()]
    assert len(names) == len(set(names))


def test_references_only_point_back() -> None:
    grammar = plan_grammar([search], max_tasks=3)
    assert 'ref-num-1 ::= "1"\n' in grammar
    assert 'ref-num-2 ::= "1" | "2"\n' in grammar
    assert "ref-num-4" not in grammar  # task 3 is the last: only finish() may use $3
    assert "ref-num-3" not in plan_grammar([search], max_tasks=3, finish=False)
    assert 'tool-0-search-0 ::= "search(" str-0' in grammar  # task 1: no reference at all


def test_replan_grammar_continues_numbering_and_may_refer_to_earlier_tasks() -> None:
    grammar = plan_grammar([search], first_id=4, max_tasks=2)
    assert grammar.startswith("root ::= thought? task-4\n")
    assert 'task-4 ::= "4. " call-3' in grammar
    assert 'ref-num-3 ::= "1" | "2" | "3"' in grammar


def test_types_follow_the_schema() -> None:
    grammar = plan_grammar([compare])
    line = next(x for x in grammar.splitlines() if x.startswith("tool-0-compare-0 ::="))
    assert line == (
        'tool-0-compare-0 ::= "compare(" num ", " num (", " ("\\"m\\"" | "\\"km\\"") '
        '(", " bool)?)? ")"'
    )


def test_thoughts_can_be_left_out() -> None:
    grammar = plan_grammar([search], thoughts=False)
    assert "thought" not in grammar


def test_plan_grammar_refuses_no_tools_and_bad_sizes() -> None:
    with pytest.raises(ValueError, match="at least one tool"):
        plan_grammar([])
    with pytest.raises(ValueError, match="at least 1"):
        plan_grammar([search], max_tasks=0)


def test_joiner_grammar_shape() -> None:
    grammar = joiner_grammar()
    assert grammar.startswith('root ::= ("Thought: "')  # the thought is optional
    assert '("Finish" | "Replan")' in grammar
    assert '"Replan"' not in joiner_grammar(replan=False)
    copied = joiner_grammar(copy_from=["Jupiter is big."], question="Which is big?")
    assert copied.startswith('root ::= "Thought: "')  # a copied answer needs its thought
    assert 'action ::= "Finish(" copied ")"' in copied


# -- llama.cpp's grammar engine --------------------------------------------------------------


def admits(llm: Local, grammar: str, text: str) -> bool:
    """Whether llama.cpp's grammar engine lets the model write ``text`` and then stop.

    Each token of the text is offered alone to the grammar sampler (a refused token's logit
    becomes -inf) and accepted only if allowed, so nothing is ever forced on the engine.
    """
    import llama_cpp

    from llmc.llm.local import grammar_sampler

    llama = llm._llama
    sampler = grammar_sampler(llama, grammar)
    one = (llama_cpp.llama_token_data * 1)()
    array = llama_cpp.llama_token_data_array(
        data=ctypes.cast(one, llama_cpp.llama_token_data_p), size=1, sorted=False
    )

    def allowed(token: int) -> bool:
        one[0] = llama_cpp.llama_token_data(token, 0.0, 0.0)
        array.size, array.selected = 1, -1
        llama_cpp.llama_sampler_apply(sampler, ctypes.byref(array))
        return bool(one[0].logit != float("-inf"))

    try:
        for token in llama.tokenize(text.encode(), add_bos=False, special=False):
            if not allowed(token):
                return False
            llama_cpp.llama_sampler_accept(sampler, token)
        return allowed(llama.token_eos())  # the text is complete: the model may stop here
    finally:
        llama_cpp.llama_sampler_free(sampler)


@pytest.mark.local_model
@pytest.mark.parametrize("name", [*TOOLSETS, "file tools"])
def test_llama_cpp_parses_the_plan_grammar(model: Local, name: str) -> None:
    from llmc.llm.local import grammar_sampler

    tools = file_tools() if name == "file tools" else TOOLSETS[name]
    for grammar in (plan_grammar(tools), plan_grammar(tools, first_id=7, thoughts=False)):
        sampler = grammar_sampler(model._llama, grammar)
        assert sampler
        import llama_cpp

        llama_cpp.llama_sampler_free(sampler)


@pytest.mark.local_model
def test_llama_cpp_parses_the_joiner_grammar(model: Local) -> None:
    assert admits(model, joiner_grammar(), "Thought: easy.\nAction: Finish(42 (about))")
    assert admits(model, joiner_grammar(), "Finish(42 (about))")
    assert not admits(model, joiner_grammar(thought=False), "Thought: x\nFinish(42)")


@pytest.mark.local_model
def test_a_broken_grammar_is_an_error_not_a_crash(model: Local) -> None:
    from llmc.llm.local import grammar_sampler

    with pytest.raises(llmc.LLMError, match="rejected the grammar"):
        grammar_sampler(model._llama, 'root ::= "a" missing-rule')


VALID_PLANS = [
    'Thought: two searches at once.\n1. search("Mariana Trench")\n2. search("Puerto Rico", 5)\n'
    "join()\n<END_OF_PLAN>",
    '1. search("costs $$5 \\"quoted\\" it\'s")\n2. search("depth of ${1} and $1!")\n'
    "join()\n<END_OF_PLAN>",
    '1. search("a")\n2. compare($1, -2.5, "km", True)\n3. summarize([$1, "b"], {"x": 1})\n'
    "join()\n<END_OF_PLAN>",
    '1. locate({"name": "Paris", "population": None}, [1, "k", None], [3, "x"])\n'
    "2. today()\njoin()\n<END_OF_PLAN>",
    '1. search("x")\n2. summarize($1)\n3. locate($2)\njoin()\n<END_OF_PLAN>',
    '1. search("x")\n2. search("y")\nfinish("x is $1, y is ${2}")\n<END_OF_PLAN>',
    '1. search("x")\nfinish($1)\n<END_OF_PLAN>',
    '1. search("$question")\n2. search("about $question and $1")\nfinish($2)\n<END_OF_PLAN>',
]

INVALID_PLANS = {
    "unknown tool": '1. browse("x")\njoin()\n<END_OF_PLAN>',
    "string for a number": '1. compare("1", 2)\njoin()\n<END_OF_PLAN>',
    "missing required argument": "1. compare(1)\njoin()\n<END_OF_PLAN>",
    "not a Literal choice": '1. compare(1, 2, "mm")\njoin()\n<END_OF_PLAN>',
    "reference to itself": "1. search($1)\njoin()\n<END_OF_PLAN>",
    "forward reference": '1. search("a")\n2. search($3)\njoin()\n<END_OF_PLAN>',
    "forward reference in a string": '1. search("a")\n2. search("see $3")\njoin()\n<END_OF_PLAN>',
    "wrong number": '1. search("a")\n3. search("b")\njoin()\n<END_OF_PLAN>',
    "raw newline in a string": '1. search("a\nb")\njoin()\n<END_OF_PLAN>',
    "keyword argument": '1. search(query="a")\njoin()\n<END_OF_PLAN>',
    "no join": '1. search("a")\n<END_OF_PLAN>',
    "empty plan": "join()\n<END_OF_PLAN>",
    "finish that refers forward": '1. search("a")\nfinish($2)\n<END_OF_PLAN>',
    "finish with two answers": '1. search("a")\nfinish($1, $1)\n<END_OF_PLAN>',
    "unknown model field": '1. locate({"city": "Paris"})\njoin()\n<END_OF_PLAN>',
    "bad escape": '1. search("\\x41")\njoin()\n<END_OF_PLAN>',
    "untyped value nested deeper than one level": '1. locate({"name": "P"}, [[1]])\njoin()\n',
    "string longer than its bound": '1. search("' + "x" * 201 + '")\njoin()\n<END_OF_PLAN>',
    "list longer than its bound": "1. summarize([" + ", ".join(['"t"'] * 11) + "])\njoin()\n",
}


@pytest.mark.local_model
@pytest.mark.parametrize("text", VALID_PLANS)
def test_the_grammar_admits_valid_plans_and_they_parse(model: Local, text: str) -> None:
    tools = TOOLSETS["mixed types"]
    assert admits(model, plan_grammar(tools), text)
    parser = PlanParser(tools=tools)
    assert parser.feed(text) + parser.close()


@pytest.mark.local_model
@pytest.mark.parametrize("case", INVALID_PLANS)
def test_the_grammar_refuses_what_would_not_parse_or_fit(model: Local, case: str) -> None:
    assert not admits(model, plan_grammar(TOOLSETS["mixed types"]), INVALID_PLANS[case])


@pytest.mark.local_model
def test_a_plan_longer_than_max_tasks_is_refused(model: Local) -> None:
    lines = "".join(f'{i}. search("q{i}")\n' for i in range(1, 5))
    assert admits(model, plan_grammar([search], max_tasks=4), lines + "join()\n<END_OF_PLAN>")
    five = lines + '5. search("q5")\njoin()\n<END_OF_PLAN>'
    assert not admits(model, plan_grammar([search], max_tasks=4), five)
    assert DEFAULT_MAX_TASKS >= 8


# -- plans the real model writes -------------------------------------------------------------

QUESTIONS = {
    "search": ["Which is deeper, the Mariana Trench or the Puerto Rico Trench?"],
    "search+compare": ["Is Mount Everest more than twice as tall as Mont Blanc?"],
    "mixed types": ["Where is Paris and how many people live there? Summarize the findings."],
    "file tools": ["Which is longer in lines, README.md or docs/index.md?"],
}


def well_typed(task: Task, tools: llmc.Toolbox) -> None:
    """Every argument without a reference validates against its parameter's type."""
    tool = tools[task.tool]
    hints = tool.params_model.model_fields
    for name, value in zip(tool.parameters, task.args, strict=False):
        if llmc.task.references(value) or isinstance(value, Ref):
            continue
        annotation = hints[name].annotation
        assert annotation is not None
        pydantic.TypeAdapter(annotation).validate_python(value)


@pytest.mark.local_model
@pytest.mark.parametrize("name", list(QUESTIONS))
async def test_every_plan_the_model_writes_parses(model: Local, name: str) -> None:
    tools = llmc.Toolbox.of(file_tools() if name == "file tools" else TOOLSETS[name])
    planner = Planner(model, tools)
    # Greedy, this model writes tasks until the grammar's limit: 4 keeps the test short.
    grammar = plan_grammar(tools, max_tasks=4)
    options = GenerateOptions(temperature=0.0, stop=(END_OF_PLAN,), grammar=grammar)
    for question in QUESTIONS[name]:
        reply = await generate(model, planner.messages(question), options)
        parser = PlanParser(tools=tools)
        tasks = parser.feed(reply.text) + parser.close()
        assert tasks, reply.text
        assert [t.id for t in tasks] == list(range(1, len(tasks) + 1)), reply.text
        assert parser.joined or parser.finish is not None, reply.text  # join() or finish()
        for task in tasks:
            well_typed(task, tools)


@pytest.mark.local_model
async def test_the_joiner_grammar_gives_a_decision(model: Local) -> None:
    joiner = Joiner(model)
    tasks = [Task(1, "search", ("Mariana Trench",)), Task(2, "search", ("Puerto Rico Trench",))]
    observations = {1: "The Mariana Trench is 10,994 m deep.", 2: "It is 8,376 m deep."}
    messages = joiner.messages("Which trench is deeper?", tasks, observations)
    options = GenerateOptions(temperature=0.0, grammar=joiner_grammar(), max_tokens=120)
    reply = await generate(model, messages, options)
    decision = parse_decision(reply.text)
    assert reply.text.startswith(("Thought: ", "Action: ", "Finish(", "Replan("))
    assert decision.action in ("finish", "replan")
    assert decision.text
    assert reply.finish_reason == "stop"  # the grammar ends at the action's ")"
