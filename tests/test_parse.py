"""The plan language: LLMCompiler-style plans, streaming, leniency and precise errors."""

from __future__ import annotations

import pytest
from plan_tools import TOOLS

import llmc
from llmc import Plan, PlanParser, Ref

# In the style of the LLMCompiler paper's ParallelQA exemplars (written for these tests).
TRENCHES = """Thought: look both trenches up at the same time.
1. search("Mariana Trench")
2. search("Puerto Rico Trench")
Thought: then apply the changes and compare.
3. math("Mariana Trench depth, 20% shallower", [$1])
4. math("Puerto Rico Trench depth, 20% deeper", [$2])
5. math("Which is shallower: ${3} or ${4}?", [$3, $4])
join()<END_OF_PLAN>
"""


def test_exemplar_plan() -> None:
    plan = Plan.parse(TRENCHES, tools=TOOLS)
    assert [t.tool for t in plan] == ["search", "search", "math", "math", "math"]
    assert plan[1].thought == "look both trenches up at the same time."
    assert plan[3].thought == "then apply the changes and compare."
    assert plan[2].thought is None
    assert plan[3].args == ("Mariana Trench depth, 20% shallower", [Ref(1)])
    assert plan[5].dependencies == {3, 4}
    assert plan.levels() == [[1, 2], [3, 4], [5]]


def test_streaming_yields_each_task_when_its_line_ends() -> None:
    parser = PlanParser(tools=TOOLS)
    assert parser.feed('1. search("Mariana') == []
    assert parser.feed(' Trench")') == []  # no newline yet: the line may go on
    [first] = parser.feed("\n2. sea")
    assert first.args == ("Mariana Trench",)
    assert [t.id for t in parser.feed('rch("x")\njoin()\n')] == [2]
    assert parser.joined
    assert parser.close() == []


def test_last_line_without_newline_is_read_by_close() -> None:
    parser = PlanParser()
    assert parser.feed('1. search("x")') == []
    assert [t.id for t in parser.close()] == [1]


def test_statements_spanning_lines() -> None:
    text = '1. search(\n    "a",\n)\n2. math("""line one\nline two""", [\n  $1,\n])\n'
    plan = Plan.parse(text)
    assert plan[1].args == ("a",)
    assert plan[2].args == ("line one\nline two", [Ref(1)])


@pytest.mark.parametrize(
    ("literal", "value"),
    [
        ('"has ) and ( inside"', "has ) and ( inside"),
        ("'single \\' quote'", "single ' quote"),
        ('"tab\\tnew\\nline"', "tab\tnew\nline"),
        ('"unicode: Erdős, 東京, 🚀"', "unicode: Erdős, 東京, 🚀"),
        ('"dollar $$5"', "dollar $$5"),
        ("r'\\d+'", "\\d+"),
        ('"a" "b"', "ab"),
        ("[1, -2.5, 3e3, None, True, False]", [1, -2.5, 3000.0, None, True, False]),
        ('{"k": [1, {"n": (1, 2)}]}', {"k": [1, {"n": (1, 2)}]}),
        ("{1, 2}", {1, 2}),
        ("()", ()),
        ("b'bytes'", b"bytes"),
        ("1_000", 1000),
    ],
)
def test_any_python_literal(literal, value) -> None:
    [task] = Plan.parse(f"1. f({literal})\n")
    assert task.args == (value,)


def test_references_anywhere_inside_literals() -> None:
    plan = Plan.parse(
        '1. f("a")\n2. f("b")\n3. f($1, [$2, {"x": ${1}}], "see $1 and ${2}!", k=($2,))\n'
    )
    task = plan[3]
    assert task.args == (Ref(1), [Ref(2), {"x": Ref(1)}], "see $1 and ${2}!")
    assert task.kwargs == {"k": (Ref(2),)}
    assert task.dependencies == {1, 2}


def test_lenient_where_safe() -> None:
    text = "```\n\n   1.   search( 'x' )   \n\n2.search('y')\n```\n"
    plan = Plan.parse(text)
    assert [t.args for t in plan] == [("x",), ("y",)]
    numbered_join = Plan.parse('1. search("x")\n2. join()\n')
    assert len(numbered_join) == 1
    after_end = Plan.parse('1. search("x")\njoin()\n<END_OF_PLAN>\nchatter that is ignored\n')
    assert len(after_end) == 1
    after_join = Plan.parse('1. search("x")\njoin()\nThe plan looks up x.\n2. search("y")\n')
    assert [t.id for t in after_join] == [1]


def _error(text: str, tools=None) -> llmc.PlanError:
    with pytest.raises(llmc.PlanError) as info:
        Plan.parse(text, tools=tools)
    return info.value


@pytest.mark.parametrize(
    ("text", "line", "column", "words"),
    [
        ("1. search(query)\n", 1, 11, "'query' is not a value"),
        ('1. search("x")\nsearch("y")\n', 2, 1, "expected a task like"),
        ('1. search("x")\nHere is my plan:\n', 2, 1, "expected a task like"),
        ('1. search("x") + 1\n', 1, 4, "expected a tool call"),
        ('1. os.system("ls")\n', 1, 4, "expected a tool call"),
        ('1. search(__import__("os").system("ls"))\n', 1, 11, "nested call"),
        ('1. search(f"{x}")\n', 1, 11, "not a literal"),
        ("1. search(lambda: 1)\n", 1, 11, "not a literal"),
        ('1. search("x", **{"a": 1})\n', 1, 16, "'**' unpacking"),
        ('1. search("x", *[1])\n', 1, 16, "not a literal"),
        ('1. search("unterminated)\n', 1, 11, "unterminated string"),
        ("1. search($)\n", 1, 11, "'$' must be followed by a task number"),
        ('1. search("x"\n2. search("y")\n', 1, 10, "never closed"),
        ("1. f(x=1, x=2)\n", 1, 11, "given twice"),
        ("1. f(...)\n", 1, 6, "not a value"),
        ("1. f([1, 2] + [3])\n", 1, 6, "not a literal"),
    ],
)
def test_malformed_lines_are_reported_with_position(text, line, column, words) -> None:
    error = _error(text)
    assert isinstance(error, llmc.PlanSyntaxError)
    assert (error.line, error.column) == (line, column), str(error)
    assert words in str(error)
    assert error.text in text


@pytest.mark.parametrize(
    ("text", "error_type", "words"),
    [
        ('1. search("x")\n2. serch($1)\n', llmc.UnknownToolError, "did you mean 'search'"),
        ('1. search($2)\n2. search("x")\n', llmc.PlanError, "a later task"),
        ('2. search("x")\n3. search($1)\n', llmc.PlanError, "never defined"),
        ('1. search("x")\n1. search("y")\n', llmc.PlanError, "defined twice"),
        ('1. search("x", "y")\n', llmc.PlanError, "takes 1 argument(s) but 2"),
        ('1. math(question="x")\n', llmc.PlanError, "unexpected argument 'question'"),
    ],
)
def test_invalid_tasks_are_reported_before_anything_runs(text, error_type, words) -> None:
    error = _error(text, tools=TOOLS)
    assert type(error) is error_type
    assert words in str(error)
    assert error.line is not None
    assert error.line == text.count("\n", 0, text.rindex(text.splitlines()[error.line - 1])) + 1


def test_parser_keeps_going_after_an_error_and_loses_nothing() -> None:
    parser = PlanParser()
    with pytest.raises(llmc.PlanSyntaxError):
        parser.feed('1. search("a")\n2. search(oops)\n3. search("c")\n')
    # task 1 completed before the error: returned by the next call, and in .tasks
    later = parser.feed('4. search("d")\n')
    assert [t.id for t in later] == [1, 3, 4]
    assert [t.id for t in parser.tasks] == [1, 3, 4]


def test_error_on_unclosed_statement_at_close() -> None:
    parser = PlanParser()
    parser.feed('1. search("x",\n  [1, 2\n')
    with pytest.raises(llmc.PlanSyntaxError, match="never closed") as info:
        parser.close()
    assert (info.value.line, info.value.column) == (2, 3)  # the '[' that is never closed


def test_earlier_ids_may_be_referenced_but_not_reused() -> None:
    parser = PlanParser(earlier=[1, 2])
    [task] = parser.feed('3. search("$1 and ${2}")\n')
    assert task.dependencies == {1, 2}
    with pytest.raises(
        llmc.PlanError, match="already ran in an earlier plan; number new tasks from 4"
    ):
        parser.feed('2. search("again")\n')
