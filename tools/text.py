"""Text: count words, find the most frequent ones, pull numbers and dates out of prose.

Words are runs of letters and digits; an apostrophe or hyphen inside a word keeps it whole
("don't", "state-of-the-art"), and so does a dot or comma between digits ("3.5", "1,200").

This file is loaded by path under an arbitrary module name: it imports only llmc and the
standard library.
"""

import datetime
import math
import re
from collections import Counter

import llmc

_WORD = re.compile(r"[^\W_]+(?:(?:['\u2019\-]|(?<=\d)[.,](?=\d))[^\W_]+)*")
_POSSESSIVE = re.compile(r"['\u2019]s$")
_NUMBER = re.compile(
    r"(?<![\w.])"  # not glued to a word or a dot before it
    r"([-+\u2212]?)"  # an optional sign
    r"((?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?|\.\d+)"  # 1,234.5 | 1234.5 | .5
    r"([eE][-+]?\d+)?"  # an optional exponent
)

_STOPWORD_TEXT = """
    a about above after again against all also am an and any are as at be because been
    before being below between both but by can could did do does doing down during each
    few for from further had has have having he her here hers herself him himself his how
    i if in into is it its itself just me more most my myself no nor not now of off on once
    only or other our ours ourselves out over own same she should so some such than that
    the their theirs them themselves then there these they this those through to too under
    until up very was we were what when where which while who whom why will with would you
    your yours yourself yourselves
"""
#: Common English words left out of :func:`top_words`.
STOPWORDS = frozenset(_STOPWORD_TEXT.split())


def _words(text: str) -> list[str]:
    return _WORD.findall(text)


@llmc.tool(pure=True)
def word_count(text: str) -> int:
    """Count the words in a text.

    Example: word_count("It's a state-of-the-art tool, 3.5 times faster.") -> 7.

    Args:
        text: the text to count.
    """
    return len(_words(text))


@llmc.tool(pure=True)
def top_words(text: str, n: int = 10) -> dict[str, int]:
    """The n most frequent words of a text with their counts, most frequent first.

    Example: top_words("The cat saw the other cat.", 2) -> {"cat": 2, "saw": 1}.
    Words are lower-cased, a trailing "'s" is dropped, and common English words ("the",
    "and", "of", ...) and bare numbers are left out. Ties keep the order of first use.

    Args:
        text: the text to analyse.
        n: how many words to return (at least 1).
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    counts: Counter[str] = Counter()
    for word in _words(text):
        folded = _POSSESSIVE.sub("", word.casefold())
        if folded in STOPWORDS or not any(ch.isalpha() for ch in folded):
            continue
        counts[folded] += 1
    return dict(counts.most_common(n))


@llmc.tool(pure=True)
def extract_numbers(text: str) -> list[float]:
    """Every number written in a text, in order, as floats.

    Example: extract_numbers("Revenue rose from $1,200.50 to 3.4e3 (-5% vs 2023)")
    -> [1200.5, 3400.0, -5.0, 2023.0].
    Commas between groups of three digits are thousands separators; a "-" right after a
    letter or digit is a dash, not a sign ("2019-2021" -> [2019.0, 2021.0]); digits glued
    after letters ("H2O", "v2") are not numbers, nor are values too large for a float.

    Args:
        text: the text to read numbers from.
    """
    numbers = []
    for match in _NUMBER.finditer(text):
        sign, digits, exponent = match.groups()
        literal = ("-" if sign in ("-", "\u2212") else "") + digits.replace(",", "")
        number = float(literal + (exponent or ""))
        if math.isfinite(number):  # "1e999" overflows to inf: not a number worth returning
            numbers.append(number)
    return numbers


_MONTHS = {
    name: number
    for number, names in enumerate(
        [
            ("january", "jan"),
            ("february", "feb"),
            ("march", "mar"),
            ("april", "apr"),
            ("may",),
            ("june", "jun"),
            ("july", "jul"),
            ("august", "aug"),
            ("september", "sep", "sept"),
            ("october", "oct"),
            ("november", "nov"),
            ("december", "dec"),
        ],
        start=1,
    )
    for name in names
}
_MONTH = "|".join(sorted(_MONTHS, key=len, reverse=True))
_ORDINAL = r"(?:st|nd|rd|th)?"
_DATE = re.compile(
    # 2024-05-01 | 1 May 2024 | May 1, 2024
    rf"\b(?P<iso>(?P<y1>\d{{4}})-(?P<m1>\d{{1,2}})-(?P<d1>\d{{1,2}}))\b"
    rf"|\b(?P<d2>\d{{1,2}}){_ORDINAL}\s+(?P<m2>{_MONTH})\.?,?\s+(?P<y2>\d{{4}})\b"
    rf"|\b(?P<m3>{_MONTH})\.?\s+(?P<d3>\d{{1,2}}){_ORDINAL},?\s+(?P<y3>\d{{4}})\b",
    re.IGNORECASE,
)


@llmc.tool(pure=True)
def extract_dates(text: str) -> list[str]:
    """Every calendar date written in a text, in order, as YYYY-MM-DD.

    Reads "2024-05-01", "1 May 2024", "May 1st, 2024" and month abbreviations; numeric forms
    such as 01/05/2024 are left out because the order of day and month is ambiguous.

    Args:
        text: any text, e.g. "Signed on 3 March 2021, renewed 2022-03-03".
    """
    found: list[str] = []
    for match in _DATE.finditer(text):
        groups = match.groupdict()
        if groups["iso"]:
            year, month, day = int(groups["y1"]), int(groups["m1"]), int(groups["d1"])
        else:
            year = int(groups["y2"] or groups["y3"])
            month = _MONTHS[(groups["m2"] or groups["m3"]).lower()]
            day = int(groups["d2"] or groups["d3"])
        try:
            found.append(datetime.date(year, month, day).isoformat())
        except ValueError:  # 31 February and the like: not a date
            continue
    return found
