"""The math tool pack (tools/math.py): a safe evaluator that never runs code."""

from __future__ import annotations

import ast
import builtins
import contextlib
import math as pymath
import operator
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tool_packs import import_pack, pack_path

import llmc

PACK = pack_path("math")
MODULE = import_pack("math", register=False)
calc: llmc.Tool = MODULE.math
evaluate: Callable[..., Any] = MODULE.evaluate


def test_load_tools_finds_the_tool() -> None:
    (tool,) = llmc.load_tools(PACK)
    assert tool.name == "math"
    line = tool.signature_line()
    assert line.startswith(
        "math(expression: str, values: dict[str, int | float | list[int | float]] | None = None)"
        " -> int | float | bool  # Calculate"
    )
    assert set(tool.docstring.params) == {"expression", "values"}
    assert tool("6 * 7") == 42
    assert "math" not in sys.modules or sys.modules["math"] is pymath  # stdlib untouched


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("1 + 2", 3),
        ("  7 - 10  ", -3),
        ("2 * (3 + 4)", 14),
        ("7 / 2", 3.5),
        ("7 // 2", 3),
        ("-7 // 2", -4),
        ("7 % 3", 1),
        ("10%3", 1),
        ("2 ** 10", 1024),
        ("2 ** -1", 0.5),
        ("-2 ** 2", -4),
        ("+5", 5),
        ("1_000 * 3", 3000),
        ("1e3 + 1", 1001.0),
        (".5 * 4", 2.0),
        ("20%", 0.2),
        ("50% * 300", 150.0),
        ("20% of 50", 10.0),
        ("20 % of 50", 10.0),
        ("12.5% of (a + 6)", 2.0),
        ("100 - 15%", 99.85),
        ("3 < 4 <= 4", True),
        ("2 > 3", False),
        ("1 == 1.0 != 2", True),
        ("abs(-3)", 3),
        ("round(2.567, 2)", 2.57),
        ("round(2.5)", 2),
        ("min(3, 1, 2)", 1),
        ("max([3, 1, 2])", 3),
        ("sum(1, 2, 3)", 6),
        ("sum([0.1, 0.2, 0.3])", 0.6),
        ("mean(xs)", 2.0),
        ("median([5, 1, 3])", 3),
        ("sqrt(16)", 4.0),
        ("log(e)", 1.0),
        ("log(8, 2)", 3.0),
        ("log10(1000)", 3.0),
        ("log2(8)", 3.0),
        ("exp(0)", 1.0),
        ("floor(2.7)", 2),
        ("ceil(2.1)", 3),
        ("cos(0)", 1.0),
        ("pi", pymath.pi),
        ("a * 0.8", 8.0),
        ("10 \u00d7 3 \u2212 1 \u00f7 2", 29.5),
        ("(1 +\n 2)", 3),
    ],
)
def test_evaluates(expression: str, expected: object) -> None:
    values = {"a": 10, "xs": [1, 2, 3]}
    result = calc(expression, values)
    assert result == pytest.approx(expected) if isinstance(expected, float) else result == expected
    assert type(result) is type(expected)
    assert calc.fn(expression, values) == result


@pytest.mark.parametrize(
    ("expression", "message", "column"),
    [
        ("x.y", "unsupported: attribute access 'x.y'", 1),
        ("1 + foo", "unknown name 'foo'", 5),
        ("a + b", "unknown name 'b'", 5),
        ("10 / 0", "division by zero in '10 / 0'", 1),
        ("1 + 5 % (2 - 2)", "division by zero in '5 % (2 - 2)'", 5),
        ("0 ** -1", "division by zero", 1),
        ("log(5, 1)", "division by zero", 1),
        ("2 ^ 3", "unsupported: operator '^' (write powers as x ** y)", 1),
        ("1,000", "thousands separators", None),
        ("'abc' * 3", "unsupported: str \"'abc'\"", 1),
        ("1 +", "the expression ends too early", 3),
        ("(1 + 2", "'(' was never closed", 1),
        ("1 2", "invalid syntax", 3),
        ("sqrt", "'sqrt' is a function", 1),
        ("sqrtt(4)", "unknown function 'sqrtt'; did you mean sqrt()?", 1),
        ("log(x=2)", "positional arguments only", 1),
        ("max()", "max() takes at least 1 argument(s), got 0", 1),
        ("abs(1, 2)", "abs() takes 1 argument(s), got 2", 1),
        ("sqrt(-1)", "'sqrt(-1)': outside its domain", 1),
        ("log(0)", "outside its domain", 1),
        ("(-8) ** 0.5", "has no real value", 1),
        ("2 ** 10000", "'2 ** 10000' is too large to compute", 1),
        ("9 ** 9 ** 9", "too large to compute", 1),
        ("exp(1000)", "a number is too large in 'exp(1000)'", 1),
        ("10 ** 400 / 3", "a number is too large", 1),
        ("1e308 * 10", "the result is inf, not a finite number", None),
        ("xs + 1", "cannot use the list 'xs' as a number", 1),
        ("[1, 2]", "the result is a list", None),
        ("[[1], 2]", "lists inside lists", 2),
        ("mean([])", "mean() of an empty list", 1),
        ("round(2.5, 0.5)", "number of digits, must be a whole number", 1),
        ("lambda: 1", "unsupported: lambda", 1),
        ("[x for x in xs]", "unsupported: comprehension", 1),
        ("xs[0]", "unsupported: indexing 'xs[0]'", 1),
        ("1 if 2 else 3", "unsupported: conditional expression", 1),
        ("1 and 2", "unsupported: 'and'/'or'", 1),
        ("not 1", "unsupported: operator 'not'", 1),
        ("1 in xs", "unsupported: operator 'in'", 1),
        ("True + 1", "unsupported: bool 'True'", 1),
        ("2j", "complex numbers are not supported", 1),
        ("f'{1}'", "unsupported: f-string", 1),
        ("x := 1", "invalid syntax", None),
        ("", "the expression is empty", None),
        ("   ", "the expression is empty", None),
        ("1+" * 600 + "1", "longer than 1000 characters", None),
        ("-" * 900 + "1", "nested too deeply", None),
        ("(" * 300 + "1" + ")" * 300, "too many nested parentheses", None),
        ("é + 1", "unknown name 'é'", 1),
        ("1 + 20% + é", "unknown name 'é'", 11),
    ],
)
def test_errors_name_the_part_and_column(expression: str, message: str, column: int | None) -> None:
    with pytest.raises(ValueError) as info:
        calc(expression, {"xs": [1, 2], "a": 1})
    error = info.value
    assert isinstance(error, MODULE.MathError)
    assert message in str(error)
    if column is not None:
        assert error.column == column, str(error)
        assert f"column {column} of " in str(error)


def test_values_are_checked() -> None:
    with pytest.raises(llmc.ToolArgumentError, match="values"):
        calc("a", {"a": "ten"})
    assert calc("a * 2", {"a": "21"}) == 42  # the schema coerces numeric text
    with pytest.raises(ValueError, match="value 'a' must be a number or a list of numbers"):
        calc.fn("a", {"a": "ten"})
    with pytest.raises(ValueError, match="got list"):
        calc.fn("a", {"a": [1, "x"]})
    with pytest.raises(ValueError, match="expression must be text"):
        evaluate(42)
    assert calc.fn("pi", {"pi": 3}) == 3  # values shadow constants


def test_unknown_name_suggests_close_match() -> None:
    with pytest.raises(ValueError, match="did you mean 'total'"):
        calc("totl * 2", {"total": 5})


# -- never runs code ---------------------------------------------------------------------------

ATTACKS = [
    "__import__('os').system('touch PWNED')",
    "().__class__.__bases__[0].__subclasses__()",
    "open('/etc/passwd').read()",
    "eval('1+1')",
    "exec('x=1')",
    "globals()",
    "[c for c in ().__class__.__base__.__subclasses__()]",
    "(lambda: __import__('os'))()",
    "breakpoint()",
    "a.__class__",
    "print(1)",
]


@contextlib.contextmanager
def no_code_execution() -> Iterator[list[str]]:
    """Record any call of eval, exec or __import__, or a compile to anything but an AST."""
    calls: list[str] = []
    real_compile, real_import = builtins.compile, builtins.__import__

    def guarded_compile(source: Any, filename: Any, mode: str, flags: int = 0, *a: Any, **k: Any):
        if not flags & ast.PyCF_ONLY_AST:
            calls.append(f"compile({source!r})")
        return real_compile(source, filename, mode, flags, *a, **k)

    def guarded_import(name: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(f"import {name}")
        return real_import(name, *args, **kwargs)

    def forbidden(name: str) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            calls.append(name)
            raise AssertionError(f"{name} was called")

        return call

    saved = {name: getattr(builtins, name) for name in ("compile", "eval", "exec", "__import__")}
    builtins.compile = guarded_compile
    builtins.eval = forbidden("eval")
    builtins.exec = forbidden("exec")
    builtins.__import__ = guarded_import
    try:
        yield calls
    finally:
        for name, value in saved.items():
            setattr(builtins, name, value)


@pytest.mark.parametrize("attack", ATTACKS)
def test_code_is_never_run(attack: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    error: Exception | None = None
    with no_code_execution() as calls:
        try:
            evaluate(attack, {"a": 1})
        except Exception as exc:
            error = exc
    assert isinstance(error, ValueError), error
    assert calls == []
    assert not (tmp_path / "PWNED").exists()


SNIPPETS = st.sampled_from(
    [
        "1", "23", "4.5", "1e3", "%", " % of ", "+", "-", "*", "/", "//", "**", "(", ")",
        "[", "]", ",", " ", "a", "xs", "pi", "sqrt(", "log(", "max(", "round(", "mean(", "<",
        "==", "not ", " and ", ".", "__import__", "'os'", "lambda", ":", "=", "^", "0",
        "9" * 30, "j", "_", "\n", "é",
    ]
)  # fmt: skip


@pytest.mark.filterwarnings("ignore::SyntaxWarning")  # the parser's own, e.g. for "1if"
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.text(max_size=80), st.lists(SNIPPETS, max_size=30).map("".join)))
def test_any_text_gives_a_number_or_a_value_error(text: str) -> None:
    try:
        result = evaluate(text, {"a": 3, "xs": [1.5, 2]})
    except ValueError as exc:
        assert isinstance(exc, MODULE.MathError)
        assert str(exc)
    else:
        assert isinstance(result, int | float | bool)
        assert not isinstance(result, float) or pymath.isfinite(result)


# -- agrees with Python ------------------------------------------------------------------------

OPS: dict[str, Callable[[Any, Any], Any]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": operator.truediv,
    "//": operator.floordiv,
    "%": operator.mod,
}
LIMIT_BITS = MODULE.MAX_INT_BITS


class Refused(Exception):
    """Python would fail here too (or the evaluator's size guard applies)."""


def leaf() -> st.SearchStrategy[tuple[str, Any]]:
    return st.integers(-20, 20).map(lambda n: (f"({n})" if n < 0 else str(n), n))


def combine(children: st.SearchStrategy[tuple[str, Any]]) -> st.SearchStrategy[tuple[str, Any]]:
    binary = st.tuples(st.sampled_from(sorted(OPS)), children, children).map(
        lambda t: (f"({t[1][0]} {t[0]} {t[2][0]})", ("op", t[0], t[1][1], t[2][1]))
    )
    power = st.tuples(children, st.integers(0, 3)).map(
        lambda t: (f"({t[0][0]}) ** {t[1]}", ("pow", t[0][1], t[1]))
    )
    negate = children.map(lambda t: (f"-{t[0]}", ("neg", t[1])))
    return st.one_of(binary, power, negate)


TREES = st.recursive(leaf(), combine, max_leaves=12)


def python_value(tree: Any) -> Any:
    """Evaluate a generated tree with Python's own operators, applying the same size guard."""
    if not isinstance(tree, tuple):
        return tree
    try:
        if tree[0] == "neg":
            return -python_value(tree[1])
        if tree[0] == "pow":
            base, exponent = python_value(tree[1]), tree[2]
            if (
                isinstance(base, int)
                and abs(base) > 1
                and exponent * pymath.log2(abs(base)) > LIMIT_BITS
            ):
                raise Refused
            value = base**exponent
        else:
            value = OPS[tree[1]](python_value(tree[2]), python_value(tree[3]))
    except (ZeroDivisionError, OverflowError):
        raise Refused from None
    if isinstance(value, int) and value.bit_length() > LIMIT_BITS:
        raise Refused
    return value


@settings(max_examples=400, deadline=None)
@given(TREES)
def test_arithmetic_matches_python(generated: tuple[str, Any]) -> None:
    text, tree = generated
    try:
        expected = python_value(tree)
    except Refused:
        expected = None
    if isinstance(expected, float) and not pymath.isfinite(expected):
        expected = None
    if expected is None:
        with pytest.raises(ValueError):
            evaluate(text)
        return
    result = evaluate(text)
    assert type(result) is type(expected)
    assert result == expected


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.integers(0, 99), min_size=1, max_size=12),
    st.lists(st.sampled_from(["+", "-", "*", "//", "%", "/"]), min_size=11, max_size=11),
    st.lists(st.booleans(), min_size=12, max_size=12),
)
def test_precedence_matches_python(numbers: list[int], ops: list[str], negate: list[bool]) -> None:
    text = "".join(
        (f" {ops[i - 1]} " if i else "") + ("-" if negate[i] else "") + str(n)
        for i, n in enumerate(numbers)
    )
    try:
        expected = eval(text, {"__builtins__": {}}, {})  # the oracle: digits and operators only
    except ZeroDivisionError:
        with pytest.raises(ValueError, match="division by zero"):
            evaluate(text)
        return
    assert evaluate(text) == expected
