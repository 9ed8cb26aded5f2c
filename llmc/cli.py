"""The ``llmc`` command.

::

    llmc run "QUESTION" [--tools PACK ...] [--model NAME --base-url URL]
             [--mcp "COMMAND ARGS"] [--mcp-url URL]
                                          plan, run and answer a question with an LLM
    llmc run --batch FILE [--concurrency N] ...
                                          answer a file of questions, one per line
    llmc tools [PACK ...] [--mcp "COMMAND ARGS"] [--mcp-url URL]
                                          list tools with their signatures
    llmc check PLAN [--tools PACK ...]    parse and validate a plan; show its levels
    llmc exec PLAN [--tools PACK ...] [--mcp "COMMAND ARGS"] [--mcp-url URL]
                                          run a plan with real tools, printing progress
                                          (--trace FILE saves the run, for llmc viz)
    llmc viz PLAN [-o FILE]               draw a plan: SVG (or Mermaid, DOT) text
    llmc viz RUN.json [-o FILE]           draw a saved run (Trace.to_json) as a timeline
    llmc --version                        the installed version

PLAN is a file of plan text (or ``.json``), plan text itself (in quotes), or ``-`` for standard
input; ``llmc viz`` also draws a run saved with ``Trace.to_json`` (a ``.json`` file). PACK is a
ready-made pack's name (``files``, ``math``, ``text``) or the path of a ``.py`` file of
``@llmc.tool`` functions; by default every ready-made pack is loaded. ``--mcp`` (a command
line that starts an MCP server on stdio) and ``--mcp-url`` (a server on streamable HTTP) add
a server's tools, each repeatable; ``llmc tools`` with servers and no PACK lists only the
servers' tools.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shlex
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any, TextIO

import pydantic

from . import __version__, catalog, mcp
from .compiler import Answer, Answered, Compiler
from .errors import LLMCError, PlanError, ToolLoadError, TraceFormatError
from .llm import LLM, Local, OpenAI
from .llm.default import default_llm
from .mapping import BatchSummary, Outcome, as_outcome_fields, failure_line
from .plan import Plan
from .progress import Progress, shorten
from .result import Result, text_form
from .scheduler import RunOptions, stream_plan
from .tool import Tool
from .toolbox import Toolbox
from .trace import TRACE_FORMAT, RunFinished, TaskEvent, Trace


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 a task failed, 2 bad input)."""
    args, unknown = _parser().parse_known_args(argv)
    if unknown:  # the subcommand's usage, not the top level's, says what it takes
        args.usage_of.error(f"unrecognized arguments: {' '.join(unknown)}")
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
    parser.add_argument("--version", action="version", version=f"llmc {__version__}")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    _add_run(commands)

    tools = commands.add_parser("tools", help="list tools and their signatures")
    tools.add_argument(
        "packs",
        nargs="*",
        metavar="PACK",
        help="packs to list (default: all, or none when MCP servers are given)",
    )
    _add_mcp_options(tools)
    tools.set_defaults(command=_tools, usage_of=tools)

    for name, handler, text in (
        ("check", _check, "parse and validate a plan, and show its levels"),
        ("exec", _exec, "run a plan with real tools"),
        (
            "viz",
            _viz,
            "draw a plan as SVG (or Mermaid or DOT text), or a run saved with Trace.to_json as "
            "its timeline; checks tools only with --tools",
        ),
    ):
        sub = commands.add_parser(name, help=text, description=text)
        sub.add_argument(
            "plan",
            metavar="PLAN",
            help="a plan file (plan text, or .json), plan text in quotes, or - for stdin",
        )
        _add_packs(sub)
        sub.set_defaults(command=handler, usage_of=sub)
    exec_ = commands.choices["exec"]
    exec_.add_argument(
        "--json",
        action="store_true",
        help="print the outputs as JSON (numbers stay numbers; a task without one: its error)",
    )
    _add_run_options(exec_)
    _add_mcp_options(exec_)
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
    run.add_argument("question", nargs="?", help="the question, in quotes")
    run.add_argument(
        "--batch",
        metavar="FILE",
        help="answer the questions of FILE (one a line; blank lines and # comments skipped): "
        "a JSON line per answer on stdout as each finishes, a progress bar and a summary on "
        "stderr",
    )
    run.add_argument(
        "--concurrency",
        type=_at_least(1),
        default=8,
        help="questions at once with --batch (default 8)",
    )
    _add_packs(run)
    run.add_argument("--model", help="the model's name (default: OPENAI_MODEL)")
    run.add_argument("--base-url", help="the endpoint, e.g. http://localhost:8000/v1")
    run.add_argument("--json-mode", action="store_true", help="JSON plans (structured outputs)")
    run.add_argument("--templates", metavar="DIR", help="a folder of prompt templates")
    run.add_argument(
        "--max-replans", type=_at_least(0), default=2, help="new plans allowed (default 2)"
    )
    _add_run_options(run)
    _add_mcp_options(run)
    run.add_argument("--quiet", action="store_true", help="print only the answer")
    run.set_defaults(command=_run, usage_of=run)


def _add_packs(command: argparse.ArgumentParser) -> None:
    """``--tools``, alike on every command that reads or runs plans."""
    command.add_argument(
        "--tools",
        nargs="+",
        default=None,
        metavar="PACK",
        help="tool packs: ready-made names or .py paths (default: every ready-made pack)",
    )


def _add_run_options(command: argparse.ArgumentParser) -> None:
    """What every command that runs a plan takes: limits, and where to keep the run."""
    command.add_argument(
        "--max-concurrency", type=_at_least(1), default=None, help="most tasks at once"
    )
    command.add_argument("--timeout", type=_seconds, default=None, help="seconds per tool call")
    command.add_argument(
        "--svg", metavar="DIR", help="write plan.svg and timeline.svg of the run into DIR"
    )
    command.add_argument(
        "--trace", metavar="FILE", help="save the run as JSON (Trace.to_json) for llmc viz"
    )


def _at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number of at least ``minimum`` (argparse names the flag)."""

    def whole_number(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return whole_number


def _seconds(text: str) -> float:
    """An argparse type: a positive number of seconds."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0:  # NaN too
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text!r}")
    return value


def _limits(args: argparse.Namespace) -> RunOptions:
    """The run options ``--max-concurrency`` and ``--timeout`` set (unset ones: defaults)."""
    options = RunOptions()
    if args.max_concurrency is not None:
        options["max_concurrency"] = args.max_concurrency
    if args.timeout is not None:
        options["timeout"] = args.timeout
    return options


def _add_mcp_options(command: argparse.ArgumentParser) -> None:
    """``--mcp`` and ``--mcp-url``, alike on every command that takes tools from servers."""
    command.add_argument(
        "--mcp",
        action="append",
        default=[],
        metavar='"COMMAND ARGS"',
        help="add the tools of an MCP server run on stdio (a command line in quotes; repeatable)",
    )
    command.add_argument(
        "--mcp-url",
        action="append",
        default=[],
        metavar="URL",
        help="add the tools of an MCP server on streamable HTTP (repeatable)",
    )


def _run(args: argparse.Namespace) -> int:
    """Answer a question (or a batch); progress goes to stderr, answers to stdout."""
    if (args.question is None) == (args.batch is None):
        args.usage_of.error("give either a question or --batch FILE")
    if args.model or args.base_url:
        llm: LLM = OpenAI(args.model, base_url=args.base_url)
    else:
        llm = default_llm()
    out = None if args.quiet else sys.stderr

    async def answer_with_servers() -> Answer | int:
        async with _mcp_tools(args) as servers:  # MCP servers live as long as the run
            tools = list(_toolbox(args.tools).values())
            tools += [tool for _, server_tools in servers for tool in server_tools]
            compiler = Compiler(
                tools,
                llm,
                templates=args.templates,
                json=args.json_mode,
                max_replans=args.max_replans,
                **_limits(args),
            )
            if args.batch is not None:
                return await _answer_batch(compiler, _questions(Path(args.batch)), args, out)
            return await _answer_with_progress(compiler, args.question, out)

    answer = asyncio.run(answer_with_servers())
    if isinstance(answer, int):  # a batch: its outcomes are printed already
        return answer
    if args.svg:
        folder = Path(args.svg)
        folder.mkdir(parents=True, exist_ok=True)
        answer.plan.to_svg(folder / "plan.svg", trace=answer.trace)
        answer.trace.to_svg(folder / "timeline.svg", plan=answer.plan)
    if args.trace:
        answer.trace.to_json(args.trace, plan=answer.plan)
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


@asynccontextmanager
async def _mcp_tools(args: argparse.Namespace) -> AsyncIterator[list[tuple[str, list[Tool]]]]:
    """The servers of ``--mcp`` and ``--mcp-url``, connected for as long as the block runs:
    each one's label and tools, in the order given."""
    async with AsyncExitStack() as stack:
        found: list[tuple[str, list[Tool]]] = []
        for server in _mcp_servers(args.mcp, args.mcp_url, getattr(args, "timeout", None)):
            connected = await stack.enter_async_context(server)
            found.append((connected.label, list(connected.tools)))
        yield found


def _mcp_servers(
    commands: Sequence[str], urls: Sequence[str], timeout: float | None
) -> list[mcp.MCPServer]:
    """The MCP servers of ``--mcp`` (command lines) and ``--mcp-url`` (URLs)."""
    options: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
    servers = []
    for command in commands:
        words = shlex.split(command)
        if not words:
            raise ToolLoadError('--mcp needs a command line in quotes, e.g. --mcp "python s.py"')
        servers.append(mcp.stdio(words[0], *words[1:], **options))
    servers.extend(mcp.http(url, **options) for url in urls)
    return servers


def _questions(path: Path) -> list[str]:
    """The questions of a batch file: one a line, blank lines and ``#`` comments skipped."""
    lines = (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
    questions = [line for line in lines if line and not line.startswith("#")]
    if not questions:
        raise PlanError(f"{path} holds no questions: write one a line ('#' starts a comment)")
    return questions


async def _answer_batch(
    compiler: Compiler, questions: list[str], args: argparse.Namespace, out: TextIO | None
) -> int:
    """Answer a batch: a JSON line per outcome on stdout, a progress bar and a summary on
    ``out``; 1 when a question failed."""
    outcomes: list[Outcome] = []
    start = time.perf_counter()
    async for outcome in compiler.map(questions, concurrency=args.concurrency):
        outcomes.append(outcome)
        print(json.dumps(as_outcome_fields(outcome), ensure_ascii=False), flush=True)
        if out is not None:
            failed = sum(not o.ok for o in outcomes)
            print(f"\r  {_bar(len(outcomes), len(questions))} {failed} failed", end="", file=out)
    summary = BatchSummary.of(outcomes, time.perf_counter() - start)
    if out is not None:
        print(file=out)
        for line in summary.lines():
            print(f"  {line}", file=out)
        for outcome in outcomes:
            if not outcome.ok:
                print(f"  {failure_line(outcome)}", file=out)
    return 1 if summary.failures else 0


def _bar(done: int, total: int, width: int = 30) -> str:
    """A text progress bar: ``[#########.....] 12/50``."""
    filled = width * done // total if total else width
    return f"[{'#' * filled}{'.' * (width - filled)}] {done}/{total}"


def _toolbox(packs: Sequence[str] | None) -> Toolbox:
    box = Toolbox()
    for pack in packs or catalog.tool_packs():
        for found in catalog.load_pack(pack):
            box.add(found)
    return box


def _read_plan(source: str, tools: Toolbox | None) -> Plan:
    """The plan in ``source``: standard input, a file, or plan text (JSON text too)."""
    if source == "-":
        text = sys.stdin.read()
    elif Path(source).is_file():
        text = Path(source).read_text(encoding="utf-8")
    elif _looks_like_plan(source):
        text = source
    else:
        raise FileNotFoundError(
            f"no plan file {source!r}: PLAN is a file, plan text in quotes (e.g. "
            """'1. word_count("a b c")'), or - for standard input"""
        )
    if source.endswith(".json") or text.lstrip().startswith("{"):
        return Plan.from_json(text, tools=tools)
    return Plan.parse(text, tools=tools)


def _looks_like_plan(source: str) -> bool:
    """Whether a PLAN that is no file is meant as plan text: a call, a line break or JSON."""
    return "(" in source or "\n" in source or source.lstrip().startswith("{")


def _tools(args: argparse.Namespace) -> int:
    """List the tools of packs and MCP servers, each under its pack's name or server's label."""
    servers_only = not args.packs and (args.mcp or args.mcp_url)
    names = args.packs or ([] if servers_only else catalog.tool_packs())
    packs = [(name, catalog.load_pack(name)) for name in names]

    async def servers() -> list[tuple[str, list[Tool]]]:
        async with _mcp_tools(args) as found:
            return found

    groups = [*packs, *asyncio.run(servers())]  # everything loaded first: an error comes alone
    for name, found in groups:
        print(f"{name}:")
        for one in found:
            print(f"  {one.signature_line()}")
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
    async def run_with_servers() -> tuple[Plan, Result]:
        async with _mcp_tools(args) as servers:  # MCP servers live as long as the run
            tools = _toolbox(args.tools)
            for _, server_tools in servers:
                for tool in server_tools:
                    tools.add(tool)
            plan = _read_plan(args.plan, tools)
            return plan, await _run_with_progress(plan, args, sys.stderr)

    plan, result = asyncio.run(run_with_servers())
    if args.svg:
        folder = Path(args.svg)
        folder.mkdir(parents=True, exist_ok=True)
        plan.to_svg(folder / "plan.svg", trace=result)
        result.trace.to_svg(folder / "timeline.svg", plan=plan)
    if args.trace:
        result.trace.to_json(args.trace, plan=plan)
    if args.json:
        outputs = {
            str(i): _json_value(result.outputs[i]) if i in result.outputs else result.observation(i)
            for i in result.trace.tasks
        }
        print(json.dumps(outputs, ensure_ascii=False, indent=2))
    else:
        for task in plan:
            print(f"${task.id} = {shorten(result.observation(task.id), 400)}")
    return 0 if result.ok else 1


def _viz(args: argparse.Namespace) -> int:
    """Draw a plan, or a saved run as its timeline; tools are checked only with ``--tools``."""
    if args.plan.endswith(".json"):
        text = Path(args.plan).read_text(encoding="utf-8")
        if _is_saved_run(text):
            return _viz_run(args, text)
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


def _is_saved_run(text: str) -> bool:
    """Whether JSON text is a run saved by ``Trace.to_json`` (else it may be a plan)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return False  # the plan reader says what is wrong with it
    return isinstance(data, dict) and data.get("format") == TRACE_FORMAT


def _viz_run(args: argparse.Namespace, text: str) -> int:
    """Draw a run saved by ``Trace.to_json`` as its timeline (with its plan, if saved)."""
    if args.format != "svg":
        raise TraceFormatError(f"a saved run is drawn as an SVG timeline, not as {args.format}")
    trace = Trace.from_json(text)
    saved = json.loads(text).get("plan")
    plan = Plan.from_dict(saved) if isinstance(saved, dict) else None
    picture = trace.to_svg(plan=plan, title=args.title)
    if args.output == "-":
        sys.stdout.write(picture)
    else:
        Path(args.output).write_text(picture, encoding="utf-8")
    return 0


async def _run_with_progress(plan: Plan, args: argparse.Namespace, out: TextIO) -> Result:
    """Run the plan, writing a line per task as it starts and ends."""
    progress = Progress(out)
    async for event in stream_plan(plan, plan.tools, **_limits(args)):
        if isinstance(event, TaskEvent):
            progress.task(event)
        elif isinstance(event, RunFinished):
            progress.line(f"run took {event.result.trace.makespan * 1000:.0f} ms")
            return event.result
    raise PlanError("the run ended without a result")


def _json_value(value: Any) -> Any:
    """An output as JSON holds it: numbers, lists and dicts as they are, else its text form."""
    if isinstance(value, pydantic.BaseModel):
        return value.model_dump(mode="json")
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):  # objects, bytes, NaN, keys JSON cannot hold
        return text_form(value)
    return value


if __name__ == "__main__":
    raise SystemExit(main())
