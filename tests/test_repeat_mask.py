"""Repeated tasks masked while the plan is written: the plan grammar without given calls,
:class:`llmc.grammar.RepeatMask` that rebuilds it at each task line, and the local model's
hook that switches grammars mid-output (``GenerateOptions.next_grammar``)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_grammar import admits

import llmc
from llmc.grammar import PlanGrammar, RepeatMask, plan_grammar
from llmc.llm import GenerateOptions, Local
from llmc.llm.base import generate
from llmc.planner import Planner
from llmc.task import Task
from llmc.testing import ScriptedLLM

FILES = ["a.txt", "b.md", "notes/c.txt"]


@llmc.tool(choices={"path": lambda: FILES, "mode": ["fast", "slow"]})
def read(path: str, mode: str = "fast") -> str:
    """Read a file."""
    return f"text of {path}"


@llmc.tool
def length(river: str) -> str:
    """The length of a river in km."""
    return "6650"


#: Every call of ``read`` the grammar may write: a path, with or without a mode.
CALLS = [(path,) for path in FILES] + list(itertools.product(FILES, ["fast", "slow"]))


def line(call: tuple[str, ...], task_id: int = 1) -> str:
    arguments = ", ".join(f'"{value}"' for value in call)
    return f"{task_id}. read({arguments})\n"


def test_excluded_calls_leave_the_rest_and_free_arguments_untouched() -> None:
    grammar = plan_grammar([read, length], max_tasks=2, excluded=[("read", ("a.txt",))])
    assert "unrepeated-" in grammar
    assert "str-0" in grammar or "str-1" in grammar  # length's river is still free
    free = plan_grammar([length], max_tasks=2, excluded=[("length", ("Nile",))])
    assert free == plan_grammar([length], max_tasks=2)  # a free string cannot be excluded


def test_a_continued_grammar_starts_after_the_written_tasks() -> None:
    grammar = plan_grammar([read], first_id=3, max_tasks=1, continues=True)
    assert "root ::= end-2 | thought? task-3" in grammar
    assert "task-4" not in grammar
    done = plan_grammar([read], first_id=3, max_tasks=0, continues=True)
    assert "root ::= end-2" in done and "task-3" not in done
    with pytest.raises(ValueError, match="at least 1"):
        plan_grammar([read], max_tasks=0)


def test_a_tool_whose_every_call_was_made_is_not_offered() -> None:
    made = [("read", call) for call in CALLS]
    grammar = plan_grammar([read, length], max_tasks=2, references=False, excluded=made)
    assert "read(" not in grammar and "length(" in grammar
    with_references = plan_grammar([read, length], max_tasks=2, excluded=made)
    assert "tool-0-read-0" not in with_references and '"read(" unrepeated-0-1' in with_references
    alone = plan_grammar([read], max_tasks=2, references=False, excluded=made)
    assert alone == plan_grammar([read], max_tasks=2, references=False)  # nothing is left


def test_the_mask_follows_the_plan_line_by_line() -> None:
    earlier = [Task(1, "read", ("a.txt",))]
    mask = RepeatMask(PlanGrammar(max_tasks=2), [read], "q", first_id=2, earlier=earlier)
    assert "unrepeated-" in mask.initial() and "task-2" in mask.initial()
    assert mask("Thought: read b.\n") is None  # not a task line: the grammar stays
    after = mask('Thought: read b.\n2. read("b.md")\n')
    assert after is not None and "root ::= end-2 | thought? task-3" in after
    assert mask('Thought: read b.\n2. read("b.md")\n3. read("notes/c.txt")\n') is not None
    assert mask.calls == [("read", ("a.txt",)), ("read", ("b.md",)), ("read", ("notes/c.txt",))]


def test_the_planner_masks_on_grammar_backends_and_stops_at_what_it_cannot_mask() -> None:
    llm = ScriptedLLM(['1. length("Nile")\n2. length("Nile")\njoin()\n'])
    llm.supports_grammar = True  # type: ignore[attr-defined]
    planner = Planner(llm, [read, length], grammar=PlanGrammar(max_tasks=3), repeats="mask")
    kept = [Task(1, "read", ("a.txt",))]
    options = planner._constrained(planner.options, 2, "q", kept)
    assert isinstance(options.next_grammar, RepeatMask) and options.grammar is not None
    assert '"\\"a.txt\\"" unrepeated-' in options.grammar  # (only with a mode after it)
    by_factory = Planner(llm, [read], grammar=lambda *_: 'root ::= "x"', repeats="mask")
    assert by_factory._constrained(by_factory.options, 1, "q").next_grammar is None


async def test_a_repeat_the_grammar_cannot_rule_out_stops_the_plan() -> None:
    llm = ScriptedLLM(['1. length("Nile")\n2. length("Nile")\n3. length("Congo")\njoin()\n'])
    planner = Planner(llm, [length], repeats="mask")
    plan = planner.stream("q")
    async for _ in plan:
        pass
    assert [t.id for t in plan.tasks] == [1]
    assert [why for _, why in plan.dropped] == ["the plan stopped here: it repeats an earlier task"]


# -- llama.cpp's engine ------------------------------------------------------------------------


@pytest.mark.local_model
@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.sets(st.sampled_from(CALLS)))
def test_llama_cpp_admits_exactly_the_calls_not_excluded(
    model: Local, excluded: set[tuple[str, ...]]
) -> None:
    grammar = plan_grammar(
        [read],
        max_tasks=1,
        thoughts=False,
        finish=False,
        excluded=[("read", call) for call in excluded],
    )
    if len(excluded) == len(CALLS):  # nothing left to call: nothing is excluded
        excluded = set()
    for call in CALLS:
        text = line(call) + "join()\n<END_OF_PLAN>"
        assert admits(model, grammar, text) == (call not in excluded), call


@pytest.mark.local_model
async def test_the_local_model_switches_grammars_at_each_line(model: Local) -> None:
    seen: list[str] = []

    def other_letter(text: str) -> str | None:
        seen.append(text)
        last = text.splitlines()[-1]
        return f'root ::= "{"b" if last == "a" else "a"}\\n"' if len(seen) == 1 else None

    options = GenerateOptions(
        max_tokens=8,
        temperature=0.0,
        grammar='root ::= ("a" | "b") "\\n" ("a" | "b") "\\n"',
        next_grammar=other_letter,
    )
    reply = await generate(model, [{"role": "user", "content": "Write a twice."}], options)
    first, second = reply.text.splitlines()
    assert first != second and first in "ab" and second in "ab"
    assert seen[0] == f"{first}\n"
