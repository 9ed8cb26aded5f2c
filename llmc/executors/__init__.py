"""Where tool calls run: the :class:`Executor` seam and the default :class:`AsyncioExecutor`.

The scheduler decides *when* a task runs; an executor decides *where*. It gets a tool and its
bound, validated arguments and returns the output. Timeouts, retries, limits and cancellation
stay in the scheduler, so a new backend (Ray, a process pool, a remote worker) only implements
:meth:`Executor.call` and :meth:`Executor.close`.

An executor that hands back handles to outputs kept elsewhere (as :class:`RayExecutor` does
for large outputs) also has ``async settle(values)``: the scheduler calls it when a run ends,
to replace the handles among the run's values by the values themselves.

:class:`RayExecutor` (``llmc.executors.ray``) needs the ``ray`` extra; it is imported on first
use, so ``import llmc`` never needs Ray.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from .asyncio import AsyncioExecutor
from .placement import Placement

if TYPE_CHECKING:
    from ..tool import Tool
    from .ray import RayExecutor, RemoteOutput

__all__ = ["AsyncioExecutor", "Executor", "Placement", "RayExecutor", "RemoteOutput"]


def __getattr__(name: str) -> Any:
    if name in ("RayExecutor", "RemoteOutput"):  # imported on demand: Ray is an optional extra
        from . import ray

        return getattr(ray, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@runtime_checkable
class Executor(Protocol):
    """Runs one tool call. The scheduler awaits :meth:`call` once per attempt.

    Cancellation: the scheduler cancels the awaiting coroutine (timeout, fail-fast, a
    cancelled run); an executor should stop the call if it can and let the
    ``asyncio.CancelledError`` propagate.
    """

    async def call(self, tool: Tool, arguments: dict[str, Any]) -> Any:
        """Run ``tool`` on already-bound arguments and return its output (or raise its error)."""
        ...

    def close(self) -> None:
        """Release the executor's resources without waiting for calls still running."""
        ...
