"""llmc: compile a question into a task graph of tool calls, run it in parallel, answer.

The public API, all importable from ``llmc``:

- the compiler: :class:`Compiler` answers a question (an :class:`Answer`) by planning with an
  :class:`LLM` (:class:`OpenAI` for any OpenAI-compatible endpoint, or the embedded
  :class:`Local` model), running the plan and joining the results; with ``output_type=`` the
  answer is a validated object of that type (``Answer.output``, see :mod:`llmc.typed`), or
  :class:`OutputValidationError`;
- tools: :func:`tool` (decorator), :class:`Tool`, :class:`Toolbox`, :func:`load_tools`;
- plans: :class:`Plan`, :class:`Task`, :class:`Ref`, :class:`PlanParser`;
- running plans: :func:`run_plan`, :func:`run_plan_sync`, :func:`stream_plan`,
  :class:`Scheduler`, giving a :class:`Result` with a :class:`Trace`; typed events
  (:class:`Event` and its kinds) as a run goes;
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

Everything else lives in modules whose names say what they hold; what is not listed in
``__all__`` may change without notice.
"""

# Modules reached as attributes (llmc.mcp.stdio, llmc.otel.instrument); neither imports
# its optional SDK until it is used.
from . import mcp as mcp
from . import otel as otel
from . import viz as viz  # ``llmc.viz`` works after ``import llmc``
from .budget import Budget, LLMUsage
from .cache import Cache
from .compiler import Answer, Compiler
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
from .limits import Backoff
from .llm import LLM, GenerateOptions, Local, OpenAI, Usage
from .parse import PlanParser
from .plan import Plan
from .result import Result
from .scheduler import Scheduler, run_plan, run_plan_sync, stream_plan
from .task import Ref, Task
from .tool import Tool, ToolOptions, tool
from .toolbox import Toolbox, load_tools
from .trace import (
    Batch,
    BatchFinished,
    BatchStarted,
    Event,
    RunFinished,
    RunStarted,
    Span,
    TaskCancelled,
    TaskEvent,
    TaskFailed,
    TaskFinished,
    TaskQueued,
    TaskRetrying,
    TaskSkipped,
    TaskStarted,
    TaskStatus,
    Trace,
)

__version__ = "0.1.0"

__all__ = [
    "Answer",
    "Backoff",
    "Batch",
    "BatchFinished",
    "BatchStarted",
    "Budget",
    "BudgetExceeded",
    "Cache",
    "Compiler",
    "CycleError",
    "DependencyError",
    "DuplicateToolError",
    "Event",
    "FusedTool",
    "Fuser",
    "GenerateOptions",
    "LLM",
    "LLMCError",
    "LLMConnectionError",
    "LLMError",
    "LLMRateLimitError",
    "LLMResponseError",
    "LLMUsage",
    "Local",
    "MCPConnectionError",
    "MCPError",
    "MCPToolError",
    "ModelLoadError",
    "OpenAI",
    "OutputTypeError",
    "OutputValidationError",
    "Plan",
    "PlanError",
    "PlanParser",
    "PlanSyntaxError",
    "RecordedError",
    "Ref",
    "Result",
    "RetryableToolError",
    "RunFinished",
    "RunStarted",
    "Scheduler",
    "Span",
    "Task",
    "TaskCancelled",
    "TaskEvent",
    "TaskFailed",
    "TaskFinished",
    "TaskQueued",
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
    "Trace",
    "TraceFormatError",
    "UnknownToolError",
    "Usage",
    "WorkerLostError",
    "__version__",
    "fuse",
    "load_tools",
    "run_plan",
    "run_plan_sync",
    "stream_plan",
    "suggest_fusions",
    "tool",
]
