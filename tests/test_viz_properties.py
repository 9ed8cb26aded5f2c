"""Plan pictures of any DAG: boxes never overlap, every edge runs from its source's box to its
target's box without entering another, group outlines hold only their own boxes, and the
same plan gives the same bytes."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from viz_helpers import NS, boxes, check_plan_picture, find, rect_of

from llmc import Plan, Ref
from llmc.viz import plan_svg

names = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=16)


@st.composite
def plans(draw: st.DrawFn) -> tuple[Plan, dict[str, list[int]], dict[int, int]]:
    size = draw(st.integers(1, 24))
    plan = Plan()
    for i in range(1, size + 1):
        earlier = list(range(1, i))
        deps = draw(st.lists(st.sampled_from(earlier), max_size=4, unique=True)) if earlier else []
        # "$" escaped: "$0" in a text is a reference, maybe to a task that does not exist.
        text = draw(st.text(max_size=50).map(lambda s: s.replace("$", "$$")))
        plan.add(draw(names), *(Ref(d) for d in sorted(deps)), text)
    groups: dict[str, list[int]] = {}
    ids = [t.id for t in plan]
    for name in draw(st.lists(st.sampled_from(["a", "b <&>", "c"]), max_size=3, unique=True)):
        groups[name] = draw(st.lists(st.sampled_from(ids), min_size=1, max_size=5, unique=True))
    budgets = draw(st.dictionaries(st.sampled_from(ids), st.integers(1, 10_000), max_size=3))
    return plan, groups, budgets


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plans(), st.sampled_from(["TB", "LR"]))
def test_any_plan_draws_cleanly(
    drawn: tuple[Plan, dict[str, list[int]], dict[int, int]], direction: str
) -> None:
    plan, groups, budgets = drawn
    svg = plan_svg(plan, direction=direction, groups=groups, budgets=budgets)  # type: ignore[arg-type]
    root = check_plan_picture(svg, {(d, t.id) for t in plan for d in t.dependencies})
    found = boxes(root)
    assert sorted(found) == sorted(t.id for t in plan)
    taken: set[int] = set()
    owner: dict[str, set[int]] = {}
    for name, members in groups.items():  # a task belongs to its first group
        owner[name] = set(members) - taken
        taken |= owner[name]
    for outline in root.iterfind(".//svg:g[@class='group']", NS):
        rect = rect_of(find(outline, "svg:rect"))
        inside = {i for i, box in found.items() if box.overlaps(rect)}
        assert inside <= owner[outline.attrib["data-group"]]
    assert svg == plan_svg(plan, direction=direction, groups=groups, budgets=budgets)  # type: ignore[arg-type]
