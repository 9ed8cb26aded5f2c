"""Dispatch-time fusion: identical calls share one execution; batchable calls go out together.

A run's :class:`Dispatch` is what happens to a call between its resolved arguments and its
tool, when the call is not a plain one: a cached output, an identical call to wait for, a
batch to join. Three things happen there:

- **Caching.** With a :class:`~llmc.cache.Cache`, the calls of the tools it keeps are looked
  up first (the run does this, before the rest, so a hit skips all of it).

- **Deduplication.** :func:`call_key` gives a canonical, hashable key of a call: the tool's
  name and its bound arguments, compared by value and type (``1``, ``1.0`` and ``True`` differ;
  so do a list and a tuple; a dict's order does not matter). Within one run, a second call of
  a pure tool with the same key does not run: its task waits for the first and gets the same
  output (or the same error). Arguments that have no such key (objects of other classes,
  NaN) never dedupe.
- **Batching.** A :class:`Batcher` collects the calls of one batchable tool that become ready
  within the tool's ``batch_window`` (seconds, from the first call of a batch) and hands them
  over as one batch; a batch that reaches ``max_batch`` calls goes out at once. The
  dispatch sends the batch (through the run's attempts: the tool's rate limit, timeout
  and retries) and gives each member its own output through a future.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Hashable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

from .limits import retrying
from .tool import Tool
from .trace import Batch, BatchFinished, BatchStarted, TaskStatus

if TYPE_CHECKING:
    from .cache import Cache
    from .scheduler import _Node, _Run


class Closing(BaseException):
    """Raised inside a task that is about to call its tool after the run began to close.

    Not an ``Exception``, as cancellation is not: no retry loop or handler of a tool's
    errors may take it for a failure."""


class _Fallback:
    """The outcome of a batch member whose batch failed and falls back to its own call."""

    def __repr__(self) -> str:
        return "FALLBACK"


#: A member's outcome when its batch failed as a whole and the tool has
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


SendBatch = Callable[[Tool, list[Member]], Coroutine[Any, Any, None]]


class Batcher:
    """Collects one batchable tool's calls of one run into batches.

    A batch opens with its first call and goes out when ``tool.batch_window`` seconds have
    passed or it holds ``tool.max_batch`` calls, whichever comes first. When the tool has a
    ``max_concurrency``, it counts batches: a batch that finds them all busy waits (and
    keeps growing, up to ``max_batch``) until one ends.

    Args:
        tool: the batchable tool.
        call: sends one batch and resolves its members' futures; the dispatch supplies it.
    """

    def __init__(self, tool: Tool, call: SendBatch) -> None:
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
                return  # the next batch to end sends the rest
            batch, self.pending = self.pending[:size], self.pending[size:]
            task = self.loop.create_task(self.call(self.tool, batch))
            self.running.add(task)
            task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[None]) -> None:
        self.running.discard(task)
        if self.pending and self.timer is None:
            self.flush()

    def close(self) -> list[asyncio.Task[None]]:
        """Stop sending; return the batches still running (for the run to cancel)."""
        self.closed = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        return [task for task in self.running if not task.done()]


class Dispatch:
    """A run's calls that are not plain ones: identical calls (deduplication), the batches of
    batchable tools, and the run's cache of tool outputs.

    One per run. It keeps the calls made so far (by :func:`call_key`) and each batchable
    tool's :class:`Batcher`; the run keeps the tasks, and makes every call through its
    attempts (rate limit, timeout, retries).

    Attributes:
        dedupe: whether identical calls of pure tools share one execution.
        cache: the run's cache of tool outputs, if any.
    """

    __slots__ = ("batchers", "cache", "calls", "dedupe", "run")

    def __init__(self, run: _Run, dedupe: bool, cache: Cache | None) -> None:
        self.run = run
        self.dedupe = dedupe
        self.cache = cache
        self.calls: dict[Any, _Node] = {}
        self.batchers: dict[str, Batcher] = {}

    # -- the cache

    async def cached(self, key: str) -> Any:
        """The cached output of a call (its cache key), or :data:`~llmc.cache.MISSING`."""
        assert self.cache is not None
        return await self.cache.get_tool(key)

    async def store(self, key: str, tool: Tool, output: Any) -> None:
        """Keep a call's output in the cache (the tool's policy says for how long)."""
        assert self.cache is not None
        await self.cache.put_tool(key, tool, output)

    # -- identical calls

    def leader(self, node: _Node, arguments: dict[str, Any]) -> _Node | None:
        """The task that made (or makes) this very call earlier in the run, if any;
        else register this task as the one that makes it."""
        key = call_key(node.tool.name, arguments)
        if key is None:
            return None
        leader = self.calls.setdefault(key, node)
        if leader is node:
            return None
        node.record.served_by = leader.task.id
        return leader

    async def follow(self, leader: _Node) -> Any:
        """Wait for an identical call's task and take its outcome as the caller's own."""
        record = leader.record
        if not record.status.is_final:
            if leader.served is None:
                leader.served = self.run.loop.create_future()
            await leader.served
        if record.status is TaskStatus.DONE:
            return self.run.values[leader.task.id]
        if record.status is TaskStatus.FAILED and record.error is not None:
            raise record.error
        raise Closing  # the leader was cancelled: the run is closing

    # -- batches

    async def batched(self, node: _Node, arguments: dict[str, Any]) -> Any:
        """A batchable tool's call: join a batch; send an item again after a retryable error
        of its own; make its own call when the batch failed and the tool falls back."""
        run, tool, record = self.run, node.tool, node.record
        batcher = self.batchers.get(tool.name)
        if batcher is None:
            batcher = self.batchers[tool.name] = Batcher(tool, self._send)

        async def attempt(number: int) -> Any:
            if number > 1 and run.closing:  # woke from its backoff as the run closes
                raise Closing
            outcome = await batcher.submit(node.task.id, arguments)
            if isinstance(outcome, BaseException):
                raise outcome
            return outcome

        def after_failure(error: Exception, number: int) -> float | None:
            # The batches' attempts count: retries of the whole batch included.
            if record.attempts > tool.retries or not isinstance(error, tool.retry_on):
                return None
            delay = run.backoff.delay(record.attempts)
            run.tell_retry(node, error, delay)
            return delay

        outcome = await retrying(attempt, after_failure)
        if outcome is not FALLBACK:
            return outcome
        earlier, record.attempts = record.attempts, 0  # its own call's attempts count from 1
        try:
            return await run.attempts(tool, arguments, (node,), (record,))
        finally:
            record.attempts += earlier

    def _tell(
        self, event: type[BatchStarted | BatchFinished], call: Batch, index: int, **more: Any
    ) -> None:
        """Emit a batch's event (``more``: its own fields), if anyone listens."""
        run = self.run
        if run.on_event is not None:
            run.emit(
                event(
                    run_id=run.run_id, tool=call.tool, task_ids=call.task_ids, index=index, **more
                )
            )

    async def _send(self, tool: Tool, members: list[Member]) -> None:
        """Send one batch: make its call and hand each member its outcome."""
        run = self.run
        task_ids = tuple(member.task_id for member in members)
        call = Batch(tool.name, task_ids, time.perf_counter())
        index = len(run.trace.batches)
        run.trace.batches.append(call)
        nodes = [run.nodes[task_id] for task_id in task_ids]
        for node in nodes:
            node.record.batch = index
        self._tell(BatchStarted, call, index, time=call.started)
        outcomes: list[Any] = []
        try:
            batch_tool = tool.batch_tool
            assert batch_tool is not None
            defaults = tool.defaults()
            calls = [{**defaults, **member.arguments} for member in members]
            try:
                outputs = await run.attempts(
                    tool,
                    {batch_tool.parameters[0]: calls},
                    nodes,
                    (call, *(node.record for node in nodes)),
                    called=batch_tool,
                )
                outcomes = _batch_outputs(tool, outputs, len(members))
            except Exception as exc:
                call.error = exc
                call.fallback = tool.batch_fallback and len(members) > 1
                outcomes = [FALLBACK if call.fallback else exc] * len(members)
            call.finished = time.perf_counter()
            duration = call.finished - call.started
            self._tell(
                BatchFinished, call, index, time=call.finished, duration=duration, error=call.error
            )
        finally:
            if call.finished is None:
                call.finished = time.perf_counter()
            outcomes += [Closing()] * (len(members) - len(outcomes))  # not reached: closing
            for member, outcome in zip(members, outcomes, strict=True):
                if not member.future.done():
                    member.future.set_result(outcome)

    def close(self) -> list[asyncio.Task[None]]:
        """Stop every batcher; return the batches still running (for the run to cancel)."""
        return [task for batcher in self.batchers.values() for task in batcher.close()]


def _batch_outputs(tool: Tool, outputs: Any, size: int) -> list[Any]:
    """A batch function's outputs as a list of one per call.

    Raises:
        TypeError: it returned something else than a sequence of ``size`` items.
    """
    if isinstance(outputs, str | bytes) or not isinstance(outputs, Sequence):
        raise TypeError(
            f"{tool.name}: its batch function returned {type(outputs).__name__}; it must "
            f"return a list with one output per call ({size})"
        )
    if len(outputs) != size:
        raise TypeError(
            f"{tool.name}: its batch function returned {len(outputs)} outputs for {size} "
            "calls; it must return one per call, in order (an exception for a failed one)"
        )
    return list(outputs)
