"""The default executor: async tools on the event loop, sync tools in a bounded thread pool."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from .._closing import Closing

if TYPE_CHECKING:
    from ..tool import Tool

_GROW_LOCK = threading.Lock()


class AsyncioExecutor(Closing):
    """Awaits async tools on the running loop; runs sync tools in its own thread pool.

    The pool is created on the first sync call, so runs of async tools never start a thread.
    Context variables are copied into the worker thread, as :func:`asyncio.to_thread` does.

    A sync function that is already running cannot be interrupted: on a timeout or a
    cancelled run the scheduler stops waiting for it at once, but its thread runs on until
    the function returns, and the interpreter waits for it at exit. While it runs on, the
    pool has one more thread, so calls left running never starve the others. Python code
    in such a thread shares the GIL with the event loop, which still runs; C code that holds
    the GIL (Python's ``re`` backtracking, a long ``int`` to ``str``) stops the whole
    process, timeouts included, until it returns: only a process boundary can stop that.
    Give slow sync tools their own timeouts (e.g. a socket timeout), or make them async.

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
        pool = self._pool
        future = pool.submit(call)
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            if not future.cancel():  # it is running and will run on: lend the pool a thread
                _grow(pool, 1)
                future.add_done_callback(lambda _: _grow(pool, -1))
            raise

    def close(self) -> None:
        """Shut the pool down without waiting: queued calls are dropped, running ones finish."""
        self._closed = True
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def __repr__(self) -> str:
        return f"AsyncioExecutor(max_workers={self.max_workers})"


def _grow(pool: ThreadPoolExecutor, threads: int) -> None:
    """Change how many threads ``pool`` may start (a thread abandoned to a call that overran
    its timeout should not count against the calls still to come)."""
    with _GROW_LOCK:  # (the shrink runs in the worker thread that finished)
        pool._max_workers += threads  # no public way to resize a ThreadPoolExecutor
    if threads > 0:
        pool.submit(_nothing)  # a pool starts threads on submit: one for the queued calls


def _nothing() -> None:
    pass
