"""The plan language: an incremental, safe parser.

The format is LLMCompiler's::

    Thought: look both trenches up at once.
    1. search("Mariana Trench")
    2. search("Puerto Rico Trench")
    3. compare($1, "depth of ${2}", unit="m")
    join()
    <END_OF_PLAN>

Each task line is ``N. tool(arguments)``; ``join()`` ends the plan (whatever follows it is
ignored, as after ``<END_OF_PLAN>``), and so does ``finish(answer)``, the plan's own answer
from task outputs (``finish($3)``, ``finish("longer: $3 km")``; see
:class:`~llmc.task.Finish`). Arguments are Python literals (strings with any content,
numbers, lists, tuples, sets, dicts, None/True/False) in which ``$N`` / ``${N}`` refer to
earlier tasks and ``$question`` to the user's question. Lines are read with :mod:`ast` and
only literals are accepted: nothing the model writes is ever evaluated or called. A
statement may span lines (an open bracket or a triple-quoted string). Blank lines, markdown
code fences, ``Thought:`` lines, a missing ``join()`` and ``<END_OF_PLAN>`` are accepted;
anything else is a :class:`PlanSyntaxError` with its line, column and text.
"""

from __future__ import annotations

import ast
import keyword
import re
import tokenize
import warnings
from collections.abc import Iterable
from io import StringIO
from typing import Any, NamedTuple

from .errors import PlanError, PlanSyntaxError
from .task import (
    MAX_NESTING,
    QUESTION,
    Finish,
    Ref,
    Task,
    TaskChecker,
    check_finish,
    nesting_error,
)
from .toolbox import Toolbox, Tools

END_OF_PLAN = "<END_OF_PLAN>"

_TASK = re.compile(r"\s*(\d+)\s*\.\s*")
_JOIN = re.compile(r"join\s*\(\s*\)\s*(?:<END_OF_PLAN>\s*)?$")
_THOUGHT = re.compile(r"\s*thought\s*:\s*", re.IGNORECASE)
_REF_NAME = re.compile(r"_(\d+|question)|__(\d+|question)_")
_FINISH = re.compile(r"finish\s*\(")
# References as the parser hides them: $N, ${N}, $question, ${question} (and $$, kept).
_HIDDEN = re.compile(r"\$\$|\$\{(\d+|question)\}|\$(\d+|question\b)")


class PlanParser:
    """Turns plan text into :class:`~llmc.task.Task` objects as the text streams in.

    Feed chunks of any size; each task comes out as soon as its statement is complete,
    and the tasks do not depend on how the text was cut. Every task is checked on arrival:
    duplicate ids and references to tasks not yet defined are errors, and so are unknown
    tools and ill-fitting arguments when ``tools`` are given. ``earlier`` holds the ids of
    tasks from earlier plans (a replan): the plan may refer to them but not reuse them.

    Example:
        >>> parser = PlanParser()
        >>> parser.feed('1. search("Mariana ')
        []
        >>> [t.id for t in parser.feed('Trench")\\n2. search($1)\\n')]
        [1, 2]

    After an error the bad statement is dropped and the parser can be fed on; tasks
    completed before the error are returned by the next call, and :attr:`tasks` holds
    every task so far.
    """

    def __init__(self, *, tools: Tools | None = None, earlier: Iterable[int] = ()) -> None:
        self.tools = Toolbox.of(tools) if tools is not None else None
        self.tasks: list[Task] = []
        self.joined = False
        self.ended = False
        #: The plan's own answer, when it ended with ``finish(...)`` rather than ``join()``.
        self.finish: Finish | None = None
        self.checker = TaskChecker(self.tools, earlier)
        self._buffer = ""
        self._scan_from = 0
        self._pending: list[str] = []  # chunks without a newline, not yet in the buffer
        self._open: _OpenStatement | None = None  # set while a statement is unfinished
        self._held: list[str] = []  # the unfinished statement's text, as it came
        self._line_parts: list[str] = []  # its last line so far
        self._line = 1
        self._thought: str | None = None
        self._unreturned: list[Task] = []

    def feed(self, chunk: str) -> list[Task]:
        """Add text; return the tasks whose statements it completed.

        Raises:
            PlanSyntaxError: a completed line does not parse.
            PlanError: a completed task is invalid (duplicate id, forward reference,
                unknown tool, arguments that do not fit).
        """
        out, self._unreturned = self._unreturned, []
        if not self._take(chunk):
            return out
        try:
            while not self.ended:
                newline = self._buffer.find("\n", self._scan_from)
                if newline < 0:
                    break
                statement = self._buffer[:newline]
                try:
                    task = self._statement(statement, final=False)
                except PlanError:
                    self._consume(newline + 1, statement)
                    raise
                if task is _INCOMPLETE:
                    if not self._hold(newline + 1):
                        break  # still open at the end of the text so far
                    continue
                self._consume(newline + 1, statement)
                if isinstance(task, Task):
                    out.append(task)
        except PlanError:
            self._unreturned = out
            raise
        return out

    def close(self) -> list[Task]:
        """Finish the text: parse a last line that has no newline, and return what is left.

        Raises:
            PlanSyntaxError: the text ends inside a statement (an open bracket or string).
        """
        out = self.feed("")
        self._release(len(self._buffer))
        if self.ended or not self._buffer.strip():
            return out
        statement = self._buffer
        try:
            task = self._statement(statement, final=True)
        except PlanError:
            self._unreturned = out
            raise
        finally:
            self._consume(len(statement), statement)
        if isinstance(task, Task):
            out.append(task)
        return out

    # -- text in, linear in its length ----------------------------------------------------
    #
    # Parsing a statement costs its length, so a statement is parsed only where it may end:
    # text without a newline waits in a list (no copying of the buffer per chunk), and once
    # Python has found a statement unfinished, an _OpenStatement follows its brackets and
    # strings line by line and hands it back to the parser only when they are all closed.

    def _take(self, chunk: str) -> bool:
        """Add ``chunk``; True when the buffer has new lines for the parser to look at."""
        if self._open is not None:
            return self._scan_held(chunk)
        if "\n" not in chunk and chunk:
            self._pending.append(chunk)
            return False
        self._buffer = "".join([self._buffer, *self._pending, chunk])
        self._pending = []
        return True

    def _hold(self, end: int) -> bool:
        """The statement up to ``end`` is unfinished: hold it aside and scan on from there.

        Returns True when it may end at a newline in the buffer (it is back there), False
        while it is still open after the buffer's whole text.
        """
        self._open = _OpenStatement()
        self._open.scan(self._buffer[:end])
        held, rest = self._buffer[:end], self._buffer[end:]
        self._buffer, self._scan_from = "", 0
        self._held, self._line_parts = [held], []
        return self._scan_held(rest)

    def _scan_held(self, chunk: str) -> bool:
        """Follow the open statement through ``chunk``: put the text back into the buffer at
        the first newline where it may end and return True, or keep holding it."""
        assert self._open is not None
        start = 0
        while (newline := chunk.find("\n", start)) >= 0:
            self._line_parts.append(chunk[start : newline + 1])
            line = "".join(self._line_parts)
            self._line_parts = []
            start = newline + 1
            if not self._open.scan(line):
                self._held.append(chunk)
                held = sum(len(part) for part in self._held)
                self._release(held - len(chunk) + newline)
                return True
        if start < len(chunk):
            self._line_parts.append(chunk[start:])
        self._held.append(chunk)
        return False

    def _release(self, scan_from: int) -> None:
        """Put held text back into the buffer; the parser looks for a newline from
        ``scan_from`` on."""
        if self._open is None:
            return
        self._buffer = "".join(self._held)
        self._scan_from = min(scan_from, len(self._buffer))
        self._open, self._held, self._line_parts = None, [], []

    # -- one statement -------------------------------------------------------------------

    def _consume(self, end: int, statement: str) -> None:
        self._line += statement.count("\n") + (end > len(statement))
        self._buffer = self._buffer[end:]
        self._scan_from = 0

    def _statement(self, text: str, *, final: bool) -> Task | object | None:
        """Parse one statement: a Task, None for a line that holds no task, or _INCOMPLETE."""
        stripped = text.strip()
        if not stripped or stripped.startswith("```"):
            return None
        if stripped == END_OF_PLAN:
            self.ended = True
            return None
        thought = _THOUGHT.match(text)
        if thought:
            self._thought = text[thought.end() :].strip() or None
            return None
        prefix = _TASK.match(text)
        body_start = prefix.end() if prefix else len(text) - len(text.lstrip())
        body = text[body_start:]
        if _JOIN.match(body.rstrip()):
            self.joined = self.ended = True  # join() ends the plan: what follows is ignored
            return None
        if _FINISH.match(body):
            return self._finish(text, body_start, final=final)
        if prefix is None:
            raise self._syntax_error(
                "expected a task like '1. tool(arguments)', 'Thought: ...' or 'join()'", text, 0
            )
        call = self._call(text, body, body_start, final=final)
        if call is _INCOMPLETE:
            return _INCOMPLETE
        assert isinstance(call, _Call)
        task = self._task(int(prefix.group(1)), call)
        self._thought = None
        return task

    def _call(self, text: str, body: str, body_start: int, *, final: bool) -> object:
        """The call in ``body`` (a ``_Call``), or ``_INCOMPLETE``; a positioned syntax error."""
        call = _fast_call(body) or _parse_call(body, final=final)
        if isinstance(call, SyntaxError):
            line, col = call.lineno or 1, call.offset or 1
            reason = _syntax_reason(call, body.split("\n")[line - 1 : line], col - 1)
            raise self._syntax_error(reason, text, body_start, line, col - 1)
        if isinstance(call, _LiteralError):
            raise self._syntax_error(call.reason, text, body_start, call.line, call.column)
        return call

    def _finish(self, text: str, body_start: int, *, final: bool) -> object | None:
        """Read ``finish(answer)``: the plan's last line, its own answer."""
        body = text[body_start:].rstrip()
        body = body.removesuffix(END_OF_PLAN)
        call = self._call(text, body, body_start, final=final)
        if call is _INCOMPLETE:
            return _INCOMPLETE
        assert isinstance(call, _Call)
        if call.kwargs or len(call.args) != 1:
            raise self._syntax_error(
                'finish() takes one answer: finish($N) or finish("text with $N")', text, body_start
            )
        finish = Finish(call.args[0], self._thought)
        try:
            check_finish(finish, self.checker.ids)
        except PlanError as exc:
            raise PlanError(f"line {self._line}: {exc}", line=self._line, column=1) from None
        self.finish, self.ended, self._thought = finish, True, None
        return None

    def _task(self, task_id: int, call: _Call) -> Task:
        task = Task(task_id, call.tool, call.args, call.kwargs, self._thought)
        try:
            self.checker.accept(task)
        except PlanError as exc:
            raise type(exc)(
                f"line {self._line}: {exc}", task_id=task_id, line=self._line, column=1
            ) from None
        self.tasks.append(task)
        return task

    def _syntax_error(
        self, reason: str, text: str, body_start: int, line: int = 1, col: int = 0
    ) -> PlanSyntaxError:
        """An error positioned in the plan text. ``line``/``col`` are 1-/0-based in the body."""
        lines = text.split("\n")
        line = max(1, min(line, len(lines)))
        column = col + 1 + (body_start if line == 1 else 0)
        return PlanSyntaxError(
            reason,
            line=self._line + line - 1,
            column=column,
            text=lines[line - 1].strip() or text.strip(),
        )


_INCOMPLETE = object()

_CODE_STOPS = re.compile(r"[\"'#\\()\[\]{}]")
_STRING_STOPS = {q: re.compile(r"\\|" + q) for q in ('"', "'", '"""', "'''")}


class _OpenStatement:
    """Brackets and strings of an unfinished statement, followed a line at a time.

    It counts what Python's tokenizer counts (brackets, strings with their escapes, comments,
    backslash continuations) well enough to say when a statement *may* be complete; the
    parser then decides. So a long statement is read once, not again at every newline.
    """

    def __init__(self) -> None:
        self.depth = 0
        self.quote = ""  # the open string's quote, if any

    def scan(self, text: str) -> bool:
        """Read ``text`` (whole lines); True while the statement cannot have ended."""
        continued = False
        for line in text.splitlines(keepends=True):
            continued = self._line(line)
        return continued or self.depth > 0 or bool(self.quote)

    def _line(self, line: str) -> bool:
        """Read one line; True when it ends in a backslash continuation."""
        index, end = 0, len(line)
        while index < end:
            if self.quote:
                stop = _STRING_STOPS[self.quote].search(line, index)
                if stop is None:
                    if len(self.quote) == 1:
                        self.quote = ""  # unterminated: the parser will say so
                    return False
                if stop.group() == "\\":
                    index = stop.end() + 1  # the escaped character, a newline included
                    continue
                self.quote, index = "", stop.end()
                continue
            stop = _CODE_STOPS.search(line, index)
            if stop is None:
                return False
            char, index = stop.group(), stop.end()
            if char in "([{":
                self.depth += 1
            elif char in ")]}":
                self.depth -= 1
            elif char == "#":
                return False
            elif char == "\\":
                return line[index:].strip("\r\n") == ""
            else:
                triple = line.startswith(char * 3, stop.start())
                self.quote = char * 3 if triple else char
                index = stop.start() + len(self.quote)
        return False


class _LiteralError(Exception):
    """A part of a call that is not a literal or a reference; positions are in the body."""

    def __init__(self, reason: str, line: int, column: int) -> None:
        super().__init__(reason)
        self.reason, self.line, self.column = reason, line, column


class _Call(NamedTuple):
    tool: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


# A fast path for the common shape of a task line: a call whose arguments are plain strings
# (no escapes, no prefixes), decimal numbers, None/True/False, $N references, and lists and
# dicts of those. It gives exactly what the ast path gives (a property test holds it to that)
# at a fraction of the cost; anything else (tuples, sets, escapes, errors) falls through to
# the ast path, which also produces every error message.
_TOKEN = re.compile(
    r"""\s*(?:"([^"\\\n\r\0]*)"|'([^'\\\n\r\0]*)'"""
    r"|(-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][-+]?\d+)?)(?![\w.])"
    r"|\$(\d+|question)(?![\w.])|\$\{(\d+|question)\}|([A-Za-z_]\w*)|([()\[\]{},:=]))"
)
_CONSTANTS = {"None": None, "True": True, "False": False}
_STRING, _NUMBER, _REF, _NAME, _PUNCT = "s", "n", "r", "w", "p"


class _NotSimple(Exception):
    """The statement is outside the fast path's subset: use the ast path."""


def _tokens(body: str) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    pos, end = 0, len(body.rstrip())
    while pos < end:
        match = _TOKEN.match(body, pos)
        if match is None:
            raise _NotSimple
        dq, sq, num, ref, bref, name, punct = match.groups()
        if punct is not None:
            out.append((_PUNCT, punct))
        elif dq is not None or sq is not None:
            out.append((_STRING, dq if dq is not None else sq))
        elif num is not None:
            try:
                out.append((_NUMBER, int(num) if num.lstrip("-").isdigit() else float(num)))
            except ValueError:  # beyond int's digit limit: let the ast path judge
                raise _NotSimple from None
        elif ref or bref:
            number = ref or bref
            out.append((_STRING, QUESTION) if number == "question" else (_REF, Ref(int(number))))
        else:
            out.append((_NAME, name))
        pos = match.end()
    return out


class _FastReader:
    """Recursive descent over the fast path's tokens."""

    def __init__(self, tokens: list[tuple[str, Any]]) -> None:
        self.tokens = tokens
        self.index = 0
        self.depth = 0  # open brackets around the current value

    def nested(self, read: Any) -> Any:
        """``read()`` one level deeper; past MAX_NESTING the ast path positions the error."""
        if self.depth >= MAX_NESTING:
            raise _NotSimple
        self.depth += 1
        value = read()
        self.depth -= 1
        return value

    def take(self) -> tuple[str, Any]:
        if self.index >= len(self.tokens):
            raise _NotSimple
        token = self.tokens[self.index]
        self.index += 1
        return token

    def peek(self, punct: str) -> bool:
        return self.index < len(self.tokens) and self.tokens[self.index] == (_PUNCT, punct)

    def items(self, close: str) -> list[Any]:
        """Comma-separated values up to ``close`` (a trailing comma allowed)."""
        values: list[Any] = []
        while not self.peek(close):
            values.append(self.value())
            if not self.peek(close) and self.take() != (_PUNCT, ","):
                raise _NotSimple
        self.index += 1
        return values

    def value(self) -> Any:
        kind, text = self.take()
        if kind in (_STRING, _NUMBER, _REF):
            return text
        if kind == _NAME and text in _CONSTANTS:
            return _CONSTANTS[text]
        if (kind, text) == (_PUNCT, "["):
            return self.nested(lambda: self.items("]"))
        if (kind, text) == (_PUNCT, "{") and not self.peek("}"):
            return self.nested(self.mapping)
        raise _NotSimple

    def mapping(self) -> dict[Any, Any]:
        """The items of a dict whose ``{`` was just read."""
        result: dict[Any, Any] = {}
        while not self.peek("}"):
            key = self.value()
            if isinstance(key, list | dict) or self.take() != (_PUNCT, ":"):
                raise _NotSimple
            result[key] = self.value()
            if not self.peek("}") and self.take() != (_PUNCT, ","):
                raise _NotSimple
        self.index += 1
        return result

    def call(self) -> _Call:
        kind, name = self.take()
        if kind != _NAME or keyword.iskeyword(name) or self.take() != (_PUNCT, "("):
            raise _NotSimple
        args: list[Any] = []
        kwargs: dict[str, Any] = {}
        while not self.peek(")"):
            if (
                self.index + 1 < len(self.tokens)
                and self.tokens[self.index][0] == _NAME
                and self.tokens[self.index + 1] == (_PUNCT, "=")
            ):
                key = self.tokens[self.index][1]
                if key in kwargs or keyword.iskeyword(key):
                    raise _NotSimple
                self.index += 2
                kwargs[key] = self.value()
            elif kwargs:
                raise _NotSimple  # positional after keyword: the ast path reports it
            else:
                args.append(self.value())
            if not self.peek(")") and self.take() != (_PUNCT, ","):
                raise _NotSimple
        self.index += 1
        if self.index != len(self.tokens):
            raise _NotSimple
        return _Call(name, tuple(args), kwargs)


def _fast_call(body: str) -> _Call | None:
    """The call in ``body`` if it lies in the fast path's subset, else None."""
    try:
        return _FastReader(_tokens(body)).call()
    except _NotSimple:
        return None


def _parse_call(body: str, *, final: bool) -> _Call | SyntaxError | _LiteralError | object:
    """Parse ``tool(args)`` into the tool's name and argument values.

    ``$N`` and ``${N}`` outside strings are replaced by identifiers of the same length
    (``_N``, ``__N_``) so that positions stay exact; strings that contain a replacement are
    read again from the original text.
    """
    source = _HIDDEN.sub(_hide_reference, body) if "$" in body else body
    try:
        if "\\" in source:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # invalid escapes in the model's strings
                tree = ast.parse(source.strip(), mode="eval")
        else:
            tree = ast.parse(source.strip(), mode="eval")
    except SyntaxError as exc:
        if not final and _is_unfinished(source):
            return _INCOMPLETE
        shift = len(source) - len(source.lstrip())
        if exc.lineno == 1 and exc.offset is not None:
            exc.offset += shift
        if exc.msg.startswith("too many nested"):  # Python's bound: report the plan's own
            return _LiteralError(str(nesting_error()), exc.lineno or 1, (exc.offset or 1) - 1)
        return exc
    except (ValueError, MemoryError, RecursionError) as exc:  # null bytes, absurd nesting
        return _LiteralError(f"unreadable statement: {exc}", 1, 0)
    shift = len(source) - len(source.lstrip())
    call = tree.body
    if not isinstance(call, ast.Call) or not isinstance(call.func, ast.Name):
        return _LiteralError("expected a tool call like 'search(\"query\")'", 1, shift)
    reader = _Values(body.strip(), source.strip(), shift)
    try:
        args = tuple(reader.value(a) for a in call.args)
        keywords: dict[str, Any] = {}
        for kw in call.keywords:
            if kw.arg is None:
                raise reader.error("'**' unpacking is not allowed; write each argument", kw)
            if kw.arg in keywords:
                raise reader.error(f"argument {kw.arg!r} is given twice", kw)
            keywords[kw.arg] = reader.value(kw.value)
    except RecursionError:
        return _LiteralError("arguments are nested too deeply", 1, shift)
    except _LiteralError as exc:
        return exc
    return _Call(call.func.id, args, keywords)


def _hide_reference(match: re.Match[str]) -> str:
    if match.group(1):
        return f"__{match.group(1)}_"
    if match.group(2):
        return f"_{match.group(2)}"
    return match.group(0)


def _is_unfinished(source: str) -> bool:
    """True when the text stops inside brackets or a triple-quoted string."""
    try:
        for _ in tokenize.generate_tokens(StringIO(source.strip()).readline):
            pass
    except tokenize.TokenError as exc:
        return "EOF in multi-line" in str(exc.args[0])
    except (SyntaxError, ValueError):
        return False
    return False


def _syntax_reason(exc: SyntaxError, line: list[str], col: int) -> str:
    """Python's message, or a plan-language one where Python's would mislead."""
    if line and line[0][col : col + 1] == "$":
        return "'$' must be followed by a task number, like $1 or ${1}, or by 'question'"
    return exc.msg or "invalid syntax"


class _Values:
    """Converts argument nodes to Python values, accepting only literals and references."""

    def __init__(self, original: str, source: str, shift: int) -> None:
        self.original = original
        self.source = source
        self.shift = shift
        self.hidden = source != original
        self.depth = 0  # containers around the current value
        # ast positions count UTF-8 bytes per line; for one ASCII line they index the text.
        self.simple = "\n" not in source and source.isascii()

    def segment(self, text: str, node: ast.expr) -> str | None:
        """The text of ``node`` in ``text`` (the original or the substituted source)."""
        if self.simple:
            return text[node.col_offset : node.end_col_offset]
        return ast.get_source_segment(text, node)

    def error(self, reason: str, node: ast.AST) -> _LiteralError:
        line = getattr(node, "lineno", 1)
        col = getattr(node, "col_offset", 0)
        line_text = self.source.split("\n")[line - 1].encode()
        col = len(line_text[:col].decode(errors="replace"))  # ast columns count UTF-8 bytes
        return _LiteralError(reason, line, col + (self.shift if line == 1 else 0))

    def value(self, node: ast.expr) -> Any:
        if isinstance(node, ast.Constant):
            if node.value is Ellipsis:
                raise self.error("'...' is not a value", node)
            if self.hidden and isinstance(node.value, str) and "_" in node.value:
                return self.original_string(node)
            return node.value
        if isinstance(node, ast.Name):
            return self.reference(node)
        if isinstance(node, ast.List | ast.Tuple | ast.Set | ast.Dict):
            if self.depth >= MAX_NESTING:
                raise self.error(str(nesting_error()), node)
            self.depth += 1
            value = self.container(node)
            self.depth -= 1
            return value
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            operand = node.operand
            number = operand.value if isinstance(operand, ast.Constant) else None
            if type(number) in (int, float, complex):
                return -number if isinstance(node.op, ast.USub) else number  # type: ignore[operator]
        raise self.error(self.describe(node), node)

    def container(self, node: ast.List | ast.Tuple | ast.Set | ast.Dict) -> Any:
        if isinstance(node, ast.List):
            return [self.value(e) for e in node.elts]
        if isinstance(node, ast.Tuple):
            return tuple(self.value(e) for e in node.elts)
        if isinstance(node, ast.Set):
            try:
                return {self.value(e) for e in node.elts}
            except TypeError:
                raise self.error("set members must be hashable (no lists or dicts)", node) from None
        return self.mapping(node)

    def original_string(self, node: ast.Constant) -> Any:
        """A string constant read from the original text, where ``$N`` was not replaced."""
        segment = self.segment(self.original, node)
        if segment is None:
            return node.value
        quote = segment[:1]
        inner = segment[1:-1]
        if quote in "'\"" and segment[-1:] == quote and "\\" not in inner and quote not in inner:
            return inner  # a plain one-quote string: its text is its value
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return ast.literal_eval(segment)

    def mapping(self, node: ast.Dict) -> dict[Any, Any]:
        result: dict[Any, Any] = {}
        for key, item in zip(node.keys, node.values, strict=True):
            if key is None:
                raise self.error("'**' unpacking is not allowed in a dict", item)
            try:
                result[self.value(key)] = self.value(item)
            except TypeError:
                raise self.error("dict keys must be hashable (no lists or dicts)", key) from None
        return result

    def reference(self, node: ast.Name) -> Ref | str:
        match = _REF_NAME.fullmatch(node.id)
        if match and self.hidden:
            segment = self.segment(self.original, node)
            if segment is not None and segment.startswith("$"):
                target = match.group(1) or match.group(2)
                return QUESTION if target == "question" else Ref(int(target))
        raise self.error(
            f'{node.id!r} is not a value: quote text ("{node.id}") or refer to '
            "an earlier task with $N",
            node,
        )

    def describe(self, node: ast.expr) -> str:
        segment = self.segment(self.source, node) or type(node).__name__
        if len(segment) > 40:
            segment = segment[:37] + "..."
        if isinstance(node, ast.Call):
            return (
                f"nested call {segment!r}: a call cannot be an argument; make it a task of "
                "its own and refer to it with $N"
            )
        return (
            f"{segment!r} is not a literal or a reference; only literal values and $N are allowed"
        )
