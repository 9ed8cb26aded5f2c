"""Every output has a text form: an output whose text cannot be made still observes as text.

Huge ints (past Python's int-to-str digit limit), lists nested past the recursion limit and
objects whose ``__str__`` raises are all real outputs; the run must answer and the joiner
must see a marker saying what could not be shown.
"""

from __future__ import annotations

import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

import llmc
from llmc.compiler import Compiler
from llmc.result import error_text, text_form
from llmc.testing import ScriptedLLM


class Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no text for you")

    __repr__ = __str__


class UnprintableError(Exception):
    def __str__(self) -> str:
        raise ValueError("neither for this one")


def deep_list(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


HOSTILE = {
    "a huge int": lambda: math.factorial(2000),
    "a deep list": lambda: deep_list(3000),
    "a broken __str__": Unprintable,
    "a huge int in a dict": lambda: {"n": math.factorial(2000)},
    "a broken __str__ in a list": lambda: [1, Unprintable()],
}

leaves = st.one_of(
    st.integers(),
    st.text(max_size=5),
    st.builds(lambda d: math.factorial(1000 + d), st.integers(min_value=0, max_value=900)),
    st.builds(Unprintable),
    st.builds(deep_list, st.integers(min_value=0, max_value=3000)),
)
outputs = st.recursive(
    leaves,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(max_size=3), inner, max_size=3)
        | st.tuples(inner, inner)
    ),
    max_leaves=8,
)


@settings(max_examples=80, deadline=None)
@given(value=outputs)
def test_text_form_is_total(value: object) -> None:
    text = text_form(value)
    assert isinstance(text, str)


def test_each_hostile_output_reads_as_a_marker_naming_what_could_not_be_shown() -> None:
    for name, make in HOSTILE.items():
        text = text_form(make())
        assert "cannot be shown" in text, (name, text[:200])


def test_an_error_whose_message_fails_still_has_an_error_text() -> None:
    assert error_text(UnprintableError()).startswith("Error: UnprintableError")


async def test_runs_with_hostile_outputs_observe_and_answer() -> None:
    @llmc.tool
    def make(kind: str) -> object:
        """Make a hostile output.

        Args:
            kind: which one.
        """
        return HOSTILE[kind]()

    plan = "".join(f"{i}. make({name!r})\n" for i, name in enumerate(HOSTILE, 1)) + "join()\n"
    plan += f'{len(HOSTILE) + 1}. make("a huge int")\n'  # (after join(): ignored)
    llm = ScriptedLLM([plan, "Action: Finish(seen)"])
    answer = await Compiler([make], llm).run("?")
    assert answer.text == "seen"
    result = answer.results[0]
    assert all(status is llmc.TaskStatus.DONE for status in result.statuses.values())
    for task_id in result.outputs:
        assert "cannot be shown" in result.observation(task_id)
    joiner_prompt = llm.calls[-1].messages[-1]["content"]
    assert joiner_prompt.count("cannot be shown") == len(HOSTILE)


async def test_hostile_outputs_are_not_cached_and_the_run_goes_on(tmp_path) -> None:
    @llmc.tool(pure=True)
    def make(kind: str) -> object:
        """Make a hostile output.

        Args:
            kind: which one.
        """
        return HOSTILE[kind]()

    plan = llmc.Plan()
    for name in ("a huge int", "a deep list", "a huge int in a dict"):
        plan.add("make", name)
    with llmc.Cache(tmp_path / "cache.db") as cache:
        result = await llmc.run_plan(plan, tools=[make], cache=cache)
    assert result.ok
