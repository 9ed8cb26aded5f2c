"""Tools: plain Python functions the planner can call.

``@llmc.tool`` turns a function into a :class:`Tool`: it reads the type hints and the
Google-style docstring into a pydantic model, which gives a JSON Schema (for function-calling
APIs), a one-line signature (for planner prompts) and validation with coercion of every call.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import inspect
import re
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypedDict, Unpack, overload

import pydantic

from .errors import RetryableToolError, ToolArgumentError, ToolDefinitionError
from .executors.placement import Placement
from .limits import RateLimiter, rate_limiter

if TYPE_CHECKING:
    from .grammar import Choices

#: Errors retried by default when a tool allows retries: the tool asked for it, or the
#: failure looks transient (network, timeouts).
DEFAULT_RETRY_ON: tuple[type[BaseException], ...] = (
    RetryableToolError,
    ConnectionError,
    TimeoutError,
)


#: Types of handles to outputs that live elsewhere (:class:`~llmc.executors.ray.RemoteOutput`
#: in Ray's object store), added by the executor that makes them. A call whose arguments hold
#: one is checked here for its shape only; the executor validates it where the values are.
HANDLES: list[type] = []


def holds_handle(value: Any) -> bool:
    """Whether a value (a call's arguments, say) holds a handle of :data:`HANDLES` anywhere."""
    if isinstance(value, tuple(HANDLES)):
        return True
    if isinstance(value, dict):
        return any(holds_handle(item) for item in value.values())
    if isinstance(value, list | tuple):
        return any(holds_handle(item) for item in value)
    return False


@dataclass(frozen=True, slots=True)
class Docstring:
    """The parts of a Google-style docstring that a tool schema uses."""

    summary: str
    description: str
    params: Mapping[str, str]


_SECTION = re.compile(
    r"^\s*(Args|Arguments|Parameters|Returns|Raises|Yields|Examples?|Notes?):\s*$"
)
_PARAM = re.compile(r"^\s*\*{0,2}(\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")


def parse_docstring(doc: str | None) -> Docstring:
    """Split a Google-style docstring into summary, description and per-argument text."""
    lines = inspect.cleandoc(doc or "").splitlines()
    body: list[str] = []
    params: dict[str, str] = {}
    section: str | None = None
    current: str | None = None
    for line in lines:
        heading = _SECTION.match(line)
        if heading:
            section, current = heading.group(1), None
            continue
        if section is None:
            body.append(line)
        elif section in ("Args", "Arguments", "Parameters"):
            match = _PARAM.match(line)
            indent = len(line) - len(line.lstrip())
            if match and indent <= 4:
                current = match.group(1)
                params[current] = match.group(2).strip()
            elif current and line.strip():
                params[current] = f"{params[current]} {line.strip()}".strip()
    text = "\n".join(body).strip()
    summary = text.split("\n\n", 1)[0].replace("\n", " ").strip()
    return Docstring(summary=summary, description=text, params=params)


def type_name(annotation: Any) -> str:
    """A short readable name for a type hint: ``list[str]``, ``int | None``, ``Any``."""
    if annotation is inspect.Parameter.empty or annotation is Any:
        return "Any"
    if annotation is None or annotation is type(None):
        return "None"
    if isinstance(annotation, type) and not typing.get_args(annotation):
        return annotation.__name__
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in args)
    if origin is typing.Literal:
        return "Literal[" + ", ".join(repr(a) for a in args) + "]"
    if origin is typing.Annotated:
        return type_name(args[0])
    if origin is not None:
        name = getattr(origin, "__name__", str(origin))
        return f"{name}[{', '.join(type_name(a) for a in args)}]" if args else name
    return str(annotation).replace("typing.", "")


def _expected(annotation: Any) -> str:
    return type_name(annotation)


@dataclass(eq=False)
class Tool:
    """A function the planner can call, with its schema, validation and run options.

    Create tools with :func:`tool`; call one like the function it wraps (arguments are
    validated and coerced first). ``tool.__wrapped__`` is the original function.

    The options (``timeout``, ``retries``, ``pure``, ``max_batch``, ``cache``...) are the
    fields of the same name, as :class:`ToolOptions` describes them; these differ:

    Attributes:
        name: the name plans use.
        description: one line shown to the planner.
        fn: the original function.
        rate_limit: the :class:`~llmc.limits.RateLimiter` every run using the tool obeys.
        version: identifies the tool's behaviour (for caches); defaults to a signature hash.
        batch_fn: the batch implementation, if the tool is batchable: it takes a list of
            calls (each a dict of one call's arguments, defaults filled in) and returns a
            list of as many outputs, in order; an item that is an exception instance fails
            only its call.
        placement: the :class:`~llmc.executors.placement.Placement` of a call, or None.
        choices: the values some parameters may take, by name.
    """

    name: str
    description: str
    fn: Callable[..., Any]
    timeout: float | None = None
    retries: int = 0
    retry_on: tuple[type[BaseException], ...] = DEFAULT_RETRY_ON
    max_concurrency: int | None = None
    rate_limit: RateLimiter | None = None
    version: str = ""
    pure: bool = False
    batch_fn: Callable[[list[dict[str, Any]]], Any] | None = field(default=None, repr=False)
    max_batch: int = 32
    batch_window: float = 0.005
    batch_fallback: bool = False
    cache: bool | None = None
    cache_ttl: float | None = None
    observation_tokens: int | None = None
    placement: Placement | None = None
    choices: Mapping[str, Choices] = field(default_factory=dict, repr=False)
    #: The batch function as a Tool of its own (one argument: the calls), for executors.
    batch_tool: Tool | None = field(init=False, repr=False, default=None)
    docstring: Docstring = field(init=False, repr=False)
    signature: inspect.Signature = field(init=False, repr=False)
    params_model: type[pydantic.BaseModel] = field(init=False, repr=False)
    is_async: bool = field(init=False, repr=False)
    #: Parameter names, in order.
    parameters: tuple[str, ...] = field(init=False, repr=False)
    #: Names of the parameters without a default.
    required: tuple[str, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise ToolDefinitionError(
                f"tool name {self.name!r} is not a Python identifier; plans call tools by name, "
                "so pick a name like 'search_web'"
            )
        if self.timeout is not None and self.timeout <= 0:
            raise ToolDefinitionError(f"tool {self.name!r}: timeout must be positive seconds")
        if self.retries < 0:
            raise ToolDefinitionError(f"tool {self.name!r}: retries must be 0 or more")
        if self.max_concurrency is not None and self.max_concurrency < 1:
            raise ToolDefinitionError(f"tool {self.name!r}: max_concurrency must be at least 1")
        if self.max_batch < 1:
            raise ToolDefinitionError(f"tool {self.name!r}: max_batch must be at least 1")
        if self.batch_window < 0:
            raise ToolDefinitionError(f"tool {self.name!r}: batch_window must be 0 or more")
        if self.cache_ttl is not None and self.cache_ttl <= 0:
            raise ToolDefinitionError(f"tool {self.name!r}: cache_ttl must be positive seconds")
        if self.observation_tokens is not None and self.observation_tokens < 1:
            raise ToolDefinitionError(f"tool {self.name!r}: observation_tokens must be >= 1")
        self.is_async = inspect.iscoroutinefunction(self.fn)
        self.docstring = parse_docstring(self.fn.__doc__)
        self.signature = inspect.signature(self.fn)
        params = self.signature.parameters.values()
        self.parameters = tuple(p.name for p in params)
        self.required = tuple(p.name for p in params if p.default is p.empty)
        self.params_model = self._build_model()
        unknown = sorted(set(self.choices) - set(self.parameters))
        if unknown:
            raise ToolDefinitionError(
                f"tool {self.name!r}: choices name {', '.join(unknown)}, which are not its "
                f"parameters ({', '.join(self.parameters) or 'none'})"
            )
        if not self.description:
            self.description = self.docstring.summary
        if not self.version:
            self.version = hashlib.sha256(self.signature_line().encode()).hexdigest()[:12]
        if self.batch_fn is not None:
            if not callable(self.batch_fn):
                raise ToolDefinitionError(f"tool {self.name!r}: batch must be a function or True")
            self.batch_tool = Tool(f"{self.name}_batch", self.description, self.batch_fn)
            if len(self.batch_tool.required) > 1 or not self.batch_tool.parameters:
                raise ToolDefinitionError(
                    f"tool {self.name!r}: its batch function takes one argument, the list of "
                    f"calls; {self.batch_tool.signature_line()} does not"
                )
        functools.update_wrapper(self, self.fn)

    def defaults(self) -> dict[str, Any]:
        """The parameters' default values, by name (what a call that omits them gets)."""
        return {
            p.name: p.default
            for p in self.signature.parameters.values()
            if p.default is not p.empty
        }

    def _build_model(self) -> type[pydantic.BaseModel]:
        try:
            hints = typing.get_type_hints(self.fn, include_extras=True)
        except Exception as exc:  # unresolved forward references and the like
            raise ToolDefinitionError(
                f"tool {self.name!r}: cannot resolve its type hints ({exc})"
            ) from exc
        fields: dict[str, Any] = {}
        for param in self.signature.parameters.values():
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                raise ToolDefinitionError(
                    f"tool {self.name!r}: *{param.name} / **{param.name} cannot be described "
                    "to a planner; give every parameter a name"
                )
            annotation = hints.get(param.name, Any)
            default = ... if param.default is param.empty else param.default
            description = self.docstring.params.get(param.name)
            fields[param.name] = (annotation, pydantic.Field(default, description=description))
        config = pydantic.ConfigDict(extra="forbid", arbitrary_types_allowed=True)
        try:
            return pydantic.create_model(f"{self.name}_arguments", __config__=config, **fields)
        except Exception as exc:
            raise ToolDefinitionError(f"tool {self.name!r}: unusable type hints ({exc})") from exc

    # -- description ---------------------------------------------------------------------

    def signature_line(self) -> str:
        """One line for planner prompts, e.g. ``search(query: str) -> str  # Search.``"""
        params = []
        for p in self.signature.parameters.values():
            text = f"{p.name}: {type_name(p.annotation)}"
            if p.default is not p.empty:
                text += f" = {p.default!r}"
            params.append(text)
        line = f"{self.name}({', '.join(params)}) -> {type_name(self.signature.return_annotation)}"
        return f"{line}  # {self.description}" if self.description else line

    def planner_doc(self) -> str:
        """The tool as text-mode planner prompts show it: :meth:`signature_line`, then its
        further docs (paragraphs, parameter descriptions, enum choices, the fields of
        pydantic models) on indented lines; see :mod:`llmc.tool_doc`."""
        from .tool_doc import tool_doc

        return tool_doc(self)

    def json_schema(self) -> dict[str, Any]:
        """The tool in OpenAI function-calling form: ``{"type": "function", "function": ...}``."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.docstring.description or self.description,
                "parameters": self.parameters_schema(),
            },
        }

    def parameters_schema(self) -> dict[str, Any]:
        """The JSON Schema of the tool's arguments (an object), as :meth:`json_schema` shows it."""
        from .grammar import resolve_choices

        parameters = self.params_model.model_json_schema()
        parameters.pop("title", None)
        for name, prop in parameters.get("properties", {}).items():
            prop.pop("title", None)
            values = resolve_choices(self.choices[name]) if name in self.choices else None
            if isinstance(values, list):  # question spans are a grammar's aid only
                prop["enum"] = values
        return parameters

    # -- calling -------------------------------------------------------------------------

    def bind(
        self, args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Map a call's arguments to parameter names, validated and coerced.

        Raises:
            ToolArgumentError: naming the tool, the parameter and what it expects.
        """
        arguments = self.name_arguments(args, kwargs)
        if HANDLES and holds_handle(arguments):  # validated where the values are
            return arguments
        try:
            model = self.params_model.model_validate(arguments)
        except pydantic.ValidationError as exc:
            raise self._argument_error(exc) from None
        return {name: getattr(model, name) for name in arguments}

    def name_arguments(
        self, args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Map positional and keyword arguments to parameter names without validating types.

        Raises:
            ToolArgumentError: too many positional arguments, an unknown or repeated keyword,
                or a required parameter left out.
        """
        names = self.parameters
        if len(args) > len(names):
            raise ToolArgumentError(
                f"{self.name}() takes {len(names)} argument(s) but {len(args)} were given; "
                f"signature: {self.signature_line()}",
                tool=self.name,
            )
        arguments = dict(zip(names, args, strict=False))
        for key, value in (kwargs or {}).items():
            if key not in self.signature.parameters:
                raise ToolArgumentError(
                    f"{self.name}() got an unexpected argument {key!r}; "
                    f"it takes: {', '.join(names) or 'no arguments'}",
                    tool=self.name,
                    parameter=key,
                )
            if key in arguments:
                raise ToolArgumentError(
                    f"{self.name}() got two values for {key!r}", tool=self.name, parameter=key
                )
            arguments[key] = value
        missing = [n for n in self.required if n not in arguments]
        if missing:
            name = missing[0]
            expected = _expected(self.signature.parameters[name].annotation)
            raise ToolArgumentError(
                f"{self.name}() is missing required argument {name!r} ({expected})",
                tool=self.name,
                parameter=name,
                expected=expected,
            )
        return arguments

    def _argument_error(self, exc: pydantic.ValidationError) -> ToolArgumentError:
        error = exc.errors()[0]
        loc = error.get("loc", ())
        name = str(loc[0]) if loc else None
        param = self.signature.parameters.get(name) if name else None
        expected = _expected(param.annotation) if param else None
        where = "".join(f"[{part!r}]" for part in loc[1:])
        got = repr(error.get("input"))
        if len(got) > 80:
            got = got[:77] + "..."
        return ToolArgumentError(
            f"{self.name}(): argument {name!r}{where} expects {expected}, got {got} "
            f"({error.get('msg', 'invalid')})",
            tool=self.name,
            parameter=name,
            expected=expected,
        )

    async def invoke(self, arguments: Mapping[str, Any]) -> Any:
        """Run the function on already-bound arguments (sync functions in a worker thread)."""
        if self.is_async:
            return await self.fn(**arguments)
        return await asyncio.to_thread(self.fn, **arguments)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the tool like its function, after validation (a coroutine for async tools)."""
        return self.fn(**self.bind(args, kwargs))

    def __repr__(self) -> str:
        return f"<Tool {self.signature_line()}>"


def columnar(
    function: Callable[..., Any], name: str
) -> tuple[Callable[..., Any], Callable[[list[dict[str, Any]]], Any]]:
    """Split a batch function that takes one list per parameter into its two faces.

    Returns:
        a one-call function with the item types in its signature (what planners see and
        what a direct call runs, as a batch of one), and the batch function over a list of
        calls (dicts of arguments) that the scheduler's batches use.

    Raises:
        ToolDefinitionError: a parameter is not a ``list[T]`` or has a default, or the
            return type is not a list.
    """
    try:
        hints = typing.get_type_hints(function)
    except Exception as exc:
        raise ToolDefinitionError(f"tool {name!r}: cannot resolve its type hints ({exc})") from exc
    signature = inspect.signature(function)
    params = []
    for param in signature.parameters.values():
        item = _list_item(hints.get(param.name, Any))
        if (
            item is None
            or param.default is not param.empty
            or param.kind
            not in (
                param.POSITIONAL_OR_KEYWORD,
                param.KEYWORD_ONLY,
            )
        ):
            raise ToolDefinitionError(
                f"tool {name!r}: with batch=True every parameter is one list per call's "
                f"argument, like 'query: list[str]', without a default; {param.name!r} is not. "
                "For richer signatures pass the batch function as batch=..."
            )
        params.append(param.replace(annotation=item, kind=param.POSITIONAL_OR_KEYWORD))
    returns = hints.get("return", Any)
    output = Any if returns is Any else _list_item(returns)
    if output is None:
        raise ToolDefinitionError(
            f"tool {name!r}: with batch=True the function returns a list (one output per call)"
        )
    names = [p.name for p in params]

    def columns(calls: list[dict[str, Any]]) -> dict[str, list[Any]]:
        return {n: [call[n] for call in calls] for n in names}

    def first(outputs: Any) -> Any:
        item = _only_item(outputs, name)
        if isinstance(item, BaseException):
            raise item
        return item

    one: Callable[..., Any]
    many: Callable[[list[dict[str, Any]]], Any]
    if inspect.iscoroutinefunction(function):

        async def one_async(**arguments: Any) -> Any:
            return first(await function(**{k: [v] for k, v in arguments.items()}))

        async def many_async(calls: list[dict[str, Any]]) -> Any:
            return await function(**columns(calls))

        one, many = one_async, many_async
    else:

        def one_sync(**arguments: Any) -> Any:
            return first(function(**{k: [v] for k, v in arguments.items()}))

        def many_sync(calls: list[dict[str, Any]]) -> Any:
            return function(**columns(calls))

        one, many = one_sync, many_sync
    face = {
        "__signature__": signature.replace(parameters=params, return_annotation=output),
        "__annotations__": {**{p.name: p.annotation for p in params}, "return": output},
        **{a: getattr(function, a, None) for a in ("__name__", "__qualname__", "__module__")},
        "__doc__": function.__doc__,
    }
    for attribute, value in face.items():
        setattr(one, attribute, value)
    many.__doc__ = f"{name} on a list of calls (the columns of {name}'s batch function)."
    return one, many


def _list_item(annotation: Any) -> Any:
    """``T`` for ``list[T]`` or ``Sequence[T]`` (``Any`` when bare), else None."""
    origin = typing.get_origin(annotation) or annotation
    if origin not in (list, Sequence):
        return None
    args = typing.get_args(annotation)
    return args[0] if args else Any


def _only_item(outputs: Any, name: str) -> Any:
    if not isinstance(outputs, Sequence) or isinstance(outputs, str | bytes) or len(outputs) != 1:
        raise TypeError(
            f"{name}: the batch function must return a list with one output per call; "
            f"it returned {type(outputs).__name__} for a batch of 1"
        )
    return outputs[0]


class ToolOptions(TypedDict, total=False):
    """Options of a tool, the keyword arguments of :func:`tool`.

    Attributes:
        name: the name plans use; defaults to the function's name.
        description: one line for the planner; defaults to the docstring's summary.
        timeout: seconds a call may run before it is cancelled (None: no limit).
        retries: extra attempts after an error listed in ``retry_on`` (exponential backoff
            with jitter).
        retry_on: exception types worth retrying.
        max_concurrency: most calls of this tool at once within one run.
        rate_limit: calls per ``rate_period`` seconds, shared by every run; or any
            :class:`~llmc.limits.RateLimiter` (an object with an async ``acquire()``), to share
            one limit between several tools, LLM clients or processes.
        rate_period: the window of ``rate_limit`` in seconds.
        version: a version string for caches; defaults to a hash of the signature.
        pure: True for tools whose output depends only on their arguments and whose calls
            change nothing (lookups, maths): identical calls in one run then share one
            execution (see ``dedupe`` in :class:`~llmc.scheduler.RunOptions`). Off by
            default: llmc cannot tell a lookup from a tool that writes, sends or draws
            random numbers, and a wrong guess would silently change results, while a missed
            one only costs a call.
        batch: make the tool batchable. ``True``: the decorated function takes one list per
            parameter (every parameter ``list[T]``, all of one length, no defaults) and
            returns a list of outputs; planners see the one-call signature (``T`` for each
            parameter, the item type of the returned list). A function: the decorated
            function is the one-call tool and ``batch`` its batch form, taking a list of
            calls (dicts of arguments) and returning a list of outputs. Either way an
            output that is an exception instance fails only its own call. Calls that become
            ready together go out as one batch, which counts as one call for
            ``timeout``, ``retries``, ``rate_limit`` and ``max_concurrency``; a retryable
            error of one item sends that item again.
        max_batch: the most calls in one batch; a full batch goes out at once.
        batch_window: seconds to wait for more calls after the first one of a batch.
        batch_fallback: when a batch fails as a whole, run its calls one by one instead
            of failing them all.
        cache: whether a :class:`~llmc.cache.Cache` given to the run keeps this tool's
            outputs. None (default): pure tools are cached, forever, and so is a tool with a
            ``cache_ttl``; True: cached even if not pure (a search, for ``cache_ttl``
            seconds); False: never (a tool that sends, writes or reads the clock).
        cache_ttl: seconds a cached output lives (None: until the cache evicts it).
        observation_tokens: the most tokens of one output a joiner prompt shows; longer
            outputs are reduced (head and tail by default; see :mod:`llmc.budget`). A run's
            ``llmc.Budget(observation_tokens={...})`` overrides it. None: a fair share.
        placement: what one call needs on a cluster, for executors that place calls
            (``{"num_cpus": 1, "num_gpus": 0, "resources": {...}, "actor": True}``; see
            :class:`~llmc.executors.placement.Placement`); other executors ignore it.
        choices: the values parameters may take, by name (see :data:`llmc.grammar.Choices`):
            a list, a function that lists them when a plan is written (e.g. the files under
            a root), or :data:`llmc.grammar.QUESTION_SPANS` (runs of words of the question).
            Grammars and :meth:`Tool.json_schema` offer only those, which keeps small models
            from inventing file names. Calls are not checked against them.
    """

    name: str | None
    description: str | None
    timeout: float | None
    retries: int
    retry_on: tuple[type[BaseException], ...]
    max_concurrency: int | None
    rate_limit: float | RateLimiter | None
    rate_period: float
    version: str | None
    pure: bool
    batch: bool | Callable[[list[dict[str, Any]]], Any]
    max_batch: int
    batch_window: float
    batch_fallback: bool
    cache: bool | None
    cache_ttl: float | None
    observation_tokens: int | None
    placement: Placement | Mapping[str, Any] | None
    choices: Mapping[str, Choices] | None


#: The options that :func:`tool` turns into fields of another shape (the rest are copied).
_CONVERTED = frozenset(
    {"name", "description", "rate_limit", "rate_period", "version", "batch", "placement"}
)
_OPTIONS = frozenset(ToolOptions.__annotations__)


@overload
def tool(fn: Callable[..., Any], /) -> Tool: ...


@overload
def tool(**options: Unpack[ToolOptions]) -> Callable[[Callable[..., Any]], Tool]: ...


def tool(
    fn: Callable[..., Any] | None = None, /, **options: Unpack[ToolOptions]
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Turn a function (sync or async) into a :class:`Tool`; usable bare or with options.

    Args:
        fn: the function, when used bare as ``@llmc.tool``.
        **options: see :class:`ToolOptions`.

    Raises:
        ToolDefinitionError: an unknown option, or an option's value that cannot be.

    Example:
        >>> @tool(batch=True, max_batch=50, description="Latest price of a stock.")
        ... async def price(symbol: list[str]) -> list[float]:
        ...     return [1.0 for _ in symbol]
        >>> price.signature_line()
        'price(symbol: str) -> float  # Latest price of a stock.'
    """
    unknown = sorted(set(options) - _OPTIONS)
    if unknown:
        raise ToolDefinitionError(
            f"unknown tool option(s): {', '.join(unknown)}; the options are those of "
            f"llmc.ToolOptions: {', '.join(sorted(_OPTIONS))}"
        )

    def wrap(function: Callable[..., Any]) -> Tool:
        if isinstance(function, Tool):
            function = function.fn
        if not callable(function):
            raise ToolDefinitionError(f"@llmc.tool needs a function, got {function!r}")
        name = options.get("name") or function.__name__
        limiter = rate_limiter(
            options.get("rate_limit"), options.get("rate_period", 1.0), error=ToolDefinitionError
        )
        batch = options.get("batch", False)
        batch_fn: Callable[[list[dict[str, Any]]], Any] | None = None
        if batch is True:
            function, batch_fn = columnar(function, name)
        elif callable(batch):
            batch_fn = batch
        elif batch is not False:
            raise ToolDefinitionError(f"batch must be True, False or a function, got {batch!r}")
        copied: dict[str, Any] = {k: v for k, v in options.items() if k not in _CONVERTED}
        if "retry_on" in copied:
            copied["retry_on"] = tuple(copied["retry_on"])
        if "choices" in copied:
            copied["choices"] = dict(copied["choices"] or {})
        return Tool(
            name=name,
            description=options.get("description") or "",
            fn=function,
            rate_limit=limiter,
            version=options.get("version") or "",
            batch_fn=batch_fn,
            placement=Placement.of(options.get("placement")),
            **copied,
        )

    return wrap(fn) if fn is not None else wrap
