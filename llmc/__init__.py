"""llmc: compile a question into a task graph of tool calls, run it in parallel, answer.

The public API, all importable from ``llmc``:

- tools: :func:`tool` (decorator), :class:`Tool`, :class:`Toolbox`, :func:`load_tools`;
- plans: :class:`Plan`, :class:`Task`, :class:`Ref`, :class:`PlanParser`;
- errors: :class:`LLMCError` and its tree (see :mod:`llmc.errors`).

Everything else lives in modules whose names say what they hold; what is not listed in
``__all__`` may change without notice.
"""

from .errors import (
    CycleError,
    DependencyError,
    DuplicateToolError,
    LLMCError,
    PlanError,
    PlanSyntaxError,
    RetryableToolError,
    ToolArgumentError,
    ToolDefinitionError,
    ToolLoadError,
    ToolTimeoutError,
    UnknownToolError,
)
from .parse import PlanParser
from .plan import Plan, Ref, Task
from .result import Result
from .scheduler import Backoff, Scheduler, run_plan, run_plan_sync, stream_plan
from .tool import Tool, tool
from .toolbox import Toolbox, load_tools
from .trace import (
    Event,
    RunFinished,
    RunStarted,
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
    "Backoff",
    "CycleError",
    "DependencyError",
    "DuplicateToolError",
    "Event",
    "LLMCError",
    "Plan",
    "PlanError",
    "PlanParser",
    "PlanSyntaxError",
    "Ref",
    "Result",
    "RetryableToolError",
    "RunFinished",
    "RunStarted",
    "Scheduler",
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
    "ToolTimeoutError",
    "Toolbox",
    "Trace",
    "UnknownToolError",
    "__version__",
    "load_tools",
    "run_plan",
    "run_plan_sync",
    "stream_plan",
    "tool",
]
