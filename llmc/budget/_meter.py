"""A run's budget (:class:`Budget`, what the user asks for) and its :class:`Meter` (what a run
has spent, checked before every call).

The meter is the one place that knows a run's counts: LLM calls, tokens, cost and tool calls.
Every LLM call of a run goes through :meth:`Meter.before_llm_call` (which raises
:class:`~llmc.errors.BudgetExceeded` when the call would cross a limit, and otherwise caps
its ``max_tokens`` to what is left) and :meth:`Meter.after_llm_call` (which records its usage
and cost, on the span, in an :class:`LLMUsage` event and in a debug log line). Tool calls
pass a gate (:meth:`Meter.gate`) in front of the scheduler's executor, so a run without a
tool-call limit does not pay for one.
"""

from __future__ import annotations

import dataclasses
import math
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import structlog

from ..errors import BudgetExceeded
from ..llm.base import LLM, GenerateOptions, Message, Price, Usage
from ..trace import Event, Span
from ._count import (
    CachedCounter,
    TokenCounter,
    context_window_of,
    count_messages,
    counter_for,
)
from ._prices import DEFAULT_PRICES
from ._reduce import Reducer, Truncate
from ._tale import DEFAULT_RANGE, FALLBACK_BUDGET, TALE_SLACK, output_cap

if TYPE_CHECKING:
    from ..executors import Executor
    from ..tool import Tool
    from ..toolbox import Toolbox

_logger = structlog.get_logger("llmc.budget")

#: A call is not made when fewer output tokens than this are left in the budget.
MIN_OUTPUT = 16
#: Tokens kept free in every prompt besides the counted ones (template joins, rounding).
PROMPT_MARGIN = 16

Node = Literal["planner", "joiner"]


@dataclass(frozen=True, slots=True)
class Split:
    """How a prompt's context window is shared, as fractions that add up to 1.

    Attributes:
        system: what the system prompt, the question and the task lines are expected to
            take; what they leave goes to the observations.
        context: the observations of the plan that just ran.
        history: the observations of earlier plans (after a replan); what they leave goes
            to ``context``, and the other way round.
        output: the reply's room, for a node without an output budget of its own.
    """

    system: float = 0.15
    context: float = 0.45
    history: float = 0.25
    output: float = 0.15

    def __post_init__(self) -> None:
        shares = (self.system, self.context, self.history, self.output)
        if any(share < 0 for share in shares) or abs(sum(shares) - 1.0) > 1e-6:
            raise ValueError(f"the shares of a Split must be >= 0 and add up to 1, got {shares}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Budget:
    """What a run may spend, and how its prompts are shared out. Every limit is optional.

    Run limits, checked before each call (crossing one raises
    :class:`~llmc.errors.BudgetExceeded` with the partial result):

    Attributes:
        max_tokens: prompt plus completion tokens of all LLM calls together.
        max_cost: US dollars for all LLM calls together (needs a price for each model:
            :data:`~llmc.budget.DEFAULT_PRICES` or ``prices``).
        max_llm_calls: LLM calls (planner, repairs, joiner, estimator, summaries).
        max_tool_calls: tool calls actually made (a batch is one; a deduplicated or cached
            call none; each retry one).
        prices: prices per model, over the default table.

    Per-node budgets:

    Attributes:
        planner_output: ``max_tokens`` of each planner call.
        joiner_output: ``max_tokens`` of each joiner call.
        joiner_input: the most tokens of a joiner prompt (it never exceeds the model's
            context window either way).
        observation_tokens: the most tokens of one observation in a joiner prompt: one number
            for every tool, or a mapping of tool name to tokens (the tool's own
            ``@llmc.tool(observation_tokens=...)`` applies to tools the mapping does not name).
        split: how a prompt's window is shared (:class:`Split`).
        reducer: how an observation over its share is reduced (default: head and tail,
            :class:`~llmc.budget.Truncate`; or :class:`~llmc.budget.Summarize`).

    TALE-style output budgets:

    Attributes:
        tale: estimate an output budget per question and write it into the joiner's prompt
            (``use less than N tokens``), with ``max_tokens = N x slack``.
        tale_range: the smallest and largest estimate accepted.
        tale_fallback: the budget when the estimator's reply has none.
        slack: ``max_tokens`` over the stated budget (measured: see ``TALE_SLACK``).
        estimator: the model that estimates (default: the joiner's).

    Counting:

    Attributes:
        counter: how tokens are counted (default: the model's tokenizer where it has one,
            tiktoken for OpenAI models when the encoding is on disk, else the estimate).
        context_window: the models' context window, when theirs is not known.
    """

    max_tokens: int | None = None
    max_cost: float | None = None
    max_llm_calls: int | None = None
    max_tool_calls: int | None = None
    prices: Mapping[str, Price] | None = None
    planner_output: int | None = None
    joiner_output: int | None = None
    joiner_input: int | None = None
    observation_tokens: int | Mapping[str, int] | None = None
    split: Split = field(default_factory=Split)
    reducer: Reducer = field(default_factory=Truncate)
    tale: bool = False
    tale_range: tuple[int, int] = DEFAULT_RANGE
    tale_fallback: int = FALLBACK_BUDGET
    slack: float = TALE_SLACK
    estimator: LLM | None = None
    counter: TokenCounter | None = None
    context_window: int | None = None

    def __post_init__(self) -> None:
        for name in (
            "max_tokens",
            "max_llm_calls",
            "max_tool_calls",
            "planner_output",
            "joiner_output",
            "joiner_input",
            "context_window",
        ):
            value = getattr(self, name)
            if value is not None and value < (0 if name.startswith("max_") else 1):
                raise ValueError(f"Budget({name}={value}) must be a positive number (or None)")
        if self.max_cost is not None and self.max_cost < 0:
            raise ValueError("Budget(max_cost=...) must be 0 or more dollars (or None)")
        if self.slack < 1:
            raise ValueError("Budget(slack=...) must be at least 1: max_tokens >= the budget")
        low, high = self.tale_range
        if low < 1 or low > high:
            raise ValueError(f"Budget(tale_range={self.tale_range}) needs 1 <= low <= high")

    def replace(self, **changes: Any) -> Budget:
        """A copy with some fields changed: ``budget.replace(max_cost=0.05)``."""
        return dataclasses.replace(self, **changes)

    @property
    def limits_tools(self) -> bool:
        """Whether tool calls are counted (a gate in front of the executor is needed)."""
        return self.max_tool_calls is not None


@dataclass(frozen=True, slots=True, kw_only=True)
class LLMUsage(Event):
    """An LLM call of a run finished: its usage and cost, and the run's totals so far.

    Attributes:
        kind: the node: ``"planner"``, ``"joiner"``, ``"estimator"``, ``"summarizer"``.
        label: the call's label (``"plan 1"``, ``"join 2"``, ...).
        model: the model's name.
        usage: the call's tokens (llmc's count when the server reported none).
        cost: the call's US dollars (None: no price for the model).
        total: the run's tokens so far.
        total_cost: the run's US dollars so far (None when some call had no price).
        counter: the name of the counter that counted the prompt (``exact`` tells more).
        exact: whether that counter is the model's own tokenizer.
    """

    kind: str
    label: str
    model: str
    usage: Usage
    cost: float | None
    total: Usage
    total_cost: float | None
    counter: str
    exact: bool


class _ToolGate:
    """An executor in front of another that counts tool calls against the budget."""

    __slots__ = ("inner", "meter")

    def __init__(self, inner: Executor, meter: Meter) -> None:
        self.inner = inner
        self.meter = meter

    async def call(self, tool: Tool, arguments: dict[str, Any]) -> Any:
        """Count the call (raising BudgetExceeded past the limit), then make it."""
        self.meter.count_tool_call(tool.name)
        return await self.inner.call(tool, arguments)

    def close(self) -> None:
        """Close the executor behind the gate."""
        self.inner.close()


_counters: weakref.WeakKeyDictionary[Any, CachedCounter] = weakref.WeakKeyDictionary()


def _counter_of(llm: Any, counter: TokenCounter | None) -> CachedCounter:
    """A cached counter per model object, so its cache lives as long as the model."""
    if counter is not None:
        return counter_for(llm, counter)
    try:
        found = _counters.get(llm)
    except TypeError:  # not weakly referenceable: no sharing
        return counter_for(llm)
    if found is None:
        found = counter_for(llm)
        _counters[llm] = found
    return found


class Meter:
    """What one run has spent, checked against its :class:`Budget` before every call.

    One meter serves all the rounds of a compiler run (so budgets and usage add up across
    replans), or one :func:`~llmc.run_plan`.

    Args:
        budget: the limits and shares.
        run_id: the run's id, for events and logs.
        on_event: called with an :class:`LLMUsage` event after each LLM call.
        tools: the run's tools, for their own ``observation_tokens``.

    Attributes:
        usage: tokens of the LLM calls so far.
        cost: US dollars so far (None once a call had no price).
        tool_calls: tool calls made so far.
        output_budget: the TALE budget of the question, once estimated.
        shares: the token share each observation had in the last prompt that was cut, by
            task id (for the plan picture).
        by_kind: tokens per node kind.
    """

    def __init__(
        self,
        budget: Budget | None = None,
        *,
        run_id: str = "",
        on_event: Callable[[Event], object] | None = None,
        tools: Toolbox | None = None,
    ) -> None:
        self.budget = budget or Budget()
        self.run_id = run_id
        self.on_event = on_event
        self.tools = tools
        self.prices = DEFAULT_PRICES | dict(self.budget.prices or {})
        self.usage = Usage()
        self.cost: float | None = 0.0
        self.tool_calls = 0
        self.output_budget: int | None = None
        self.shares: dict[int, int] = {}
        self.by_kind: dict[str, Usage] = {}

    # -- counting and windows ------------------------------------------------------------------

    def counter(self, llm: Any) -> CachedCounter:
        """The token counter for ``llm`` (the budget's own, if it names one)."""
        return _counter_of(llm, self.budget.counter)

    def window(self, llm: Any) -> int:
        """The context window of ``llm`` in tokens."""
        if self.budget.context_window is not None and getattr(llm, "context_window", None) is None:
            return self.budget.context_window
        return context_window_of(llm)

    def price(self, llm: Any) -> Price | None:
        """What ``llm``'s tokens cost, if known: the price it says itself (``llm.price``; a
        model run in-process is free), else the price table's for its model name."""
        own = getattr(llm, "price", None)
        if isinstance(own, Price):
            return own
        return self.prices.find(str(getattr(llm, "model", "")))

    # -- per-node output budgets ---------------------------------------------------------------

    def output_tokens(self, node: Node) -> int | None:
        """``max_tokens`` for a planner or joiner call: its node budget, the TALE cap, or None."""
        budget = self.budget
        if node == "planner":
            return budget.planner_output
        cap = output_cap(self.output_budget, budget.slack) if self.output_budget else None
        if budget.joiner_output is None:
            return cap
        return budget.joiner_output if cap is None else min(cap, budget.joiner_output)

    def with_output(self, options: GenerateOptions, node: Node) -> GenerateOptions:
        """``options`` with the node's ``max_tokens`` (the smaller, when both have one)."""
        tokens = self.output_tokens(node)
        if tokens is None:
            return options
        if options.max_tokens is not None:
            tokens = min(tokens, options.max_tokens)
        return dataclasses.replace(options, max_tokens=tokens)

    # -- LLM calls -----------------------------------------------------------------------------

    def before_llm_call(
        self, llm: Any, messages: Sequence[Message], options: GenerateOptions, *, kind: str
    ) -> GenerateOptions:
        """Check that an LLM call fits the budget; return its options, ``max_tokens`` capped
        to what is left of the tokens, the money and the context window.

        Raises:
            BudgetExceeded: the call would cross ``max_llm_calls``, or fewer than
                :data:`MIN_OUTPUT` tokens (or their price) would be left for its reply.
            ValueError: ``max_cost`` is set and the model has no price.
        """
        budget = self.budget
        calls = self.usage.calls
        if budget.max_llm_calls is not None and calls + 1 > budget.max_llm_calls:
            raise BudgetExceeded(
                f"the run may make {budget.max_llm_calls} LLM calls and made {calls}; the "
                f"{kind} call would be one more",
                limit="llm_calls",
                maximum=budget.max_llm_calls,
                used=calls,
            )
        prompt = count_messages(self.counter(llm), messages)
        caps: list[int] = [] if options.max_tokens is None else [options.max_tokens]
        if budget.max_tokens is not None:
            used = self.usage.total_tokens
            left = budget.max_tokens - used - prompt
            if left < MIN_OUTPUT:
                raise BudgetExceeded(
                    f"the run may use {budget.max_tokens} tokens and used {used}; the {kind} "
                    f"call's prompt alone has about {prompt}, which leaves no room for a reply",
                    limit="tokens",
                    maximum=budget.max_tokens,
                    used=used,
                    needed=prompt + MIN_OUTPUT,
                )
            caps.append(left)
        if budget.max_cost is not None:
            caps.extend(self._cost_cap(llm, prompt, kind))
        room = self.window(llm) - prompt
        if caps and room >= MIN_OUTPUT:
            caps.append(room)
        if not caps:
            return options
        tokens = max(min(caps), 1)
        return (
            options
            if tokens == options.max_tokens
            else dataclasses.replace(options, max_tokens=tokens)
        )

    def _cost_cap(self, llm: Any, prompt: int, kind: str) -> list[int]:
        """The most completion tokens the money left allows (empty: no limit from it)."""
        budget = self.budget
        assert budget.max_cost is not None
        price = self.price(llm)
        model = getattr(llm, "model", "?")
        if price is None:
            raise ValueError(
                f"Budget(max_cost=...) needs the price of {model!r}, which the price table "
                f"lacks: pass Budget(prices={{{model!r}: llmc.budget.Price(prompt, completion)}})"
            )
        spent = self.cost or 0.0
        left = budget.max_cost - spent - prompt * price.prompt / 1e6
        if left < MIN_OUTPUT * price.completion / 1e6:
            raise BudgetExceeded(
                f"the run may cost ${budget.max_cost:.4f} and cost ${spent:.4f}; the {kind} "
                f"call ({prompt} prompt tokens of {model}) would leave no money for a reply",
                limit="cost",
                maximum=budget.max_cost,
                used=spent,
                needed=(prompt * price.prompt + MIN_OUTPUT * price.completion) / 1e6,
            )
        if price.completion <= 0:
            return []
        return [int(left * 1e6 / price.completion)]

    def after_llm_call(
        self, llm: Any, messages: Sequence[Message], text: str, span: Span, *, kind: str
    ) -> Usage:
        """Record a finished (or failed) LLM call: its usage and cost go on ``span``, into the
        run's totals, an :class:`LLMUsage` event and a debug log line.

        A server that reported no usage gets llmc's count of the prompt and the reply; a
        reply replayed from a cache (usage of zero calls) costs nothing.
        """
        counter = self.counter(llm)
        usage = span.usage
        if usage is None or (usage.total_tokens == 0 and usage.calls > 0):
            usage = Usage(count_messages(counter, messages), counter.count(text), 0, calls=1)
            span.usage = usage
        price = self.price(llm)
        cost = price.cost(usage) if price is not None else None
        span.cost = cost
        self.usage = self.usage + usage
        self.by_kind[kind] = self.by_kind.get(kind, Usage()) + usage
        self.cost = None if cost is None or self.cost is None else self.cost + cost
        model = str(getattr(llm, "model", "?"))
        span.model = model
        if self.on_event is not None:
            self.on_event(
                LLMUsage(
                    run_id=self.run_id,
                    time=time.perf_counter(),
                    kind=kind,
                    label=span.label,
                    model=model,
                    usage=usage,
                    cost=cost,
                    total=self.usage,
                    total_cost=self.cost,
                    counter=counter.name,
                    exact=counter.exact,
                )
            )
        if structlog.is_configured():
            _logger.debug(
                "llm usage",
                run_id=self.run_id,
                kind=kind,
                label=span.label,
                model=model,
                prompt_tokens=usage.prompt_tokens,
                completion_tokens=usage.completion_tokens,
                cached_tokens=usage.cached_tokens,
                cost=cost,
                total_tokens=self.usage.total_tokens,
                total_cost=self.cost,
                counter=counter.name,
            )
        return usage

    # -- tool calls ----------------------------------------------------------------------------

    def count_tool_call(self, tool: str) -> None:
        """Count one tool call.

        Raises:
            BudgetExceeded: it would cross ``max_tool_calls``.
        """
        limit = self.budget.max_tool_calls
        if limit is not None and self.tool_calls + 1 > limit:
            raise BudgetExceeded(
                f"the run may make {limit} tool calls and made {self.tool_calls}; a call of "
                f"{tool}() would be one more",
                limit="tool_calls",
                maximum=limit,
                used=self.tool_calls,
            )
        self.tool_calls += 1

    def gate(self, executor: Executor) -> Executor:
        """``executor`` behind a gate that counts tool calls, if the budget limits them."""
        return _ToolGate(executor, self) if self.budget.limits_tools else executor

    # -- fitting observations into a prompt ----------------------------------------------------

    def prompt_limit(
        self, llm: Any, *, reserve: int | None = None, input_limit: int | None = None
    ) -> int:
        """The most tokens a prompt to ``llm`` may have: its window less ``reserve`` for the
        reply (default: the split's ``output`` share) and a margin, within ``input_limit``."""
        window = self.window(llm)
        if reserve is None:
            reserve = math.ceil(window * self.budget.split.output)
        limit = window - reserve - PROMPT_MARGIN
        if input_limit is not None:
            limit = min(limit, input_limit - PROMPT_MARGIN)
        return limit
