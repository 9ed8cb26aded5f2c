"""What every picture shares: the status palette, fonts, text measuring and the templates.

Coordinates go through :func:`num`, which rounds to 0.1 px and writes the shortest form, so
the same input always gives the same bytes. Text goes through :func:`clean` (characters XML
cannot hold become U+FFFD) and the templates' autoescaping (``<``, ``&`` and quotes).
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

#: Monospace fonts keep width estimates honest; every system has one of these.
FONT_FAMILY = (
    "ui-monospace, SFMono-Regular, Menlo, Consolas, 'DejaVu Sans Mono', 'Liberation Mono', "
    "monospace"
)
#: Advance of one character in em: monospace fonts use 0.6; a little more to stay safe.
CHAR_EM = 0.62
#: Advance of a wide (East Asian, emoji) character in em.
WIDE_EM = 1.24

TEMPLATES = Path(__file__).parent / "templates"


@dataclass(frozen=True, slots=True)
class StatusStyle:
    """How a task of one status is drawn.

    Attributes:
        name: the status, as a CSS-friendly word (``"done"``).
        fill: the box's or bar's fill colour.
        stroke: its outline colour.
        dash: an SVG ``stroke-dasharray``, or an empty string for a solid outline.
    """

    name: str
    fill: str
    stroke: str
    dash: str = ""


#: Colours of the task statuses (:class:`llmc.TaskStatus` values plus ``"cached"``), in the
#: order legends list them.
STATUS_STYLES: dict[str, StatusStyle] = {
    style.name: style
    for style in (
        StatusStyle("pending", "#f1f5f9", "#94a3b8", "4 3"),
        StatusStyle("running", "#dbeafe", "#2563eb"),
        StatusStyle("done", "#dcfce7", "#16a34a"),
        StatusStyle("cached", "#cffafe", "#0891b2"),
        StatusStyle("failed", "#fee2e2", "#dc2626"),
        StatusStyle("skipped", "#fef9c3", "#ca8a04", "4 3"),
        StatusStyle("cancelled", "#f3e8ff", "#9333ea", "4 3"),
    )
}
#: A task of a plan that has not run: no status, no colour.
PLAIN = StatusStyle("plain", "#ffffff", "#475569")


def num(value: float) -> str:
    """A coordinate as text: rounded to 0.1, without a trailing ``.0`` or a ``-0``."""
    text = f"{round(value, 1):.1f}"
    if text.endswith(".0"):
        text = text[:-2]
    return "0" if text == "-0" else text


def clean(text: str) -> str:
    """Text that XML 1.0 can hold: control characters and lone surrogates become U+FFFD."""
    if text.isprintable():
        return text
    return "".join(_xml_char(c) for c in text)


def _xml_char(char: str) -> str:
    code = ord(char)
    if char in "\t\n\r" or 0x20 <= code < 0xD800 or 0xE000 <= code <= 0xFFFD or code > 0xFFFF:
        return char
    return "\ufffd"


def one_line(text: str) -> str:
    """Text for a single-line label: line breaks shown as ``⏎``, tabs as spaces."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return clean(text.replace("\n", "⏎").replace("\t", " "))


def _char_em(char: str) -> float:
    if unicodedata.combining(char):
        return 0.0
    if unicodedata.east_asian_width(char) in ("W", "F"):
        return WIDE_EM
    return CHAR_EM


def text_width(text: str, size: float) -> float:
    """A generous estimate of the width of ``text`` in a monospace font of ``size`` px."""
    if text.isascii():
        return len(text) * CHAR_EM * size
    return sum(_char_em(c) for c in text) * size


def shorten(text: str, size: float, width: float) -> str:
    """``text``, cut with ``…`` so that it fits ``width`` px at ``size`` px."""
    if text_width(text, size) <= width:
        return text
    room = width - CHAR_EM * size  # the ellipsis
    used = 0.0
    for end, char in enumerate(text):
        used += _char_em(char) * size
        if used > room:
            return text[:end].rstrip() + "…"
    return text  # pragma: no cover - the whole text fits after all


def duration_text(seconds: float) -> str:
    """A duration for people: ``"0.4 ms"``, ``"12 ms"``, ``"1.25 s"``, ``"3 min 5 s"``."""
    if seconds < 0.00005:
        return "< 0.1 ms"
    if seconds < 0.01:
        return f"{seconds * 1000:.1f} ms"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.3g} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s"


def nice_step(span: float, target: int) -> float:
    """A round tick step (1, 2 or 5 times a power of ten) that cuts ``span`` into about
    ``target`` pieces."""
    raw = span / max(target, 1)
    magnitude = 10.0 ** math.floor(math.log10(raw))
    for factor in (1.0, 2.0, 5.0, 10.0):
        if factor * magnitude >= raw * 0.999:
            return factor * magnitude
    return 10.0 * magnitude  # pragma: no cover


@functools.cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["n"] = num
    env.filters["clean"] = clean
    return env


#: Stands for the picture's id prefix while rendering; see :func:`render`.
_PREFIX_TOKEN = "llmc-0000000000"


def render(template: str, **context: Any) -> str:
    """Render a picture template to SVG text.

    The template gets ``font`` (:data:`FONT_FAMILY` unless given) and names its ids
    ``{{ prefix }}-...``; the prefix is a hash of the rendered
    picture, so ids are stable for the same picture and do not clash between different
    pictures on one page (a notebook shows many).
    """
    context.setdefault("font", FONT_FAMILY)
    body = _environment().get_template(template).render(prefix=_PREFIX_TOKEN, **context)
    digest = hashlib.sha1(body.encode("utf-8", "surrogatepass")).hexdigest()[:10]
    return body.replace(_PREFIX_TOKEN, f"llmc-{digest}")


def write(svg: str, path: str | os.PathLike[str] | None) -> str:
    """Write ``svg`` to ``path`` (UTF-8) when a path is given; return the text either way."""
    if path is not None:
        Path(path).write_text(svg, encoding="utf-8")
    return svg


#: Font size of legend labels, in both pictures.
LEGEND_SIZE = 11.0


@dataclass(frozen=True, slots=True)
class LegendItem:
    """One entry of a picture's legend: what it shows, its label, where it starts."""

    kind: str
    label: str
    x: float
    style: StatusStyle | None

    @property
    def width(self) -> float:
        """The entry's width: its swatch and its label."""
        return 22 + text_width(self.label, LEGEND_SIZE)


#: A legend entry before it is laid out: kind, label and swatch style.
LegendEntry = tuple[str, str, StatusStyle | None]


def status_entries(used: Iterable[str]) -> list[LegendEntry]:
    """Legend entries for the statuses in ``used``, in :data:`STATUS_STYLES` order."""
    wanted = set(used)
    return [("status", name, style) for name, style in STATUS_STYLES.items() if name in wanted]


def lay_out_legend(entries: list[LegendEntry], left: float) -> list[LegendItem]:
    """Lay legend entries out in one row from ``left``."""
    items: list[LegendItem] = []
    x = left
    for kind, label, style in entries:
        item = LegendItem(kind, label, x, style)
        items.append(item)
        x += item.width + 14
    return items
