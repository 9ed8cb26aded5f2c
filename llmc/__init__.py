"""llmc: compile a question into a task graph of tool calls, run it in parallel, answer.

The public API, all importable from ``llmc``:

- the compiler: :class:`Compiler` answers a question (an :class:`Answer`) by planning with an
  :class:`LLM` (:class:`OpenAI` for any OpenAI-compatible endpoint, or the embedded
  :class:`Local` model), running the plan and joining the results; with ``output_type=`` the
  answer is a validated object of that type (``Answer.output``, see :mod:`llmc.typed`), or
  :class:`OutputValidationError`; its parts, for those who shape them: :class:`Planner`,
  :class:`Joiner` (a :class:`Decision`), each plan's :class:`Round`; its events
  :class:`PlanText`, :class:`Joining`, :class:`JoinerText`, :class:`AnswerText`,
  :class:`Replanning`, :class:`Answered`;
- many questions: :meth:`Compiler.map` yields an :class:`Outcome` each (a
  :class:`BatchSummary` sums them up); :class:`RayPool` spreads them over a Ray cluster;
- tools: :func:`tool` (decorator, its options :class:`ToolOptions`), :class:`Tool`,
  :class:`Toolbox` (from any :data:`Tools`), :func:`load_tools`;
- plans: :class:`Plan`, :class:`Task`, :class:`Ref`, a plan's :class:`Finish`,
  :class:`PlanParser` (arguments nest at most :data:`MAX_NESTING` deep);
- running plans: :func:`run_plan`, :func:`run_plan_sync`, :func:`stream_plan`,
  :class:`Scheduler` (its options: :class:`RunOptions`), giving a :class:`Result` with a
  :class:`Trace` (a :class:`TaskRecord` per task; :func:`text_form` is an output's text);
  typed events (:class:`Event` and its kinds) as a run goes;
- limits: :class:`RateLimit` (or any :class:`RateLimiter`; :func:`rate_limiter` builds one
  from a number), :class:`Backoff`; across processes :class:`RedisRateLimiter`,
  :class:`RedisSemaphore` and :class:`RedisLedger`;
- fusion: :func:`fuse` declares a chain of tools the planner calls as one
  (a :class:`FusedTool`), which a :class:`Fuser` expands back before it runs;
  :func:`suggest_fusions` finds candidates in past plans; batchable tools
  (``@tool(batch=...)``) go out as batches (:class:`Batch` in the trace);
- budgets: :class:`Budget` limits a run's tokens, cost, LLM and tool calls and shares out
  its prompts (per-node budgets, TALE-style output budgets); crossing a limit raises
  :class:`BudgetExceeded` with the partial result; usage and cost per call arrive as
  :class:`LLMUsage` events (more in :mod:`llmc.budget`);
- caching: :class:`Cache` keeps tool outputs, LLM completions and plans (exact, and
  semantic for paraphrased questions) in a SQLite file or Redis; pass it as ``cache=`` to a
  :class:`Compiler` or a run (more in :mod:`llmc.cache`);
- MCP tool servers: :mod:`llmc.mcp` (``async with llmc.mcp.stdio("python", "server.py")
  as server``: ``server.tools`` are llmc tools), with the ``mcp`` extra;
- telemetry: :mod:`llmc.otel` exports runs as OpenTelemetry spans (``llmc.otel.instrument()``),
  with the ``otel`` extra; :meth:`Trace.to_json` and :meth:`Trace.from_json` save runs;
- pictures: :mod:`llmc.viz` draws plans and runs (SVG, Mermaid, DOT); in Jupyter an
  :class:`Answer`, a :class:`Result`, a :class:`Trace` and a :class:`Plan` show as pictures;
- errors: :class:`LLMCError` and its tree (see :mod:`llmc.errors`).

What is public is what ``llmc`` and the topic namespaces (:mod:`llmc.budget`,
:mod:`llmc.cache`, :mod:`llmc.llm`, :mod:`llmc.executors`, :mod:`llmc.grammar`,
:mod:`llmc.testing`, :mod:`llmc.viz`, :mod:`llmc.mcp`, :mod:`llmc.otel`, :mod:`llmc.observe`,
:mod:`llmc.typed`) list in ``__all__``, each name in one of them (docs/reference.md lists
them all). Every other module is internal: its names may change without notice.
"""

from typing import TYPE_CHECKING, Any

# Modules reached as attributes (llmc.mcp.stdio, llmc.otel.instrument); neither imports
# its optional SDK until it is used.
from . import mcp as mcp
from . import otel as otel
from . import viz as viz  # ``llmc.viz`` works after ``import llmc``
from .budget import Budget, LLMUsage
from .cache import Cache
from .compiler import Answer, Answered, Compiler, Joining, Replanning, Round
from .errors import (
    BudgetExceeded,
    CycleError,
    DependencyError,
    DuplicateToolError,
    LLMCError,
    LLMConnectionError,
    LLMError,
    LLMRateLimitError,
    LLMResponseError,
    MCPConnectionError,
    MCPError,
    MCPToolError,
    ModelLoadError,
    OutputTypeError,
    OutputValidationError,
    PlanError,
    PlanSyntaxError,
    RecordedError,
    RetryableToolError,
    ToolArgumentError,
    ToolDefinitionError,
    ToolLoadError,
    ToolTimeoutError,
    TraceFormatError,
    UnknownToolError,
    WorkerLostError,
)
from .fuser import FusedTool, Fuser, fuse, suggest_fusions
from .joiner import AnswerText, Decision, Joiner, JoinerText
from .limits import Backoff, RateLimit, RateLimiter, rate_limiter
from .llm import LLM, GenerateOptions, Local, OpenAI, Usage
from .mapping import BatchSummary, Outcome
from .parse import PlanParser
from .plan import Plan
from .planner import Planner, PlanText
from .redis_limits import RedisLedger, RedisRateLimiter, RedisSemaphore
from .result import Result, text_form
from .scheduler import RunOptions, Scheduler, run_plan, run_plan_sync, stream_plan
from .task import MAX_NESTING, Finish, Ref, Task
from .tool import Tool, ToolOptions, tool
from .toolbox import Toolbox, Tools, load_tools
from .trace import (
    Batch,
    BatchFinished,
    BatchStarted,
    Event,
    RunFinished,
    RunStarted,
    Span,
    TaskCancelled,
    TaskDropped,
    TaskEvent,
    TaskFailed,
    TaskFinished,
    TaskQueued,
    TaskRecord,
    TaskRetrying,
    TaskSkipped,
    TaskStarted,
    TaskStatus,
    Trace,
)

#: The version of llmc (``llmc --version`` prints it).
__version__ = "0.1.0"

if TYPE_CHECKING:
    from .ray_pool import RayPool


def __getattr__(name: str) -> Any:
    if name == "RayPool":  # imported on demand: Ray is an optional extra, seconds to import
        from .ray_pool import RayPool

        return RayPool
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Answer",
    "AnswerText",
    "Answered",
    "Backoff",
    "Batch",
    "BatchFinished",
    "BatchStarted",
    "BatchSummary",
    "Budget",
    "BudgetExceeded",
    "Cache",
    "Compiler",
    "CycleError",
    "Decision",
    "DependencyError",
    "DuplicateToolError",
    "Event",
    "Finish",
    "FusedTool",
    "Fuser",
    "GenerateOptions",
    "Joiner",
    "JoinerText",
    "Joining",
    "LLM",
    "LLMCError",
    "LLMConnectionError",
    "LLMError",
    "LLMRateLimitError",
    "LLMResponseError",
    "LLMUsage",
    "Local",
    "MAX_NESTING",
    "MCPConnectionError",
    "MCPError",
    "MCPToolError",
    "ModelLoadError",
    "OpenAI",
    "Outcome",
    "OutputTypeError",
    "OutputValidationError",
    "Plan",
    "PlanError",
    "PlanParser",
    "PlanSyntaxError",
    "PlanText",
    "Planner",
    "RateLimit",
    "RateLimiter",
    "RayPool",
    "RecordedError",
    "RedisLedger",
    "RedisRateLimiter",
    "RedisSemaphore",
    "Ref",
    "Replanning",
    "Result",
    "RetryableToolError",
    "Round",
    "RunFinished",
    "RunOptions",
    "RunStarted",
    "Scheduler",
    "Span",
    "Task",
    "TaskCancelled",
    "TaskDropped",
    "TaskEvent",
    "TaskFailed",
    "TaskFinished",
    "TaskQueued",
    "TaskRecord",
    "TaskRetrying",
    "TaskSkipped",
    "TaskStarted",
    "TaskStatus",
    "Tool",
    "ToolArgumentError",
    "ToolDefinitionError",
    "ToolLoadError",
    "ToolOptions",
    "ToolTimeoutError",
    "Toolbox",
    "Tools",
    "Trace",
    "TraceFormatError",
    "UnknownToolError",
    "Usage",
    "WorkerLostError",
    "__version__",
    "fuse",
    "load_tools",
    "rate_limiter",
    "run_plan",
    "run_plan_sync",
    "stream_plan",
    "suggest_fusions",
    "text_form",
    "tool",
]
