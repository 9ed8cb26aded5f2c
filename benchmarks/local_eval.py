"""The embedded local model on 30 questions about a folder of files: does the machinery hold?

Run: python benchmarks/local_eval.py [--questions 30] [--max-replans 1] [--model PATH]

For each question of tests/data/file_questions.tsv (about the files in tests/data/files), the
Compiler plans with the local model under the plan grammar, runs the ready-made tools, and
joins. Counted: plans that parsed (the grammar's promise), tasks that called a tool that
exists (the parser refuses any other), and answers that contain the expected text. The
answers measure the model, not llmc: a 135M model is weak, and a better GGUF plugs in with
--model.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import time
from pathlib import Path

import llmc
from llmc import catalog
from llmc.llm import Local

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"


def questions(limit: int) -> list[tuple[str, list[str]]]:
    with (DATA / "file_questions.tsv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    return [(row["question"], row["expected"].split("|")) for row in rows[:limit]]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=30)
    parser.add_argument("--max-replans", type=int, default=1)
    parser.add_argument("--model", default=None, help="a GGUF file (default: SmolLM2-135M)")
    opts = parser.parse_args()
    os.environ["LLMC_FILES_ROOT"] = str(DATA / "files")
    tools = [tool for pack in ("files", "math", "text") for tool in catalog.load_pack(pack)]
    llm = await Local(opts.model).aload()
    print(f"model: {llm.describe()}")
    compiler = llmc.Compiler(tools, llm, max_replans=opts.max_replans, timeout=30)
    parsed = right = tasks = 0
    started = time.perf_counter()
    items = questions(opts.questions)
    for number, (question, expected) in enumerate(items, 1):
        began = time.perf_counter()
        try:
            answer = await compiler.run(question)
        except llmc.PlanError as error:
            print(f"{number:>2}. PLAN ERROR {question!r}: {error}")
            continue
        parsed += 1
        tasks += len(answer.plan)
        ok = any(e.lower() in answer.text.lower() for e in expected)
        right += ok
        calls = ", ".join(f"{t.tool}" for t in answer.plan.tasks[:4])
        print(
            f"{number:>2}. {'right' if ok else 'wrong'} {time.perf_counter() - began:5.1f}s "
            f"{len(answer.plan):>2} tasks ({calls}{', ...' if len(answer.plan) > 4 else ''}) "
            f"{question!r} -> {answer.text[:60]!r} (expected {expected[0]!r})"
        )
    total = len(items)
    print(
        f"plans parsed {parsed}/{total}; every task called a real tool ({tasks} tasks); "
        f"answers right {right}/{total}; {time.perf_counter() - started:.0f} s in all"
    )


if __name__ == "__main__":
    asyncio.run(main())
