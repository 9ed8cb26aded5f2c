"""GBNF grammars that let a local model write only what llmc can read.

A small local model left to itself ignores the plan format. Constrained decoding fixes that:
the backend masks every token that would leave the grammar, so the output is, by construction,
text of the grammar's language. :func:`plan_grammar` builds the language of valid plans over
one :class:`~llmc.toolbox.Toolbox`; :func:`joiner_grammar` the language of joiner replies.
Pass either as ``GenerateOptions(grammar=...)`` to a backend whose ``supports_grammar`` is
true (the local llama.cpp backend; llama.cpp's server also reads a ``grammar`` field).

What :func:`plan_grammar` guarantees, for the plans it admits:

- every line is ``Thought: ...``, ``N. tool(arguments)``, or the final ``join()`` or
  ``finish(answer)`` (the plan's own answer: a ``$N`` or a string with ``$N`` in it, see
  :class:`~llmc.task.Finish`) followed by ``<END_OF_PLAN>``; tasks are numbered
  ``first_id``, ``first_id + 1``, ... exactly (the grammar unrolls one rule per task number,
  up to ``max_tasks``);
- ``tool`` is one of the toolbox's tools, and its arguments are positional, in the order of
  its parameters, with every required one present;
- each argument has its parameter's type, read from the tool's JSON schema: ``str`` a
  double-quoted string on one line (escapes ``\\\\ \\" \\' \\n \\r \\t``), ``int``/``float``
  numbers, ``bool`` ``True``/``False``, ``None``, ``list[...]`` ``[...]``, ``tuple[...]`` a
  list of its items, ``dict``/models ``{...}``, ``Literal`` its choices, ``X | None`` either,
  anything else any literal (lists and dicts one level deep);
- ``$N`` may stand for any value, and ``$N`` / ``${N}`` may appear inside strings, but only
  for tasks numbered before the one being written (earlier plans included), so no plan
  refers forward; ``$question`` (the user's question) may appear inside any string; a literal
  dollar sign is written ``$$``.

So every plan the grammar admits parses with ``PlanParser(tools=...)``, and arguments that
contain no reference pass the tools' own validation. The grammar cannot judge sense: which
tool, which text. A model that runs out of tokens mid-plan still leaves a prefix whose
complete lines parse.

Aids for small models narrow the language further (each an option, measured in
docs/benchmarks.md):

- a parameter's declared choices (``@llmc.tool(choices={"path": ...})``: a list, a function
  that lists them at planning time, or :data:`QUESTION_SPANS`) are the only values it may
  take, besides a reference;
- ``references=False`` leaves ``$N`` out altogether (a small model mostly misuses it);
- ``max_tasks`` caps the plan (a small model that may write twelve tasks writes twelve).

:func:`span_grammar` is the language of runs of words copied from given texts: the joiner's
copy-constrained answer (:func:`joiner_grammar` with ``copy_from``) and question spans.
:func:`typed_joiner_grammar` is a joiner reply whose answer is JSON of a schema (typed
answers, :mod:`llmc.typed`), built on :func:`schema_grammar`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from .errors import PlanError
from .parse import PlanParser
from .task import Task
from .toolbox import Toolbox, Tools

__all__ = [
    "DEFAULT_MAX_TASKS",
    "AnswerForm",
    "Word",
    "answer_form",
    "focus",
    "focused_value",
    "named_choices",
    "MAX_CHOICES",
    "QUESTION_SPANS",
    "SMALL_MODEL_PLANS",
    "Choices",
    "PlanGrammar",
    "QuestionSpans",
    "RepeatMask",
    "joiner_grammar",
    "plan_grammar",
    "resolve_choices",
    "schema_grammar",
    "span_grammar",
    "typed_joiner_grammar",
]

#: The most tasks one plan may have under :func:`plan_grammar` by default.
DEFAULT_MAX_TASKS = 12

# Characters allowed raw inside a string: no quote, backslash, dollar or control character
# (a raw newline would end the plan line; a lone "$N" would be a reference).
_STRING_CHAR = r'[^"\\$\x00-\x1F\x7F]'
# The same, but no digit either: what may follow a bare "$N" inside a string, which would
# otherwise read as a longer (later) task number.
_AFTER_REFERENCE = r'[^"\\$0-9\x00-\x1F\x7F]'
# Escapes Python reads the same way everywhere; \x, \u and \N are left out because a
# malformed one is a syntax error.
_ESCAPE = '"\\\\" ["\\\\nrt\']'

# Schema keys that do not change what text a value may be.
_NOT_SHAPE = frozenset({"title", "description", "default", "examples"})

#: The most values a parameter's choices may list; more (a folder of thousands of files) and
#: the parameter is left free, since a huge alternation slows every masked decoding step.
MAX_CHOICES = 1000
#: The most words :func:`span_grammar` copies from its texts (the rest are not offered).
MAX_SPAN_WORDS = 1500


class QuestionSpans:
    """The choices of a string parameter that must be a run of words copied from the
    question (a search term, a name): use the one instance, :data:`QUESTION_SPANS`."""

    def __repr__(self) -> str:
        return "QUESTION_SPANS"


#: A string parameter's values are runs of words copied from the question.
QUESTION_SPANS: Final = QuestionSpans()

#: What ``@llmc.tool(choices={name: ...})`` accepts for one parameter: the values themselves,
#: a function that lists them when a plan is written (the files under a root), or
#: :data:`QUESTION_SPANS`.
Choices = Sequence[Any] | Callable[[], Iterable[Any]] | QuestionSpans


def resolve_choices(choices: Choices) -> list[Any] | QuestionSpans | None:
    """The values ``choices`` stands for now; None when there are none or too many to list
    (more than :data:`MAX_CHOICES`), and the parameter is then left free."""
    if isinstance(choices, QuestionSpans):
        return choices
    values = list(choices() if callable(choices) else choices)
    unique = list(dict.fromkeys(json.dumps(v, sort_keys=True, default=str) for v in values))
    if not unique or len(unique) > MAX_CHOICES:
        return None
    return [json.loads(v) for v in unique]


def named_choices(values: Sequence[Any], question: str) -> list[str]:
    """The text choices that ``question`` names, as whole words (a path also by its last
    part: "todo.md" names ``notes/todo.md``); case aside, and only choices with a letter or
    a digit. A question that names a file or a folder is about that one, so a plan's
    arguments are held to those it names, and its first task uses one."""
    # The question's path-like words, less a sentence's full stop: "notes/todo.md." names
    # notes/todo.md, and neither "notes" nor "todo.md" by itself.
    words = {word.rstrip(".") for word in _PATH_WORD.findall(question.casefold())}
    return [
        value
        for value in values
        if isinstance(value, str)
        and any(char.isalnum() for char in value)  # "*" in "17 * 23" names no file
        and (value.casefold() in words or value.rsplit("/", 1)[-1].casefold() in words)
    ]


_PATH_WORD = re.compile(r"[\w./*-]+")


_PRIMITIVES = {
    "int": r'"-"? ("0" | [1-9] [0-9]{0,17})',
    "num": r'"-"? ("0" | [1-9] [0-9]{0,17}) ("." [0-9]{1,12})?',
    "bool": '"True" | "False"',
    "none": '"None"',
    "str-char": f'{_STRING_CHAR} | {_ESCAPE} | "$$" | "$question"',
    "str-after-ref": f'{_AFTER_REFERENCE} | {_ESCAPE} | "$$" | "$question"',
}


def plan_grammar(
    tools: Tools,
    *,
    first_id: int = 1,
    max_tasks: int = DEFAULT_MAX_TASKS,
    thoughts: bool = True,
    thought_chars: int = 200,
    string_chars: int = 200,
    max_items: int = 10,
    references: bool = True,
    choices: bool = True,
    question: str | None = None,
    finish: bool = True,
    continues: bool = False,
    excluded: Iterable[tuple[str, Sequence[Any]]] = (),
) -> str:
    """The GBNF grammar of every valid plan over ``tools``.

    Args:
        tools: the tools plans may call.
        first_id: the number of the plan's first task: 1, or on a replan the next free id
            (earlier tasks, numbered below it, may be referred to).
        max_tasks: the most tasks a plan may have; the grammar grows linearly with it.
        thoughts: allow a ``Thought: ...`` line before each task.
        thought_chars: the longest thought, in characters.
        string_chars: the longest string argument, in characters.
        max_items: the most items of one list or dict argument.
        references: allow ``$N`` (whole arguments and inside strings); False: only literals.
        choices: hold parameters with declared choices (``Tool.choices``) to them, and
            to those the question names where it names any (:func:`named_choices`); a
            plan's first task then calls a tool with such a parameter.
        question: the question, for parameters whose choices are :data:`QUESTION_SPANS`
            (without it they are free strings).
        finish: allow the plan to end with ``finish(answer)`` instead of ``join()``.
        continues: the grammar of the rest of a plan whose tasks up to ``first_id - 1``
            are written: it starts with the plan's end or task ``first_id``, and
            ``max_tasks`` (which may be 0) counts the tasks still allowed.
        excluded: calls that may not be written, as ``(tool name, positional arguments)``:
            the tasks written so far (see :class:`RepeatMask`). A call is excluded where its
            arguments are values of declared choices (finite lists); a call with a free
            argument (a string, a number, a reference) cannot be and is left as it is.

    The three bounds keep a small model from rambling until it runs out of tokens, which
    would cut the plan in the middle of a line.

    Returns:
        The grammar's text, with ``root`` as its start rule.

    Raises:
        ValueError: no tools, or a count or bound below 1.
    """
    toolbox = Toolbox.of(tools)
    if not toolbox:
        raise ValueError("plan_grammar() needs at least one tool: a plan can only call tools")
    if min(first_id, max_tasks + continues, thought_chars, string_chars, max_items) < 1:
        raise ValueError("first_id, max_tasks and the length bounds must be at least 1")
    builder = _Builder(
        string_chars=string_chars,
        max_items=max_items,
        choices=choices,
        question=question,
        excluded=excluded,
    )
    thought = "thought? " if thoughts else ""
    ender = builder.end if finish else (lambda level: "end")
    # Each task's calls, up to the first task that excluded calls leave nothing to write.
    task_calls: list[str] = []
    for task_id in range(first_id, first_id + max_tasks):
        level = task_id - 1 if references else 0
        # A question that names a file (a choice) is about it: its plan starts with it.
        first = task_id == first_id == 1 and not continues
        calls = builder.calls(toolbox, level, named=True) if first else None
        calls = calls or builder.calls(toolbox, level)
        if calls is None:
            break
        task_calls.append(calls)
    if not task_calls and not continues:  # nothing left to call: exclude nothing
        return plan_grammar(
            toolbox,
            first_id=first_id,
            max_tasks=max_tasks,
            thoughts=thoughts,
            thought_chars=thought_chars,
            string_chars=string_chars,
            max_items=max_items,
            references=references,
            choices=choices,
            question=question,
            finish=finish,
        )
    if continues:
        end = ender(first_id - 1)
        root = f"{end} | {thought}task-{first_id}" if task_calls else end
    else:
        root = f"{thought}task-{first_id}"
    builder.define("root", root)
    last = first_id + len(task_calls) - 1
    for task_id, calls in enumerate(task_calls, first_id):
        end = ender(task_id)
        rest = end if task_id == last else f"({end} | {thought}task-{task_id + 1})"
        builder.define(f"task-{task_id}", f'"{task_id}. " {calls} "\\n" {rest}')
    if not finish:
        builder.define("end", '"join()\\n<END_OF_PLAN>"')
    if thoughts:
        builder.define("thought", f'"Thought: " [^\\n\\r]{{1,{thought_chars}}} "\\n"')
    return builder.text()


@dataclass(frozen=True, slots=True)
class PlanGrammar:
    """Options of :func:`plan_grammar`, kept for every plan a planner writes.

    A :class:`~llmc.planner.Planner` calls it with each plan's first task number and the
    question, so a replan's grammar continues the numbering and question spans follow the
    question. Any function of ``(tools, first_id, question)`` that returns GBNF text may
    stand in for it.

    Attributes:
        max_tasks: the most tasks one plan may have.
        thoughts: allow ``Thought: ...`` lines.
        references: allow ``$N``.
        choices: hold parameters to their declared choices.
        finish: allow ``finish(answer)`` as the plan's end (references to tasks allowed
            there even without ``references``: the answer is the plan's outputs).
        thought_chars: the longest thought.
        string_chars: the longest string argument.
    """

    max_tasks: int = DEFAULT_MAX_TASKS
    thoughts: bool = True
    references: bool = True
    choices: bool = True
    thought_chars: int = 200
    string_chars: int = 200
    finish: bool = True

    def __call__(self, tools: Tools, first_id: int, question: str | None) -> str:
        """The grammar of one plan over ``tools`` whose first task is ``first_id``."""
        return self.build(tools, first_id, question)

    def build(
        self,
        tools: Tools,
        first_id: int,
        question: str | None,
        *,
        written: int = 0,
        excluded: Iterable[tuple[str, Sequence[Any]]] = (),
    ) -> str:
        """The grammar of a plan whose first ``written`` tasks are written (the rest of it,
        from task ``first_id`` on), without the ``excluded`` calls (see :func:`plan_grammar`)."""
        return plan_grammar(
            tools,
            first_id=first_id,
            max_tasks=self.max_tasks - written,
            thoughts=self.thoughts,
            references=self.references,
            choices=self.choices,
            question=question,
            thought_chars=self.thought_chars,
            string_chars=self.string_chars,
            finish=self.finish,
            continues=written > 0,
            excluded=excluded,
        )


class RepeatMask:
    """A plan's grammar, rebuilt as each task line is written so that no task can repeat an
    earlier one (same tool, same arguments), this plan's or an earlier plan's.

    For backends that change grammars while they decode (``GenerateOptions.next_grammar``,
    the local model): :meth:`initial` is the plan's first grammar, and each time the output
    ends a line the backend calls the mask with the output so far; after a task line, it
    returns the grammar of the rest of the plan, with every call written so far excluded.
    Only calls whose arguments are declared choices can be excluded (see
    :func:`plan_grammar`); a planner stops at any other repeat as before.

    Args:
        grammar: the plan grammar's options.
        tools: the tools plans may call.
        question: the question (for question spans).
        first_id: the plan's first task number.
        earlier: the tasks of earlier plans (a replan may not repeat them either).
    """

    def __init__(
        self,
        grammar: PlanGrammar,
        tools: Tools,
        question: str,
        *,
        first_id: int = 1,
        earlier: Sequence[Task] = (),
    ) -> None:
        self.grammar = grammar
        self.tools = Toolbox.of(tools)
        self.question = question
        self.first_id = first_id
        self.calls: list[tuple[str, Sequence[Any]]] = [
            (task.tool, task.args) for task in earlier if not task.kwargs
        ]
        self._parser = PlanParser(tools=self.tools, earlier=[task.id for task in earlier])
        self._read = 0  # how much of the output the parser has seen
        self._written = 0

    def initial(self) -> str:
        """The grammar of the whole plan, without earlier plans' calls."""
        return self.grammar.build(self.tools, self.first_id, self.question, excluded=self.calls)

    def __call__(self, text: str) -> str | None:
        """The grammar for what may follow ``text`` (the output so far, ending a line), or
        None to keep the current one (the line was no task, or did not parse)."""
        new, self._read = text[self._read :], len(text)
        try:
            tasks = self._parser.feed(new)
        except PlanError:
            return None
        if not tasks:
            return None
        self.calls += [(task.tool, task.args) for task in tasks if not task.kwargs]
        self._written += len(tasks)
        return self.grammar.build(
            self.tools,
            tasks[-1].id + 1,
            self.question,
            written=self._written,
            excluded=self.calls,
        )


#: The plan grammar for small models (``Local().small_model_aids``): at most 4 tasks, no
#: ``$N`` in tasks, parameters held to their choices. Measured in docs/benchmarks.md.
SMALL_MODEL_PLANS: Final = PlanGrammar(max_tasks=4, references=False)


def joiner_grammar(
    *,
    thought_chars: int = 300,
    answer_chars: int = 500,
    replan: bool = True,
    copy_from: Sequence[str] | None = None,
    question: str | None = None,
    focused: bool = False,
    thought: bool = True,
) -> str:
    """The GBNF grammar of a joiner reply: ``Finish(...)`` or ``Replan(...)``, after an
    optional ``Thought: ...`` line and an optional ``Action: `` (the shortest reply is just
    the action); with ``copy_from``, after a thought line that must be there.

    The text inside the action is one line; its parentheses must balance (one level deep),
    so the closing ``)`` ends the reply and generation stops there.

    Args:
        thought_chars: the longest thought, in characters.
        answer_chars: the longest answer (or reason to replan), in characters and
            parenthesised groups.
        replan: allow ``Replan(...)``; False: the reply always answers.
        copy_from: texts (observations, the question) the answer must be copied from: with
            them, ``Finish``'s text is a run of their words (see :func:`span_grammar`), so
            it can be neither a template's placeholder nor words the model made up.
            ``Replan``'s reason stays free.
        question: with ``copy_from``, the question: the answer may not start with one of
            its words (a small model otherwise echoes the question's own words), except
            the names of files that a "which file" question names, one of which it asks for.
        focused: with ``copy_from`` and ``question``, copy only from the parts of each
            text that speak of the question (see :func:`focus`).
        thought: allow the thought line (False: the reply is the action alone).

    Returns:
        The grammar's text; whatever it admits, :func:`llmc.joiner.parse_decision` reads.
    """
    free = f"answer-part{{1,{answer_chars}}}"
    if copy_from:  # a copied answer is only as good as the thought before it
        lines = [f'root ::= "Thought: " [^\\n\\r]{{1,{thought_chars}}} "\\nAction: " action']
    else:
        lead = f'("Thought: " [^\\n\\r]{{1,{thought_chars}}} "\\n")? ' if thought else ""
        lines = [f'root ::= {lead}"Action: "? action']
    if copy_from:
        lines.append('action ::= "Finish(" copied ")"')
    elif replan:
        lines.append('action ::= ("Finish" | "Replan") "(" answer ")"')
    else:
        lines.append('action ::= "Finish(" answer ")"')
    if copy_from:
        forms = answer_form(question or "")
        echo = _PIECE.findall(question or "")
        if _file_name in forms:  # "Which file has more lines, a.txt or b.md?" names its answer
            named = {
                piece
                for name in _FILE_NAME.findall(question or "")
                for piece in _PIECE.findall(name)
            }
            echo = [word for word in echo if word not in named]
        texts = list(copy_from)
        if focused and question:
            texts = [part for text in texts for part in focus(text, question)]
        spans = span_grammar(texts, name="copied", not_starting=echo, starting=forms)
        lines.append(spans.rstrip("\n"))
    else:
        lines.append(f"answer ::= {free}")
    lines.append('answer-part ::= [^\\n\\r()] | "(" [^\\n\\r()]* ")"')
    return "\n".join(lines) + "\n"


# A word, or one character that is neither a word character nor a space.
_PIECE = re.compile(r"\w+|[^\w\s]")
_UNTIL_SPACE = re.compile(r"\S*")


def focus(text: str, question: str) -> list[str]:
    """The parts of an observation that speak of the question, for an answer copied from it.

    A text is cut into parts: the items of a JSON object (``key: value``) or list, else its
    lines. Each part scores the question's words it shares (words of four letters or more,
    compared by their first five letters, so "attends" meets "attend"), each weighted by
    how few parts hold it; the parts with the best score are kept, all of them when none
    shares a word. So ``{"lines": 8, "words": 52}`` asked "How many lines ..." keeps
    ``lines: 8``, and a file asked "Which planet is the hottest?" keeps its hottest line.
    """
    parts = _parts(text)
    words = {_stem(w) for w in _PIECE.findall(question) if len(w) >= 4 and w.isalpha()}
    if len(parts) < 2 or not words:
        return parts
    held = [{_stem(w) for w in _PIECE.findall(part)} & words for part in parts]
    counts = {w: sum(w in h for h in held) for w in words}
    scores = [sum(1 / counts[w] for w in h) for h in held]
    best = max(scores)
    return [p for p, score in zip(parts, scores, strict=True) if score == best] if best else parts


_WEEKDAYS = frozenset(
    ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
)
# Capitalised words that start sentences or name days rather than someone.
_NOT_NAMES = _WEEKDAYS | frozenset(
    [
        "a",
        "an",
        "and",
        "at",
        "by",
        "for",
        "he",
        "her",
        "his",
        "i",
        "in",
        "it",
        "its",
        "of",
        "on",
        "she",
        "the",
        "their",
        "there",
        "they",
        "this",
        "to",
        "we",
        "who",
        "you",
    ]
)
_COUNTING = re.compile(
    r"\bhow (many|much|long|far|old|tall|big|large|heavy)\b|\bwhat time\b|"
    r"\bwhat is the (sum|total|difference|number|length|count)\b",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class Word:
    """A word of a text, as an answer copied from it might start.

    Attributes:
        text: the word.
        before: the word before it, across punctuation ("" at the text's start).
        after: what follows it up to the next space (``".txt"`` after ``planets``).
    """

    text: str
    before: str = ""
    after: str = ""


#: Whether a copied answer may start with a word (see :func:`answer_form`).
AnswerForm = Callable[[Word], bool]

# "Which/what <noun> ...": the words between "which" and the noun the question asks for.
_ASKED_NOUN = re.compile(
    r"\b(?:which|what)\s+(?:(?:is|are|was|were|the|a|an|name|kind|sort|type|of)\s+)*(\w+)",
    re.IGNORECASE,
)
_FILE_NAME = re.compile(r"[\w/-]+(?:\.\w+)+")
_FILE_NOUNS = frozenset({"file", "files", "folder", "folders", "document", "documents"})


def _number(word: Word) -> bool:
    return word.text[0].isdigit()


def _weekday(word: Word) -> bool:
    return word.text.casefold() in _WEEKDAYS


def _name(word: Word) -> bool:
    return word.text[0].isupper() and word.text.casefold() not in _NOT_NAMES


def _file_name(word: Word) -> bool:
    # The word just before an extension: "todo" of "notes/todo.md", without its folder.
    return word.text[0].isalnum() and re.fullmatch(r"(\.\w+)+", word.after) is not None


def answer_form(question: str) -> list[AnswerForm]:
    """What the first word of an answer to ``question`` looks like, when the question says,
    in order of preference (see :func:`span_grammar`'s ``starting``):

    - a number for "how many/much/long ...", "what time" and "what is the sum ...";
    - a weekday for "which day";
    - a name (a capitalised word that is not a weekday or a word that starts sentences)
      for "who";
    - a file's name (``planets.txt``, from the calls' arguments) for "which file/folder";
    - for other "which/what <noun>", a number or a name right after that noun ("room 4",
      ``continent: Asia``), and for "which <noun>" failing that, any name.

    Empty: the question does not say. So a small model asked "Who attends?" copies a name
    rather than the meeting's time, and "In which room ...?" the room's number."""
    if _COUNTING.search(question):
        return [_number]
    if re.search(r"\b(which|what) day\b", question, re.IGNORECASE):
        return [_weekday]
    if re.match(r"\s*who(m|se)?\b", question, re.IGNORECASE):
        return [_name]
    asked = _ASKED_NOUN.search(question)
    if asked is None:
        return []
    if asked.group(1).casefold() in _FILE_NOUNS:
        return [_file_name]
    noun = _stem(asked.group(1))

    def labelled(word: Word) -> bool:
        return _stem(word.before) == noun and (_number(word) or _name(word))

    which = asked.group(0)[:5].casefold() == "which"
    return [labelled, _name] if which else [labelled]


def _stem(word: str) -> str:
    return word.casefold()[:5]


def focused_value(text: str, question: str) -> str | None:
    """The answer an observation gives by itself, with no model to read it: when ``text``
    is a JSON object and :func:`focus` keeps exactly one of its items, that item's value if
    it is a number or a short text (``{"lines": 8, "words": 52}`` asked "How many lines
    ...?" gives ``"8"``) of the form the question asks for, if it says; None otherwise (a
    file, a list, a question that meets several items or none, a count asked "Which
    file?")."""
    try:
        value = json.loads(text)
    except ValueError:
        return None
    if not isinstance(value, dict) or len(value) < 2:
        return None
    kept = focus(text, question)
    if len(kept) != 1:
        return None
    for key, item in value.items():
        shown = item if isinstance(item, str) else json.dumps(item)
        if kept[0] == f"{key}: {shown}":
            short = isinstance(item, str) and 0 < len(item) <= 40 and "\n" not in item
            number = isinstance(item, int | float) and not isinstance(item, bool)
            return shown if (short or number) and _has_form(shown, key, question) else None
    return None


def _has_form(answer: str, key: str, question: str) -> bool:
    """Whether ``answer`` (the value of ``key``) starts as the question's answer must, if
    the question says (:func:`answer_form`): "Which file has more words?" is not "30"."""
    forms = answer_form(question)
    if not forms:
        return True
    first = _PIECE.search(answer)
    return first is not None and any(form(_word(answer, first, key)) for form in forms)


def _word(text: str, match: re.Match[str], before: str) -> Word:
    """The piece ``match`` of ``text`` as an answer's first word, after ``before``."""
    after = _UNTIL_SPACE.match(text, match.end())
    return Word(match.group(), before, after.group() if after else "")


def _parts(text: str) -> list[str]:
    """A JSON object's ``key: value`` items or a list's items, or else a text's lines."""
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if isinstance(value, dict):
        parts = [f"{k}: {v if isinstance(v, str) else json.dumps(v)}" for k, v in value.items()]
    elif isinstance(value, list):
        parts = [v if isinstance(v, str) else json.dumps(v) for v in value]
    else:
        parts = _table_rows(text.splitlines())
    return [part for part in parts if part.strip()] or [text]


def _table_rows(lines: list[str]) -> list[str]:
    """CSV-like lines (a header, then rows with as many commas) as ``column: value`` rows,
    so each row carries the names of its columns; other lines as they are."""
    lines = [line for line in lines if line.strip()]
    commas = lines[0].count(",") if lines else 0
    if len(lines) < 2 or not commas or any(line.count(",") != commas for line in lines):
        return lines
    header = [name.strip() for name in lines[0].split(",")]
    return [
        ", ".join(
            f"{name}: {value.strip()}" for name, value in zip(header, line.split(","), strict=True)
        )
        for line in lines[1:]
    ]


def span_grammar(
    texts: Iterable[str],
    *,
    name: str = "span",
    escape: Callable[[str], str] | None = None,
    max_words: int = MAX_SPAN_WORDS,
    not_starting: Iterable[str] = (),
    starting: Sequence[AnswerForm] = (),
) -> str:
    """GBNF rules whose start rule ``name`` admits any run of consecutive words of ``texts``.

    Texts are cut into words (runs of letters and digits) and single punctuation marks;
    between two of them the run has one space where the text had any white space, and
    nothing where it had none. So ``"Jupiter is the largest planet."`` offers ``Jupiter``,
    ``the largest planet.``, ``planet`` and so on, and nothing that is not in the text. A
    run never stops inside a word written without spaces: one that starts at ``10`` of
    ``10:00`` or ``todo`` of ``todo.md`` copies at least all of it.

    Args:
        texts: the texts to copy from.
        name: the start rule's name (other rules are named after it).
        escape: how a piece is written in the surrounding language (e.g. inside a Python
            string literal); default: as it is.
        max_words: the most words and marks offered, all texts together.
        not_starting: words a run may not start with, in any form that shares their first
            five letters, case aside ("thanks" rules out "Thank", "attends" "attend"); runs
            never start with a punctuation mark either. An answer copied from observations
            starts with what the question does not already say.
        starting: which words a run may start with, in order of preference (see
            :func:`answer_form`): runs start with the words that pass the first form any
            word passes; every start stays when none does.

    Returns:
        The rules' text; an empty-text input offers only the empty run.
    """
    write = escape or (lambda piece: piece)
    banned = {_stem(word) for word in not_starting}
    rules: dict[str, str] = {}
    starts: list[str] = []
    formed: list[list[str]] = [[] for _ in starting]  # the starts that have each form
    count = 0
    for number, text in enumerate(texts):
        pieces = list(_PIECE.finditer(text))[: max(0, max_words - count)]
        count += len(pieces)
        before = ""  # the last word before this piece, across punctuation
        word_ends = _word_ends(pieces)
        for index, match in enumerate(pieces):
            rule = f"{name}-{number}-{index}"
            body = _literal(write(match.group()))
            if index + 1 < len(pieces):
                gap = " " if match.end() < pieces[index + 1].start() else ""
                body += f" ({_literal(gap) + ' ' if gap else ''}{name}-{number}-{index + 1})?"
            rules[rule] = body
            piece, word_before = match.group(), before
            if piece[0].isalnum() or piece[0] == "_":
                before = piece
            if banned and (_stem(piece) in banned or not piece[0].isalnum()):
                continue
            last = word_ends[index] if piece[0].isalnum() else index
            if last > index:  # "10" of "10:00" copies "10:00", "todo" of "todo.md" "todo.md"
                joined = " ".join(_literal(write(m.group())) for m in pieces[index:last])
                rule = f"{rule}-whole"
                rules[rule] = f"{joined} {name}-{number}-{last}"
            starts.append(rule)
            if starting:
                word = _word(text, match, word_before)
                for form, passed in zip(starting, formed, strict=True):
                    if form(word):
                        passed.append(rule)
    starts = next((passed for passed in formed if passed), starts)
    # Identical starting words lead to different continuations, so every start stays.
    lines = [f"{name} ::= " + (" | ".join(starts) if starts else '""')]
    lines += [f"{rule} ::= {body}" for rule, body in rules.items()]
    return "\n".join(lines) + "\n"


#: The most pieces a word written without spaces has ("notes/todo.md" has five); a longer
#: run (minified JSON, a URL) is not copied whole, so the grammar stays linear in the text.
_WORD_PIECES = 8


def _word_ends(pieces: Sequence[re.Match[str]]) -> list[int]:
    """For each piece, the last word piece (not punctuation) at or after it in its run of
    pieces with no space between them: a copy starting there goes at least that far. The
    piece itself when the run has more than :data:`_WORD_PIECES` pieces."""
    ends = list(range(len(pieces)))
    first = 0
    for index in range(1, len(pieces) + 1):
        if index < len(pieces) and pieces[index].start() == pieces[index - 1].end():
            continue
        if index - first <= _WORD_PIECES:  # the run first .. index - 1 is one word
            last = first
            for at in range(first, index):
                if pieces[at].group()[0].isalnum():
                    last = at
            for at in range(first, last):
                ends[at] = last
        first = index
    return ends


class _Builder:
    """Collects named rules; each distinct (type, reference level) gets one rule."""

    def __init__(
        self,
        *,
        string_chars: int,
        max_items: int,
        choices: bool = True,
        question: str | None = None,
        excluded: Iterable[tuple[str, Sequence[Any]]] = (),
    ) -> None:
        self.string_chars = string_chars
        self.max_items = max_items
        self.use_choices = choices
        self.question = question
        self.excluded: dict[str, list[tuple[str, ...]]] = {}
        for tool_name, args in excluded:
            written = tuple(_literal_of(value) for value in args)
            if None not in written:  # (a reference or an object: not a choice)
                self.excluded.setdefault(tool_name, []).append(written)  # type: ignore[arg-type]
        self._resolved: dict[tuple[int, str], list[Any] | QuestionSpans | None] = {}
        self.named_params: set[tuple[int, str]] = set()  # those held to named choices
        self.rules: dict[str, str] = {}
        self._type_ids: dict[str, int] = {}
        self._defs: Mapping[str, Any] = {}

    def define(self, name: str, body: str) -> str:
        self.rules.setdefault(name, body)
        return name

    def text(self) -> str:
        """The rules, the start rule ``root`` first."""
        names = sorted(self.rules, key=lambda name: name != "root")  # (a stable sort)
        return "".join(f"{name} ::= {self.rules[name]}\n" for name in names)

    def end(self, level: int) -> str:
        """The plan's last line after task ``level``: ``join()``, or ``finish(answer)`` with
        an answer that may use ``$1`` to ``$level``."""
        answer = f"({self.string(level)} | {self.reference(level)})"
        return self.define(
            f"end-{level}", f'"join()\\n<END_OF_PLAN>" | "finish(" {answer} ")\\n<END_OF_PLAN>"'
        )

    # -- tools ---------------------------------------------------------------------------

    def calls(self, tools: Toolbox, level: int, *, named: bool = False) -> str | None:
        """A rule for a call of any of the tools, with references up to ``$level``; None
        when the excluded calls leave none. With ``named``, only the tools with a parameter
        held to choices the question names (None if there are none)."""
        alternatives = [
            self.call(index, tools[name], level)
            for index, name in enumerate(tools)
            if not named or self.names_a_choice(index, tools[name])
        ]
        kept = [alternative for alternative in alternatives if alternative is not None]
        rule = f"call-named-{level}" if named else f"call-{level}"
        return self.define(rule, " | ".join(kept)) if kept else None

    def names_a_choice(self, index: int, tool: Any) -> bool:
        """Whether the question names one of the choices of one of ``tool``'s parameters."""
        declared = getattr(tool, "choices", None) or {}
        for name in declared:
            self.resolved(index, tool, name)
        return any((index, name) in self.named_params for name in declared)

    def call(self, index: int, tool: Any, level: int) -> str | None:
        """A rule for one tool's call: its name, then its arguments in order; None when
        every call of it is excluded."""
        schema = tool.params_model.model_json_schema()
        self._defs = schema.get("$defs", {})
        properties: Mapping[str, Any] = schema.get("properties", {})
        required = set(schema.get("required", ()))
        names = list(tool.parameters)
        parts = [
            self.choice(index, tool, name, level) or self.value(properties.get(name, {}), level)
            for name in names
        ]
        # Positional arguments: everything up to the last required parameter must be given.
        needed = max((i + 1 for i, name in enumerate(names) if name in required), default=0)
        excluded = self.excluded.get(tool.name)
        if excluded:
            finite = [self.finite(index, tool, name) for name in names]
            found = _Unrepeated(self, f"unrepeated-{index}-{level}", parts, finite, needed, level)
            unrepeated = found.rule(excluded)
            if unrepeated is None:
                return None
            arguments = unrepeated
        else:
            arguments = _sequence(parts, needed)
        opening = _literal(f"{tool.name}(")
        body = f'{opening} {arguments} ")"' if arguments else _literal(f"{tool.name}()")
        return self.define(f"tool-{index}-{_rule_word(tool.name)}-{level}", body)

    def resolved(self, index: int, tool: Any, name: str) -> list[Any] | QuestionSpans | None:
        """The values a parameter is held to, if it is held to any."""
        declared = getattr(tool, "choices", None) or {}
        if not self.use_choices or name not in declared:
            return None
        key = (index, name)
        if key not in self._resolved:  # a function that lists choices runs once per grammar
            values = resolve_choices(declared[name])
            named = named_choices(values, self.question or "") if isinstance(values, list) else []
            if named:
                self.named_params.add(key)
            self._resolved[key] = named or values
        return self._resolved[key]

    def finite(self, index: int, tool: Any, name: str) -> list[str] | None:
        """A parameter's choices as plan text, when they are a list (None: the values are
        free, or question spans)."""
        values = self.resolved(index, tool, name)
        return [_python_literal(v) for v in values] if isinstance(values, list) else None

    def choice(self, index: int, tool: Any, name: str, level: int) -> str | None:
        """A rule for a parameter held to its declared choices, or None if it has none."""
        values = self.resolved(index, tool, name)
        if values is None or (isinstance(values, QuestionSpans) and not self.question):
            return None
        rule = f"choice-{index}-{_rule_word(name)}"
        if isinstance(values, QuestionSpans):
            assert self.question is not None
            spans = span_grammar([self.question], name=f"{rule}-span", escape=_in_string)
            for line in spans.splitlines():
                head, body = line.split(" ::= ", 1)
                self.define(head, body)
            self.define(rule, f'"\\"" {rule}-span "\\""')
        else:
            self.define(rule, " | ".join(_literal(_python_literal(v)) for v in values))
        return f"({rule} | {self.reference(level)})" if level else rule

    # -- values --------------------------------------------------------------------------

    def value(self, schema: Mapping[str, Any], level: int) -> str:
        """An expression for a value of ``schema``, or a reference ``$N`` (N <= level)."""
        alternatives = self.alternatives(schema, level)
        if level:
            alternatives.append(self.reference(level))
        unique = list(dict.fromkeys(alternatives))
        return unique[0] if len(unique) == 1 else "(" + " | ".join(unique) + ")"

    def alternatives(self, schema: Mapping[str, Any], level: int) -> list[str]:
        """The GBNF alternatives of one JSON schema node (without references)."""
        schema = self.resolve(schema)
        if "enum" in schema:
            return [_literal(_python_literal(choice)) for choice in schema["enum"]]
        if "const" in schema:
            return [_literal(_python_literal(schema["const"]))]
        for key in ("anyOf", "oneOf"):
            if key in schema:
                return [alt for part in schema[key] for alt in self.alternatives(part, level)]
        if "allOf" in schema and len(schema["allOf"]) == 1:
            return self.alternatives(schema["allOf"][0], level)
        kind = schema.get("type")
        if isinstance(kind, list):
            return [
                alt for one in kind for alt in self.alternatives({**schema, "type": one}, level)
            ]
        if kind in ("integer", "number", "boolean", "null"):
            name = {"integer": "int", "number": "num", "boolean": "bool", "null": "none"}[kind]
            return [self.primitive(name)]
        if kind == "string":
            return [self.string(level)]
        if kind == "array":
            return [self.array(schema, level)]
        if kind == "object":
            return [self.object(schema, level)]
        return [self.any(level)]

    def resolve(self, schema: Mapping[str, Any]) -> Mapping[str, Any]:
        """Follow a ``{"$ref": "#/$defs/Name"}`` to its definition."""
        seen = 0
        while isinstance(schema.get("$ref"), str) and seen < 32:
            name = schema["$ref"].rsplit("/", 1)[-1]
            schema = self._defs.get(name, {})
            seen += 1
        return schema

    def primitive(self, name: str) -> str:
        return self.define(name, _PRIMITIVES[name])

    def reference(self, level: int) -> str:
        """``$N`` for any N from 1 to ``level``."""
        numbers = " | ".join(f'"{n}"' for n in range(1, level + 1))
        self.define(f"ref-num-{level}", numbers)
        return self.define(f"ref-{level}", f'"$" ref-num-{level}')

    def string(self, level: int) -> str:
        """A double-quoted one-line string; with ``level``, ``$N``/``${N}`` inside it."""
        char = self.primitive("str-char")
        most = f"{{0,{self.string_chars}}}"
        if not level:
            return self.define("str-0", f'"\\"" {char}{most} "\\""')
        self.reference(level)
        after = self.primitive("str-after-ref")
        number = f"ref-num-{level}"
        piece = self.define(
            f"str-piece-{level}", f'{char} | "${{" {number} "}}" | "$" {number} {after}'
        )
        return self.define(f"str-{level}", f'"\\"" {piece}{most} ("$" {number})? "\\""')

    def items(self, item: str) -> str:
        """Zero to ``max_items`` comma-separated ``item``s."""
        return f'({item} (", " {item}){{0,{self.max_items - 1}}})?'

    def array(self, schema: Mapping[str, Any], level: int) -> str:
        """``[a, b]`` for a tuple (``prefixItems``), ``[x, ...]`` for a list."""
        fixed = schema.get("prefixItems")
        if isinstance(fixed, list) and fixed:
            items = ' ", " '.join(self.value(item, level) for item in fixed)
            return self.named(schema, level, f'"[" {items} "]"')
        item = self.value(schema.get("items", {}), level)
        return self.named(schema, level, f'"[" {self.items(item)} "]"')

    def object(self, schema: Mapping[str, Any], level: int) -> str:
        """``{"key": value, ...}``: the model's fields in order, or any string keys."""
        properties: Mapping[str, Any] = schema.get("properties", {})
        if properties:
            required = set(schema.get("required", ()))
            names = list(properties)
            parts = [
                f"{_literal(json.dumps(name, ensure_ascii=False) + ': ')} "
                f"{self.value(properties[name], level)}"
                for name in names
            ]
            needed = max((i + 1 for i, name in enumerate(names) if name in required), default=0)
            return self.named(schema, level, f'"{{" {_sequence(parts, needed)} "}}"')
        extra = schema.get("additionalProperties")
        value = self.value(extra if isinstance(extra, Mapping) else {}, level)
        entry = f'{self.string(level)} ": " {value}'
        return self.named(schema, level, f'"{{" {self.items(entry)} "}}"')

    def any(self, level: int) -> str:
        """Any literal: a string, number, bool or None, or a flat list or dict of those.

        One level of nesting only: a deeper structure is rarely what an untyped parameter
        wants, and a small model left free to nest fills its token budget with it.
        """
        scalar = self.define(
            f"scalar-{level}",
            " | ".join(
                [
                    self.string(level),
                    self.primitive("num"),
                    self.primitive("bool"),
                    self.primitive("none"),
                    *([self.reference(level)] if level else []),
                ]
            ),
        )
        entry = f'{self.string(level)} ": " {scalar}'
        return self.define(
            f"any-{level}",
            f'{scalar} | "[" {self.items(scalar)} "]" | "{{" {self.items(entry)} "}}"',
        )

    def named(self, schema: Mapping[str, Any], level: int, body: str) -> str:
        """A rule for a compound type: one per distinct schema and level."""
        shape = {k: v for k, v in schema.items() if k not in _NOT_SHAPE}
        key = json.dumps(shape, sort_keys=True, default=str)
        number = self._type_ids.setdefault(key, len(self._type_ids))
        return self.define(f"type-{number}-{level}", body)


def _sequence(parts: list[str], required: int, *, leading: bool = False) -> str:
    """Comma-separated ``parts``: the first ``required`` always, then any prefix of the rest
    (``leading``: a comma before the first part too, for parts after earlier ones)."""

    def lead(index: int) -> str:
        return '", " ' if index > 0 or leading else ""

    tail = ""
    for index in range(len(parts) - 1, required - 1, -1):
        tail = f"({lead(index)}{parts[index]}{' ' + tail if tail else ''})?"
    fixed = " ".join(f"{lead(index)}{part}" for index, part in enumerate(parts[:required]))
    return " ".join(piece for piece in (fixed, tail) if piece)


class _Unrepeated:
    """The arguments of one tool's call, except the excluded argument lists.

    A trie over the excluded lists: at each position, a value no excluded list continues
    with leads to the free rest of the arguments, and a value some do continue with leads
    to the next level of the trie; an argument list may end where the tool allows it and it
    is not itself excluded. Only positions whose values are finite choices branch (a free
    value cannot be told apart in a grammar), so excluded lists that need a free value to
    branch are left out. The grammar grows with the excluded lists, not with the choices.
    """

    def __init__(
        self,
        builder: _Builder,
        name: str,
        parts: list[str],
        finite: list[list[str] | None],
        needed: int,
        level: int,
    ) -> None:
        self.builder, self.name, self.parts = builder, name, parts
        self.finite, self.needed, self.level = finite, needed, level
        self.count = 0

    def rule(self, excluded: Sequence[tuple[str, ...]]) -> str | None:
        """The rule of the arguments without ``excluded``; None if nothing is left."""
        usable = [
            written
            for written in excluded
            if self.needed <= len(written) <= len(self.parts)
            and all(
                choices is not None and value in choices
                for value, choices in zip(written, self.finite, strict=False)
            )
        ]
        if not usable:
            return _sequence(self.parts, self.needed)
        return self.branch((), usable)

    def branch(self, prefix: tuple[str, ...], excluded: list[tuple[str, ...]]) -> str | None:
        """The arguments after ``prefix``, whose excluded continuations are ``excluded``
        (each starting with ``prefix``); None if none are left."""
        at, parts = len(prefix), self.parts
        onward = {written[at] for written in excluded if len(written) > at}
        stops_here = prefix in excluded
        if not onward and not stops_here:  # nothing excluded from here on
            return _sequence(parts[at:], max(0, self.needed - at), leading=at > 0) or '""'
        alternatives = []
        if at >= self.needed and not stops_here:
            alternatives.append('""')
        if at < len(parts):
            lead = '", " ' if at else ""
            rest = _sequence(parts[at + 1 :], max(0, self.needed - at - 1), leading=True)
            rest = f" {rest}" if rest else ""
            if onward:  # (a finite position: only such lists are excluded)
                free = [_literal(v) for v in self.finite[at] or () if v not in onward]
                if self.level:
                    free.append(self.builder.reference(self.level))
            else:
                free = [parts[at]]
            if free:
                alternatives.append(f"{lead}({' | '.join(free)}){rest}")
            for value in sorted(onward):
                deeper = [w for w in excluded if len(w) > at and w[at] == value]
                after = self.branch((*prefix, value), deeper)
                if after is not None:
                    alternatives.append(f"{lead}{_literal(value)} {after}")
        if not alternatives:
            return None
        self.count += 1
        return self.builder.define(f"{self.name}-{self.count}", " | ".join(alternatives))


def _literal_of(value: Any) -> str | None:
    """A written argument as the plan text a choice would be, or None for a value that
    is no choice (a reference, an object)."""
    if value is None or isinstance(value, bool | int | float | str | list | dict):
        if isinstance(value, str) and "$" in value:
            return None  # (a reference inside the string)
        return _python_literal(value)
    return None


def _python_literal(value: Any) -> str:
    """A JSON value as plan-language (Python literal) text."""
    if value is None or isinstance(value, bool):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a JSON string is a Python string
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_python_literal(v) for v in value) + "]"
    if isinstance(value, dict):
        items = (f"{_python_literal(k)}: {_python_literal(v)}" for k, v in value.items())
        return "{" + ", ".join(items) + "}"
    return json.dumps(value, default=str)


def _in_string(piece: str) -> str:
    """A piece of text as it is written inside a double-quoted plan string."""
    return json.dumps(piece, ensure_ascii=False)[1:-1].replace("$", "$$")


def _literal(text: str) -> str:
    """``text`` as a GBNF string literal."""
    out = []
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif char == "\n":
            out.append("\\n")
        elif char == "\r":
            out.append("\\r")
        elif char == "\t":
            out.append("\\t")
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\x{ord(char):02X}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def _rule_word(name: str) -> str:
    """A tool name as a GBNF rule-name fragment (letters, digits and dashes only)."""
    return re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-") or "tool"


def schema_grammar(schema: Mapping[str, Any], *, prefix: str = "out-") -> str | None:
    """The GBNF rules of JSON that fits ``schema`` (llama-cpp-python's converter), every
    rule renamed with ``prefix`` so they can join another grammar; the value's rule is
    ``{prefix}root``. None when the converter is not installed or refuses the schema."""
    try:
        from llama_cpp.llama_grammar import json_schema_to_gbnf
    except ImportError:
        return None
    try:
        rules = json_schema_to_gbnf(json.dumps(schema))
    except Exception:  # its errors are untyped; the prompt and validation still hold
        return None
    return _prefixed_rules(rules, prefix)


def typed_joiner_grammar(
    schema: Mapping[str, Any],
    *,
    thought_chars: int = 300,
    answer_chars: int = 500,
    replan: bool = True,
) -> str | None:
    """The GBNF grammar of a joiner reply whose answer is JSON fitting ``schema``: an
    optional ``Thought: ...`` line, an optional ``Action: ``, then ``Finish(`` the JSON
    ``)`` or (with ``replan``) ``Replan(`` a reason ``)``, as :func:`joiner_grammar` has it.

    Returns:
        The grammar's text, or None when ``schema`` has no GBNF form here (see
        :func:`schema_grammar`).
    """
    value = schema_grammar(schema)
    if value is None:
        return None
    lines = [
        f'root ::= ("Thought: " [^\\n\\r]{{1,{thought_chars}}} "\\n")? "Action: "? action',
        'action ::= "Finish(" out-root ")"' + (' | "Replan(" reason ")"' if replan else ""),
        f"reason ::= reason-part{{1,{answer_chars}}}",
        'reason-part ::= [^\\n\\r()] | "(" [^\\n\\r()]* ")"',
    ]
    return "\n".join(lines) + "\n" + value.rstrip("\n") + "\n"


# A GBNF token: a string literal, a character class, a repetition count, a comment, a rule
# name, or anything else (one character).
_GBNF_TOKEN = re.compile(
    r'"(?:\\.|[^"\\])*"|\[(?:\\.|[^\]\\])*\]|\{[^}]*\}|#[^\n]*|([A-Za-z0-9_-]+)|\s+|.', re.DOTALL
)


def _prefixed_rules(grammar: str, prefix: str) -> str:
    """``grammar`` with every rule name (defined or used) starting with ``prefix``."""
    return _GBNF_TOKEN.sub(
        lambda m: prefix + m.group(1) if m.group(1) is not None else m.group(0), grammar
    )
