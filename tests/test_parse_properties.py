"""Property tests for the plan language (hypothesis)."""

from __future__ import annotations

import contextlib
import sys

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import llmc
from llmc import Plan, PlanParser, Ref, Task
from llmc.parse import _fast_call, _parse_call

_EXEC_EVENTS: list[str] = []
_WATCHING = [False]


def _audit(event: str, args: object) -> None:
    if _WATCHING[0] and event in ("exec", "os.system", "subprocess.Popen", "import"):
        _EXEC_EVENTS.append(event)


sys.addaudithook(_audit)  # audit hooks cannot be removed; this one only records when asked

names = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True).filter(
    lambda n: n not in {"join", "and", "or", "not", "if", "in", "is", "for", "def", "as", "del"}
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20).map(lambda s: s.replace("$", "$$")),
)


def values(ids: list[int]) -> st.SearchStrategy[object]:
    """Argument values that may refer to the given earlier task ids."""
    leaves = scalars
    if ids:
        refs = st.sampled_from(ids).map(Ref)
        templated = st.tuples(
            st.text(max_size=5).map(lambda s: s.replace("$", "$$")), st.sampled_from(ids)
        ).map(lambda p: f"{p[0]}${{{p[1]}}}")
        leaves = st.one_of(scalars, refs, templated)
    return st.recursive(
        leaves,
        lambda inner: st.one_of(
            st.lists(inner, max_size=3),
            st.tuples(inner, inner),
            # Keys are text too: a "$2" in one is a reference, so escape it like the rest.
            st.dictionaries(
                st.text(max_size=4).map(lambda s: s.replace("$", "$$")), inner, max_size=3
            ),
        ),
        max_leaves=6,
    )


@st.composite
def plans(draw: st.DrawFn) -> Plan:
    count = draw(st.integers(min_value=0, max_value=8))
    ids = sorted(
        draw(st.sets(st.integers(min_value=1, max_value=60), min_size=count, max_size=count))
    )
    plan = Plan()
    for index, task_id in enumerate(ids):
        earlier = ids[:index]
        args = draw(st.lists(values(earlier), max_size=3))
        kwargs = draw(st.dictionaries(names, values(earlier), max_size=2))
        thought = draw(st.none() | st.text(min_size=1, max_size=20).filter(lambda s: s.strip()))
        plan.append(Task(task_id, draw(names), tuple(args), kwargs, thought))
    return plan


def _normal_thought(plan: Plan) -> list[Task]:
    """Thoughts are one line in plan text: compare them with whitespace collapsed."""
    return [
        Task(t.id, t.tool, t.args, t.kwargs, " ".join(t.thought.split()) if t.thought else None)
        for t in plan
    ]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plans())
def test_render_then_parse_gives_the_same_plan(plan: Plan) -> None:
    parsed = Plan.parse(plan.to_text())
    assert parsed.tasks == _normal_thought(plan)
    assert Plan.from_json(plan.to_json()).to_json() == plan.to_json()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plans(), st.data())
def test_any_chunking_gives_the_same_tasks_in_order(plan: Plan, data: st.DataObject) -> None:
    text = plan.to_text()
    cuts = sorted(data.draw(st.lists(st.integers(0, len(text)), max_size=30)))
    parser = PlanParser()
    tasks: list[Task] = []
    for start, end in zip([0, *cuts], [*cuts, len(text)], strict=True):
        tasks += parser.feed(text[start:end])
    tasks += parser.close()
    assert tasks == Plan.parse(text).tasks


def _parse_everything(text: str) -> None:
    parser = PlanParser()
    with contextlib.suppress(llmc.PlanError):
        parser.feed(text)
    with contextlib.suppress(llmc.PlanError):
        parser.close()


plan_like = st.lists(
    st.one_of(
        st.text(max_size=30),
        st.sampled_from(
            [
                "1. ",
                "2. ",
                "$1",
                "${2}",
                "$$",
                "(",
                ")",
                "[",
                "]",
                "{",
                "}",
                '"',
                "'",
                '"""',
                ",",
                "=",
                "join()",
                "<END_OF_PLAN>",
                "Thought:",
                "\n",
                "__import__('os').system('x')",
                "exec('1')",
                "lambda: 0",
                "**",
                "*",
                "\\",
                "\x00",
                "f'{1}'",
                "...",
                "search(",
            ]
        ),
    ),
    max_size=25,
).map("".join)


@settings(max_examples=400, deadline=None)
@given(plan_like)
def test_arbitrary_text_raises_only_plan_errors_and_runs_nothing(text: str) -> None:
    _EXEC_EVENTS.clear()
    _WATCHING[0] = True
    try:
        _parse_everything(text)
    finally:
        _WATCHING[0] = False
    assert _EXEC_EVENTS == []


simple_values = st.recursive(
    st.one_of(
        st.text(
            alphabet=st.characters(blacklist_characters='"\\\n', max_codepoint=0x2FF), max_size=8
        ).map(lambda s: f'"{s}"'),
        st.text(
            alphabet=st.characters(blacklist_characters="'\\\n", max_codepoint=0x2FF), max_size=8
        ).map(lambda s: f"'{s}'"),
        st.integers(-1000, 10**6).map(str),
        st.floats(allow_nan=False, allow_infinity=False).map(repr),
        st.sampled_from(
            [
                "None",
                "True",
                "False",
                "$1",
                "${2}",
                "0",
                "-0.0",
                "1e5",
                "1E-3",
                "007",
                "1.",
                ".5",
                "x",
                "$",
                "[1]",
                "'a' 'b'",
                "r'a'",
                "1_0",
                "{}",
                "()",
                "{1}",
            ]
        ),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3).map(lambda items: "[" + ", ".join(items) + "]"),
        st.lists(st.tuples(inner, inner), max_size=3).map(
            lambda pairs: "{" + ", ".join(f"{k}: {v}" for k, v in pairs) + "}"
        ),
    ),
    max_leaves=6,
)
simple_args = st.lists(
    st.one_of(simple_values, st.tuples(names, simple_values).map(lambda p: f"{p[0]}={p[1]}")),
    max_size=5,
)


@settings(max_examples=400, deadline=None)
@given(names, simple_args, st.sampled_from([", ", ",", " , "]), st.booleans())
def test_fast_path_agrees_with_the_ast_path(
    name: str, args: list[str], sep: str, trailing: bool
) -> None:
    body = f"{name}({sep.join(args)}{',' if trailing else ''})"
    fast = _fast_call(body)
    assume(fast is not None)
    slow = _parse_call(body, final=True)
    assert fast == slow
