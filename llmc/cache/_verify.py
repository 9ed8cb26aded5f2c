"""A cheap check that two similar questions really ask the same thing.

Sentence embeddings place near-misses right next to paraphrases: "flights from Paris to
London" and "flights from London to Paris" score 0.999 with all-MiniLM-L6-v2, "which
countries border France" and "which countries do not border France" 0.93, while some true
paraphrases score 0.75. No threshold separates them, so every semantic match that is not the
same text is verified: the two questions must agree on what a paraphrase keeps and a
near-miss changes.

- **Numbers and their units**, in order: ``5 miles`` is not ``6 miles`` nor ``5 km``; number
  words up to twenty and the tens count as numbers.
- **Named entities**, in order: each capitalised name of one question must appear in the other
  (case-insensitively, so a question typed in lower case still matches), and the names both
  share must come in the same order (``Paris ... London`` is not ``London ... Paris``).
- **Negation**: both negated (not, no, never, without, n't, ...) or neither.
- **Direction words**: largest/smallest, before/after, import/export, buy/sell and similar
  pairs: each side of a pair is present in both questions or in neither.

The check is deliberately strict: a paraphrase it rejects costs one planner call, a near-miss
it accepts answers the wrong question.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

_WORD = re.compile(r"[A-Za-z][A-Za-z0-9'\u2019]*(?:-[A-Za-z0-9]+)*|\d[\d,]*(?:\.\d+)?[A-Za-z]*")
_NUMBER = re.compile(
    r"(?P<pre>[$€£¥])?\s?(?P<num>\d[\d,]*(?:\.\d+)?)\s?(?P<post>%|°\s?[cf]\b|[a-z/]+)?",
    re.IGNORECASE,
)
_SENTENCE_END = re.compile(r"[.!?;:]\s+")


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_NUMBER_WORDS = {
    "zero": 0, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13,
    "fourteen": 14, "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18,
    "nineteen": 19, "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60,
    "seventy": 70, "eighty": 80, "ninety": 90, "hundred": 100, "thousand": 1000,
    "million": 1_000_000, "billion": 1_000_000_000,
}  # fmt: skip

#: Unit spellings, each mapped to one name; a word after a number that is not here is no unit.
_UNITS = {
    **dict.fromkeys(["%", "percent", "per cent", "pct"], "%"),
    **dict.fromkeys(["m", "meter", "meters", "metre", "metres"], "m"),
    **dict.fromkeys(["km", "kilometer", "kilometers", "kilometre", "kilometres"], "km"),
    **dict.fromkeys(["cm", "centimeter", "centimeters", "centimetre", "centimetres"], "cm"),
    **dict.fromkeys(["mm", "millimeter", "millimeters", "millimetre", "millimetres"], "mm"),
    **dict.fromkeys(["mi", "mile", "miles"], "mi"),
    **dict.fromkeys(["ft", "foot", "feet"], "ft"),
    **dict.fromkeys(["in", "inch", "inches"], "in"),
    **dict.fromkeys(["yd", "yard", "yards"], "yd"),
    **dict.fromkeys(["kg", "kilogram", "kilograms", "kilo", "kilos"], "kg"),
    **dict.fromkeys(["g", "gram", "grams"], "g"),
    **dict.fromkeys(["mg", "milligram", "milligrams"], "mg"),
    **dict.fromkeys(["lb", "lbs", "pound", "pounds"], "lb"),
    **dict.fromkeys(["oz", "ounce", "ounces"], "oz"),
    **dict.fromkeys(["t", "ton", "tons", "tonne", "tonnes"], "t"),
    **dict.fromkeys(["l", "liter", "liters", "litre", "litres"], "l"),
    **dict.fromkeys(["ml", "milliliter", "milliliters", "millilitre", "millilitres"], "ml"),
    **dict.fromkeys(["gal", "gallon", "gallons"], "gal"),
    **dict.fromkeys(["s", "sec", "secs", "second", "seconds"], "s"),
    **dict.fromkeys(["min", "mins", "minute", "minutes"], "min"),
    **dict.fromkeys(["h", "hr", "hrs", "hour", "hours"], "h"),
    **dict.fromkeys(["day", "days"], "day"),
    **dict.fromkeys(["week", "weeks"], "week"),
    **dict.fromkeys(["month", "months"], "month"),
    **dict.fromkeys(["year", "years", "yr", "yrs"], "year"),
    **dict.fromkeys(["am", "a.m."], "am"),
    **dict.fromkeys(["pm", "p.m."], "pm"),
    **dict.fromkeys(["$", "usd", "dollar", "dollars"], "usd"),
    **dict.fromkeys(["€", "eur", "euro", "euros"], "eur"),
    **dict.fromkeys(["£", "gbp"], "gbp"),
    **dict.fromkeys(["¥", "yen", "jpy"], "jpy"),
    **dict.fromkeys(["°c", "° c", "celsius"], "°c"),
    **dict.fromkeys(["°f", "° f", "fahrenheit"], "°f"),
    **dict.fromkeys(["k", "kelvin"], "k"),
    **dict.fromkeys(["mph"], "mph"),
    **dict.fromkeys(["km/h", "kmh", "kph"], "km/h"),
    **dict.fromkeys(["gb", "gigabyte", "gigabytes"], "gb"),
    **dict.fromkeys(["mb", "megabyte", "megabytes"], "mb"),
    **dict.fromkeys(["tb", "terabyte", "terabytes"], "tb"),
    **dict.fromkeys(["cup", "cups"], "cup"),
    **dict.fromkeys(["tbsp", "tablespoon", "tablespoons"], "tbsp"),
    **dict.fromkeys(["tsp", "teaspoon", "teaspoons"], "tsp"),
    **dict.fromkeys(["pint", "pints"], "pint"),
    **dict.fromkeys(["quart", "quarts"], "quart"),
    **dict.fromkeys(["deg", "degree", "degrees"], "deg"),
    **dict.fromkeys(["rad", "radian", "radians"], "rad"),
    **dict.fromkeys(["st", "nd", "rd", "th"], "th"),  # ordinals: 5th is not 5
}

_NEGATIONS = _words(
    "not no never none nobody nothing nowhere neither nor without cannot except excluding "
    "fail failed fails"
)

#: Pairs of opposite directions: a question has a side when it has one of its words.
_OPPOSITES: tuple[tuple[frozenset[str], frozenset[str]], ...] = tuple(
    (_words(a), _words(b))
    for a, b in (
        ("largest biggest greatest most maximum max top highest tallest longest", "smallest "
         "least fewest minimum min lowest bottom shortest"),
        ("larger bigger greater more higher above over exceeding", "smaller less fewer lower "
         "below under"),
        ("deepest deeper", "shallowest shallower"),
        ("oldest earliest first", "youngest newest latest last"),
        ("older", "younger newer"),
        ("before prior", "after"),
        ("hottest hotter warmest warmer", "coldest colder coolest cooler"),
        ("fastest faster quickest", "slowest slower"),
        ("richest richer", "poorest poorer"),
        ("best better", "worst worse"),
        ("heaviest heavier", "lightest lighter"),
        ("cheapest cheaper", "expensive dearest"),
        ("import imports imported importing", "export exports exported exporting"),
        ("buy buying bought purchase", "sell selling sold"),
        ("win won wins winning", "lose lost loses losing"),
        ("rise rose risen rising increase increased gain gained up", "fall fell fallen "
         "falling decrease decreased drop dropped down"),
        ("north northern", "south southern"),
        ("east eastern", "west western"),
        ("start begin began beginning", "end ended ending finish finished"),
        ("open opened opening", "close closed closing"),
        ("add plus sum", "subtract minus difference"),
        ("multiply times product", "divide divided quotient"),
    )
)  # fmt: skip

#: Capitalised words that start sentences or questions without naming anything.
_NOT_NAMES = _words(
    "a an the what what's whats which who who's whom whose when where why how is are was were "
    "do does did can could would should will shall may might must has have had give tell "
    "show list find search name compare convert calculate compute add subtract multiply "
    "divide translate summarize summarise explain describe book rent send get make please "
    "in on at of for from to by with and or but if then this that these those there it its "
    "i my me we our you your they their he she his her us let lets let's between among "
    "within during after before since until into onto per about over under"
)


#: Question words that say what kind of answer is wanted; "how tall" asks for a quantity.
_ASKS = (
    ("person", re.compile(r"\bwho(?:m|se)?\b")),
    ("time", re.compile(r"\bwhen\b|\b(?:what|which) (?:year|date|day|month|century)\b")),
    ("place", re.compile(r"\bwhere\b|\bin (?:what|which) (?:country|city|place|state)\b")),
    ("reason", re.compile(r"\bwhy\b")),
    (
        "quantity",
        re.compile(
            r"\bhow (?:many|much|tall|high|far|long|old|big|deep|fast|hot|cold|wide|heavy|"
            r"large|small|warm|often)\b"
        ),
    ),
)

#: Words after which the next word names one side of a comparison or a move.
_ANCHORS = ("than", "from")
_FILLERS = _words("a an the one some this that these those my our your")

#: Unit words that count even without a number ("the height in feet"); short and
#: ambiguous spellings (m, in, min, ...) and units of time are left out.
_UNIT_WORDS = {
    word: unit
    for word, unit in _UNITS.items()
    if len(word) >= 3
    and word.isalpha()
    and unit not in ("s", "min", "h", "day", "week", "month", "year", "th", "am", "pm", "%")
    and unit not in ("deg", "rad")
    and word not in ("min", "tons", "ton", "kilo", "kilos", "yrs")
}


@dataclass(frozen=True, slots=True)
class Features:
    """What a paraphrase keeps: the parts of a question :func:`agree` compares.

    Attributes:
        numbers: each number with its unit (``("5", "mi")``), in order.
        units: the units named anywhere, with or without a number.
        names: the capitalised names, lower-cased, in order.
        negated: whether the question is negated.
        directions: for each pair of opposite directions, which sides it mentions.
        asks: the kinds of answer its question words ask for (person, time, place, ...).
        anchored: the word after each of "than" and "from" ("" when absent).
        text: the question lower-cased, words separated by single spaces, possessives
            dropped, padded with one space at each end (for whole-word phrase search).
    """

    numbers: tuple[tuple[str, str], ...]
    units: frozenset[str]
    names: tuple[str, ...]
    negated: bool
    directions: tuple[tuple[bool, bool], ...]
    asks: frozenset[str]
    anchored: tuple[str, ...]
    text: str


def features(question: str) -> Features:
    """Read the numbers, units, names, negation, directions and question words of a question."""
    words = [_bare(w) for w in _WORD.findall(question)]
    text = " " + " ".join(words) + " "
    negated = any(w in _NEGATIONS or w.endswith("n't") for w in words)
    present = set(words) | {part for w in words if "-" in w for part in w.split("-")}
    directions = tuple((bool(a & present), bool(b & present)) for a, b in _OPPOSITES)
    asks = frozenset(kind for kind, pattern in _ASKS if pattern.search(text))
    numbers = _numbers(question)
    units = frozenset(_UNIT_WORDS[w] for w in words if w in _UNIT_WORDS)
    units |= {unit for _, unit in numbers if unit}
    anchored = tuple(_after(words, anchor) for anchor in _ANCHORS)
    return Features(numbers, units, _names(question), negated, directions, asks, anchored, text)


def agree(first: str, second: str) -> bool:
    """Whether two questions agree on numbers, units, names, negation and directions.

    Numbers, units and negation must be equal. Names must appear in both questions, in the
    same order. Opposite directions (largest/smallest), kinds of question (who/when/where)
    and the words after "than" and "from" conflict only when both questions have some.

    Example:
        >>> agree("How far is Paris from London?", "What's the distance from Paris to London?")
        True
        >>> agree("Fly from Paris to London", "Fly from London to Paris")
        False
    """
    a, b = features(first), features(second)
    if a.numbers != b.numbers or a.units != b.units or a.negated != b.negated:
        return False
    if any(x != y and any(x) and any(y) for x, y in zip(a.directions, b.directions, strict=True)):
        return False
    if a.asks and b.asks and a.asks != b.asks:
        return False
    if any(x != y and x and y for x, y in zip(a.anchored, b.anchored, strict=True)):
        return False
    if not all(f" {name} " in b.text for name in a.names):
        return False
    if not all(f" {name} " in a.text for name in b.names):
        return False
    shared = list(dict.fromkeys(a.names + b.names))
    return _order(shared, a.text) == _order(shared, b.text)


def _bare(word: str) -> str:
    """A word lower-cased, without a possessive ending."""
    word = word.lower().replace("\u2019", "'")
    for suffix in ("'s", "'"):
        if word.endswith(suffix) and len(word) > len(suffix):
            return word[: -len(suffix)]
    return word


def _after(words: list[str], anchor: str) -> str:
    """The first word after ``anchor`` that is not an article, or "" without the anchor."""
    if anchor not in words:
        return ""
    for word in words[words.index(anchor) + 1 :]:
        if word not in _FILLERS:
            return word
    return ""


def _order(names: list[str], text: str) -> list[str]:
    return sorted(names, key=lambda name: text.find(f" {name} "))


def _numbers(question: str) -> tuple[tuple[str, str], ...]:
    found: list[tuple[int, str, str]] = []
    for match in _NUMBER.finditer(question):
        start = match.start("num")
        if start > 0 and (question[start - 1].isalpha() or question[start - 1] in "-_"):
            continue  # part of a name: "carbon-14" keeps its number in the names check
        value = _canonical_number(match.group("num"))
        unit = _UNITS.get((match.group("pre") or "").lower(), "")
        post = (match.group("post") or "").lower().replace(" ", "")
        unit = _UNITS.get(post, unit) if post else unit
        found.append((start, value, unit))
    for match in re.finditer(r"[A-Za-z]+", question):
        value_word = _NUMBER_WORDS.get(match.group().lower())
        if value_word is not None:
            after = question[match.end() :].lstrip().split(" ", 1)[0].lower().strip("?.,!")
            found.append((match.start(), str(value_word), _UNITS.get(after, "")))
    return tuple((value, unit) for _, value, unit in sorted(found))


def _canonical_number(text: str) -> str:
    try:
        return str(Decimal(text.replace(",", "")).normalize())
    except InvalidOperation:
        return text


def _names(question: str) -> tuple[str, ...]:
    """Runs of capitalised words (and words with digits inside, like K2), lower-cased."""
    names: list[str] = []
    for sentence in _SENTENCE_END.split(question):
        tokens = re.findall(r"[A-Za-z0-9][A-Za-z0-9'\u2019\-]*", sentence)
        run: list[str] = []
        for index, token in enumerate(tokens):
            bare = _bare(token)
            digits = token[0].isalpha() and any(c.isdigit() for c in token)
            is_name = (token[0].isupper() or digits) and bare != "i"
            if is_name and not (index == 0 and bare in _NOT_NAMES):
                run.append(bare)
                if bare == token.lower().replace("\u2019", "'"):
                    continue  # a possessive ends the name: "Norway's GDP"
            if run:
                names.append(" ".join(run))
                run = []
        if run:
            names.append(" ".join(run))
    return tuple(names)
