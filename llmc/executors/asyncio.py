"""The default executor: async tools on the event loop, sync tools in a bounded thread pool."""

from __future__ import annotations

import asyncio
import contextvars
import functools
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..tool import Tool

__all__ = ["AsyncioExecutor"]


class AsyncioExecutor:
    """Awaits async tools on the running loop; runs sync tools in its own thread pool.

    The pool is created on the first sync call, so runs of async tools never start a thread.
    Context variables are copied into the worker thread, as :func:`asyncio.to_thread` does.

    A sync function that is already running cannot be interrupted: on a timeout or a
    cancelled run the scheduler stops waiting for it at once, but its thread runs on until
    the function returns, and the interpreter waits for it at exit. Give slow sync tools
    their own timeouts (e.g. a socket timeout), or make them async.

    An executor passed to a run belongs to the caller, who closes it (``with
    AsyncioExecutor(8) as executor: ...``); a run without one makes and closes its own.

    Args:
        max_workers: threads for sync tools; ``None`` uses :class:`ThreadPoolExecutor`'s
            default (``min(32, cpu_count + 4)``).
    """

    def __init__(self, max_workers: int | None = None) -> None:
        self.max_workers = max_workers
        self._pool: ThreadPoolExecutor | None = None
        self._closed = False

    async def call(self, tool: Tool, arguments: dict[str, Any]) -> Any:
        """Run the tool: await it if async, else run it in the pool and await the result."""
        if tool.is_async:
            return await tool.fn(**arguments)
        if self._closed:
            raise RuntimeError("this AsyncioExecutor is closed; create a new one")
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.max_workers, thread_name_prefix="llmc-tool")
        context = contextvars.copy_context()
        call = functools.partial(context.run, tool.fn, **arguments)
        return await asyncio.get_running_loop().run_in_executor(self._pool, call)

    def close(self) -> None:
        """Shut the pool down without waiting: queued calls are dropped, running ones finish."""
        self._closed = True
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> AsyncioExecutor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"AsyncioExecutor(max_workers={self.max_workers})"
