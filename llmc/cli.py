"""The ``llmc`` command.

::

    llmc run "QUESTION" [--tools PACK ...] [--model NAME --base-url URL]
                                          plan, run and answer a question with an LLM
    llmc tools [PACK ...]                 list tools with their signatures
    llmc check PLAN [--tools PACK ...]    parse and validate a plan; show its levels
    llmc exec PLAN [--tools PACK ...]     run a plan with real tools, printing progress
    llmc viz PLAN [-o FILE]               draw a plan: SVG (or Mermaid, DOT) text

PLAN is a file of plan text (or ``.json``), or ``-`` for standard input. PACK is a
ready-made pack's name (``files``, ``math``, ``text``) or the path of a ``.py`` file of
``@llmc.tool`` functions; by default every ready-made pack is loaded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from . import catalog
from .compiler import Answer, Answered, Compiler
from .errors import LLMCError, PlanError
from .llm import LLM, Local, OpenAI
from .llm.default import default_llm
from .plan import Plan
from .progress import Progress
from .result import Result, error_text, text_form
from .scheduler import stream_plan
from .toolbox import Toolbox
from .trace import RunFinished, TaskEvent, TaskFailed, TaskFinished, TaskSkipped, TaskStarted

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 a task failed, 2 bad input)."""
    args = _parser().parse_args(argv)
    try:
        return int(args.command(args))
    except (LLMCError, OSError) as exc:
        print(f"llmc: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("llmc: interrupted", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llmc", description="Compile questions into task graphs of tool calls and run them."
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    _add_run(commands)

    tools = commands.add_parser("tools", help="list tools and their signatures")
    tools.add_argument("packs", nargs="*", metavar="PACK", help="packs to list (default: all)")
    tools.set_defaults(command=_tools)

    for name, handler, text in (
        ("check", _check, "parse and validate a plan, and show its levels"),
        ("exec", _exec, "run a plan with real tools"),
        (
            "viz",
            _viz,
            "draw a plan as SVG (or Mermaid or DOT text); checks tools only with --tools",
        ),
    ):
        sub = commands.add_parser(name, help=text, description=text)
        sub.add_argument("plan", metavar="PLAN", help="plan text or .json file, or - for stdin")
        sub.add_argument(
            "--tools",
            nargs="+",
            default=None,
            metavar="PACK",
            help="tool packs: ready-made names or .py paths (default: every ready-made pack)",
        )
        sub.set_defaults(command=handler)
    exec_ = commands.choices["exec"]
    exec_.add_argument("--max-concurrency", type=int, default=None, help="most tasks at once")
    exec_.add_argument("--timeout", type=float, default=None, help="seconds per task")
    exec_.add_argument("--json", action="store_true", help="print the outputs as JSON")
    exec_.add_argument(
        "--svg", metavar="DIR", help="write plan.svg and timeline.svg of the run into DIR"
    )
    viz = commands.choices["viz"]
    viz.add_argument("-o", "--output", default="-", help="file to write (default: stdout)")
    viz.add_argument("--format", choices=("svg", "mermaid", "dot"), default="svg")
    viz.add_argument(
        "--direction", choices=("TB", "LR"), default="TB", help="levels go down or right"
    )
    viz.add_argument("--title", default=None, help="a line of text above the picture (SVG)")
    return parser


def _add_run(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    text = "plan, run and answer a question: the plan streams, tasks start as it is written"
    run = commands.add_parser(
        "run",
        help=text,
        description=f"{text}. The model is an OpenAI-compatible endpoint: --model and "
        "--base-url, or the OPENAI_MODEL and OPENAI_BASE_URL variables (OPENAI_API_KEY holds "
        "a key, never the command line).",
    )
    run.add_argument("question", help="the question, in quotes")
    run.add_argument(
        "--tools",
        nargs="+",
        default=None,
        metavar="PACK",
        help="tool packs: ready-made names or .py paths (default: every ready-made pack)",
    )
    run.add_argument("--model", help="the model's name (default: OPENAI_MODEL)")
    run.add_argument("--base-url", help="the endpoint, e.g. http://localhost:8000/v1")
    run.add_argument("--json-mode", action="store_true", help="JSON plans (structured outputs)")
    run.add_argument("--templates", metavar="DIR", help="a folder of prompt templates")
    run.add_argument("--max-replans", type=int, default=2, help="new plans allowed (default 2)")
    run.add_argument("--max-concurrency", type=int, default=None, help="most tasks at once")
    run.add_argument("--timeout", type=float, default=None, help="seconds per tool call")
    run.add_argument("--svg", metavar="DIR", help="write plan.svg and timeline.svg into DIR")
    run.add_argument("--quiet", action="store_true", help="print only the answer")
    run.set_defaults(command=_run)


def _run(args: argparse.Namespace) -> int:
    """Answer a question; progress goes to stderr, the answer to stdout."""
    if args.model or args.base_url:
        llm: LLM = OpenAI(args.model, base_url=args.base_url)
    else:
        llm = default_llm()
    options: dict[str, Any] = {}
    if args.max_concurrency is not None:
        options["max_concurrency"] = args.max_concurrency
    if args.timeout is not None:
        options["timeout"] = args.timeout
    compiler = Compiler(
        _toolbox(args.tools),
        llm,
        templates=args.templates,
        json=args.json_mode,
        max_replans=args.max_replans,
        **options,
    )
    out = None if args.quiet else sys.stderr
    answer = asyncio.run(_answer_with_progress(compiler, args.question, out))
    if args.svg:
        folder = Path(args.svg)
        folder.mkdir(parents=True, exist_ok=True)
        answer.plan.to_svg(folder / "plan.svg", trace=answer.trace)
        answer.trace.to_svg(folder / "timeline.svg", plan=answer.plan)
    print(answer.text)
    return 0


async def _answer_with_progress(compiler: Compiler, question: str, out: TextIO | None) -> Answer:
    """Run the compiler, showing every phase on ``out`` as it happens (see :mod:`.progress`)."""
    progress = Progress(out) if out is not None else None
    llm = compiler.llm
    load_seconds = None
    if isinstance(llm, Local) and not llm.loaded:
        if progress is not None:
            progress.begin("loading the model")
        await llm.aload()  # say where the model came from before the plan streams
        load_seconds = llm.load_seconds
        if progress is not None:
            progress.line(f"model: {llm.describe()}")
    heartbeat = asyncio.create_task(progress.heartbeat()) if progress is not None else None
    try:
        if progress is not None:
            progress.begin("planning")
        async for event in compiler.stream(question):
            if isinstance(event, Answered):
                if progress is not None:
                    progress.summary(event.answer, load_seconds)
                return event.answer
            if progress is not None:
                progress.event(event)
    finally:
        if heartbeat is not None:
            heartbeat.cancel()
    raise PlanError("the run ended without an answer")


def _toolbox(packs: Sequence[str] | None) -> Toolbox:
    box = Toolbox()
    for pack in packs or catalog.tool_packs():
        for found in catalog.load_pack(pack):
            box.add(found)
    return box


def _read_plan(source: str, tools: Toolbox | None) -> Plan:
    text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    if source.endswith(".json"):
        return Plan.from_json(text, tools=tools)
    return Plan.parse(text, tools=tools)


def _tools(args: argparse.Namespace) -> int:
    for name in args.packs or catalog.tool_packs():
        print(f"{name}:")
        for found in catalog.load_pack(name):
            print(f"  {found.signature_line()}")
    return 0


def _check(args: argparse.Namespace) -> int:
    plan = _read_plan(args.plan, _toolbox(args.tools))
    print(plan.to_text(), end="")
    levels = plan.levels()
    print(f"\n{len(plan)} tasks on {len(levels)} levels, at most {plan.width()} at once:")
    for depth, level in enumerate(levels, 1):
        print(f"  level {depth}: " + ", ".join(f"${i} {plan[i].tool}" for i in level))
    return 0


def _exec(args: argparse.Namespace) -> int:
    plan = _read_plan(args.plan, _toolbox(args.tools))
    result = asyncio.run(_run_with_progress(plan, args, sys.stderr))
    if args.svg:
        folder = Path(args.svg)
        folder.mkdir(parents=True, exist_ok=True)
        plan.to_svg(folder / "plan.svg", trace=result)
        result.trace.to_svg(folder / "timeline.svg", plan=plan)
    if args.json:
        outputs = {str(i): result.observation(i) for i in result.trace.tasks}
        print(json.dumps(outputs, ensure_ascii=False, indent=2))
    else:
        for task in plan:
            print(f"${task.id} = {_shorten(result.observation(task.id), 400)}")
    return 0 if result.ok else 1


def _viz(args: argparse.Namespace) -> int:
    """Draw a plan; tools are checked only when ``--tools`` names them."""
    plan = _read_plan(args.plan, _toolbox(args.tools) if args.tools else None)
    if args.format == "mermaid":
        text = plan.to_mermaid(direction=args.direction)
    elif args.format == "dot":
        text = plan.to_dot(direction=args.direction)
    else:
        text = plan.to_svg(direction=args.direction, title=args.title)
    if args.output == "-":
        sys.stdout.write(text)
    else:
        Path(args.output).write_text(text, encoding="utf-8")
    return 0


async def _run_with_progress(plan: Plan, args: argparse.Namespace, out: TextIO) -> Result:
    """Run the plan, writing a line per task as it starts and ends."""
    options: dict[str, float | int] = {}
    if args.max_concurrency is not None:
        options["max_concurrency"] = args.max_concurrency
    if args.timeout is not None:
        options["timeout"] = args.timeout
    async for event in stream_plan(plan, plan.tools, **options):  # type: ignore[arg-type]
        if isinstance(event, TaskEvent):
            _print_task_event(event, out)
        elif isinstance(event, RunFinished):
            print(f"  run took {event.result.trace.makespan * 1000:.0f} ms", file=out)
            return event.result
    raise PlanError("the run ended without a result")


def _print_task_event(event: TaskEvent, out: TextIO) -> None:
    """One progress line for a task that starts or ends."""
    if isinstance(event, TaskStarted):
        print(f"  started  ${event.task_id} {event.tool}", file=out)
    elif isinstance(event, TaskFinished):
        took = event.duration * 1000
        print(f"  done     ${event.task_id} {event.tool} ({took:.0f} ms)", file=out)
    elif isinstance(event, TaskFailed):
        print(
            f"  FAILED   ${event.task_id} {event.tool}: {_shorten(error_text(event.error), 160)}",
            file=out,
        )
    elif isinstance(event, TaskSkipped):
        print(f"  skipped  ${event.task_id} {event.tool}", file=out)


def _shorten(text: str, limit: int) -> str:
    text = text_form(text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


if __name__ == "__main__":
    raise SystemExit(main())
