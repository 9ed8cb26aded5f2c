"""Typed answers: an ``output_type`` that the answer must fit, validated by pydantic.

``Compiler(..., output_type=City)`` (or ``run(..., output_type=City)``) asks for an answer
of that type: any type pydantic's :class:`~pydantic.TypeAdapter` validates (a ``BaseModel``
subclass, ``int``, ``list[str]``, ``Literal[...]``, a dataclass, a ``TypedDict``).
:class:`TypedOutput` holds everything the compiler and the joiner need about it:

- the schema as the joiner's prompt shows it (:attr:`TypedOutput.prompt_schema`, compact);
- the structured-outputs schema of a JSON-mode joiner reply, the output schema embedded in
  OpenAI's strict form (:meth:`TypedOutput.decision_schema`);
- the local model's grammar: the joiner's ``Thought:`` line, then ``Finish(`` the schema's
  GBNF ``)`` (:meth:`TypedOutput.joiner_grammar`, from :mod:`llmc.grammar`);
- validation of the model's text (:meth:`TypedOutput.validate_text`: one JSON value read
  with :func:`json.loads` from the text, a code fence or words around it tolerated, see
  :func:`extract_json`) and of a plan's ``finish`` value (:meth:`TypedOutput.from_finish`);
- the repair prompt that tells the joiner what did not fit (:meth:`TypedOutput.repair`).

Nothing is evaluated: model text is read as JSON only. Errors are llmc's
:class:`~llmc.errors.OutputValidationError` (with the text and pydantic's errors attached),
never pydantic's own.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from typing import Any

import pydantic

from .errors import OutputTypeError, OutputValidationError
from .grammar import typed_joiner_grammar
from .joiner import DECISION_SCHEMA, Decision, parse_decision
from .llm.base import Message
from .scheduler import resolve_references
from .task import Finish, fill_question

__all__ = ["SHOWN_ERRORS", "TypedOutput", "describe_errors", "extract_json", "typed_output"]

#: The most validation errors a repair prompt or an error message lists.
SHOWN_ERRORS = 5

# Schema keys whose value maps names to schemas (the names are not schema keys).
_NAMED = ("properties", "$defs", "definitions", "patternProperties")
# Schema keys whose value is one schema, or a list of them.
_ONE = ("items", "additionalProperties", "not", "contains", "if", "then", "else")
_MANY = ("anyOf", "oneOf", "allOf", "prefixItems")


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


# strict=False: a small model writes raw newlines inside strings; NaN and Infinity are not JSON.
_DECODER = json.JSONDecoder(strict=False, parse_constant=_no_constants)
_SCALAR_STARTS = frozenset('"-0123456789tfn')
_FENCE = re.compile(r"```[\w+-]*[ \t]*\n(.*?)```", re.DOTALL)


def extract_json(text: str) -> Any:
    """The one JSON value in ``text``, as small models write it: alone, in a code fence, or
    with words around it.

    The whole text is tried first, then the body of its one code fence; then every
    object or array in it (the outermost ones, left to right); then, when there is none,
    every scalar (a string, number, ``true``, ``false`` or ``null`` that starts a word). One
    value found (or the same value more than once) is the answer.

    Raises:
        OutputValidationError: there is no JSON value in the text, or several different ones.
    """
    for whole in [text, *_fenced(text)]:
        try:
            return _DECODER.decode(whole.strip())
        except (ValueError, RecursionError):
            pass
    found = _values(text, "{[") or _values(text, _SCALAR_STARTS, word=True)
    if not found:
        raise _json_error(text, "the answer holds no JSON value")
    first = _canonical(found[0])
    if any(_canonical(value) != first for value in found[1:]):
        raise _json_error(text, f"the answer holds {len(found)} different JSON values, not one")
    return found[0]


def _fenced(text: str) -> list[str]:
    """The body of the text's one code fence, when no object or array stands outside it:
    ``'```\n"[]"\n```'`` is a string, not the array inside it."""
    fences = list(_FENCE.finditer(text))
    if len(fences) != 1:
        return []
    fence = fences[0]
    outside = text[: fence.start()] + text[fence.end() :]
    return [] if _values(outside, "{[") else [fence.group(1)]


def _values(text: str, starts: str | frozenset[str], *, word: bool = False) -> list[Any]:
    """The JSON values that start at a character of ``starts``, left to right, none inside
    another; with ``word``, only values that are whole words."""
    found = []
    at = 0
    while at < len(text):
        if text[at] not in starts or (word and at > 0 and _is_word(text[at - 1])):
            at += 1
            continue
        try:
            value, end = _DECODER.raw_decode(text, at)
        except (ValueError, RecursionError):
            at += 1
            continue
        if word and end < len(text) and _is_word(text[end]) and _is_word(text[end - 1]):
            at += 1  # "nullable", "42nd": part of a word, not a value
            continue
        found.append(value)
        at = end
    return found


def _is_word(char: str) -> bool:
    return char.isalnum() or char == "_"


def _canonical(value: Any) -> str:
    """A text equal for equal JSON values (``1`` and ``true`` differ, key order does not)."""
    return json.dumps(value, sort_keys=True)


def _json_error(text: str, message: str) -> OutputValidationError:
    errors = [{"type": "json_invalid", "loc": (), "msg": message}]
    return OutputValidationError(f"{message}: {_shorten(text)!r}", text=text, errors=errors)


def _shorten(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


class TypedOutput:
    """An ``output_type`` and what answering with it takes (see the module's docstring).

    Args:
        output_type: a type pydantic's :class:`~pydantic.TypeAdapter` validates.

    Raises:
        OutputTypeError: pydantic cannot validate or describe the type.
    """

    def __init__(self, output_type: Any) -> None:
        try:
            self.adapter: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(output_type)
            #: The type's JSON Schema, as pydantic writes it.
            self.schema: dict[str, Any] = self.adapter.json_schema()
        except (pydantic.PydanticUserError, pydantic.PydanticSchemaGenerationError) as exc:
            raise OutputTypeError(
                f"output_type {output_type!r} cannot be validated: {exc}. Use a pydantic "
                "BaseModel, a dataclass, a TypedDict or a plain type such as int or list[str]"
            ) from exc
        except TypeError as exc:  # not a type at all (an instance, a string)
            raise OutputTypeError(
                f"output_type must be a type such as a pydantic BaseModel, not {output_type!r}"
            ) from exc
        self.type = output_type
        #: The type's name in messages: ``City``, ``list[str]``.
        self.name = output_type.__name__ if isinstance(output_type, type) else repr(output_type)
        self._grammars: dict[bool, str | None] = {}

    @functools.cached_property
    def prompt_schema(self) -> str:
        """The schema as the joiner's prompt shows it: compact JSON, titles left out."""
        return json.dumps(_without_titles(self.schema), separators=(",", ":"), ensure_ascii=False)

    def decision_schema(self) -> dict[str, Any]:
        """The JSON Schema of a structured joiner reply whose ``answer`` is the output: the
        joiner's :data:`~llmc.joiner.DECISION_SCHEMA` with an ``answer`` (the output's
        schema, or null when replanning), in the strict form OpenAI's structured outputs
        take (every object closed, every property required, no defaults)."""
        answer = _strict(self.schema)
        definitions = answer.pop("$defs", None)
        properties = dict(DECISION_SCHEMA["properties"])
        properties["text"] = {
            "type": "string",
            "description": "when replanning: what a new plan must find; else empty",
        }
        properties["answer"] = {
            "anyOf": [answer, {"type": "null"}],
            "description": "the answer, when the action is finish; else null",
        }
        schema: dict[str, Any] = {
            "type": "object",
            "properties": properties,
            "required": list(properties),
            "additionalProperties": False,
        }
        if definitions:  # references point at the root's "$defs": they stay valid there
            schema["$defs"] = definitions
        return schema

    def joiner_grammar(self, *, replan: bool) -> str | None:
        """The local model's grammar of a joiner reply whose answer is the output's JSON
        (see :func:`llmc.grammar.typed_joiner_grammar`); None when the schema has no GBNF
        form here (llama-cpp-python missing, or a schema its converter refuses)."""
        if replan not in self._grammars:  # built once: the converter takes milliseconds
            self._grammars[replan] = typed_joiner_grammar(self.schema, replan=replan)
        return self._grammars[replan]

    def read_decision(self, text: str, *, json_mode: bool) -> Decision:
        """The joiner's decision in a reply; a finishing reply's ``text`` is the answer's
        text (in JSON mode: its ``answer`` as JSON text)."""
        if not json_mode:
            return parse_decision(text)
        try:
            data = json.loads(text)
            action = str(data["action"]).lower()
            thought = data.get("thought")
        except (ValueError, KeyError, TypeError, AttributeError):
            return parse_decision(text)  # not the JSON asked for: read it as text
        if action == "replan":
            return Decision("replan", str(data.get("text", "")), thought)
        return Decision("finish", json.dumps(data.get("answer"), ensure_ascii=False), thought)

    def validate_text(self, text: str) -> Any:
        """The output in a model's answer text: its JSON value (see :func:`extract_json`)
        validated; a type that takes text (``str``, a ``Literal`` of strings) also takes
        the text itself.

        Raises:
            OutputValidationError: the text holds no value of the type.
        """
        try:
            value = extract_json(text)
        except OutputValidationError as no_json:
            return self._validate_plain(text, no_json, keep=False)
        try:
            return self.adapter.validate_json(json.dumps(value))
        except pydantic.ValidationError as error:
            return self._validate_plain(text, self._error(text, error), keep=True)

    def _validate_plain(self, text: str, error: OutputValidationError, *, keep: bool) -> Any:
        """The text itself as the output (``Finish(Paris)`` for a ``str``); else ``error``,
        or, when the text held no JSON (``keep`` False), what pydantic says of the text."""
        try:
            return self.adapter.validate_python(text.strip())
        except pydantic.ValidationError as plain:
            raise error if keep else self._error(text, plain) from None

    def validate_value(self, value: Any) -> Any:
        """A Python value (a tool's output) as the output: text is read as the model's
        would be (:meth:`validate_text`), anything else validated as it is.

        Raises:
            OutputValidationError: the value does not fit.
        """
        if isinstance(value, str):
            return self.validate_text(value)
        try:
            return self.adapter.validate_python(value)
        except pydantic.ValidationError as error:
            raise self._error(repr(value), error) from None

    def from_finish(
        self, finish: Finish, outputs: Mapping[int, Any], question: str = ""
    ) -> tuple[Any, str] | None:
        """A plan's ``finish(...)`` as the output and its text, or None when it does not
        fit (the compiler then asks the joiner, which is no error)."""
        value = resolve_references(fill_question(finish.value, question), outputs)
        try:
            output = self.validate_value(value)
        except OutputValidationError:
            return None
        return output, self.text_of(output)

    def text_of(self, output: Any) -> str:
        """An output's text: a string as it is, anything else as compact JSON."""
        if isinstance(output, str):
            return output
        return self.adapter.dump_json(output).decode()

    def repair(self, error: OutputValidationError, *, json_mode: bool) -> Message:
        """The message that asks the joiner again: its answer, what did not fit, and how
        to answer."""
        how = (
            'Reply again with the action "finish" and an "answer" that fits the schema.'
            if json_mode
            else "Reply again with Finish( then only JSON that fits the schema then )."
        )
        content = (
            f"Your answer was: {_shorten(error.text, 1000)}\n"
            f"It does not fit the answer's schema: {describe_errors(error.errors)}.\n"
            f"The schema: {self.prompt_schema}\n{how}"
        )
        return {"role": "user", "content": content}

    def failed(self, error: OutputValidationError, *, repaired: bool) -> OutputValidationError:
        """The error a run raises when its answer does not fit, saying what to do next."""
        after = " after a repair round" if repaired else ""
        message = (
            f"the answer does not fit {self.name}{after}: {describe_errors(error.errors)}. "
            "Read .text and .errors on this error; a looser output_type (optional fields, "
            "plain types) or a stronger model may help"
        )
        failure = OutputValidationError(
            message, text=error.text, errors=error.errors, output_type=self.type
        )
        failure.__cause__ = error.__cause__
        return failure

    def _error(self, text: str, error: pydantic.ValidationError) -> OutputValidationError:
        errors = [dict(e) for e in error.errors(include_url=False)]
        return OutputValidationError(
            f"the answer does not fit {self.name}: {describe_errors(errors)}",
            text=text,
            errors=errors,
            output_type=self.type,
        )

    def __repr__(self) -> str:
        return f"TypedOutput({self.name})"


def describe_errors(errors: list[dict[str, Any]]) -> str:
    """Validation errors in one short line: ``age: Input should be a valid integer; ...``."""
    parts = []
    for error in errors[:SHOWN_ERRORS]:
        where = ".".join(str(part) for part in error.get("loc", ()))
        message = str(error.get("msg", "invalid"))
        parts.append(f"{where}: {message}" if where else message)
    if len(errors) > SHOWN_ERRORS:
        parts.append(f"and {len(errors) - SHOWN_ERRORS} more")
    return "; ".join(parts) or "invalid"


def typed_output(output_type: Any) -> TypedOutput:
    """The :class:`TypedOutput` of ``output_type`` (one per type, built once when the type
    is hashable).

    Raises:
        OutputTypeError: pydantic cannot validate the type.
    """
    try:
        return _cached_output(output_type)
    except TypeError as exc:
        if isinstance(exc, OutputTypeError):
            raise
        return TypedOutput(output_type)  # an unhashable type: built each time


@functools.lru_cache(maxsize=128)
def _cached_output(output_type: Any) -> TypedOutput:
    return TypedOutput(output_type)


def _walk(schema: Any, change: Any) -> Any:
    """A copy of ``schema`` with ``change`` applied to every schema object in it."""
    if not isinstance(schema, dict):
        return schema
    node = change(dict(schema))
    for key in _NAMED:
        if isinstance(node.get(key), dict):
            node[key] = {name: _walk(sub, change) for name, sub in node[key].items()}
    for key in _ONE:
        if isinstance(node.get(key), dict):
            node[key] = _walk(node[key], change)
    for key in _MANY:
        if isinstance(node.get(key), list):
            node[key] = [_walk(sub, change) for sub in node[key]]
    return node


def _without_titles(schema: dict[str, Any]) -> dict[str, Any]:
    def drop(node: dict[str, Any]) -> dict[str, Any]:
        node.pop("title", None)
        return node

    result: dict[str, Any] = _walk(schema, drop)
    return result


def _strict(schema: dict[str, Any]) -> dict[str, Any]:
    """OpenAI's strict form: objects closed with every property required, defaults
    dropped. (An optional field is then always written; pydantic still accepts it.)"""

    def close(node: dict[str, Any]) -> dict[str, Any]:
        node.pop("default", None)
        node.pop("title", None)
        if isinstance(node.get("properties"), dict):
            node["required"] = list(node["properties"])
            node["additionalProperties"] = False
        return node

    result: dict[str, Any] = _walk(schema, close)
    return result
