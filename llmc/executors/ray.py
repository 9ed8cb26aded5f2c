"""Tool calls on a Ray cluster: :class:`RayExecutor`.

Each call runs as a Ray task, or on a Ray actor for a tool whose placement says
``actor=True`` (one actor per tool and executor, so the state a tool keeps in memory lives
on). Sync and async tools both work: a worker runs an async tool in an event loop of its own.
Arguments and outputs travel through Ray's object store.

Large outputs stay there. An output the worker can size cheaply (``bytes``, ``str``, anything
with ``nbytes`` such as a NumPy array) of at least ``keep_remote_bytes`` comes back as a
:class:`RemoteOutput`, a handle; a Ray task that takes it as an argument reads it from the
object store without a copy through this process, a local tool gets the value, and at the end
of a run the scheduler brings the remaining handles' values here (:meth:`RayExecutor.settle`),
so results and the joiner see plain values.

Timeouts, retries and cancellation stay in the scheduler: a call it stops waiting for is
cancelled in Ray (``ray.cancel``; a running sync task gets a ``KeyboardInterrupt``, a running
actor call finishes, as Ray cannot interrupt an actor), Ray's own retries are off, and a worker
that dies is a :class:`~llmc.errors.WorkerLostError`, which tools with ``retries`` retry.
A tool's exception reaches the scheduler as itself (its type and message), with Ray's remote
traceback added as a note.

Workers import the tools' modules by name, as the driver does: a cluster needs llmc and the
tool modules installed on every node (or shipped with ``runtime_env={"py_modules": [...]}``).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._closing import Closing
from .._extras import require
from ..errors import WorkerLostError
from ..result import text_form
from ..tool import HANDLES, Tool, holds_handle
from .asyncio import AsyncioExecutor
from .placement import Placement

if TYPE_CHECKING:
    from ray import ObjectRef

    from . import Executor

ray = require("ray", extra="ray", needed_by="RayExecutor")
ray_errors = ray.exceptions

#: What Ray raises when the process (or node) that ran a call went away before answering.
_LOST: tuple[type[BaseException], ...] = (
    ray_errors.WorkerCrashedError,
    ray_errors.RayActorError,
    ray_errors.NodeDiedError,
    ray_errors.LocalRayletDiedError,
    ray_errors.ObjectLostError,
)


@dataclass(frozen=True, eq=False)
class RemoteOutput:
    """A tool's output kept in Ray's object store; a handle the run passes along.

    Attributes:
        ref: the Ray object reference.
        type_name: the output's type, for display.
        size: its size in bytes, as the worker measured it.
    """

    ref: ObjectRef[Any]
    type_name: str
    size: int

    def fetch(self) -> Any:
        """The value itself (a copy into this process; blocks until it has arrived)."""
        return ray.get(self.ref)

    def __str__(self) -> str:
        # A string that embeds the output ("$1") needs its text: fetch it, rather than let a
        # placeholder read "<RemoteOutput>".
        return text_form(self.fetch())

    def __repr__(self) -> str:
        return f"<RemoteOutput {self.type_name}, {self.size:,} bytes>"


@dataclass(frozen=True, slots=True)
class _Kept:
    """What a worker sends back in place of an output it left in the object store."""

    type_name: str
    size: int


class RayExecutor(Closing):
    """Runs tool calls on a Ray cluster (see the module's description).

    Args:
        address: the cluster: ``"auto"`` (the running one on this machine), ``"ray://host:10001"``
            (Ray Client), ``"host:6379"``, or None to start a local one (or use the one
            ``RAY_ADDRESS`` names). When this process is already connected to Ray, that
            connection is used as it is and ``address`` is ignored.
        placed_only: run only tools that have a ``placement`` on Ray, the others here (on
            ``local``); by default every tool runs on Ray unless its placement says
            ``local=True``.
        default_placement: the resources of a call of a tool without a placement (1 CPU).
        keep_remote_bytes: outputs of at least this many bytes stay in the object store
            (see :class:`RemoteOutput`).
        local: the executor for tools that run here (default: a new
            :class:`~llmc.executors.AsyncioExecutor`).
        **init_options: passed to ``ray.init`` when this executor connects (``num_cpus``,
            ``runtime_env``, ``namespace``, ...).

    The executor belongs to its caller, who closes it; closing kills its actors and, when the
    executor started the Ray connection, shuts it down.
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        placed_only: bool = False,
        default_placement: Placement | Mapping[str, Any] | None = None,
        keep_remote_bytes: int = 1_000_000,
        local: Executor | None = None,
        **init_options: Any,
    ) -> None:
        if keep_remote_bytes < 0:
            raise ValueError("keep_remote_bytes must be 0 or more")
        self.placed_only = placed_only
        self.default_placement = Placement.of(default_placement) or Placement()
        self.keep_remote_bytes = keep_remote_bytes
        self.local: Executor = local if local is not None else AsyncioExecutor()
        self._owns_ray = not ray.is_initialized()
        if self._owns_ray:
            ray.init(address=address, **init_options)
        self._tasks: dict[Tool, Any] = {}  # each tool's remote call, with its options
        self._actors: dict[Tool, Any] = {}  # each stateful tool's actor's call method
        self._handles: dict[Tool, Any] = {}  # and the actor
        self._closed = False

    # -- calls -------------------------------------------------------------------------------

    def runs_on_ray(self, tool: Tool) -> bool:
        """Whether this executor sends the tool's calls to Ray (else it runs them here)."""
        placement = tool.placement
        if placement is None:
            return not self.placed_only
        return not placement.local

    async def call(self, tool: Tool, arguments: dict[str, Any]) -> Any:
        """Run one call on Ray (or here, for a local tool) and return its output.

        Raises:
            WorkerLostError: the worker (or actor) died before it answered.
            Exception: the tool's own error, of its own type.
        """
        if self._closed:
            raise RuntimeError("this RayExecutor is closed; create a new one")
        if not self.runs_on_ray(tool):
            if holds_handle(arguments):
                arguments = tool.bind((), await _fetched(arguments))
            return await self.local.call(tool, arguments)
        placement = tool.placement or self.default_placement
        # A call holding a handle was not validated here (see Tool.bind): the worker does it.
        check = holds_handle(arguments)
        sent = _as_refs(arguments) if check else arguments
        refs: Any  # the call's two returns: the output (or a note that it stayed there), the kept
        if placement.actor:
            method = self._actor(tool, placement)
            refs = method.remote(sent, self.keep_remote_bytes, check)
        else:
            remote = self._task(tool, placement)
            refs = remote.remote(tool.fn, sent, self.keep_remote_bytes, check)
        head, body = refs
        try:
            output = await head
        except asyncio.CancelledError:
            ray.cancel(head)  # a timeout or a cancelled run: stop the work in Ray too
            raise
        except ray_errors.RayTaskError as error:
            await _observe(body)
            cause = error.cause
            if not isinstance(cause, BaseException):
                raise
            where = getattr(error, "traceback_str", "") or "(no traceback)"
            cause.add_note(f"raised on a Ray worker:\n{where.rstrip()}")
            raise cause from None
        except _LOST as error:
            await _observe(body)
            self._actors.pop(tool, None)  # a dead actor is replaced on the next call
            self._handles.pop(tool, None)
            raise WorkerLostError(
                f"{tool.name}(): the Ray worker running the call died before it answered "
                f"({type(error).__name__}); give the tool retries=... to try again elsewhere"
            ) from error
        if isinstance(output, _Kept):
            return RemoteOutput(body, output.type_name, output.size)
        return output

    async def settle(self, values: dict[int, Any]) -> None:
        """Replace each :class:`RemoteOutput` among a run's values by its value.

        The scheduler calls this when a run ends, so results and the joiner see plain values.
        A value that cannot be fetched (its worker's node is gone) stays a handle.
        """
        kept = [(key, value) for key, value in values.items() if isinstance(value, RemoteOutput)]
        fetched = await asyncio.gather(*(value.ref for _, value in kept), return_exceptions=True)
        for (key, _), value in zip(kept, fetched, strict=True):
            if not isinstance(value, BaseException):
                values[key] = value

    def _task(self, tool: Tool, placement: Placement) -> Any:
        """The remote call with the tool's options (made once per tool: ``.options`` costs
        more than a call's own work). The function travels inside each task's spec: a
        function put in the object store once cost a fetch per call, about 1.5 ms."""
        remote = self._tasks.get(tool)
        if remote is None:
            options = placement.ray_options()
            remote = _run_call.options(num_returns=2, max_retries=0, **options)
            self._tasks[tool] = remote
        return remote

    def _actor(self, tool: Tool, placement: Placement) -> Any:
        """The ``call`` method of the tool's actor (started on first use)."""
        method = self._actors.get(tool)
        if method is None:
            options = placement.ray_options()
            actor = _ToolActor.options(max_restarts=0, **options).remote(tool.fn)
            method = self._actors[tool] = actor.call.options(num_returns=2)
            self._handles[tool] = actor
        return method

    # -- life --------------------------------------------------------------------------------

    def close(self) -> None:
        """Kill this executor's actors, close the local executor, and disconnect from Ray
        if this executor connected."""
        if self._closed:
            return
        self._closed = True
        for actor in self._handles.values():
            ray.kill(actor)
        self._actors.clear()
        self._handles.clear()
        self._tasks.clear()
        self.local.close()
        if self._owns_ray:
            ray.shutdown()

    def __repr__(self) -> str:
        mode = "placed tools" if self.placed_only else "all tools"
        return f"RayExecutor({mode}, keep_remote_bytes={self.keep_remote_bytes})"


# -- what runs on a worker -------------------------------------------------------------------


async def _observe(failed: ObjectRef[Any]) -> None:
    """Read the error of a failed call's second return, which Ray would otherwise log as
    unhandled when the reference goes away."""
    try:
        await failed
    except Exception:  # the same error as the first return's, raised there already
        return


def _as_refs(value: Any) -> Any:
    """Arguments with each RemoteOutput replaced by its object reference (for the worker)."""
    if isinstance(value, RemoteOutput):
        return value.ref
    if isinstance(value, dict):
        return {key: _as_refs(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_as_refs(item) for item in value)
    return value


async def _fetched(value: Any) -> Any:
    """Arguments with each RemoteOutput replaced by its value (for a tool that runs here)."""
    if isinstance(value, RemoteOutput):
        return await value.ref
    if isinstance(value, dict):
        return {key: await _fetched(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)([await _fetched(item) for item in value])
    return value


def _resolved(value: Any) -> Any:
    """On a worker: object references inside the arguments replaced by their values."""
    if isinstance(value, ray.ObjectRef):
        return ray.get(value)
    if isinstance(value, dict):
        return {key: _resolved(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_resolved(item) for item in value)
    return value


def _size_hint(value: Any) -> int:
    """Bytes of an output, where that is cheap to know; 0 (small) otherwise."""
    if isinstance(value, bytes | bytearray | str):
        return len(value)
    if isinstance(value, memoryview):
        return value.nbytes
    size = getattr(value, "nbytes", None)
    return size if isinstance(size, int) else 0


def _reply(output: Any, keep_remote_bytes: int) -> tuple[Any, Any]:
    """The call's two returns: (output, None), or (_Kept, output) for a large output."""
    size = _size_hint(output)
    if keep_remote_bytes and size >= keep_remote_bytes:
        return _Kept(type(output).__name__, size), output
    return output, None


_checkers: dict[tuple[str, str], Tool] = {}  # per worker: a Tool per function, to validate


def _checked(fn: Any, arguments: dict[str, Any]) -> dict[str, Any]:
    """On a worker: the arguments, their references resolved, validated by the tool's schema."""
    key = (fn.__module__, fn.__qualname__)
    checker = _checkers.get(key)
    if checker is None:
        name = fn.__name__ if fn.__name__.isidentifier() else "tool"
        checker = _checkers[key] = Tool(name, "", fn)
    return checker.bind((), _resolved(arguments))


def _call(
    fn: Any, arguments: dict[str, Any], keep_remote_bytes: int, check: bool
) -> tuple[Any, Any]:
    """One tool call as a Ray task."""
    if check:
        arguments = _checked(fn, arguments)
    output = asyncio.run(fn(**arguments)) if inspect.iscoroutinefunction(fn) else fn(**arguments)
    return _reply(output, keep_remote_bytes)


_run_call = ray.remote(_call)


class _ActorBody:
    """The calls of one stateful tool, one at a time, in one long-lived worker."""

    def __init__(self, fn: Any) -> None:
        self.fn = fn
        self.loop: asyncio.AbstractEventLoop | None = None  # kept: async state lives on

    def call(
        self, arguments: dict[str, Any], keep_remote_bytes: int, check: bool
    ) -> tuple[Any, Any]:
        if check:
            arguments = _checked(self.fn, arguments)
        if inspect.iscoroutinefunction(self.fn):
            if self.loop is None:
                self.loop = asyncio.new_event_loop()
            output = self.loop.run_until_complete(self.fn(**arguments))
        else:
            output = self.fn(**arguments)
        return _reply(output, keep_remote_bytes)


_ToolActor = ray.remote(_ActorBody)
HANDLES.append(RemoteOutput)
