"""Plans as text for other tools: Mermaid flowcharts and Graphviz DOT.

Both carry the same labels as the SVG (``$3 tool`` over the shortened arguments), status
classes when a run is given, and fused groups as subgraphs.
"""

from __future__ import annotations

from typing import Unpack

from ..plan import Plan
from ._svg import PLAIN, STATUS_STYLES, clean, one_line
from ._tasks import PlanView, arguments_text, plan_text, shown

#: Arguments longer than this are cut with "…" in text exports.
ARGS_LIMIT = 40

_MERMAID_SAFE = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 _-.,:/()[]{}$=+*?!'@%~^|\\"
)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _label_parts(plan: Plan, task_id: int) -> tuple[str, str]:
    task = plan[task_id]
    return f"${task.id} {one_line(task.tool)}", _cut(one_line(arguments_text(task)), ARGS_LIMIT)


def _mermaid_text(text: str) -> str:
    """Text for a quoted Mermaid label: anything but plain characters as ``#code;``."""
    return "".join(c if c in _MERMAID_SAFE or ord(c) > 0x9F else f"#{ord(c)};" for c in text)


def plan_mermaid(plan: Plan, **view: Unpack[PlanView]) -> str:
    """A plan as a Mermaid flowchart (``flowchart TD``), for Markdown that renders Mermaid.

    Args:
        plan: the plan.
        **view: see :class:`PlanView`; a status becomes a class of its tasks (with colours),
            and groups are subgraphs.

    Returns:
        the flowchart's text, ending with a newline.

    Raises:
        TypeError: an unknown option.
        ValueError: an unknown direction or status.
    """
    drawn = shown(plan, view)
    status_of, grouped = drawn.status_of, drawn.groups
    lines = ["flowchart TD" if drawn.direction == "TB" else "flowchart LR"]

    def node(task_id: int, indent: str) -> str:
        call, args = (_mermaid_text(part) for part in _label_parts(plan, task_id))
        return f'{indent}t{task_id}["{call}<br/>{args}"]'

    for task in plan:
        if task.id not in drawn.in_group:
            lines.append(node(task.id, "    "))
    for number, (name, members) in enumerate(grouped.items(), 1):
        lines.append(f'    subgraph g{number}["{_mermaid_text(one_line(name))}"]')
        lines += [node(i, "        ") for i in members]
        lines.append("    end")
    for task in plan:
        lines += [f"    t{dep} --> t{task.id}" for dep in sorted(task.dependencies)]
    used = [name for name in STATUS_STYLES if name in status_of.values()]
    for name in used:
        style = STATUS_STYLES[name]
        dash = f",stroke-dasharray:{style.dash}" if style.dash else ""
        lines.append(f"    classDef {name} fill:{style.fill},stroke:{style.stroke}{dash}")
        named = ",".join(f"t{i}" for i in sorted(status_of) if status_of[i] == name)
        lines.append(f"    class {named} {name}")
    return "\n".join(lines) + "\n"


def _dot_text(text: str) -> str:
    """Text for a quoted DOT string: backslashes and quotes escaped, line breaks as ``\\n``."""
    text = clean(text).replace("\\", "\\\\").replace('"', '\\"')
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\\n")


def plan_dot(plan: Plan, **view: Unpack[PlanView]) -> str:
    """A plan as a Graphviz ``digraph``, for ``dot -Tsvg`` and other Graphviz tools.

    It takes the arguments of :func:`plan_mermaid` and raises its errors: the direction is
    the graph's ``rankdir``, a status colours its boxes, and groups are ``cluster_``
    subgraphs. The text ends with a newline.
    """
    drawn = shown(plan, view)
    status_of = drawn.status_of
    lines = [
        "digraph plan {",
        f"    rankdir={drawn.direction};",
        '    node [shape=box, style="rounded,filled", fontname="monospace", fontsize=11];',
        '    edge [color="#94a3b8"];',
    ]

    def node(task_id: int, indent: str) -> str:
        call, args = _label_parts(plan, task_id)
        style = STATUS_STYLES.get(status_of.get(task_id, ""), PLAIN)
        full = plan_text(plan[task_id]) or f"{call}{args}"
        attributes = [
            f'label="{_dot_text(call)}\\n{_dot_text(args)}"',
            f'tooltip="{_dot_text(full)}"',
            f'fillcolor="{style.fill}"',
            f'color="{style.stroke}"',
        ]
        if task_id in status_of:
            attributes.append(f'class="{status_of[task_id]}"')
        return f"{indent}t{task_id} [{', '.join(attributes)}];"

    lines += [node(task.id, "    ") for task in plan if task.id not in drawn.in_group]
    for number, (name, members) in enumerate(drawn.groups.items(), 1):
        lines.append(f"    subgraph cluster_{number} {{")
        lines.append(f'        label="{_dot_text(name)}"; style=dashed; color="#7c3aed";')
        lines += [node(i, "        ") for i in members]
        lines.append("    }")
    for task in plan:
        lines += [f"    t{dep} -> t{task.id};" for dep in sorted(task.dependencies)]
    lines.append("}")
    return "\n".join(lines) + "\n"
