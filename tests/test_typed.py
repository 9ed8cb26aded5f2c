"""Typed answers (``output_type``): JSON read from model text, validation, the repair round,
the plan's ``finish`` path, JSON mode's schema and the local model's grammar, against the
real OpenAI client on a loopback server and the real local model."""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Literal

import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typing_extensions import TypedDict  # pydantic wants it before Python 3.12

import llmc
from llmc import Answered, AnswerText
from llmc.errors import OutputTypeError, OutputValidationError
from llmc.grammar import schema_grammar, typed_joiner_grammar
from llmc.joiner import Joiner, parse_decision
from llmc.testing import EventRecorder, ScriptedLLM, ScriptedOpenAIServer
from llmc.typed import TypedOutput, extract_json, typed_output


class City(pydantic.BaseModel):
    name: str
    population: int


class Country(pydantic.BaseModel):
    """A country and its largest cities."""

    name: str
    cities: list[City]
    capital: City | None = None


@dataclasses.dataclass
class Point:
    x: int
    y: int


class Span(TypedDict):
    start: int
    end: int


PARIS = City(name="Paris", population=2100000)
FACTS: dict[str, Any] = PARIS.model_dump()


@llmc.tool
def lookup(city: str) -> str:
    """Facts about a city.

    Args:
        city: the city's name.
    """
    return "Paris has 2,100,000 people."


def _record(city: str) -> dict[str, Any]:
    return dict(FACTS) if city == "Paris" else {"name": city}


@llmc.tool
def city_record(city: str) -> dict[str, Any]:
    """A city's record, as a dict.

    Args:
        city: the city's name.
    """
    return _record(city)


@llmc.tool
def city_json(city: str) -> str:
    """A city's record, as JSON text.

    Args:
        city: the city's name.
    """
    return "Here: " + json.dumps(_record(city))


PLAN = '1. lookup("Paris")\njoin()'
GOOD = 'Thought: the observation says.\nAction: Finish({"name": "Paris", "population": 2100000})'
BAD = 'Thought: many.\nAction: Finish({"name": "Paris", "population": "lots"})'
QUESTION = "How many people live in Paris?"


def compiler_for(server: ScriptedOpenAIServer, **kw: Any) -> llmc.Compiler:
    llm = llmc.OpenAI("gpt-4o-mini", base_url=server.base_url)
    return llmc.Compiler([lookup, city_record, city_json], llm, **kw)


# -- reading JSON out of model text ------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ('{"a": 1}', {"a": 1}),
        ('```json\n{"a": [1, 2]}\n```', {"a": [1, 2]}),
        ('Here it is: {"a": "x)"} as asked.', {"a": "x)"}),
        ("The list: [1, 2, 3].", [1, 2, 3]),
        ("  42 ", 42),
        ('```\n"yes"\n```', "yes"),
        ("The answer is 42.", 42),
        ('{"a": 1} and again {"a": 1}', {"a": 1}),  # the same value twice is one
        ('{"text": "two\nlines"}', {"text": "two\nlines"}),  # a raw newline in a string
    ],
)
def test_extract_json_reads_one_value_as_small_models_write_it(text: str, value: Any) -> None:
    assert extract_json(text) == value


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("no json here", "holds no JSON value"),
        ('{"a": 1} or {"a": 2}', "2 different JSON values"),
        ("3 apples or 4 pears", "2 different JSON values"),
        ("NaN", "holds no JSON value"),  # not JSON, though Python's json reads it
        ("nullable", "holds no JSON value"),
        ("{" * 5000, "holds no JSON value"),  # too deep for json: an error, not a crash
    ],
)
def test_extract_json_says_when_there_is_no_one_value(text: str, message: str) -> None:
    with pytest.raises(OutputValidationError, match=message) as caught:
        extract_json(text)
    assert caught.value.text == text
    assert caught.value.errors[0]["type"] == "json_invalid"


_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
_json = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
_containers = st.lists(_json, max_size=4) | st.dictionaries(st.text(), _json, max_size=4)
# Words around the value that hold no bracket or quote (which would start other values).
_noise = st.text(st.characters(blacklist_characters='{}[]"'))


@settings(max_examples=300, deadline=None)
@given(value=_containers, before=_noise, after=_noise, fenced=st.booleans())
def test_an_object_or_array_in_words_comes_back_equal(
    value: Any, before: str, after: str, fenced: bool
) -> None:
    body = json.dumps(value, ensure_ascii=fenced)
    if fenced:
        body = f"```json\n{body}\n```"
    assert extract_json(before + body + after) == value


@pytest.mark.parametrize("value", ["[]", "[]{}", '{"a": 1}', "x ``` y"])
def test_a_fenced_string_that_looks_like_json_stays_a_string(value: str) -> None:
    assert extract_json(f"```\n{json.dumps(value)}\n```") == value
    assert extract_json(f"The answer:\n```json\n{json.dumps(value)}\n```") == value
    assert extract_json("```\n5```, or rather [1]") == [1]  # an array outside it comes first


@settings(max_examples=200, deadline=None)
@given(value=_scalars, space=st.sampled_from(["", " ", "\n", "```\n"]))
def test_a_scalar_alone_or_fenced_comes_back_equal(value: Any, space: str) -> None:
    end = "\n```" if space.startswith("```") else space
    assert extract_json(space + json.dumps(value) + end) == value


@settings(max_examples=300, deadline=None)
@given(
    text=st.text() | st.builds(lambda a, v, b: a + json.dumps(v) + b, st.text(), _json, st.text())
)
def test_any_text_gives_a_json_value_or_the_clear_error(text: str) -> None:
    try:
        value = extract_json(text)
    except OutputValidationError as error:
        assert error.text == text and error.errors
    else:
        json.dumps(value)  # a JSON value


# -- output types --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("output_type", "text", "value"),
    [
        (City, '{"name": "Paris", "population": 2100000}', PARIS),
        (int, "42", 42),
        (int, "It is 42.", 42),
        (list[str], 'The cities: ["Paris", "Lyon"]', ["Paris", "Lyon"]),
        (Literal["yes", "no"], "yes", "yes"),
        (Literal["yes", "no"], '"no"', "no"),
        (str, "Paris, on the Seine", "Paris, on the Seine"),
        (str, "I count 3 bridges", "I count 3 bridges"),  # a number in it: the text wins
        (Point, '{"x": 1, "y": 2}', Point(1, 2)),
        (Span, '{"start": 3, "end": 5}', {"start": 3, "end": 5}),
    ],
)
def test_every_type_pydantic_validates_reads_from_text(
    output_type: Any, text: str, value: Any
) -> None:
    assert TypedOutput(output_type).validate_text(text) == value


def test_validation_errors_are_llmcs_with_pydantics_details() -> None:
    with pytest.raises(OutputValidationError) as caught:
        TypedOutput(City).validate_text('{"name": "Paris", "population": "lots"}')
    error = caught.value
    assert not isinstance(error, pydantic.ValidationError)
    assert error.output_type is City
    assert [e["loc"] for e in error.errors] == [("population",)]
    assert "population: Input should be a valid integer" in str(error)
    with pytest.raises(OutputValidationError, match="valid dictionary or instance of City"):
        TypedOutput(City).validate_text("I do not know")  # no JSON: pydantic says what it wants


def test_a_type_pydantic_cannot_validate_is_refused_at_once() -> None:
    with pytest.raises(OutputTypeError, match="cannot be validated"):
        TypedOutput(object())
    with pytest.raises(OutputTypeError):
        llmc.Compiler([lookup], ScriptedLLM([]), output_type=3)


def test_typed_output_is_built_once_per_type() -> None:
    assert typed_output(City) is typed_output(City)
    assert typed_output(list[str]).name == "list[str]"


def _objects(schema: Any) -> list[dict[str, Any]]:
    found = []
    if isinstance(schema, dict):
        if "properties" in schema:
            found.append(schema)
        for key, sub in schema.items():
            if key in ("properties", "$defs"):
                for one in sub.values():
                    found += _objects(one)
            else:
                found += _objects(sub)
    elif isinstance(schema, list):
        for sub in schema:
            found += _objects(sub)
    return found


def test_the_json_reply_schema_embeds_the_output_in_strict_form() -> None:
    schema = TypedOutput(Country).decision_schema()
    assert schema["properties"]["action"]["enum"] == ["finish", "replan"]
    assert set(schema["$defs"]) == {"City"}  # definitions at the root, where refs point
    assert "$defs" not in schema["properties"]["answer"]["anyOf"][0]
    for node in _objects(schema):  # OpenAI's strict rules: closed, all required, no defaults
        assert node["additionalProperties"] is False
        assert node["required"] == list(node["properties"])
    assert '"default"' not in json.dumps(schema)
    assert set(_values(schema, "$ref")) == {"#/$defs/City"}


def _values(schema: Any, key: str) -> list[Any]:
    """Every value of ``key`` anywhere in ``schema``."""
    if isinstance(schema, list):
        return [v for sub in schema for v in _values(sub, key)]
    if not isinstance(schema, dict):
        return []
    own = [schema[key]] if key in schema else []
    return own + [v for sub in schema.values() for v in _values(sub, key)]


def test_the_prompt_schema_is_compact_and_keeps_descriptions() -> None:
    text = TypedOutput(Country).prompt_schema
    assert " " not in text.replace("A country and its largest cities.", "")
    assert '"title"' not in text and "largest cities" in text
    assert json.loads(text)["required"] == ["name", "cities"]


# -- the compiler, in text mode, over HTTP ---------------------------------------------------


def test_a_valid_answer_comes_back_as_the_object() -> None:
    with ScriptedOpenAIServer([PLAN, GOOD], chunk_size=7) as server:
        answer = compiler_for(server, output_type=City).run_sync(QUESTION)
        system = server.chat_requests()[1].body["messages"][0]["content"]
    assert answer.output == PARIS
    assert answer.text == '{"name":"Paris","population":2100000}'
    assert answer.answered_by == "joiner" and answer.finished
    assert [s.label for s in answer.trace.spans] == ["plan 1", "join 1"]
    assert TypedOutput(City).prompt_schema in system  # the joiner sees the schema


def test_an_answer_that_does_not_fit_is_repaired_once_in_its_own_span() -> None:
    with ScriptedOpenAIServer([PLAN, BAD, GOOD]) as server:
        answer = compiler_for(server, output_type=City).run_sync(QUESTION)
        repair = server.chat_requests()[2].body["messages"]
    assert answer.output == PARIS
    assert [(s.kind, s.label) for s in answer.trace.spans] == [
        ("planner", "plan 1"),
        ("joiner", "join 1"),
        ("joiner", "join 1 repair"),
    ]
    assert answer.llm_calls == 3
    told = repair[-1]["content"]
    assert repair[-1]["role"] == "user"
    assert '"population": "lots"' in told  # its answer, and what did not fit
    assert "population: Input should be a valid integer" in told
    assert "No new plan is possible" in repair[1]["content"]  # a repair answers


def test_an_answer_that_still_does_not_fit_raises_with_everything_attached() -> None:
    still_bad = 'Action: Finish({"name": "Paris"})'
    refused = pytest.raises(OutputValidationError, match="after a repair round")
    with ScriptedOpenAIServer([PLAN, BAD, still_bad]) as server, refused as caught:
        compiler_for(server, output_type=City).run_sync(QUESTION)
    error = caught.value
    assert error.text == '{"name": "Paris"}'
    assert [e["loc"] for e in error.errors] == [("population",)]
    assert error.output_type is City
    assert error.answer is not None and not error.answer.finished
    assert error.answer.output is None
    assert [s.label for s in error.answer.trace.spans] == ["plan 1", "join 1", "join 1 repair"]
    assert error.answer.rounds[0].observations == {1: "Paris has 2,100,000 people."}


def test_without_an_output_type_nothing_changes() -> None:
    with ScriptedOpenAIServer([PLAN, "Action: Finish(2.1 million)"]) as server:
        answer = compiler_for(server).run_sync(QUESTION)
        system = server.chat_requests()[1].body["messages"][0]["content"]
    assert answer.output is None and answer.text == "2.1 million"
    assert "JSON Schema" not in system


def test_a_runs_own_output_type_replaces_the_compilers() -> None:
    with ScriptedOpenAIServer([PLAN, "Finish(2100000)", PLAN, GOOD]) as server:
        compiler = compiler_for(server, output_type=City)
        number = compiler.run_sync(QUESTION, output_type=int)
        city = compiler.run_sync(QUESTION)
    assert number.output == 2100000 and number.text == "2100000"
    assert city.output == PARIS


async def test_events_stream_the_answer_and_end_with_the_typed_answer() -> None:
    with ScriptedOpenAIServer([PLAN, BAD, GOOD], chunk_size=5) as server:
        compiler = compiler_for(server)
        events = [e async for e in compiler.stream(QUESTION, output_type=City)]
    streamed = "".join(e.text for e in events if isinstance(e, AnswerText))
    assert streamed.endswith('{"name": "Paris", "population": 2100000}')  # as it was written
    last = events[-1]
    assert isinstance(last, Answered) and last.answer.output == PARIS


async def test_map_answers_each_question_with_the_type() -> None:
    replies = [PLAN, "Finish(7)", PLAN, "Finish(8)"]
    with ScriptedOpenAIServer(replies) as server:
        compiler = compiler_for(server, max_concurrency=1)
        outcomes = [o async for o in compiler.map(["a", "b"], concurrency=1, output_type=int)]
    assert sorted(o.answer.output for o in outcomes if o.answer is not None) == [7, 8]


# -- JSON mode -------------------------------------------------------------------------------


def _json_reply(answer: Any, action: str = "finish", text: str = "") -> str:
    return json.dumps({"thought": "read it", "action": action, "text": text, "answer": answer})


JSON_PLAN = json.dumps({"tasks": [{"id": 1, "tool": "lookup", "args": ["Paris"]}]})


def test_json_mode_sends_the_output_schema_and_reads_the_answer_field() -> None:
    with ScriptedOpenAIServer([JSON_PLAN, _json_reply(FACTS)]) as server:
        answer = compiler_for(server, json=True, output_type=City).run_sync(QUESTION)
        sent = server.chat_requests()[1].body["response_format"]["json_schema"]
    assert answer.output == PARIS
    assert sent["strict"] is True
    assert sent["schema"] == TypedOutput(City).decision_schema()
    assert sent["schema"]["properties"]["answer"]["anyOf"][0]["required"] == [
        "name",
        "population",
    ]


def test_json_mode_repairs_once_then_raises() -> None:
    wrong = _json_reply({"name": "Paris", "population": "lots"})
    with ScriptedOpenAIServer([JSON_PLAN, wrong, _json_reply(FACTS)]) as server:
        answer = compiler_for(server, json=True, output_type=City).run_sync(QUESTION)
        told = server.chat_requests()[2].body["messages"][-1]["content"]
    assert answer.output == PARIS
    assert '"answer"' in told and "population" in told
    refused = pytest.raises(OutputValidationError, match="does not fit City")
    with ScriptedOpenAIServer([JSON_PLAN, wrong, _json_reply(None)]) as server, refused as caught:
        compiler_for(server, json=True, output_type=City).run_sync(QUESTION)
    assert caught.value.text == "null"


# -- a plan's finish(...) ---------------------------------------------------------------


async def test_a_finish_whose_output_fits_answers_without_the_joiner() -> None:
    plan = '1. city_record("Paris")\nfinish($1)'
    with ScriptedOpenAIServer([plan]) as server:
        recorder = EventRecorder()
        answer = await compiler_for(server, output_type=City).run(QUESTION, on_event=recorder)
        requests = len(server.chat_requests())
    assert answer.answered_by == "plan" and requests == 1
    assert answer.output == PARIS
    assert answer.text == '{"name":"Paris","population":2100000}'
    [streamed] = recorder.of_type(AnswerText)
    assert (streamed.by, streamed.text) == ("plan", answer.text)


def test_a_finish_whose_output_does_not_fit_goes_to_the_joiner() -> None:
    plan = '1. city_record("Lyon")\nfinish($1)'  # no population: not a City
    lyon = 'Action: Finish({"name": "Lyon", "population": 520000})'
    with ScriptedOpenAIServer([plan, lyon]) as server:
        answer = compiler_for(server, output_type=City).run_sync("How big is Lyon?")
    assert answer.answered_by == "joiner"
    assert answer.output == City(name="Lyon", population=520000)


def test_a_finish_of_json_text_that_fits_answers() -> None:
    plan = '1. city_json("Paris")\nfinish("$1")'  # the output's text, as a string holds it
    with ScriptedOpenAIServer([plan]) as server:
        answer = compiler_for(server, output_type=City).run_sync(QUESTION)
    assert answer.answered_by == "plan" and answer.output == PARIS


# -- the local model's grammar -------------------------------------------------------------


def test_the_typed_grammar_keeps_the_thought_and_parses_in_llama_cpp() -> None:
    llama_grammar = pytest.importorskip("llama_cpp.llama_grammar")
    grammar = typed_joiner_grammar(Country.model_json_schema(), replan=False)
    assert grammar is not None
    assert grammar.startswith('root ::= ("Thought: "')
    assert 'action ::= "Finish(" out-root ")"\n' in grammar  # no Replan when final
    llama_grammar.LlamaGrammar.from_string(grammar, verbose=False)  # llama.cpp reads it
    rules = schema_grammar({"type": "object", "properties": {"root": {"type": "integer"}}})
    assert rules is not None and "out-root-kv" in rules  # a property named "root" is renamed


def test_a_reply_the_typed_grammar_admits_reads_back() -> None:
    reply = 'Thought: from $1.\nAction: Finish({"name": "Paris (city)", "population": 2100000})'
    decision = parse_decision(reply)
    assert TypedOutput(City).validate_text(decision.text) == City(
        name="Paris (city)", population=2100000
    )


@pytest.mark.local_model
async def test_the_local_model_answers_with_a_validated_object() -> None:
    from llmc.llm import Local

    class Count(pydantic.BaseModel):
        lines: int

    @llmc.tool
    def count_lines(path: str) -> str:
        """Count the lines of a text file.

        Args:
            path: the file's name.
        """
        return f"{path} has 3 lines."

    model = Local(n_ctx=1024).load()
    try:
        joiner = Joiner(model)
        assert joiner.mode == "copy"  # the small model's default: the type takes over
        compiler = llmc.Compiler(
            [count_lines],
            ScriptedLLM(['1. count_lines("notes.txt")\njoin()']),
            joiner=joiner,
            output_type=Count,
        )
        answer = await compiler.run("How many lines does notes.txt have?")
    finally:
        model.close()
    assert isinstance(answer.output, Count)
    assert answer.text == answer.output.model_dump_json()
    assert all(span.kind != "joiner" or "repair" not in span.label for span in answer.trace.spans)
