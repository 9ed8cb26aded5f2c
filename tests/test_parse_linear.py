"""A long statement is parsed once, not again at every newline (that was quadratic).

Work is counted, not timed: how many times the parser hands a statement to Python's parser,
for statements spanning thousands of lines, fed in chunks of any size.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import llmc.parse
from llmc import PlanParser


def long_statement(kind: str, lines: int) -> str:
    if kind == "list":
        body = "".join(f'    "item {i}",\n' for i in range(lines))
        return f"1. echo([\n{body}])\n"
    if kind == "dict":
        body = "".join(
            f'    "k{i}": [{i}, ${{0}}],\n'.replace("${0}", "None") for i in range(lines)
        )
        return f"1. echo({{\n{body}}})\n"
    if kind == "string":
        body = "".join(f"line {i} with (brackets and 'quotes'\n" for i in range(lines))
        return f'1. echo("""\n{body}""")\n'
    if kind == "comments":
        body = "".join(f'    {i},  # a comment with ( and " in it\n' for i in range(lines))
        return f"1. echo([\n{body}])\n"
    raise AssertionError(kind)


@contextlib.contextmanager
def counted_parses() -> Iterator[list[str]]:
    """Within the block, every statement body the parser parses is recorded, in order."""
    calls: list[str] = []
    real = llmc.parse._parse_call

    def counting(body: str, *, final: bool) -> object:
        calls.append(body)
        return real(body, final=final)

    llmc.parse._parse_call = counting
    try:
        yield calls
    finally:
        llmc.parse._parse_call = real


@pytest.fixture
def parse_calls() -> Iterator[list[str]]:
    with counted_parses() as calls:
        yield calls


@settings(max_examples=25, deadline=None)
@given(
    kind=st.sampled_from(["list", "dict", "string", "comments"]),
    lines=st.integers(min_value=1, max_value=3000),
    chunk=st.integers(min_value=1, max_value=400),
)
def test_a_long_statement_is_parsed_a_bounded_number_of_times(kind, lines, chunk) -> None:
    text = long_statement(kind, lines) + '2. echo("after")\njoin()\n'
    with counted_parses() as calls:
        parser = PlanParser()
        tasks = [t for i in range(0, len(text), chunk) for t in parser.feed(text[i : i + chunk])]
        tasks += parser.close()
    assert [t.id for t in tasks] == [1, 2]
    whole = PlanParser().feed(text)
    assert [t.args for t in tasks] == [t.args for t in whole]
    assert len(calls) <= 3  # the first line, the end of statement 1, statement 2


def test_an_unclosed_long_statement_is_an_error_at_close_with_its_line(parse_calls) -> None:
    parser = PlanParser()
    parser.feed('1. echo("a")\n2. echo([\n' + '    "x",\n' * 2000)
    with pytest.raises(llmc.PlanSyntaxError) as info:
        parser.close()
    assert info.value.line is not None and info.value.line >= 2
    assert len(parse_calls) <= 3


def test_a_backslash_continued_statement_still_waits_for_its_next_line() -> None:
    parser = PlanParser()
    assert parser.feed('1. echo("a", \\\n') == []
    assert [t.args for t in parser.feed('    "b")\n')] == [("a", "b")]
