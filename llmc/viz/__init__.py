"""Pictures of plans and runs, drawn by llmc itself: no Graphviz binary, no web service.

- :func:`plan_svg`: a plan's tasks as boxes in dependency levels (top-down or left-right),
  with curved arrows that go around boxes, status colours from a run, outlined fused groups
  and token budgets. :meth:`llmc.Plan.to_svg` calls it.
- :func:`timeline_svg`: a run as a Gantt chart: a row per task, the planner's stream and the
  joiner's calls, dependency arrows, the critical path, a time axis and how many tasks ran at
  once. :meth:`llmc.Trace.to_svg` calls it.
- :func:`plan_mermaid` and :func:`plan_dot`: the plan as Mermaid or Graphviz text.

Pictures are deterministic: the same plan (and options) gives the same bytes. Text is
escaped for XML, and long labels are cut with "…" (the full text is in each box's tooltip).

The layout is a small Sugiyama-style layered layout (:mod:`llmc.viz._layout`); the SVG comes
from Jinja2 templates in ``llmc/viz/templates``.
"""

from __future__ import annotations

from ._export import plan_dot as plan_dot
from ._export import plan_mermaid as plan_mermaid
from ._plan import plan_svg as plan_svg
from ._svg import STATUS_STYLES as STATUS_STYLES
from ._svg import StatusStyle as StatusStyle
from ._svg import write as write
from ._tasks import Direction as Direction
from ._tasks import PlanView as PlanView
from ._timeline import timeline_svg as timeline_svg

__all__ = [
    "STATUS_STYLES",
    "Direction",
    "PlanView",
    "StatusStyle",
    "plan_dot",
    "plan_mermaid",
    "plan_svg",
    "timeline_svg",
    "write",
]
