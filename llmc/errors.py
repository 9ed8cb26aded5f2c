"""The exceptions llmc raises, all under one root.

::

    LLMCError                    anything llmc raises on purpose
    ├── ToolDefinitionError      a function cannot become a tool (e.g. *args, bad options)
    ├── ToolLoadError            a tool module file cannot be found or imported
    ├── DuplicateToolError       two tools share one name in a Toolbox
    ├── ToolArgumentError        arguments do not fit a tool's schema (also ValueError)
    ├── ToolTimeoutError         a tool call ran past its timeout (also TimeoutError)
    ├── RetryableToolError       raised by a tool to ask for a retry
    │   └── WorkerLostError      the process running a tool call died (a cluster worker)
    ├── PlanError                a plan is invalid; carries task_id, line, column when known
    │   ├── PlanSyntaxError      plan text does not parse; line, column and the offending text
    │   ├── UnknownToolError     a name that belongs to no tool (also LookupError)
    │   └── CycleError           the plan's dependencies form a cycle
    ├── DependencyError          why a task was skipped: a task it needs failed or was skipped
    ├── MCPError                 an MCP server's tool could not be used
    │   ├── MCPConnectionError   the server cannot be started or reached, or died (also
    │   │                        ConnectionError)
    │   └── MCPToolError         the server's tool answered with an error
    ├── OutputTypeError          an output_type pydantic cannot validate (also TypeError)
    ├── OutputValidationError    a typed answer did not fit its output_type, even after a
    │                            repair round (also ValueError); the last text is attached
    ├── TraceFormatError         text given to Trace.from_json is not a saved run (also
    │                            ValueError)
    ├── RecordedError            an error read back from a saved run, under its original's
    │                            class name
    ├── BudgetExceeded           a run's budget (tokens, cost, LLM or tool calls) would be
    │                            crossed: the run stopped; the partial result is attached
    ├── StoreUnavailable         a cache store cannot answer now (llmc.cache; taken as a miss)
    └── LLMError                 a language model call failed (after any retries)
        ├── LLMConnectionError   the endpoint cannot be reached, or the stream broke off
        ├── LLMRateLimitError    the endpoint kept answering 429 (rate limited)
        ├── LLMResponseError     the endpoint answered with an error or something unreadable
        └── ModelLoadError       the embedded local model cannot be loaded (one line: what to do)
"""

from __future__ import annotations

from typing import Any


class LLMCError(Exception):
    """Root of every exception llmc raises on purpose."""


class ToolDefinitionError(LLMCError, TypeError):
    """A function cannot be turned into a tool; the message says which part and why."""


class ToolLoadError(LLMCError):
    """A tool module file cannot be found or imported."""


class DuplicateToolError(LLMCError, ValueError):
    """Two different tools were registered under one name."""


class ToolArgumentError(LLMCError, ValueError):
    """Arguments do not fit a tool's schema; the tool was not called.

    Attributes:
        tool: the tool's name.
        parameter: the offending parameter (None when the problem is the call's shape).
        expected: what the parameter accepts, in words.
    """

    def __init__(
        self, message: str, *, tool: str, parameter: str | None = None, expected: str | None = None
    ) -> None:
        super().__init__(message)
        self.tool = tool
        self.parameter = parameter
        self.expected = expected

    def __reduce__(self) -> Any:
        # Keyword-only fields: pickle (a Ray worker's error, say) needs to be told them.
        fields = {"tool": self.tool, "parameter": self.parameter, "expected": self.expected}
        return (_rebuild, (type(self), self.args, fields, self.__dict__))


class ToolTimeoutError(LLMCError, TimeoutError):
    """A tool call ran longer than its timeout and was cancelled."""


class RetryableToolError(LLMCError):
    """Raise this from a tool to say "try again": the scheduler retries it with backoff."""


class WorkerLostError(RetryableToolError):
    """The process running a tool call died (killed, out of memory, its node left) before
    it answered. The call may be retried elsewhere: give the tool ``retries``."""


class PlanError(LLMCError, ValueError):
    """A plan is invalid.

    Attributes:
        task_id: the task at fault, when there is one.
        line: 1-based line of the plan text, when the plan came from text.
        column: 1-based column within that line.
    """

    def __init__(
        self,
        message: str,
        *,
        task_id: int | None = None,
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        super().__init__(message)
        self.task_id = task_id
        self.line = line
        self.column = column


class PlanSyntaxError(PlanError):
    """Plan text does not parse.

    Attributes:
        text: the offending line (or statement) as the model wrote it.
    """

    def __init__(self, message: str, *, line: int, column: int, text: str, **kw: Any) -> None:
        super().__init__(
            f"line {line}, column {column}: {message}\n    {text}", line=line, column=column, **kw
        )
        self.reason = message
        self.text = text


class UnknownToolError(PlanError, LookupError):
    """A name does not belong to any known tool."""


class CycleError(PlanError):
    """The plan's dependencies form a cycle, so no order can run it."""


class DependencyError(LLMCError):
    """Why a task did not run: a task it needs failed, was skipped or was cancelled."""


class MCPError(LLMCError):
    """A tool of an MCP server (see :mod:`llmc.mcp`) could not be used."""


class MCPConnectionError(MCPError, ConnectionError):
    """An MCP server cannot be started or reached, or it died or broke the connection."""


class MCPToolError(MCPError):
    """An MCP server's tool answered with an error; the message is the server's text."""


class OutputTypeError(LLMCError, TypeError):
    """An ``output_type`` that pydantic cannot validate (see :mod:`llmc.typed`)."""


class OutputValidationError(LLMCError, ValueError):
    """A typed answer is not JSON, or its JSON does not fit the ``output_type``.

    The compiler raises it when the joiner's answer still does not fit after one repair
    round; nothing is lost: the last text, pydantic's errors and the partial answer ride on
    the error.

    Attributes:
        text: the answer's text as the model wrote it (the last attempt).
        errors: what did not fit, as pydantic lists it (``loc``, ``msg``, ``type``);
            a text that holds no JSON has one entry of type ``"json_invalid"``.
        output_type: the type the answer had to fit, when known.
        answer: the partial :class:`~llmc.compiler.Answer` of a compiler run (its rounds,
            trace and usage; ``output`` None, ``finished`` False), when one was running.
    """

    def __init__(
        self,
        message: str,
        *,
        text: str,
        errors: list[dict[str, Any]] | None = None,
        output_type: Any = None,
    ) -> None:
        super().__init__(message)
        self.text = text
        self.errors: list[dict[str, Any]] = list(errors or [])
        self.output_type = output_type
        self.answer: Any = None

    def __reduce__(self) -> Any:
        # Keyword-only fields: pickle (a Ray actor's error, say) needs to be told them.
        return (_rebuild, (type(self), self.args, {}, self.__dict__))


class TraceFormatError(LLMCError, ValueError):
    """Text given to :meth:`llmc.Trace.from_json` is not a saved run (or of another version)."""


class RecordedError(LLMCError):
    """An error read back from a saved run (:meth:`llmc.Trace.from_json`).

    Each is an instance of a subclass named like the original error's class, so it reads as
    before (``Error: ToolTimeoutError: ...``); ``isinstance`` checks against the original
    class do not hold.

    Attributes:
        type_name: the original error's class name.
    """

    type_name = "RecordedError"


class BudgetExceeded(LLMCError):
    """The next call would cross the run's budget, so the run stopped before making it.

    Nothing computed is lost: the partial result rides on the error.

    Attributes:
        limit: which limit: ``"tokens"``, ``"cost"``, ``"llm_calls"`` or ``"tool_calls"``.
        maximum: the limit's value.
        used: what the run had used of it when it stopped.
        needed: what the refused call needed at least, when known.
        result: the partial :class:`~llmc.result.Result` of the plan run that stopped
            (outputs of the tasks that finished, the trace), when a plan was running.
        answer: the partial :class:`~llmc.compiler.Answer` of a compiler run (its rounds,
            results, trace and usage so far; ``text`` is empty, ``finished`` False).
    """

    def __init__(
        self,
        message: str,
        *,
        limit: str,
        maximum: float,
        used: float,
        needed: float | None = None,
    ) -> None:
        super().__init__(
            f"{message}. Raise the limit (llmc.Budget), or read the partial result on this "
            "error (.answer or .result)"
        )
        self.limit = limit
        self.maximum = maximum
        self.used = used
        self.needed = needed
        self.result: Any = None
        self.answer: Any = None

    def __reduce__(self) -> Any:
        # The message already has its advice; the fields are keyword-only.
        return (_rebuild, (type(self), self.args, {}, self.__dict__))

    @property
    def partial(self) -> Any:
        """The partial answer of a compiler run, else the partial result of a plan run."""
        return self.answer if self.answer is not None else self.result


class LLMError(LLMCError):
    """A language model call failed; the message names the model and endpoint (never a key).

    Attributes:
        model: the model's name.
        status: the HTTP status, when there was one.
    """

    def __init__(self, message: str, *, model: str = "", status: int | None = None) -> None:
        super().__init__(message)
        self.model = model
        self.status = status


class LLMConnectionError(LLMError, ConnectionError):
    """The endpoint cannot be reached, timed out, or the stream broke off."""


class LLMRateLimitError(LLMError):
    """The endpoint kept answering 429 after every retry."""


class LLMResponseError(LLMError):
    """The endpoint answered with an error status or a reply llmc cannot read."""


class ModelLoadError(LLMError):
    """The local model cannot be loaded; the one-line message says what to do about it."""


def _rebuild(
    cls: type[BaseException], args: tuple[Any, ...], fields: dict[str, Any], state: dict[str, Any]
) -> BaseException:
    """Unpickle an error whose ``__init__`` takes keyword-only fields."""
    error = cls.__new__(cls)
    BaseException.__init__(error, *args)
    error.__dict__.update(state)
    for name, value in fields.items():
        setattr(error, name, value)
    return error
