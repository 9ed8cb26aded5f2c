"""Draw the pictures in docs/pictures/: a ParallelQA-style plan, its run, and a bigger plan.

The question needs two look-ups, two calculations and a comparison
(``examples/plans/parallelqa.plan``). A scripted planner streams that plan (so tasks start
while it is still being written), the example tools of ``examples/tools/facts.py`` wait like
network calls, the ready-made ``math`` pack calculates, and a scripted joiner answers. Then:

- ``parallelqa-plan.svg``: the plan (deterministic: the same bytes on every run);
- ``parallelqa-run.svg``: the plan coloured by the run, with the critical path marked;
- ``parallelqa-timeline.svg``: the run's timeline (it changes with the timings);
- ``wide-plan.svg``: a 21-task plan with fused groups and budgets, left to right.

Run it from the repository's root::

    python examples/pictures.py            # writes docs/pictures/*.svg
    python examples/pictures.py OUT_DIR    # somewhere else
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import llmc
from llmc import catalog
from llmc.testing import ScriptedLLM

QUESTION = "If the Eiffel Tower grew by 10% and the Statue of Liberty doubled, which is taller?"

PLAN = (Path(__file__).parent / "plans" / "parallelqa.plan").read_text(encoding="utf-8")

ANSWER = (
    "Thought: the comparison answers it.\nAction: Finish(The Eiffel Tower: 363 m against 186 m.)"
)

# The plan's tools: a simulated search and a comparison (examples/tools/facts.py), which wait
# like network calls, and the ready-made math pack.
TOOLS = [
    *llmc.load_tools(Path(__file__).parent / "tools" / "facts.py"),
    *catalog.load_pack("math"),
]


def wide_plan() -> tuple[llmc.Plan, dict[str, list[int]], dict[int, int]]:
    """A bigger plan: fan-out searches, grouped (fused) summaries, and long-range inputs."""
    plan = llmc.Plan()
    topics = ["Mariana Trench", "Puerto Rico Trench", "Java Trench", "Tonga Trench", "Kuril Trench"]
    found = [plan.add("search", f"{topic} depth") for topic in topics]
    summaries = [plan.add("summarize", ref, max_words=40) for ref in found]
    depths = [
        plan.add("extract_number", f"depth of {t}: {s}")
        for t, s in zip(topics, summaries, strict=True)
    ]
    deepest = plan.add("math", "max(a, b, c, d, e)", dict(zip("abcde", depths, strict=True)))
    ranked = plan.add("rank", depths, by="depth")
    names = plan.add("compare", found[0], found[1], deepest)
    plan.add("write_report", 'Trenches <deep> & "deeper"', ranked, names, found[4], summaries[2])
    plan.add("translate", "résumé: la fosse la plus profonde", "fr")
    plan.add("search", "average ocean depth")
    groups = {
        "5 searches, one batch": [r.task_id for r in found],
        "5 summaries, one batch": [r.task_id for r in summaries],
    }
    budgets = {r.task_id: 200 for r in summaries} | {len(plan) - 2: 800}
    return plan, groups, budgets


async def ask() -> llmc.Answer:
    """Answer the ParallelQA-style question with the scripted planner and joiner."""
    planner = ScriptedLLM([PLAN], chunk_size=24, first_chunk_delay=0.15, chunk_delay=0.02)
    joiner = ScriptedLLM([ANSWER], chunk_size=16, first_chunk_delay=0.12, chunk_delay=0.01)
    compiler = llmc.Compiler(tools=TOOLS, llm=planner, joiner_llm=joiner)
    return await compiler.run(QUESTION)


def main(out: Path) -> None:
    """Run the question and draw every picture into ``out``."""
    answer = asyncio.run(ask())
    print(answer.text)
    out.mkdir(parents=True, exist_ok=True)
    plan = llmc.Plan.parse(PLAN, tools=TOOLS)
    plan.to_svg(out / "parallelqa-plan.svg", title="ParallelQA-style plan")  # = llmc viz
    answer.plan.to_svg(
        out / "parallelqa-run.svg", trace=answer.trace, title="the plan, after its run"
    )
    answer.trace.to_svg(out / "parallelqa-timeline.svg", plan=answer.plan, title=QUESTION)
    big, groups, budgets = wide_plan()
    big.to_svg(out / "wide-plan.svg", direction="LR", groups=groups, budgets=budgets)
    for name in sorted(p.name for p in out.glob("*.svg")):
        print(f"wrote {out / name}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("docs/pictures"))
