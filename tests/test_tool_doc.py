"""The planner prompt says everything a tool's docs say: descriptions, defaults, enum choices
and the fields of pydantic models, in text mode, byte-identical across calls."""

from __future__ import annotations

import enum
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pydantic
import pytest

import llmc
from llmc.planner import Planner
from llmc.testing import ScriptedLLM

REPO = Path(__file__).resolve().parents[1]


class Unit(enum.Enum):
    METRE = "m"
    KILOMETRE = "km"


class Country(pydantic.BaseModel):
    """A country, by its code."""

    code: str = pydantic.Field(description="its ISO 3166 code, e.g. 'FR'")
    unit: Unit = Unit.KILOMETRE


class Place(pydantic.BaseModel):
    """A place on Earth."""

    name: str = pydantic.Field(description="the city's name")
    population: int | None = pydantic.Field(None, description="people living there")
    country: Country | None = None
    tags: list[str] = []


@llmc.tool
def locate(
    place: Place,
    unit: Unit = Unit.METRE,
    mode: Literal["road", "air"] = "road",
    zoom: int = 3,
    near: list[Place] | None = None,
) -> str:
    """Find a place on the map.

    Uses open map data; slow for villages.

    Args:
        place: where to look.
        unit: the unit of distances in the reply.
        zoom: how close, from 1 (a continent) to 10 (a street).
        near: other places to measure the distance to.
    """
    return place.name


@llmc.tool
def search(query: str, k: int = 3) -> str:
    """Search the encyclopedia.

    Args:
        query: a topic, e.g. "Mariana Trench".
        k: how many articles to read.
    """
    return query


def facts(schema: Any) -> Iterator[str]:
    """Every documented fact in a JSON schema: descriptions, defaults, enum values, field
    names of models, as the text that must reach the prompt."""
    if isinstance(schema, dict):
        for key, value in schema.items():
            if key == "description":
                yield " ".join(str(value).split())
            elif key == "default" and value is not None:
                yield repr(value)
            elif key in ("enum", "const"):
                yield from (repr(v) for v in (value if key == "enum" else [value]))
            elif key == "properties":
                yield from (f'"{name}"' for name in value)
            if key != "description":
                yield from facts(value)
    elif isinstance(schema, list):
        for item in schema:
            yield from facts(item)


def tool_sets() -> dict[str, list[llmc.Tool]]:
    packs = llmc.Toolbox.from_path(*sorted((REPO / "tools").glob("*.py")))
    return {"these tests": [locate, search], "shipped packs": list(packs.values())}


@pytest.mark.parametrize("name", list(tool_sets()))
def test_every_documented_fact_reaches_the_text_mode_prompt(name: str) -> None:
    tools = tool_sets()[name]
    prompt = Planner(ScriptedLLM([]), tools).system_prompt
    for tool in tools:
        schema = tool.params_model.model_json_schema()
        schema.pop("title", None)
        schema.pop("properties")  # the parameter names: in the signature line
        wanted = [tool.description, *tool.docstring.params.values()]
        wanted += list(facts(schema))
        wanted += list(facts(tool.params_model.model_json_schema()["properties"]))
        section = prompt[prompt.index(f"{tool.name}(") :]
        for fact in wanted:
            assert " ".join(fact.split()) in section, (tool.name, fact)


def test_the_compact_form_of_a_tool() -> None:
    assert locate.planner_doc().splitlines() == [
        "locate(place: Place, unit: Unit = 'm', mode: Literal['road', 'air'] = 'road', "
        "zoom: int = 3, near: list[Place] | None = None) -> str  # Find a place on the map.",
        "    Uses open map data; slow for villages.",
        "    place: where to look.",
        "    unit: the unit of distances in the reply. (one of 'm', 'km')",
        "    zoom: how close, from 1 (a continent) to 10 (a street).",
        "    near: other places to measure the distance to.",
        '    Place = {"name": str (the city\'s name), "population": int | None = None (people '
        'living there), "country": Country | None = None, "tags": list[str] = []}  '
        "# A place on Earth.",
        '    Country = {"code": str (its ISO 3166 code, e.g. \'FR\'), "unit": Unit = '
        "'km' (one of 'm', 'km')}  # A country, by its code.",
    ]
    assert search.planner_doc().splitlines()[1:] == [
        '    query: a topic, e.g. "Mariana Trench".',
        "    k: how many articles to read.",
    ]


def test_a_tool_without_docs_is_its_signature_line() -> None:
    @llmc.tool
    def bare(x: int) -> int:
        return x

    assert bare.planner_doc() == bare.signature_line() == "bare(x: int) -> int"


def test_the_prompt_is_byte_identical_across_planners_and_calls() -> None:
    first = Planner(ScriptedLLM([]), [locate, search])
    second = Planner(ScriptedLLM([]), [locate, search])
    assert first.system_prompt == second.system_prompt
    assert first.messages("a?")[0] == second.messages("b?")[0]
