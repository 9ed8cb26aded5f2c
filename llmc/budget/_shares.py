"""Prompt shares: a joiner prompt's observations, each fitted to its share of the window.

:func:`fit_observations` counts what the prompt holds besides the observations, divides the
rest between the current plan's observations and earlier ones (the split's ``context`` and
``history`` shares, max-min fairly under each tool's cap) and reduces each observation over
its share with the budget's reducer. It reads the meter's budget, counter and window, and
writes the shares it cut to (``Meter.shares``, for the plan picture); the meter itself only
keeps accounts.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..llm.base import Message
from ..trace import Trace
from ._count import TokenCounter, count_messages, count_upto
from ._reduce import ReduceContext, Reducer, Truncate, allocate

if TYPE_CHECKING:
    from ..task import Task
    from ._meter import Meter


async def fit_observations(
    meter: Meter,
    llm: Any,
    render: Callable[[Mapping[int, str]], Sequence[Message]],
    observations: Mapping[int, str],
    tasks: Mapping[int, Task],
    *,
    question: str,
    current: Collection[int] | None = None,
    reserve: int | None = None,
    input_limit: int | None = None,
    trace: Trace | None = None,
) -> dict[int, str]:
    """The observations, each within its share, so that the prompt fits.

    The prompt (``render(observations)``) must fit ``min(window - reserve,
    input_limit)`` tokens. What the prompt holds besides the observations is counted
    first; the rest is divided between the current plan's observations (``current``;
    all of them when None) and earlier ones by the split's ``context`` and ``history``
    shares, each part max-min fairly, under each tool's cap. An observation over its
    share goes through the budget's reducer.

    Args:
        llm: the model that reads the prompt (its window and tokenizer count).
        render: the prompt's messages for given observation texts.
        observations: each task's observation text.
        tasks: the tasks by id (for their tools' caps and the reducer).
        question: the user's question (for a summarizing reducer).
        current: ids of the current plan's tasks.
        reserve: tokens kept for the reply (default: the split's ``output`` share).
        input_limit: the most tokens the prompt may have, besides the window.
        trace: where a summarizing reducer's calls are recorded.
    """
    counter = meter.counter(llm)
    limit = meter.prompt_limit(llm, reserve=reserve, input_limit=input_limit)
    fixed = count_messages(counter, render({key: "" for key in observations}))
    shares = _shares(meter, counter, observations, tasks, current, max(limit - fixed, 0))
    reducer = meter.budget.reducer
    shown = await _reduce(meter, reducer, observations, shares, tasks, question, counter, trace)
    for _ in range(3):
        over = count_messages(counter, render(shown)) - limit
        if over <= 0:
            break
        # Joins and markers counted differently than their parts: take the excess from
        # the largest shares, cutting again what was already reduced (a summary is not
        # asked for twice).
        for key in sorted(shares, key=lambda k: -shares[k])[:3]:
            shares[key] = max(shares[key] - over, 0)
        again = observations if isinstance(reducer, Truncate) else shown
        shown = await _reduce(meter, Truncate(), again, shares, tasks, question, counter, trace)
    meter.shares.update(
        {key: share for key, share in shares.items() if shown[key] is not observations[key]}
    )
    return shown


def _shares(
    meter: Meter,
    counter: TokenCounter,
    observations: Mapping[int, str],
    tasks: Mapping[int, Task],
    current: Collection[int] | None,
    room: int,
) -> dict[int, int]:
    """Each observation's share of ``room`` tokens (see :func:`fit_observations`)."""
    demands = {key: count_upto(counter, text, room) for key, text in observations.items()}
    caps = {
        key: observation_cap(meter, tasks[key].tool) if key in tasks else None for key in demands
    }
    now = [key for key in demands if current is None or key in current]
    before = [key for key in demands if key not in now]
    if not before:
        return allocate(demands, room, caps)
    split = meter.budget.split
    together = split.context + split.history
    nominal = int(room * split.history / together) if together > 0 else room // 2
    wanted_before = sum(_capped(demands[k], caps[k]) for k in before)
    shares = allocate({k: demands[k] for k in now}, room - min(nominal, wanted_before), caps)
    used = sum(shares.values())
    shares.update(allocate({k: demands[k] for k in before}, room - used, caps))
    return shares


async def _reduce(
    meter: Meter,
    reducer: Reducer,
    observations: Mapping[int, str],
    shares: Mapping[int, int],
    tasks: Mapping[int, Task],
    question: str,
    counter: TokenCounter,
    trace: Trace | None,
) -> dict[int, str]:
    """Each observation as it is when it fits its share, else reduced to it."""
    shown: dict[int, str] = {}
    for key, text in observations.items():
        share = shares.get(key)
        if share is None or count_upto(counter, text, share) <= share:
            shown[key] = text
            continue
        context = ReduceContext(question, counter, tasks.get(key), meter, trace)
        shown[key] = await reducer.reduce(text, share, context)
    return shown


def observation_cap(meter: Meter, tool: str) -> int | None:
    """The most tokens an observation of ``tool`` may have, if anything limits it."""
    setting = meter.budget.observation_tokens
    if isinstance(setting, Mapping) and tool in setting:
        return setting[tool]
    own = meter.tools[tool] if meter.tools is not None and tool in meter.tools else None
    cap = getattr(own, "observation_tokens", None)
    if isinstance(cap, int):
        return cap
    return setting if isinstance(setting, int) else None


def _capped(demand: int, cap: int | None) -> int:
    return demand if cap is None else min(demand, cap)
