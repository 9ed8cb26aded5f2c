"""The text tool pack (tools/text.py): word counts, frequent words, numbers in prose."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tool_packs import import_pack, pack_path

import llmc

PACK = pack_path("text")
TEXT = import_pack("text", register=False)


def test_load_tools_finds_every_tool() -> None:
    tools = {t.name: t for t in llmc.load_tools(PACK)}
    assert list(tools) == ["word_count", "top_words", "extract_numbers", "extract_dates"]
    assert (
        tools["top_words"]
        .signature_line()
        .startswith(
            "top_words(text: str, n: int = 10) -> dict[str, int]  # The n most frequent words"
        )
    )
    for tool in tools.values():
        assert set(tool.docstring.params) == set(tool.parameters)


@pytest.mark.parametrize(
    ("text", "count"),
    [
        ("", 0),
        ("   \n\t ", 0),
        ("one", 1),
        ("It's a state-of-the-art tool, 3.5 times faster.", 7),
        ("Hello — world!  (really?)", 3),
        ("Prices: 1,200 and 3.5%; done.", 5),
        ("naïve café façade", 3),
        ("snake_case words", 3),
    ],
)
def test_word_count(text: str, count: int) -> None:
    assert TEXT.word_count(text) == count
    assert TEXT.word_count.fn(text) == count


def test_top_words() -> None:
    text = "The cat saw the other cat. The CAT's toy, and the dog's toy! 42 42 42"
    assert TEXT.top_words(text, 3) == {"cat": 3, "toy": 2, "saw": 1}
    assert TEXT.top_words(text) == {"cat": 3, "toy": 2, "saw": 1, "dog": 1}
    assert TEXT.top_words("", 5) == {}
    assert TEXT.top_words("Straße STRASSE strasse", 1) == {"strasse": 3}  # case-folded


def test_top_words_validates_n() -> None:
    with pytest.raises(ValueError, match="n must be at least 1"):
        TEXT.top_words("a b c", 0)
    with pytest.raises(llmc.ToolArgumentError, match="'n'"):
        TEXT.top_words("a b c", "many")
    assert TEXT.top_words("tea tea coffee", "1") == {"tea": 2}  # coerced by the schema


@pytest.mark.parametrize(
    ("text", "numbers"),
    [
        ("Revenue rose from $1,200.50 to 3.4e3 (-5% vs 2023)", [1200.5, 3400.0, -5.0, 2023.0]),
        ("2019-2021", [2019.0, 2021.0]),
        ("pages 10-20, then -3 and \u22127", [10.0, 20.0, -3.0, -7.0]),
        ("1,000,000 people; 1,2345 and 1,2,3", [1e6, 1.0, 2345.0, 1.0, 2.0, 3.0]),
        ("H2O and v2 are not numbers; 10km and 3rd are", [10.0, 3.0]),
        ("costs 3. Then .5 and 0.25", [3.0, 0.5, 0.25]),
        ("+4 degrees", [4.0]),
        ("1e999 is too big, 1e308 is not", [1e308]),
        ("no numbers here", []),
        ("", []),
    ],
)
def test_extract_numbers(text: str, numbers: list[float]) -> None:
    assert TEXT.extract_numbers(text) == numbers
    assert all(isinstance(n, float) for n in TEXT.extract_numbers(text))


@settings(max_examples=300, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_extract_numbers_reads_back_any_float(value: float) -> None:
    assert TEXT.extract_numbers(f"the value is {value!r}.") == [value]


@settings(max_examples=300, deadline=None)
@given(st.integers(-(10**15), 10**15))
def test_extract_numbers_reads_thousands_separators(value: int) -> None:
    assert TEXT.extract_numbers(f"about {value:,} units") == [float(value)]


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_text_tools_accept_any_text(text: str) -> None:
    assert TEXT.word_count(text) >= 0
    top = TEXT.top_words(text, 5)
    assert len(top) <= 5 and all(count >= 1 for count in top.values())
    assert list(top.values()) == sorted(top.values(), reverse=True)
    assert all(math.isfinite(n) for n in TEXT.extract_numbers(text))


@pytest.mark.parametrize(
    ("text", "dates"),
    [
        ("Signed on 3 March 2021, renewed 2022-03-03.", ["2021-03-03", "2022-03-03"]),
        ("Due May 1st, 2024 or Sept. 9 2019", ["2024-05-01", "2019-09-09"]),
        ("the 2nd of nothing; 31 February 2020; 2023-13-01", []),
        ("ambiguous 01/05/2024 is left out", []),
    ],
)
def test_extract_dates(text: str, dates: list[str]) -> None:
    tools = {t.name: t for t in llmc.load_tools(PACK)}
    assert tools["extract_dates"](text) == dates


@settings(max_examples=100, deadline=None)
@given(st.dates(min_value=__import__("datetime").date(1000, 1, 1)))
def test_extract_dates_reads_back_what_it_writes(day: object) -> None:
    tools = {t.name: t for t in llmc.load_tools(PACK)}
    written = f"on {day:%d %B %Y} and {day:%B %d, %Y} and {day.isoformat()}"  # type: ignore[attr-defined]
    assert tools["extract_dates"](written) == [day.isoformat()] * 3  # type: ignore[attr-defined]
