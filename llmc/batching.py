"""Dispatch-time fusion: identical calls share one execution; batchable calls go out together.

Two things happen to a call when its task starts, after its references are resolved:

- **Deduplication.** :func:`call_key` gives a canonical, hashable key of a call: the tool's
  name and its bound arguments, compared by value and type (``1``, ``1.0`` and ``True`` differ;
  so do a list and a tuple; a dict's order does not matter). Within one run, a second call of
  a pure tool with the same key does not run: its task waits for the first and gets the same
  output (or the same error). Arguments that have no such key (objects of other classes,
  NaN) never dedupe.
- **Batching.** A :class:`Batcher` collects the calls of one batchable tool that become ready
  within the tool's ``batch_window`` (seconds, from the first call of a batch) and hands them
  over as one fused call; a batch that reaches ``max_batch`` calls goes out at once. The
  scheduler makes the fused call (under the tool's rate limit, timeout and retries) and
  gives each member its own output through a future.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Hashable, Mapping
from typing import Any, cast

from .tool import Tool

__all__ = ["FALLBACK", "Batcher", "Member", "call_key"]


class _Fallback:
    """The outcome of a batch member whose fused call failed and falls back to its own call."""

    def __repr__(self) -> str:
        return "FALLBACK"


#: A member's outcome when its fused call failed as a whole and the tool has
#: ``batch_fallback``: the member then makes its own call.
FALLBACK: Any = _Fallback()


class _Unkeyable(Exception):
    """A value without a canonical key: its call is not deduplicated."""


_ATOMS = frozenset({int, float, bool, type(None), bytes, complex})


def call_key(tool: str, arguments: Mapping[str, Any]) -> Hashable | None:
    """A canonical key of a call: equal keys mean the same tool with equal arguments.

    Values compare by type and value, recursively through lists, tuples, dicts, sets and
    pydantic models; the order of a dict's keys does not matter. Returns None when an
    argument holds something else (any other object), or a float NaN: such calls are never
    treated as identical.

    Example:
        >>> call_key("search", {"query": "x"}) == call_key("search", {"query": "x"})
        True
        >>> call_key("f", {"n": 1}) == call_key("f", {"n": True})
        False
    """
    parts: list[Any] = [tool]
    try:
        for name in sorted(arguments) if len(arguments) > 1 else arguments:
            value = arguments[name]
            parts.append(name)
            parts.append(value if value.__class__ is str else _canonical(value))
    except _Unkeyable:
        return None
    return tuple(parts)


def _canonical(value: Any) -> Hashable:
    cls = value.__class__
    if cls is str:
        return cast(str, value)
    if cls in _ATOMS:
        if value != value:  # NaN is not equal to itself: no call is identical to it
            raise _Unkeyable
        return (cls, value)
    if cls is list or cls is tuple:
        return (cls, *[_canonical(item) for item in value])
    if cls is dict:
        return (dict, frozenset((_canonical(k), _canonical(v)) for k, v in value.items()))
    if cls is set or cls is frozenset:
        return (cls, frozenset(_canonical(item) for item in value))
    dump = getattr(value, "model_dump", None)  # a pydantic model: its class and its fields
    if dump is not None and hasattr(cls, "model_fields"):
        return (cls, _canonical(dump()))
    raise _Unkeyable


class Member:
    """One call inside a batch: its task, its arguments, and where its outcome goes.

    The future's result is the call's output, an exception instance (the call failed), or
    :data:`FALLBACK`.
    """

    __slots__ = ("arguments", "future", "task_id")

    def __init__(self, task_id: int, arguments: dict[str, Any], future: asyncio.Future[Any]):
        self.task_id = task_id
        self.arguments = arguments
        self.future = future


FusedCallFunction = Callable[[Tool, list[Member]], Coroutine[Any, Any, None]]


class Batcher:
    """Collects one batchable tool's calls of one run into fused calls.

    A batch opens with its first call and goes out when ``tool.batch_window`` seconds have
    passed or it holds ``tool.max_batch`` calls, whichever comes first. When the tool has a
    ``max_concurrency``, it counts fused calls: a batch that finds them all busy waits (and
    keeps growing, up to ``max_batch``) until one ends.

    Args:
        tool: the batchable tool.
        call: makes one fused call and resolves its members' futures; the run supplies it.
    """

    def __init__(self, tool: Tool, call: FusedCallFunction) -> None:
        self.tool = tool
        self.call = call
        self.loop = asyncio.get_running_loop()
        self.pending: list[Member] = []
        self.running: set[asyncio.Task[None]] = set()
        self.timer: asyncio.TimerHandle | None = None
        self.closed = False

    def submit(self, task_id: int, arguments: dict[str, Any]) -> asyncio.Future[Any]:
        """Add a call to the open batch; the future receives its outcome."""
        future: asyncio.Future[Any] = self.loop.create_future()
        self.pending.append(Member(task_id, arguments, future))
        if len(self.pending) >= self.tool.max_batch:
            self.flush()
        elif self.timer is None:
            self.timer = self.loop.call_later(self.tool.batch_window, self.flush)
        return future

    def flush(self) -> None:
        """Send what is pending now, in batches of at most ``max_batch``, as far as the
        tool's concurrency allows."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        limit = self.tool.max_concurrency
        size = self.tool.max_batch
        while self.pending and not self.closed:
            if limit is not None and len(self.running) >= limit:
                return  # the next fused call to end sends the rest
            batch, self.pending = self.pending[:size], self.pending[size:]
            task = self.loop.create_task(self.call(self.tool, batch))
            self.running.add(task)
            task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[None]) -> None:
        self.running.discard(task)
        if self.pending and self.timer is None:
            self.flush()

    def close(self) -> list[asyncio.Task[None]]:
        """Stop sending; return the fused calls still running (for the run to cancel)."""
        self.closed = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        return [task for task in self.running if not task.done()]
