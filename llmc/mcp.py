"""Tools from MCP servers: every tool of a Model Context Protocol server as an llmc tool.

::

    async with llmc.mcp.stdio("python", "server.py") as server:     # a subprocess on stdio
        compiler = llmc.Compiler(tools=server.tools, llm=llm)
        answer = await compiler.run("...")

    async with llmc.mcp.http("http://127.0.0.1:8000/mcp") as server:  # streamable HTTP
        ...

Each server tool becomes a :class:`MCPTool`: a real :class:`~llmc.tool.Tool` whose signature
comes from the tool's JSON Schema (so plans are checked, arguments are validated and coerced,
and the planner sees ``add(a: int, b: int) -> int``), whose JSON Schema is the server's own,
and which plans, fusion and caches use like any other tool. A tool whose annotations say it
is read-only and either idempotent or closed-world is ``pure`` (identical calls in a run
share one, and a cache keeps it); ``pure=`` overrides the annotations.

The server lives as long as the ``async with``: a stdio server's process is started on entry
and ended on exit. A call after the server died fails its task with
:class:`~llmc.errors.MCPConnectionError` (other branches of the plan go on); a tool that
answers with an error fails its task with :class:`~llmc.errors.MCPToolError`; a call that
runs past ``timeout`` is cancelled (:class:`~llmc.errors.ToolTimeoutError`).

Needs the official MCP SDK: ``pip install -e ".[mcp]"`` from a checkout.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import keyword
import re
import shlex
import warnings
from collections.abc import Collection, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Union

from ._extras import require
from .errors import MCPConnectionError, MCPToolError, ToolArgumentError, ToolDefinitionError
from .tool import Tool, parse_docstring

if TYPE_CHECKING:
    import mcp

__all__ = ["MCPServer", "MCPTool", "connect", "http", "stdio"]

#: Seconds a server has to start and answer its handshake and its tool listing.
CONNECT_TIMEOUT = 30.0
#: Seconds a tool call may take unless the server's tools are given another ``timeout``.
DEFAULT_TIMEOUT = 60.0


def stdio(
    command: str,
    *args: str,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    **options: Any,
) -> MCPServer:
    """An MCP server that runs as a subprocess and talks over its stdin and stdout.

    Args:
        command: the program, e.g. ``"python"`` or ``"npx"``.
        *args: its arguments.
        env: environment variables for the process, over a safe default set (``PATH``,
            ``HOME``, ...; the SDK's default).
        cwd: the process's working directory.
        **options: see :class:`MCPServer` (``timeout``, ``pure``, ``prefix``, ...).
    """
    return MCPServer(
        target=(command, *args), env=dict(env) if env is not None else None, cwd=cwd, **options
    )


def http(url: str, **options: Any) -> MCPServer:
    """An MCP server reached over streamable HTTP, e.g. ``http://127.0.0.1:8000/mcp``.

    Args:
        url: the server's MCP endpoint.
        **options: see :class:`MCPServer` (``timeout``, ``pure``, ``prefix``, ...).
    """
    if not url.startswith(("http://", "https://")):
        raise ToolDefinitionError(
            f"MCP server URL {url!r} must start with http:// or https://, "
            "e.g. http://127.0.0.1:8000/mcp"
        )
    return MCPServer(target=url, **options)


def connect(spec: str, **options: Any) -> MCPServer:
    """An MCP server from one string: a URL (streamable HTTP) or a command line (stdio).

    ``"python server.py --flag"`` is split like a shell would (no shell runs it).
    """
    if spec.startswith(("http://", "https://")):
        return http(spec, **options)
    words = shlex.split(spec)
    if not words:
        raise ToolDefinitionError("an MCP server needs a command line or a URL; got nothing")
    return stdio(words[0], *words[1:], **options)


@dataclass(eq=False)
class MCPServer:
    """A connection to one MCP server, open inside ``async with``; its tools as llmc tools.

    Make one with :func:`stdio`, :func:`http` or :func:`connect`.

    Attributes:
        target: the command line (stdio) or the URL (streamable HTTP).
        env: extra environment variables of a stdio server's process.
        cwd: the working directory of a stdio server's process.
        timeout: seconds each tool call may run (None: no limit).
        pure: names of the tools that are pure (as listed by the server, before ``prefix``),
            instead of what the tools' annotations say.
        prefix: put before every tool's name, to keep the tools of several servers apart
            (``prefix="fs_"``: ``fs_read_file``).
        retries: extra attempts of a call after a retryable error (see :class:`Tool`).
        max_concurrency: most calls of each of the server's tools at once within a run.
        connect_timeout: seconds the server has to start, answer its handshake and list
            its tools.
        skipped: the server's tools that cannot be llmc tools (a schema that is not an
            object, say), by name: why not. They are left out with a warning.
    """

    target: str | tuple[str, ...]
    env: dict[str, str] | None = None
    cwd: str | None = None
    timeout: float | None = DEFAULT_TIMEOUT
    pure: Collection[str] | None = None
    prefix: str = ""
    retries: int = 0
    max_concurrency: int | None = None
    connect_timeout: float = CONNECT_TIMEOUT
    skipped: dict[str, str] = field(default_factory=dict, init=False, repr=False)
    _client: mcp.Client | None = field(default=None, init=False, repr=False)
    _stack: AsyncExitStack | None = field(default=None, init=False, repr=False)
    _tools: list[MCPTool] | None = field(default=None, init=False, repr=False)
    _closed: str | None = field(default=None, init=False, repr=False)

    @property
    def label(self) -> str:
        """How messages name the server: its command line or URL."""
        return self.target if isinstance(self.target, str) else shlex.join(self.target)

    @property
    def tools(self) -> list[MCPTool]:
        """The server's tools, listed on entry (pass them as ``tools=`` to a compiler)."""
        if self._tools is None:
            raise MCPConnectionError(
                f"MCP server {self.label!r} is not connected: use its tools inside "
                "'async with server:'"
            )
        return self._tools

    async def __aenter__(self) -> MCPServer:
        client_type, params = _sdk()
        if self._stack is not None:
            raise MCPConnectionError(f"MCP server {self.label!r} is already connected")
        if isinstance(self.target, str):
            server: Any = self.target
        else:
            command, *args = self.target
            server = params(command=command, args=args, env=self.env, cwd=self.cwd)
        client = client_type(server, read_timeout_seconds=self.connect_timeout)
        stack = AsyncExitStack()
        try:
            await stack.enter_async_context(client)
            listed = await _list_all(client)
        except BaseException as exc:
            await stack.aclose()
            if isinstance(exc, Exception):
                raise MCPConnectionError(
                    f"cannot connect to MCP server {self.label!r}: {_reason(exc)}. Check that "
                    "it starts and speaks MCP (run the command by hand, or open the URL)"
                ) from exc
            raise
        self._client, self._stack, self._closed = client, stack, None
        info = client.server_info
        name = info.name if info is not None else self.label
        self._tools, self.skipped = [], {}
        for definition in listed:
            try:
                self._tools.append(self._tool(definition, name))
            except ToolDefinitionError as exc:  # one odd tool does not take the others away
                self.skipped[definition.name] = str(exc)
                warnings.warn(f"MCP tool left out: {exc}", RuntimeWarning, stacklevel=2)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        stack, self._stack, self._client = self._stack, None, None
        self._closed = "the 'async with' block ended"
        if stack is not None:
            await stack.aclose()

    def _tool(self, definition: mcp.types.Tool, server_name: str) -> MCPTool:
        annotations = definition.annotations
        if self.pure is not None:
            pure = definition.name in self.pure
        else:
            pure = annotations is not None and _pure_by_annotations(annotations)
        return MCPTool.from_definition(
            self,
            name=self.prefix + definition.name,
            remote_name=definition.name,
            description=definition.description or "",
            input_schema=definition.input_schema,
            output_schema=definition.output_schema,
            server_name=server_name,
            pure=pure,
        )

    async def call(self, name: str, arguments: dict[str, Any]) -> Any:
        """Call the server's tool ``name`` (its own name) and return its output.

        A structured output is returned as it is (a single ``result`` value unwrapped),
        text content as one string, other content as a list of the blocks' dicts.

        Raises:
            MCPToolError: the tool answered with an error.
            MCPConnectionError: the server is not connected, died or broke the connection.
        """
        client = self._client
        if client is None:
            why = self._closed or "it was never entered with 'async with'"
            raise MCPConnectionError(f"MCP server {self.label!r} is not connected: {why}")
        try:
            # llmc's scheduler enforces the tool's timeout; the SDK's read timeout must not
            # cut a call short first (it defaults to the connect timeout).
            result = await client.call_tool(name, arguments, read_timeout_seconds=_FOREVER)
        except Exception as exc:
            raise MCPConnectionError(
                f"MCP server {self.label!r} failed during {name}(): {_reason(exc)}. If it "
                "died, see its output on stderr; restart it to call its tools again"
            ) from exc
        if result.is_error:
            raise MCPToolError(f"{name}: {_content_text(result.content) or 'failed'}")
        return _output(result, self._tools_by_remote().get(name))

    def _tools_by_remote(self) -> dict[str, MCPTool]:
        return {t.remote_name: t for t in self._tools or ()}

    def __repr__(self) -> str:
        state = f"{len(self._tools)} tools" if self._tools is not None else "not connected"
        return f"<MCPServer {self.label!r}: {state}>"


#: A read timeout for tool calls long enough to leave timeouts to llmc (a day).
_FOREVER = 86400.0


@dataclass(eq=False)
class MCPTool(Tool):
    """A tool of an MCP server: its signature comes from the server's JSON Schema.

    Calls are validated twice before they go out: by llmc's signature (types, coercion,
    named errors) and against the server's JSON Schema itself (ranges, patterns, enums).

    Attributes:
        server: the :class:`MCPServer` it belongs to.
        remote_name: the tool's name on the server (``name`` may differ: a prefix, or
            characters that are not allowed in Python names replaced by ``_``).
        input_schema: the server's JSON Schema of its arguments.
        output_schema: the server's JSON Schema of its structured output, if any.
        renamed: argument names that had to change, llmc's name -> the server's.
    """

    server: MCPServer | None = field(default=None, repr=False)
    remote_name: str = ""
    input_schema: dict[str, Any] = field(default_factory=dict, repr=False)
    output_schema: dict[str, Any] | None = field(default=None, repr=False)
    renamed: dict[str, str] = field(default_factory=dict, repr=False)
    validator: Any = field(default=None, repr=False)

    @classmethod
    def from_definition(
        cls,
        server: MCPServer,
        *,
        name: str,
        remote_name: str,
        description: str,
        input_schema: dict[str, Any],
        output_schema: dict[str, Any] | None,
        server_name: str,
        pure: bool,
    ) -> MCPTool:
        """Build the tool of one ``tools/list`` entry.

        Raises:
            ToolDefinitionError: its schema is not an object schema.
        """
        python_name = _identifier(name)
        if input_schema.get("type", "object") != "object":
            raise ToolDefinitionError(
                f"MCP tool {remote_name!r} of {server.label!r}: its input schema is not an object"
            )
        properties: dict[str, Any] = dict(input_schema.get("properties") or {})
        required = set(input_schema.get("required") or ())
        renamed: dict[str, str] = {}
        parameters: list[inspect.Parameter] = []
        annotations: dict[str, Any] = {}
        param_docs: dict[str, str] = {}
        # Python wants the parameters without defaults first; the schema's order otherwise.
        ordered = sorted(properties.items(), key=lambda item: item[0] not in required)
        for wire, schema in ordered:
            local = _identifier(wire, taken=set(renamed) | {p.name for p in parameters})
            if local != wire:
                renamed[local] = wire
            annotation = _python_type(schema if isinstance(schema, dict) else {})
            if wire in required:
                default: Any = inspect.Parameter.empty
            elif isinstance(schema, dict) and "default" in schema:
                default = schema["default"]
            else:  # optional without a default: None means "leave it out of the call"
                default = None
                annotation = annotation | None if annotation is not Any else Any
            parameters.append(
                inspect.Parameter(
                    local, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=default,
                    annotation=annotation,
                )
            )  # fmt: skip
            annotations[local] = annotation
            if isinstance(schema, dict) and schema.get("description"):
                param_docs[local] = str(schema["description"]).replace("\n", " ")
        returns = _return_type(output_schema)
        unset = frozenset(p.name for p in parameters if p.default is None)

        async def call(**arguments: Any) -> Any:
            assert tool.server is not None
            return await tool.server.call(remote_name, tool.wire_arguments(arguments, unset))

        call.__signature__ = inspect.Signature(parameters, return_annotation=returns)  # type: ignore[attr-defined]
        call.__annotations__ = {**annotations, "return": returns}
        call.__name__ = call.__qualname__ = python_name
        call.__module__ = f"mcp:{server_name}"
        call.__doc__ = _docstring(description, param_docs)
        digest = hashlib.sha256(
            json.dumps(
                [server_name, remote_name, description, input_schema, output_schema],
                sort_keys=True,
                default=str,
            ).encode()
        ).hexdigest()[:12]
        tool = cls(
            name=python_name,
            description="",
            fn=call,
            timeout=server.timeout,
            retries=server.retries,
            max_concurrency=server.max_concurrency,
            version=digest,
            pure=pure,
            server=server,
            remote_name=remote_name,
            input_schema=input_schema,
            output_schema=output_schema,
            renamed=renamed,
            validator=_validator(input_schema),
        )
        return tool

    def wire_arguments(
        self, arguments: Mapping[str, Any], unset: Collection[str]
    ) -> dict[str, Any]:
        """Bound arguments as the server names them, optional ones left at None left out."""
        return {
            self.renamed.get(name, name): value
            for name, value in arguments.items()
            if not (value is None and name in unset)
        }

    def bind(
        self, args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Validate a call by the signature, then against the server's JSON Schema.

        Raises:
            ToolArgumentError: naming the tool, the parameter and what is wrong.
        """
        bound = super().bind(args, kwargs)
        unset = {p for p in self.parameters if self.signature.parameters[p].default is None}
        wire = self.wire_arguments({**self.defaults(), **bound}, unset)
        error = _schema_error(self.validator, wire)
        if error is not None:
            where, message = error
            local = {v: k for k, v in self.renamed.items()}.get(where, where) if where else None
            raise ToolArgumentError(
                f"{self.name}(): {f'argument {local!r} ' if local else ''}does not fit the "
                f"server's schema: {message}",
                tool=self.name,
                parameter=local,
            )
        return bound

    def parameters_schema(self) -> dict[str, Any]:
        """The server's own JSON Schema of the arguments, under the names plans use."""
        parameters = {k: v for k, v in self.input_schema.items() if k != "title"}
        if self.renamed:
            wire_to_local = {wire: local for local, wire in self.renamed.items()}
            parameters["properties"] = {
                wire_to_local.get(k, k): v for k, v in (parameters.get("properties") or {}).items()
            }
            if "required" in parameters:
                parameters["required"] = [wire_to_local.get(k, k) for k in parameters["required"]]
        return parameters


# -- helpers ---------------------------------------------------------------------------------


def _sdk() -> tuple[Any, Any]:
    """The SDK's Client and StdioServerParameters, or a clear error without the extra."""
    sdk = require(
        "mcp", extra="mcp", needed_by="llmc.mcp", package="the MCP SDK", error=MCPConnectionError
    )
    return sdk.Client, sdk.StdioServerParameters


async def _list_all(client: mcp.Client) -> list[mcp.types.Tool]:
    """Every page of the server's tool listing."""
    tools: list[mcp.types.Tool] = []
    cursor: str | None = None
    for _ in range(1000):  # a server whose pages never end cannot hang the connection
        page = await client.list_tools(cursor=cursor)
        tools.extend(page.tools)
        cursor = page.next_cursor
        if cursor is None:
            break
    return tools


def _pure_by_annotations(annotations: mcp.types.ToolAnnotations) -> bool:
    """Read-only, and either idempotent or closed-world: a lookup whose repeat is the same.

    Read-only alone is not enough (a clock or a dice roll is read-only), and the MCP default
    of ``openWorldHint`` is true (a web search may answer differently each time).
    """
    return annotations.read_only_hint is True and (
        annotations.idempotent_hint is True or annotations.open_world_hint is False
    )


def _identifier(name: str, taken: Collection[str] = ()) -> str:
    """A Python identifier for an MCP name: other characters become ``_``, keywords get one."""
    text = re.sub(r"\W", "_", name)
    if not text or text[0].isdigit():
        text = f"_{text}"
    if keyword.iskeyword(text):
        text += "_"
    while text in taken:
        text += "_"
    return text


_JSON_TYPES: dict[str, Any] = {
    "string": str,
    "integer": int,
    "number": float,
    "boolean": bool,
    "null": type(None),
    "object": dict[str, Any],
}


# Generic forms made at run time from values (static checkers only know them from types).
_LITERAL: Any = Literal
_LIST: Any = list
_DICT: Any = dict


def _python_type(schema: Mapping[str, Any]) -> Any:
    """The Python type hint that matches a JSON Schema closely enough for planners and
    coercion (the schema itself still validates every call)."""
    if "const" in schema:
        return _LITERAL[schema["const"]]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        values = tuple(v for v in schema["enum"] if isinstance(v, str | int | float | bool))
        if len(values) == len(schema["enum"]):
            return _LITERAL[values]
    for key in ("anyOf", "oneOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            return _union([_python_type(o) for o in options if isinstance(o, dict)])
    kind = schema.get("type")
    if isinstance(kind, list):
        return _union([_python_type({**schema, "type": k}) for k in kind])
    if kind == "array":
        items = schema.get("items")
        return _LIST[_python_type(items) if isinstance(items, dict) else Any]
    if kind == "object" and isinstance(schema.get("additionalProperties"), dict):
        return _DICT[str, _python_type(schema["additionalProperties"])]
    return _JSON_TYPES.get(kind, Any) if isinstance(kind, str) else Any


def _union(types: list[Any]) -> Any:
    if not types or Any in types:
        return Any
    unique = list(dict.fromkeys(types))
    return unique[0] if len(unique) == 1 else Union[tuple(unique)]  # noqa: UP007


def _return_type(schema: Mapping[str, Any] | None) -> Any:
    if not schema:
        return Any
    wrapped = _wrapped_result(schema)
    return _python_type(wrapped) if wrapped is not None else _python_type(schema)


def _wrapped_result(schema: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The schema of ``result`` when the output schema wraps one value as ``{"result": v}``
    (what Python MCP servers do for functions that return anything but an object)."""
    properties = schema.get("properties")
    if (
        isinstance(properties, dict)
        and set(properties) == {"result"}
        and schema.get("required") == ["result"]
        and isinstance(properties["result"], dict)
    ):
        return properties["result"]
    return None


def _output(result: Any, tool: MCPTool | None) -> Any:
    structured = result.structured_content
    if structured is not None:
        schema = tool.output_schema if tool is not None else None
        if (
            schema is not None
            and _wrapped_result(schema) is not None
            and isinstance(structured, dict)
            and set(structured) == {"result"}
        ):
            return structured["result"]
        return structured
    blocks = result.content
    if all(getattr(block, "type", None) == "text" for block in blocks):
        return _content_text(blocks)
    return [block.model_dump(mode="json", by_alias=True, exclude_none=True) for block in blocks]


def _content_text(blocks: Sequence[Any]) -> str:
    return "\n".join(block.text for block in blocks if getattr(block, "type", None) == "text")


def _docstring(description: str, params: Mapping[str, str]) -> str:
    """The tool's description with an ``Args:`` section for what the schema describes."""
    known = parse_docstring(description).params
    missing = {k: v for k, v in params.items() if k not in known}
    if not missing:
        return description
    lines = [description.rstrip(), "", "Args:"] if description.strip() else ["Args:"]
    lines += [f"    {name}: {text}" for name, text in missing.items()]
    return "\n".join(lines)


def _validator(schema: Mapping[str, Any]) -> Any:
    """A JSON Schema validator of a tool's arguments, made once; None when the schema is
    broken or jsonschema is missing (the signature's check still stands)."""
    try:
        import jsonschema
    except ImportError:  # the SDK depends on it
        return None
    validator_type = jsonschema.validators.validator_for(schema, jsonschema.Draft202012Validator)
    try:
        validator_type.check_schema(schema)
    except jsonschema.exceptions.SchemaError:
        return None  # a server's broken schema is its problem, not the call's
    return validator_type(schema)


def _schema_error(validator: Any, arguments: Mapping[str, Any]) -> tuple[str, str] | None:
    """The first way ``arguments`` break the schema: (the top-level argument, the message)."""
    if validator is None:
        return None
    import jsonschema

    error = jsonschema.exceptions.best_match(validator.iter_errors(dict(arguments)))
    if error is None:
        return None
    where = str(error.absolute_path[0]) if error.absolute_path else ""
    return where, error.message


def _reason(exc: BaseException) -> str:
    """A one-line reason, looking inside exception groups (anyio's task groups make them)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
