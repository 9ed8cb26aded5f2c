"""Run a coroutine to the end from synchronous code, inside a running event loop or not.

Without a running loop (a script), the coroutine runs on a new loop in this thread. With one
(Jupyter, an async web framework calling sync code), this thread's loop cannot be re-entered,
so the coroutine runs on a private loop in a worker thread while this thread waits: objects
bound to the caller's loop (its locks, queues, clients) do not work there. Either way Ctrl-C
cancels the run, waits until every task of it was cancelled, and raises ``KeyboardInterrupt``.

The coroutine is made by ``start()`` on the loop that runs it, so nothing is left unawaited
when a run cannot start.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import signal
import threading
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

T = TypeVar("T")


def run_sync(start: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run ``start()`` to its end and return its result (or raise its error)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:  # no loop in this thread: the usual case
        with asyncio.Runner() as runner:
            return runner.run(start())
    return _run_in_worker(start)


class _Worker(threading.Thread):
    """A thread with its own event loop that runs one coroutine."""

    def __init__(self, start: Callable[[], Coroutine[Any, Any, Any]]) -> None:
        super().__init__(name="llmc-run-sync", daemon=True)
        self._start = start
        self._context = contextvars.copy_context()  # structlog context and the like go along
        self.ready = threading.Event()
        self.done = threading.Event()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.task: asyncio.Task[Any] | None = None
        self.outcome: tuple[bool, Any] = (False, None)

    def run(self) -> None:
        try:
            self._context.run(asyncio.run, self._main())
        finally:
            self.ready.set()  # also when the loop never started, so cancel() cannot hang
            self.done.set()

    async def _main(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.task = asyncio.current_task()
        self.ready.set()
        try:
            self.outcome = (True, await self._start())
        except BaseException as error:  # handed to the waiting thread as it is
            self.outcome = (False, error)

    def cancel(self) -> None:
        """Cancel the running coroutine from another thread."""
        self.ready.wait()
        if self.loop is not None and self.task is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.task.cancel)


@contextlib.contextmanager
def _interruptible() -> Iterator[None]:
    """Let Ctrl-C raise ``KeyboardInterrupt`` while this thread waits.

    ``asyncio.run`` replaces Python's handler with one that only cancels its main task, which
    cannot happen while that task's thread waits here; so the default handler comes back for
    the wait. Only the main thread handles signals, and an ignored SIGINT stays ignored.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous in (signal.SIG_IGN, signal.default_int_handler) or previous is None:
        yield
        return
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _run_in_worker(start: Callable[[], Coroutine[Any, Any, T]]) -> T:
    worker = _Worker(start)
    worker.start()
    with _interruptible():
        try:
            worker.done.wait()  # not join(): an interrupted join() can return early later
        except KeyboardInterrupt:
            worker.cancel()
            worker.done.wait()
            raise
        finally:
            worker.join()
    ok, value = worker.outcome
    if not ok:
        raise value
    return value  # type: ignore[no-any-return]
