"""Where tool calls run: the :class:`Executor` seam and the default :class:`AsyncioExecutor`.

The scheduler decides *when* a task runs; an executor decides *where*. It gets a tool and its
bound, validated arguments and returns the output. Timeouts, retries, limits and cancellation
stay in the scheduler, so a new backend (Ray, a process pool, a remote worker) only implements
:meth:`Executor.call` and :meth:`Executor.close`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from .asyncio import AsyncioExecutor

if TYPE_CHECKING:
    from ..tool import Tool

__all__ = ["AsyncioExecutor", "Executor"]


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
