"""Parse throughput: tasks per second for a 1,000-task plan fed in small chunks.

Run: python benchmarks/parse.py [--tasks 1000] [--chunk 8] [--repeat 5] [--lines 8000]

A second row feeds one long statement (a list argument and a triple-quoted string of
``--lines`` lines each), which must cost time linear in its length.

The parser must never be what a streaming planner waits on: a fast hosted model streams a
few hundred tokens per second, i.e. a few tasks per second; the target is >= 50,000 tasks/s.
"""

from __future__ import annotations

import argparse
import random
import time

from llmc.parse import PlanParser


def make_plan_text(n: int, seed: int = 0) -> str:
    """A plan in the style of LLMCompiler's exemplars: searches, then math over earlier results."""
    rng = random.Random(seed)
    places = ["Mariana Trench", "Puerto Rico Trench", "Mount Everest", "Lake Baikal", "Sahara"]
    lines = []
    for i in range(1, n + 1):
        if i > 2 and rng.random() < 0.4:
            a, b = rng.randrange(1, i), rng.randrange(1, i)
            lines.append(f'{i}. math("${{{a}}} * 0.8 - {rng.random():.3f}", [${a}, ${b}])')
        else:
            if rng.random() < 0.2:
                lines.append(f"Thought: I need the depth of {rng.choice(places)}.")
            lines.append(f'{i}. search("{rng.choice(places)} (depth)", k={rng.randint(1, 5)})')
    lines.append("join()")
    return "\n".join(lines) + "\n<END_OF_PLAN>\n"


def make_long_statements(lines: int) -> str:
    """One task whose list argument spans ``lines`` lines, one whose string does."""
    items = "".join(f'    "item {i}",\n' for i in range(lines))
    text = "".join(f"line {i} of a long document (with brackets\n" for i in range(lines))
    return f'1. search([\n{items}])\n2. search("""\n{text}""")\njoin()\n'


def run(text: str, chunk: int) -> tuple[float, int]:
    parser = PlanParser()
    start = time.perf_counter()
    count = 0
    for i in range(0, len(text), chunk):
        count += len(parser.feed(text[i : i + chunk]))
    count += len(parser.close())
    return time.perf_counter() - start, count


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--tasks", type=int, default=1000)
    args.add_argument("--chunk", type=int, default=8, help="characters per feed() call")
    args.add_argument("--repeat", type=int, default=5)
    args.add_argument("--lines", type=int, default=8000, help="lines of each long statement")
    opts = args.parse_args()
    text = make_plan_text(opts.tasks)
    best = min(run(text, opts.chunk)[0] for _ in range(opts.repeat))
    whole = min(run(text, len(text))[0] for _ in range(opts.repeat))
    _, count = run(text, opts.chunk)
    print(f"plan: {count} tasks, {len(text):,} characters")
    print(
        f"fed in {opts.chunk}-character chunks: {count / best:>10,.0f} tasks/s "
        f"({best * 1e6 / count:.1f} us/task)"
    )
    print(
        f"fed whole:                  {count / whole:>10,.0f} tasks/s "
        f"({whole * 1e6 / count:.1f} us/task)"
    )
    print(f"target >= 50,000 tasks/s: {'met' if count / best >= 50_000 else 'NOT met'}")
    for lines in (opts.lines // 4, opts.lines):
        long_text = make_long_statements(lines)
        seconds = min(run(long_text, opts.chunk)[0] for _ in range(max(1, opts.repeat // 2)))
        print(
            f"one long statement, {lines:>6,} lines x 2 ({len(long_text):,} characters) in "
            f"{opts.chunk}-character chunks: {seconds * 1e3:8.1f} ms "
            f"({seconds * 1e9 / len(long_text):.0f} ns/character)"
        )


if __name__ == "__main__":
    main()
