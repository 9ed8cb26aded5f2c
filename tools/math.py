"""Math: a calculator the planner can trust, that never runs code.

``math(expression, values)`` evaluates one arithmetic expression. The expression is parsed
with :mod:`ast` and walked node by node over an allow-list; nothing is ever passed to
``eval``, ``exec`` or ``compile``. What it understands:

- numbers (``12``, ``3.5``, ``1e6``, ``1_000``); no thousands separators: ``1,000`` is an error;
- ``+ - * / // % **``, unary ``+``/``-``, parentheses, comparisons (``<  <= > >= == !=``,
  which give ``True``/``False``);
- percentages: a number directly followed by ``%`` and then by nothing, an operator or ``)``
  means that many hundredths (``20%`` is ``0.2``); ``20% of 50`` (or ``20 % of 50``) is
  ``0.2 * 50``. Every other ``%`` is the remainder operator (``10 % 3``, ``10%3``, ``a % 2``);
- names: the keys of ``values``, then the constants ``pi``, ``e``, ``tau``;
- functions: ``abs round min max sum mean median sqrt exp log log10 log2 floor ceil
  sin cos tan``; ``log(x)`` is natural, ``log(x, base)`` any base; ``min max sum mean
  median`` take several numbers or one list (``sum([1, 2, 3])``, ``mean(xs)``);
- the multiplication sign, the division sign and the Unicode minus (U+00D7, U+00F7,
  U+2212) are read as ``*``, ``/`` and ``-``.

Guards: expressions longer than 1,000 characters, integers beyond 4,096 bits (about 1,233
digits, checked *before* a power is computed) and results that are not finite are refused.
Every error is a :class:`MathError` (a ``ValueError``) that names the offending part and its
column, e.g. ``unknown name 'foo' (column 5 of 'a + foo')``.

This file is loaded by path under an arbitrary module name: it imports only llmc and the
standard library (the standard ``math`` module as ``pymath``, since the tool is ``math``).
"""

import ast
import difflib
import math as pymath
import re
import statistics
from collections.abc import Callable
from typing import Any

import llmc

MAX_EXPRESSION_CHARS = 1000
MAX_INT_BITS = 4096

Number = int | float
Value = int | float | list[int | float]

CONSTANTS: dict[str, float] = {"pi": pymath.pi, "e": pymath.e, "tau": pymath.tau}


class MathError(ValueError):
    """An expression cannot be evaluated; the message names the part and its column.

    Attributes:
        expression: the expression as given.
        column: 1-based column of the offending part, when known.
    """

    def __init__(self, message: str, *, expression: str, column: int | None = None) -> None:
        shown = expression if len(expression) <= 120 else expression[:117] + "..."
        where = f"column {column} of {shown!r}" if column else f"in {shown!r}"
        super().__init__(f"{message} ({where})")
        self.reason = message
        self.expression = expression
        self.column = column


# -- functions ---------------------------------------------------------------------------------


def _reduce(name: str, fn: Callable[[list[Number]], Number]) -> Callable[..., Number]:
    """A function over several numbers or over one list of numbers."""

    def over(*args: Value) -> Number:
        items = args[0] if len(args) == 1 and isinstance(args[0], list) else list(args)
        if any(isinstance(item, list) for item in items):
            raise TypeError(f"{name}() takes numbers or one list of numbers")
        if not items:
            raise ValueError(f"{name}() of an empty list")
        return fn(items)  # type: ignore[arg-type]

    return over


def _mean(items: list[Number]) -> float:
    return pymath.fsum(items) / len(items)


def _sum(items: list[Number]) -> Number:
    if all(isinstance(item, int) for item in items):
        return sum(items)
    return pymath.fsum(items)


def _round(x: Number, ndigits: Number | None = None) -> Number:
    if ndigits is None:
        return round(x)
    if not isinstance(ndigits, int):
        raise TypeError("round()'s second argument, the number of digits, must be a whole number")
    return round(x, ndigits)


#: name -> (least arguments, most arguments or None for any, whether lists are accepted, fn)
FUNCTIONS: dict[str, tuple[int, int | None, bool, Callable[..., Any]]] = {
    "abs": (1, 1, False, abs),
    "round": (1, 2, False, _round),
    "min": (1, None, True, _reduce("min", min)),
    "max": (1, None, True, _reduce("max", max)),
    "sum": (1, None, True, _reduce("sum", _sum)),
    "mean": (1, None, True, _reduce("mean", _mean)),
    "median": (1, None, True, _reduce("median", statistics.median)),
    "sqrt": (1, 1, False, pymath.sqrt),
    "exp": (1, 1, False, pymath.exp),
    "log": (1, 2, False, pymath.log),
    "log10": (1, 1, False, pymath.log10),
    "log2": (1, 1, False, pymath.log2),
    "floor": (1, 1, False, pymath.floor),
    "ceil": (1, 1, False, pymath.ceil),
    "sin": (1, 1, False, pymath.sin),
    "cos": (1, 1, False, pymath.cos),
    "tan": (1, 1, False, pymath.tan),
}

_BINARY: dict[type[ast.operator], tuple[str, Callable[[Any, Any], Any]]] = {
    ast.Add: ("+", lambda a, b: a + b),
    ast.Sub: ("-", lambda a, b: a - b),
    ast.Mult: ("*", lambda a, b: a * b),
    ast.Div: ("/", lambda a, b: a / b),
    ast.FloorDiv: ("//", lambda a, b: a // b),
    ast.Mod: ("%", lambda a, b: a % b),
}
_COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], bool]] = {
    ast.Lt: lambda a, b: a < b,
    ast.LtE: lambda a, b: a <= b,
    ast.Gt: lambda a, b: a > b,
    ast.GtE: lambda a, b: a >= b,
    ast.Eq: lambda a, b: a == b,
    ast.NotEq: lambda a, b: a != b,
}
_UNSUPPORTED_OPERATORS = {
    ast.BitXor: "operator '^' (write powers as x ** y)",
    ast.BitAnd: "operator '&'",
    ast.BitOr: "operator '|'",
    ast.LShift: "operator '<<'",
    ast.RShift: "operator '>>'",
    ast.MatMult: "operator '@'",
    ast.Invert: "operator '~'",
    ast.Not: "operator 'not'",
    ast.In: "operator 'in'",
    ast.NotIn: "operator 'not in'",
    ast.Is: "operator 'is'",
    ast.IsNot: "operator 'is not'",
}
_UNSUPPORTED_NODES = {
    ast.Attribute: "attribute access",
    ast.Subscript: "indexing",
    ast.Lambda: "lambda",
    ast.ListComp: "comprehension",
    ast.SetComp: "comprehension",
    ast.DictComp: "comprehension",
    ast.GeneratorExp: "comprehension",
    ast.IfExp: "conditional expression",
    ast.BoolOp: "'and'/'or'",
    ast.JoinedStr: "f-string",
    ast.Dict: "dict",
    ast.Set: "set",
    ast.NamedExpr: "assignment ':='",
    ast.Starred: "unpacking '*'",
    ast.Await: "await",
    ast.Yield: "yield",
    ast.YieldFrom: "yield",
    ast.Slice: "slice",
}


# -- source handling ---------------------------------------------------------------------------

# A number written right after something that is not part of a name or a number.
_PERCENT = re.compile(
    r"(?<![\w.])((?:\d[\d_]*(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)(\s*)%"
    r"(?:(\s*of\b)|(?!\s*[\w(.\[]))"
)
_SAME_LENGTH = str.maketrans(
    {"\u00d7": "*", "\u00f7": "/", "\u2212": "-", "\n": " ", "\r": " ", "\t": " "}
)


class _Source:
    """The expression as parsed (percentages rewritten) and a map back to the original."""

    def __init__(self, original: str) -> None:
        self.original = original
        text = original.translate(_SAME_LENGTH)
        pieces: list[str] = []
        origin: list[int] = []
        position = 0
        for match in _PERCENT.finditer(text):
            if match.group(2) and not match.group(3):
                continue  # "10 % 3" with spaces is the remainder, only "20 % of x" is not
            pieces.append(text[position : match.start()])
            origin.extend(range(position, match.start()))
            number_start, percent_at = match.start(1), match.end(2)
            replacement = [("(", number_start)]
            replacement += [(ch, number_start + i) for i, ch in enumerate(match.group(1))]
            replacement += [(ch, percent_at) for ch in "/100)"]
            if match.group(3):
                replacement.append(("*", match.start(3)))
            pieces.append("".join(ch for ch, _ in replacement))
            origin.extend(at for _, at in replacement)
            position = match.end()
        pieces.append(text[position:])
        origin.extend(range(position, len(text)))
        origin.append(len(text))
        self.text = "".join(pieces)
        self.origin = origin

    def column(self, byte_offset: int) -> int:
        """1-based column in the original for a UTF-8 byte offset in the parsed text."""
        chars = len(self.text.encode()[:byte_offset].decode(errors="ignore"))
        return self.origin[min(chars, len(self.origin) - 1)] + 1

    def segment(self, node: ast.AST) -> str:
        """The original text of a node."""
        start = self.column(node.col_offset) - 1  # type: ignore[attr-defined]
        end_offset = node.end_col_offset  # type: ignore[attr-defined]
        chars = len(self.text.encode()[:end_offset].decode(errors="ignore"))
        end = self.origin[chars - 1] + 1 if chars else start
        text = self.original[start : max(end, start + 1)].strip()
        return text if len(text) <= 60 else text[:57] + "..."


# -- evaluation --------------------------------------------------------------------------------


class _Evaluator(ast.NodeVisitor):
    def __init__(self, source: _Source, names: dict[str, Value]) -> None:
        self.source = source
        self.names = names

    def error(self, node: ast.AST | None, message: str) -> MathError:
        column = self.source.column(node.col_offset) if node is not None else None  # type: ignore[attr-defined]
        return MathError(message, expression=self.source.original, column=column)

    def number(self, node: ast.expr) -> Number:
        value = self.visit(node)
        if isinstance(value, list):
            raise self.error(
                node,
                f"cannot use the list {self.source.segment(node)!r} as a number; reduce it "
                "with sum(), mean(), min() or max()",
            )
        return value

    def apply(self, node: ast.AST, function: Callable[..., Any], *args: Value) -> Number:
        """Run one operation; its arithmetic errors name the node they come from."""
        try:
            return self.checked(node, function(*args))
        except ZeroDivisionError:
            raise self.error(node, f"division by zero in {self.source.segment(node)!r}") from None
        except OverflowError:
            raise self.error(
                node, f"a number is too large in {self.source.segment(node)!r}"
            ) from None

    def checked(self, node: ast.AST, value: Any) -> Number:
        if isinstance(value, complex):
            raise self.error(node, f"{self.source.segment(node)!r} has no real value")
        if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
            raise self.error(
                node, f"{self.source.segment(node)!r} is too large (over {MAX_INT_BITS} bits)"
            )
        return value  # type: ignore[no-any-return]

    # ast.NodeVisitor calls visit_<NodeType>; any other node is generic_visit's error.

    def visit_Expression(self, node: ast.Expression) -> Value:
        return self.visit(node.body)  # type: ignore[no-any-return]

    def visit_List(self, node: ast.List | ast.Tuple) -> list[Number]:
        items = []
        for element in node.elts:
            if isinstance(element, ast.List | ast.Tuple):
                raise self.error(element, "lists inside lists are not supported")
            items.append(self.number(element))
        return items

    visit_Tuple = visit_List

    def generic_visit(self, node: ast.AST) -> Value:
        kind = _UNSUPPORTED_NODES.get(type(node), type(node).__name__)
        raise self.error(node, f"unsupported: {kind} {self.source.segment(node)!r}")

    def visit_Constant(self, node: ast.Constant) -> Number:
        value = node.value
        if isinstance(value, bool) or not isinstance(value, int | float | complex):
            raise self.error(
                node,
                f"unsupported: {type(value).__name__} {self.source.segment(node)!r}; only "
                "numbers can be computed with",
            )
        if isinstance(value, complex):
            raise self.error(node, "complex numbers are not supported")
        return self.checked(node, value)

    def visit_Name(self, node: ast.Name) -> Value:
        if node.id in self.names:
            return self.names[node.id]
        if node.id in CONSTANTS:
            return CONSTANTS[node.id]
        if node.id in FUNCTIONS:
            raise self.error(node, f"{node.id!r} is a function: call it, e.g. {node.id}(2)")
        known = [*self.names, *CONSTANTS]
        close = difflib.get_close_matches(node.id, known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f"; known names: {', '.join(known)}"
        raise self.error(node, f"unknown name {node.id!r}{hint}")

    def visit_BinOp(self, node: ast.BinOp) -> Number:
        if type(node.op) in _UNSUPPORTED_OPERATORS:
            raise self.error(node, f"unsupported: {_UNSUPPORTED_OPERATORS[type(node.op)]}")
        left = self.number(node.left)
        right = self.number(node.right)
        if isinstance(node.op, ast.Pow):
            return self.power(node, left, right)
        _, operation = _BINARY[type(node.op)]
        return self.apply(node, operation, left, right)

    def power(self, node: ast.BinOp, base: Number, exponent: Number) -> Number:
        exact = isinstance(base, int) and isinstance(exponent, int) and exponent > 0
        if exact and abs(base) > 1 and exponent * pymath.log2(abs(base)) > MAX_INT_BITS:
            raise self.error(
                node,
                f"{self.source.segment(node)!r} is too large to compute (over {MAX_INT_BITS} bits)",
            )
        return self.apply(node, pow, base, exponent)

    def visit_UnaryOp(self, node: ast.UnaryOp) -> Number:
        if isinstance(node.op, ast.USub):
            return -self.number(node.operand)
        if isinstance(node.op, ast.UAdd):
            return +self.number(node.operand)
        raise self.error(node, f"unsupported: {_UNSUPPORTED_OPERATORS[type(node.op)]}")

    def visit_Compare(self, node: ast.Compare) -> bool:
        left = self.number(node.left)
        for op, right_node in zip(node.ops, node.comparators, strict=True):
            if type(op) not in _COMPARE:
                raise self.error(node, f"unsupported: {_UNSUPPORTED_OPERATORS[type(op)]}")
            right = self.number(right_node)
            if not _COMPARE[type(op)](left, right):
                return False
            left = right
        return True

    def visit_Call(self, node: ast.Call) -> Number:
        if not isinstance(node.func, ast.Name):
            kind = _UNSUPPORTED_NODES.get(type(node.func), "call of")
            raise self.error(node, f"unsupported: {kind} {self.source.segment(node.func)!r}")
        name = node.func.id
        if name not in FUNCTIONS:
            close = difflib.get_close_matches(name, FUNCTIONS, n=1)
            hint = f"did you mean {close[0]}()?" if close else f"known: {', '.join(FUNCTIONS)}"
            raise self.error(node, f"unknown function {name!r}; {hint}")
        if node.keywords:
            raise self.error(
                node, f"{name}() takes positional arguments only, e.g. log(8, 2) or round(x, 2)"
            )
        least, most, lists, function = FUNCTIONS[name]
        count = len(node.args)
        if count < least or (most is not None and count > most):
            if most is None:
                wanted = f"at least {least}"
            else:
                wanted = str(least) if least == most else f"{least} or {most}"
            raise self.error(node, f"{name}() takes {wanted} argument(s), got {count}")
        args: list[Value] = [self.visit(arg) if lists else self.number(arg) for arg in node.args]
        try:
            return self.apply(node, function, *args)
        except MathError:
            raise
        except (ValueError, TypeError) as exc:
            detail = str(exc) if str(exc) != "math domain error" else "outside its domain"
            raise self.error(node, f"{self.source.segment(node)!r}: {detail}") from None


def _check_values(values: dict[str, Any] | None, expression: str) -> dict[str, Value]:
    names: dict[str, Value] = {}
    for key, value in (values or {}).items():
        if isinstance(value, list | tuple) and all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in value
        ):
            names[key] = list(value)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            names[key] = value
        else:
            shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
            raise MathError(
                f"value {key!r} must be a number or a list of numbers, got "
                f"{type(value).__name__} {shown}",
                expression=expression,
            )
    return names


def evaluate(expression: str, values: dict[str, Any] | None = None) -> int | float | bool:
    """Evaluate an arithmetic expression safely (see the module docstring for the language).

    Raises:
        MathError: the expression is malformed, uses something unsupported, names an
            unknown value, divides by zero or gives a result too large or not finite.
    """
    if not isinstance(expression, str):
        raise MathError(
            f"expression must be text, got {type(expression).__name__}", expression=repr(expression)
        )
    expression = expression.strip()
    if not expression:
        raise MathError("the expression is empty", expression=expression)
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise MathError(
            f"the expression is longer than {MAX_EXPRESSION_CHARS} characters; split it into steps",
            expression=expression,
        )
    names = _check_values(values, expression)
    source = _Source(expression)
    try:
        tree = ast.parse(source.text, mode="eval")
    except SyntaxError as exc:
        if exc.offset and exc.offset <= len(source.text):
            column = source.origin[exc.offset - 1] + 1
            reason = (exc.msg or "invalid syntax").split(" (", 1)[0]
        else:
            column, reason = len(expression), "the expression ends too early"
        if reason != "invalid syntax":
            reason = f"invalid syntax: {reason}"
        raise MathError(
            f"{reason}; write arithmetic over numbers, e.g. '(3 + 4) * 2'",
            expression=expression,
            column=column,
        ) from None
    except (ValueError, MemoryError, RecursionError) as exc:
        raise MathError(f"cannot parse the expression: {exc}", expression=expression) from None
    evaluator = _Evaluator(source, names)
    try:
        result = evaluator.visit(tree)
    except ZeroDivisionError:
        raise MathError("division by zero", expression=expression) from None
    except OverflowError:
        raise MathError("a number in the expression is too large", expression=expression) from None
    except RecursionError:
        raise MathError("the expression is nested too deeply", expression=expression) from None
    if isinstance(result, list):
        hint = (
            "; write numbers without thousands separators (1000, not 1,000)"
            if isinstance(tree.body, ast.Tuple)
            else "; reduce it with sum(), mean(), min() or max()"
        )
        raise MathError(f"the result is a list, not a number{hint}", expression=expression)
    if isinstance(result, float) and not pymath.isfinite(result):
        raise MathError(f"the result is {result}, not a finite number", expression=expression)
    return result


@llmc.tool(pure=True)
def math(
    expression: str, values: dict[str, int | float | list[int | float]] | None = None
) -> int | float | bool:
    """Calculate an arithmetic expression safely,
    e.g. math("(a - b) / b * 100", {"a": 120, "b": 96}) -> 25.0.

    Supports + - * / // % **, parentheses, comparisons (<, >, ==, ...), percentages ("15% of
    80" is 12.0), constants pi and e, and abs round min max sum mean median sqrt exp log
    log10 log2 floor ceil sin cos tan. log(x) is natural, log(x, base) any base; min, max,
    sum, mean and median take several numbers or one list. Use plain numbers: 1000, not
    1,000.

    Args:
        expression: one arithmetic expression, e.g. "sqrt(2) * 10" or "a * 0.8".
        values: numbers (or lists of numbers) the expression names, e.g. {"a": 10994}.
    """
    return evaluate(expression, values)
