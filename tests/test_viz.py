"""Pictures of plans: SVG invariants, colours, groups, escaping, text exports, API and CLI."""

from __future__ import annotations

import asyncio
import os
import random
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from viz_helpers import NS, boxes, check_plan_picture, edges, find, findtext, parse

import llmc
from llmc import Plan, Ref
from llmc.cli import main
from llmc.trace import Batch
from llmc.viz import STATUS_STYLES, Direction, plan_dot, plan_mermaid, plan_svg
from llmc.viz._plan import PER_ROW, wrapped_ranks

REPO = Path(__file__).resolve().parent.parent

PARALLEL_QA = """\
Thought: look up both heights at once.
1. search("Eiffel Tower height")
2. search("Statue of Liberty height")
3. math("height * 1.1", $1)
4. math("height * 2", $2)
5. compare("Eiffel Tower", $3, "Statue of Liberty", $4)
join()
"""


def edge_set(plan: Plan) -> set[tuple[int, int]]:
    return {(d, t.id) for t in plan for d in t.dependencies}


def random_plan(size: int, seed: int, window: int = 30, most: int = 3) -> Plan:
    rng = random.Random(seed)
    plan = Plan()
    for i in range(1, size + 1):
        pool = list(range(max(1, i - window), i))
        deps = sorted(rng.sample(pool, min(len(pool), rng.randint(0, most))))
        tool = rng.choice(["search", "math", "summarize", "extract_number", "llm"])
        plan.add(tool, *(Ref(d) for d in deps), "x" * rng.randint(0, 60))
    return plan


@pytest.fixture
def qa() -> Plan:
    return Plan.parse(PARALLEL_QA)


# -- the picture ---------------------------------------------------------------------------


@pytest.mark.parametrize("direction", ["TB", "LR"])
def test_plan_picture_keeps_its_invariants(qa: Plan, direction: Direction) -> None:
    root = check_plan_picture(plan_svg(qa, direction=direction), edge_set(qa))
    assert root.attrib["data-direction"] == direction
    found = boxes(root)
    assert sorted(found) == [1, 2, 3, 4, 5]

    # levels run down (TB) or right (LR)
    def depth(i: int) -> float:
        box = found[i]
        return box.y + box.height / 2 if direction == "TB" else box.x + box.width / 2

    assert depth(1) == depth(2) < depth(3) == depth(4) < depth(5)


def test_plan_picture_labels_and_tooltips(qa: Plan) -> None:
    root = parse(plan_svg(qa))
    node = find(root, ".//svg:g[@data-task='3']")
    assert node is not None
    assert findtext(node, "svg:title") == "3. math('height * 1.1', $1)"
    text = "".join(find(node, "svg:text").itertext())
    assert text == "$3 math"
    assert "('height * 1.1', $1)" in [t.text for t in node.iterfind("svg:text", NS)]


def test_same_plan_same_bytes(qa: Plan) -> None:
    first = qa.to_svg(direction="LR", groups={"searches": [1, 2]}, budgets={5: 100})
    again = Plan.parse(PARALLEL_QA).to_svg(
        direction="LR", groups={"searches": [1, 2]}, budgets={5: 100}
    )
    assert first == again
    assert re.search(r"\d\.\d\d", first) is None  # coordinates are rounded to 0.1


def test_same_bytes_in_another_process(qa: Plan) -> None:
    script = (
        "import sys, llmc; plan = llmc.Plan.parse(sys.stdin.read()); "
        "sys.stdout.write(plan.to_svg(groups={'b': [3, 4], 'a': [1, 2]}) + plan.to_dot())"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", script],
        input=PARALLEL_QA,
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout
    assert out == qa.to_svg(groups={"b": [3, 4], "a": [1, 2]}) + qa.to_dot()


def test_a_200_task_plan_stays_readable() -> None:
    plan = random_plan(200, seed=7)
    svg = plan_svg(plan)
    root = check_plan_picture(svg, edge_set(plan))
    width, height = float(root.attrib["width"]), float(root.attrib["height"])
    levels = plan.levels()
    rows = sum(-(-len(level) // PER_ROW) for level in levels)  # wide levels wrap
    strip = parse(plan_svg(plan, per_row=len(plan)))  # every level on one row, as before
    assert width < float(strip.attrib["width"]) / 2 and width < 30_000
    assert height < rows * 160
    assert len(svg) < 400_000


def test_a_wide_level_wraps_onto_rows_and_every_edge_still_goes_down() -> None:
    levels = [list(range(1, 15)), [15, 16]]
    ranks = wrapped_ranks(levels, per_row=6)
    assert [ranks[i] for i in (1, 6, 7, 12, 13, 14, 15, 16)] == [0, 0, 1, 1, 2, 2, 3, 3]
    plan = llmc.Plan.parse(
        "".join(f'{i}. search("topic {i}")\n' for i in range(1, 21)) + '21. search("$1 $20")\n'
    )
    root = check_plan_picture(plan_svg(plan), edge_set(plan))
    assert float(root.attrib["width"]) < 6 * 400  # 20 parallel tasks: a block, not a strip
    with pytest.raises(ValueError, match="per_row"):
        wrapped_ranks(levels, per_row=0)


def test_long_chains_and_fans() -> None:
    chain = Plan()
    ref = chain.add("start")
    for _ in range(30):
        ref = chain.add("step", ref)
    check_plan_picture(plan_svg(chain), edge_set(chain))
    fan = Plan()
    root = fan.add("source")
    for i in range(40):
        fan.add("use", root, i)
    svg = plan_svg(fan, direction="LR")
    check_plan_picture(svg, edge_set(fan))
    # a source used by much later tasks draws one trunk through the levels in between
    skip = Plan()
    first = skip.add("first")
    previous = first
    for _ in range(5):
        previous = skip.add("next", previous, first)
    check_plan_picture(plan_svg(skip), edge_set(skip))


def test_empty_and_single_plans() -> None:
    root = parse(plan_svg(Plan()))
    assert root.find(".//svg:text[@class='empty']", NS) is not None
    one = Plan()
    one.add("search", "x")
    check_plan_picture(plan_svg(one), set())


def test_text_is_escaped_and_shortened() -> None:
    plan = Plan()
    nasty = "a <b> & \"c\" 'd' ünï 深い 🙂\nnext line\x00\x1b" + "z" * 300
    plan.add("search", nasty, key="</svg>&amp;", thought="why:\x07 <because>\nof this")
    plan.add('tool<&>"name"', Ref(1))
    svg = plan_svg(plan, title='<title> & "quotes"')
    root = check_plan_picture(svg, {(1, 2)})
    node = find(root, ".//svg:g[@data-task='1']")
    tooltip = findtext(node, "svg:title")
    assert repr(nasty) in tooltip and "key='</svg>&amp;'" in tooltip
    assert "Thought: why:\ufffd <because>\nof this" in tooltip
    assert "\x00" not in svg and "\x1b" not in svg
    lines = [t.text or "" for t in node.iterfind("svg:text", NS)]
    assert lines[1].endswith("…") and len(lines[1]) < 60
    head = "".join(find(root, ".//svg:g[@data-task='2']/svg:text").itertext())
    assert head == '$2 tool<&>"name"'
    assert findtext(root, ".//svg:text[@class='title']") == '<title> & "quotes"'


def test_values_plan_text_cannot_write_still_draw() -> None:
    plan = Plan()
    plan.add("f", object(), float("nan"), set())
    svg = plan_svg(plan)
    assert "object object at" in svg
    assert "nan" in svg


# -- colours from a run --------------------------------------------------------------------


@llmc.tool
async def fetch(name: str) -> str:
    """Fetch a thing.

    Args:
        name: which.
    """
    if name == "bad":
        raise ValueError("no such thing")
    await asyncio.sleep(0.001)
    return name.upper()


@llmc.tool
async def join_text(a: str, b: str) -> str:
    """Join two texts.

    Args:
        a: first.
        b: second.
    """
    return a + b


def failing_run() -> tuple[Plan, llmc.Result]:
    plan = Plan.parse(
        '1. fetch("good")\n2. fetch("bad")\n3. join_text($1, $1)\n4. join_text($1, $2)\n',
        tools=[fetch, join_text],
    )
    return plan, llmc.run_plan_sync(plan, [fetch, join_text])


def test_statuses_come_from_the_run() -> None:
    plan, result = failing_run()
    root = parse(plan.to_svg(trace=result))
    classes = {
        int(g.attrib["data-task"]): g.attrib["class"]
        for g in root.iterfind(".//svg:g[@data-task]", NS)
    }
    assert classes == {
        1: "node status-done",
        2: "node status-failed",
        3: "node status-done",
        4: "node status-skipped",
    }
    rect = find(root, ".//svg:g[@data-task='2']/svg:rect")
    assert rect.attrib["fill"] == STATUS_STYLES["failed"].fill
    tooltip = findtext(root, ".//svg:g[@data-task='2']/svg:title")
    assert "status: failed" in tooltip and "ValueError: no such thing" in tooltip
    legend = [t.text for t in root.iterfind(".//svg:g[@class='legend']//svg:text", NS)]
    assert legend[:3] == ["done", "failed", "skipped"]
    # the critical path runs through the tasks that ran: $1 -> $3
    critical = [(s, t) for s, t, _ in edges(root) if _edge_class(root, s, t) == "edge critical"]
    assert critical == [(1, 3)]


def _edge_class(root: ET.Element, source: int, target: int) -> str:
    path = find(root, f".//svg:path[@data-source='{source}'][@data-target='{target}']")
    return path.attrib["class"]


def test_explicit_statuses_budgets_and_unknown_status(qa: Plan) -> None:
    svg = plan_svg(
        qa,
        statuses={1: "cached", 2: "running", 3: llmc.TaskStatus.CANCELLED},
        budgets={4: 300, 5: "≤ 1k tok"},
    )
    root = parse(svg)
    assert "status-cached" in find(root, ".//svg:g[@data-task='1']").attrib["class"]
    assert "status-cancelled" in find(root, ".//svg:g[@data-task='3']").attrib["class"]
    assert find(root, ".//svg:g[@data-task='4']").attrib["class"] == "node status-plain"
    texts = [t.text for t in root.iterfind(".//svg:g[@data-task='4']/svg:text", NS)]
    assert texts[-1] == "≤ 300 tok"
    with pytest.raises(ValueError, match="unknown status 'weird'"):
        plan_svg(qa, statuses={1: "weird"})
    with pytest.raises(ValueError, match="direction"):
        plan_svg(qa, direction="BT")  # type: ignore[arg-type]
    for picture in (plan_svg, plan_mermaid, plan_dot):
        with pytest.raises(TypeError, match=r"unknown picture option.*directon"):
            picture(qa, directon="LR")  # type: ignore[call-arg]


def test_fused_groups_are_outlined_around_their_members_only() -> None:
    plan = random_plan(30, seed=3)
    level = plan.levels()[1]
    groups = {"fused <A>": level[:3], "fused B": [*plan.levels()[2][:2], 1]}
    root = check_plan_picture(plan_svg(plan, groups=groups), edge_set(plan))
    found = boxes(root)
    outlines = root.findall(".//svg:g[@class='group']", NS)
    assert {g.attrib["data-group"] for g in outlines} == set(groups)
    from viz_helpers import rect_of

    for outline in outlines:
        rect = rect_of(find(outline, "svg:rect"))
        members = set(groups[outline.attrib["data-group"]])
        inside = {i for i, box in found.items() if box.overlaps(rect)}
        assert inside and inside <= members


def test_a_groups_tasks_stand_together_even_on_a_single_level() -> None:
    plan = Plan()
    for name in ("a", "b", "c", "d"):
        plan.add("search", name)
    root = parse(plan_svg(plan, groups={"odd": [1, 3]}))
    found = boxes(root)
    order = sorted(found, key=lambda i: found[i].x)
    assert abs(order.index(1) - order.index(3)) == 1
    from viz_helpers import rect_of

    outline = rect_of(find(root, ".//svg:g[@class='group']/svg:rect"))
    assert {i for i, box in found.items() if box.overlaps(outline)} == {1, 3}


def test_groups_default_to_the_plans_fused_groups(qa: Plan) -> None:
    qa.fused_groups = {"searches": (1, 2)}
    root = parse(qa.to_svg())
    assert [g.attrib["data-group"] for g in root.iterfind(".//svg:g[@class='group']", NS)] == [
        "searches"
    ]
    assert "subgraph cluster_1" in qa.to_dot()
    assert 'subgraph g1["searches"]' in qa.to_mermaid()


def test_groups_default_to_the_runs_batches() -> None:
    plan, result = failing_run()
    result.trace.batches.append(Batch("fetch", (1, 2), started=0.0, finished=0.1))
    root = parse(plan.to_svg(trace=result))
    names = [g.attrib["data-group"] for g in root.iterfind(".//svg:g[@class='group']", NS)]
    assert names == ["batch 1: fetch, 2 tasks"]
    assert 'subgraph g1["batch 1: fetch, 2 tasks"]' in plan.to_mermaid(trace=result)
    assert plan.to_svg(trace=result, groups={}).count('class="group"') == 0


# -- text exports --------------------------------------------------------------------------


def test_mermaid(qa: Plan) -> None:
    text = plan_mermaid(qa)
    lines = text.splitlines()
    assert lines[0] == "flowchart TD"
    assert '    t3["$3 math<br/>(#39;height * 1.1#39;, $1)"]' not in lines  # ' stays
    assert "    t3[\"$3 math<br/>('height * 1.1', $1)\"]" in lines
    assert "    t1 --> t3" in lines and "    t4 --> t5" in lines
    assert plan_mermaid(qa, direction="LR").startswith("flowchart LR\n")
    plan = Plan()
    plan.add("say", 'he said "hi" <b> & #1; ok\nnext')
    line = plan_mermaid(plan).splitlines()[1]
    label = line[line.index('["') + 2 : line.rindex('"]')]
    assert '"' not in label and "<b>" not in label and "&" not in label
    assert "#quot;" not in label  # numeric codes only
    assert "#34;" in label and "#60;b#62;" in label and "#35;1#59;" in label


def test_mermaid_classes_from_a_run() -> None:
    plan, result = failing_run()
    text = plan.to_mermaid(trace=result)
    assert "    classDef failed fill:#fee2e2,stroke:#dc2626" in text
    assert "    class t1,t3 done" in text
    assert "    class t4 skipped" in text


def _dot_strings(text: str) -> list[str]:
    """Every quoted string of a DOT text, unescaped; fails on an unterminated one."""
    found = []
    for match in re.finditer(r'"((?:[^"\\\n]|\\.)*)"', text):
        found.append(
            re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), match.group(1))
        )
    # nothing quoted is left over: every quote belongs to a string
    rest = re.sub(r'"((?:[^"\\\n]|\\.)*)"', "", text)
    assert '"' not in rest
    return found


def test_dot_escapes_quotes_backslashes_and_newlines() -> None:
    plan = Plan()
    plan.add("say", 'he said "hi" \\ there\nnext')
    plan.add("use", Ref(1))
    text = plan_dot(plan, direction="LR")
    assert text.startswith("digraph plan {\n    rankdir=LR;\n")
    assert "    t1 -> t2;" in text
    strings = _dot_strings(text)
    assert "1. say('he said \"hi\" \\\\ there\\nnext')" in strings  # the tooltip: plan text
    assert "$1 say\n('he said \"hi\" \\\\ there\\nnext')" in strings  # the label, two lines


def test_dot_renders_with_graphviz_when_present(qa: Plan, tmp_path: Path) -> None:
    import shutil

    if shutil.which("dot") is None:
        pytest.skip("Graphviz's dot is not installed (optional)")
    plan = Plan()
    plan.add("say", 'q"uote \\ back\nline <&>')
    plan.add("use", Ref(1))
    plan.fused_groups = {'g "1"': (1,)}
    for text in (qa.to_dot(), plan.to_dot()):
        result = subprocess.run(["dot", "-Tsvg"], input=text, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        ET.fromstring(result.stdout.split("\n", 3)[-1])


# -- the API and the command ---------------------------------------------------------------


def test_plan_methods(qa: Plan, tmp_path: Path) -> None:
    out = tmp_path / "plan.svg"
    svg = qa.to_svg(out, direction="LR")
    assert out.read_text(encoding="utf-8") == svg
    assert qa._repr_svg_() == qa.to_svg()
    assert qa.to_mermaid() == plan_mermaid(qa)
    assert qa.to_dot() == plan_dot(qa)


def test_cli_viz(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "qa.plan"
    source.write_text(PARALLEL_QA)
    out = tmp_path / "qa.svg"
    assert main(["viz", str(source), "-o", str(out), "--direction", "LR"]) == 0
    assert out.read_text() == Plan.parse(PARALLEL_QA).to_svg(direction="LR")
    assert main(["viz", str(source), "--format", "mermaid"]) == 0
    assert capsys.readouterr().out.startswith("flowchart TD\n")
    assert main(["viz", str(source), "--format", "dot"]) == 0
    assert capsys.readouterr().out.startswith("digraph plan {")
    # with --tools the plan is checked against them
    assert main(["viz", str(source), "--tools", "text"]) == 2
    assert "search" in capsys.readouterr().err


def test_cli_exec_writes_pictures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text("llmc runs plans. llmc is fast.\n")
    (tmp_path / "docs" / "plan-language.md").write_text("word " * 20)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LLMC_FILES_ROOT", raising=False)
    example = REPO / "examples" / "plans" / "compare_docs.plan"
    assert main(["exec", str(example), "--svg", "pictures"]) == 0
    plan_root = parse((tmp_path / "pictures" / "plan.svg").read_text())
    assert {g.attrib["class"] for g in plan_root.iterfind(".//svg:g[@data-task]", NS)} == {
        "node status-done"
    }
    timeline = parse((tmp_path / "pictures" / "timeline.svg").read_text())
    assert len(timeline.findall(".//svg:rect[@class='bar']", NS)) == 6
