"""Token budgets: counting, per-node budgets, TALE-style output budgets, usage and cost.

A run's :class:`Budget` says what it may spend (total tokens, dollars, LLM calls, tool
calls) and how each prompt is shared out (planner and joiner output, the joiner's input, each
observation's share, a :class:`Split` of the context window). A :class:`Meter` holds one run's
spending and checks it before every call: crossing a limit stops the run with
:class:`~llmc.errors.BudgetExceeded`, which carries the partial result.

::

    compiler = llmc.Compiler(tools, llm, budget=llmc.Budget(max_cost=0.01, tale=True))
    answer = await compiler.run("...")
    answer.usage, answer.cost, answer.usage_by_node     # tokens and dollars, per node

The parts, one module each:

- ``_count``: :class:`TokenCounter` (the model's tokenizer, :class:`Tiktoken`, or the
  calibrated :class:`Estimate`), cached (:class:`CachedCounter`); context windows;
- ``_prices``: :class:`Price`, :class:`PriceTable` and :data:`DEFAULT_PRICES`;
- ``_reduce``: :func:`allocate` (max-min fair shares), :func:`truncate` (head and tail with a
  marker), the :class:`Reducer` protocol with :class:`Truncate` and :class:`Summarize`;
- ``_tale``: the ``[[N]]`` estimator (:func:`estimate_budget`, :func:`parse_budget`) and the
  measured :data:`TALE_SLACK`;
- ``_frame``: :func:`fit_frame`, which fits a joiner prompt's question and task lines to
  their part of the window before observations are shared out;
- ``_meter``: :class:`Budget`, :class:`Split`, :class:`Meter` (the run's accounts) and the
  :class:`LLMUsage` event;
- ``_shares``: :func:`fit_observations`, the joiner prompt's observations each within its
  share of the window;
- ``_call``: :func:`metered_stream`, the one way a run's LLM call is checked, streamed and
  recorded, and the :class:`LLMMeter` protocol it needs of a meter.

docs/budgets.md is the user guide.
"""

from ..llm.base import FREE, Price
from ._call import LLMMeter, MeteredStream, metered_stream
from ._count import (
    DEFAULT_CONTEXT_WINDOW,
    ESTIMATE,
    KNOWN_CONTEXT_WINDOWS,
    BackendCounter,
    CachedCounter,
    Estimate,
    Tiktoken,
    TokenCounter,
    context_window_of,
    count_messages,
    count_upto,
    counter_for,
)
from ._frame import FRAME_SHARE, Frame, ShownTask, fit_frame
from ._meter import MIN_OUTPUT, Meter, Split

# Exported from llmc, their one public home; importable here too.
from ._meter import Budget as Budget
from ._meter import LLMUsage as LLMUsage
from ._prices import DEFAULT_PRICES, PriceTable
from ._reduce import ReduceContext, Reducer, Summarize, Truncate, allocate, truncate
from ._shares import fit_observations
from ._tale import (
    DEFAULT_RANGE,
    FALLBACK_BUDGET,
    TALE_SLACK,
    estimate_budget,
    output_cap,
    parse_budget,
)

__all__ = [
    "DEFAULT_CONTEXT_WINDOW",
    "DEFAULT_PRICES",
    "DEFAULT_RANGE",
    "ESTIMATE",
    "FALLBACK_BUDGET",
    "FRAME_SHARE",
    "FREE",
    "KNOWN_CONTEXT_WINDOWS",
    "MIN_OUTPUT",
    "TALE_SLACK",
    "BackendCounter",
    "CachedCounter",
    "Estimate",
    "Frame",
    "LLMMeter",
    "Meter",
    "MeteredStream",
    "Price",
    "PriceTable",
    "ReduceContext",
    "Reducer",
    "ShownTask",
    "Split",
    "Summarize",
    "Tiktoken",
    "TokenCounter",
    "Truncate",
    "allocate",
    "fit_frame",
    "fit_observations",
    "metered_stream",
    "context_window_of",
    "count_messages",
    "count_upto",
    "counter_for",
    "estimate_budget",
    "output_cap",
    "parse_budget",
    "truncate",
]
