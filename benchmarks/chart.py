"""The comparison's chart: hand-written SVG, no plotting library.

Two panels side by side, wall time per question and cost per thousand questions; in each, a
group of horizontal bars per workload, one bar per contender, with its value at its end.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import Protocol

__all__ = ["render_chart"]

COLOURS = {
    "llmc": "#2563eb",
    "llmc-fused": "#06b6d4",
    "react": "#dc2626",
    "parallel-fc": "#f59e0b",
    "llamaindex": "#7c3aed",
}
_OTHER = ("#16a34a", "#6b7280", "#db2777")
BAR = 13
GAP = 3
GROUP_GAP = 16
LABEL = 96
PANEL = 330
TOP = 62


class _Row(Protocol):
    workload: str
    contender: str
    wall: float
    cost: float


def _colour(key: str, index: int) -> str:
    return COLOURS.get(key, _OTHER[index % len(_OTHER)])


def render_chart(
    summaries: Sequence[_Row],
    workloads: Sequence[str],
    contenders: Sequence[str],
    labels: dict[str, str],
    *,
    title: str = "",
) -> str:
    """The chart as SVG text."""
    rows = {(s.workload, s.contender): s for s in summaries}
    panels = (
        ("seconds per question", lambda s: s.wall, "{:.2f}"),
        ("$ per 1,000 questions", lambda s: s.cost * 1000, "{:.3f}"),
    )
    group = len(contenders) * (BAR + GAP) + GROUP_GAP
    height = TOP + len(workloads) * group + 10
    width = LABEL + 2 * (PANEL + 60)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="8" y="16" font-size="12" font-weight="bold">{escape(title)}</text>',
    ]
    x = 8
    for index, key in enumerate(contenders):  # legend
        label = escape(labels.get(key, key))
        out.append(f'<rect x="{x}" y="26" width="10" height="10" fill="{_colour(key, index)}"/>')
        out.append(f'<text x="{x + 14}" y="35">{label}</text>')
        x += 24 + 6 * len(labels.get(key, key))
    for number, (name, value, form) in enumerate(panels):
        left = LABEL + number * (PANEL + 60)
        values = [value(s) for s in summaries if s.workload in workloads]
        top = max(values, default=1.0) or 1.0
        out.append(f'<text x="{left}" y="{TOP - 8}" font-weight="bold">{escape(name)}</text>')
        for row_index, workload in enumerate(workloads):
            y = TOP + row_index * group
            if number == 0:
                out.append(f'<text x="8" y="{y + BAR}">{escape(workload)}</text>')
            for index, key in enumerate(contenders):
                summary = rows.get((workload, key))
                if summary is None:
                    continue
                amount = value(summary)
                length = max(1.0, PANEL * amount / top)
                bar_y = y + index * (BAR + GAP)
                out.append(
                    f'<rect x="{left}" y="{bar_y}" width="{length:.1f}" height="{BAR}" '
                    f'fill="{_colour(key, index)}"><title>{escape(labels.get(key, key))}: '
                    f"{form.format(amount)}</title></rect>"
                )
                out.append(
                    f'<text x="{left + length + 4:.1f}" y="{bar_y + BAR - 3}">'
                    f"{form.format(amount)}</text>"
                )
        out.append(
            f'<line x1="{left}" y1="{TOP - 4}" x2="{left}" y2="{height - 8}" stroke="#888"/>'
        )
    out.append("</svg>")
    return "\n".join(out) + "\n"
