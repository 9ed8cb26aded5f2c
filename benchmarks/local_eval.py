"""The embedded local model on questions about a folder of files, with each small-model aid
switchable, so that what each one pays is measured on its own.

Run: python benchmarks/local_eval.py [--set files|shelf] [--questions N] [--aids LIST]
     [--without AID ...] [--model PATH] [--threads N]

For each question (``files``: tests/data/file_questions.tsv about tests/data/files;
``shelf``: tests/data/shelf_questions.tsv about examples/shelf), the Compiler plans with the
local model under the plan grammar, runs the ready-made tools, and joins. Counted: plans that
parsed, tasks per question, seconds per question, and answers right: containing the expected
text ("right", as the first measurements counted), and also as whole words in an answer no
longer than 40 characters ("strict"), since a whole file that contains the answer is not an
answer, and "6650" does not say "6".

The aids (``--aids``, comma-separated, default ``all`` = the defaults of Compiler on a
grammar backend, every aid but ``mask``; ``none`` = the grammar only, as before the aids;
``all,mask`` adds one to the defaults):

- ``choices``: parameters held to their declared choices (files under the root, folders,
  question spans for grep);
- ``norefs``: no ``$N`` in the plan grammar;
- ``cap``: at most 4 tasks per plan;
- ``repeats``: the plan stops at a task that repeats an earlier one;
- ``mask``: with ``repeats``, the plan grammar is rebuilt at each task line so that a task
  identical to an earlier one cannot be written (``repeats="mask"``);
- ``short``: the short exemplars of planners/default (without it, the two long ones the
  templates had before, from benchmarks/long_exemplars/);
- ``brief``: the planner's prompt lists each tool by its signature line, not its whole
  documentation (a prompt of ~700 tokens instead of ~2,400);
- ``copy``: the joiner answers with a run of words copied from the parts of the
  observations that speak of the question, always Finish;
- ``direct``: with ``copy``, a JSON observation whose one item about the question is the
  answer answers without a joiner call (``Joiner(direct=True)``);
- ``finish``: the plan grammar admits ``finish(...)``, the plan's own answer without a
  joiner call.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import re
import time
from pathlib import Path

import llmc
from llmc import catalog
from llmc.grammar import DEFAULT_MAX_TASKS, PlanGrammar
from llmc.joiner import Joiner
from llmc.llm import Local
from llmc.planner import Planner

REPO = Path(__file__).resolve().parents[1]
SETS = {
    "files": (REPO / "tests/data/file_questions.tsv", REPO / "tests/data/files"),
    "shelf": (REPO / "tests/data/shelf_questions.tsv", REPO / "examples/shelf"),
}
AIDS = ("choices", "norefs", "cap", "repeats", "mask", "short", "brief", "copy", "direct", "finish")
LONG_EXEMPLARS = Path(__file__).resolve().parent / "long_exemplars"


def questions(path: Path, limit: int) -> list[tuple[str, list[str]]]:
    with path.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    return [(row["question"], row["expected"].split("|")) for row in rows[:limit]]


#: The aids the Compiler uses by default (``mask`` is an option: it did not pay).
DEFAULT_AIDS = frozenset(AIDS) - {"mask"}


def chosen_aids(text: str, without: list[str]) -> set[str]:
    names: set[str] = set()
    for name in text.split(","):
        names |= DEFAULT_AIDS if name == "all" else set() if name == "none" else {name}
    unknown = names - set(AIDS) | set(without) - set(AIDS)
    if unknown:
        raise SystemExit(f"unknown aids {sorted(unknown)}; known: {', '.join(AIDS)}")
    return names - set(without)


def compiler_for(tools: list[llmc.Tool], llm: Local, aids: set[str]) -> llmc.Compiler:
    templates = None if "short" in aids else LONG_EXEMPLARS
    grammar = PlanGrammar(
        max_tasks=4 if "cap" in aids else DEFAULT_MAX_TASKS,
        references="norefs" not in aids,
        choices="choices" in aids,
        finish="finish" in aids,
    )
    planner = Planner(
        llm,
        tools,
        templates=templates,
        grammar=grammar,
        repeats=("mask" if "mask" in aids else "stop") if "repeats" in aids else "allow",
        brief="brief" in aids,
    )
    joiner = Joiner(
        llm,
        templates=templates,
        mode="copy" if "copy" in aids else "decide",
        direct="direct" in aids,
    )
    return llmc.Compiler(tools, llm, planner=planner, joiner=joiner, max_replans=1, timeout=30)


def strict(answer: str, expected: list[str]) -> bool:
    """No longer than 40 characters, with the expected text as whole words ("6650" is not
    "6", "200g" is not "200")."""
    return len(answer) <= 40 and any(
        re.search(rf"(?<!\w){re.escape(e)}(?!\w)", answer, re.IGNORECASE) for e in expected
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", choices=sorted(SETS), default="files")
    parser.add_argument("--questions", type=int, default=1000)
    parser.add_argument("--aids", default="all", help="all, none, or a comma-separated list")
    parser.add_argument("--without", nargs="*", default=[], help="aids to leave out of --aids")
    parser.add_argument("--model", default=None, help="a GGUF file (default: SmolLM2-135M)")
    parser.add_argument("--threads", type=int, default=None, help="llama.cpp threads")
    parser.add_argument("--quiet", action="store_true", help="print the summary line only")
    opts = parser.parse_args()
    aids = chosen_aids(opts.aids, opts.without)
    table, root = SETS[opts.set]
    os.environ["LLMC_FILES_ROOT"] = str(root)
    tools = [tool for pack in ("files", "math", "text") for tool in catalog.load_pack(pack)]
    llm = await Local(opts.model, n_threads=opts.threads).aload()
    print(f"model: {llm.describe()}; aids: {', '.join(sorted(aids)) or 'none'}")
    compiler = compiler_for(tools, llm, aids)
    parsed = right = exact = tasks = dropped = unjoined = 0
    started = time.perf_counter()
    items = questions(table, opts.questions)
    for number, (question, expected) in enumerate(items, 1):
        began = time.perf_counter()
        try:
            answer = await compiler.run(question)
        except llmc.PlanError as error:
            print(f"{number:>2}. PLAN ERROR {question!r}: {error}")
            continue
        parsed += 1
        tasks += len(answer.plan)
        dropped += len(answer.trace.dropped)
        unjoined += not any(span.kind == "joiner" for span in answer.trace.spans)
        ok = any(e.lower() in answer.text.lower() for e in expected)
        right += ok
        exact += strict(answer.text, expected)
        calls = ", ".join(task.to_text().split(". ", 1)[1] for task in answer.plan.tasks[:3])
        more = ", ..." if len(answer.plan) > 3 else ""
        if not opts.quiet:
            print(
                f"{number:>2}. {'right' if ok else 'wrong'} {time.perf_counter() - began:5.1f}s "
                f"{len(answer.plan):>2} tasks ({calls}{more}) {question!r} -> "
                f"{answer.text[:50]!r} (expected {expected[0]!r})"
            )
    total = len(items)
    seconds = time.perf_counter() - started
    print(
        f"aids {','.join(sorted(aids)) or 'none'}: plans parsed {parsed}/{total}; answers right "
        f"{right}/{total} ({exact} strict); {tasks / max(parsed, 1):.1f} tasks per question "
        f"({dropped} dropped or stopped at); {unjoined} answered without a joiner call; "
        f"{seconds / max(total, 1):.1f} s per question ({seconds:.0f} s in all)"
    )


if __name__ == "__main__":
    asyncio.run(main())
