"""TALE-style output budgets (Han et al., "Token-Budget-Aware LLM Reasoning", arXiv 2412.18547).

A zero-shot estimator prompt asks the model how many tokens a complete, correct answer to the
question needs; the model answers ``[[N]]``. :func:`parse_budget` reads that, clamped to a
range, with a fallback when the reply has no number. The joiner's prompt then says "use less
than N tokens", and its ``max_tokens`` is ``N x slack`` (:func:`output_cap`): models overrun
a stated budget, more so the smaller it is ("token elasticity"), so the cap leaves room above
N. :data:`TALE_SLACK` is measured, not guessed: ``benchmarks/budget.py`` asks the local model
with budget prompts and takes the ratio of written tokens to N that nine replies in ten stay
under (docs/benchmarks.md, "Budgets").
"""

from __future__ import annotations

import math
import re

from ..llm.base import LLM, GenerateOptions, Message
from ..templates import Templates
from ..trace import Trace
from ._call import LLMMeter, metered_stream

#: The smallest and largest budget an estimate may set.
DEFAULT_RANGE = (16, 1024)
#: The budget when the estimator's reply holds no number.
FALLBACK_BUDGET = 256
#: max_tokens over the stated budget N, measured with ``python -m benchmarks.budget --only c``:
#: the ratio of written tokens to N that nine replies in ten of the local model
#: (SmolLM2-135M-Instruct, the only model available offline) stayed under, over budgets of
#: 25-200 tokens. That model barely follows a budget (its replies are about as long
#: whatever N says, so the ratio is large); the cap then only stops runaway replies and cuts
#: almost none. Measure a model that follows budgets the same way (``--base-url``) and pass
#: ``Budget(slack=...)``.
TALE_SLACK = 10.5

_BRACKETED = re.compile(r"\[\[\s*(\d[\d,_]*(?:\.\d+)?)\s*\]\]")
_LABELLED = re.compile(r"budget\s*[:=]?\s*(\d[\d,_]*(?:\.\d+)?)", re.IGNORECASE)


def parse_budget(
    reply: str,
    *,
    low: int = DEFAULT_RANGE[0],
    high: int = DEFAULT_RANGE[1],
    fallback: int = FALLBACK_BUDGET,
) -> int:
    """The token budget in an estimator's reply: ``[[N]]``, clamped to ``[low, high]``.

    The first ``[[N]]`` counts (thousands separators and decimals are read). A reply without
    one may still say ``Budget: N``; a reply with neither gets ``fallback`` (also clamped).

    Raises:
        ValueError: ``low`` is not positive or is above ``high``.

    Example:
        >>> parse_budget("Budget: [[1,200]]", high=1000)
        1000
        >>> parse_budget("no idea")
        256
    """
    if low < 1 or low > high:
        raise ValueError(f"the budget range must have 1 <= low <= high, got ({low}, {high})")
    match = _BRACKETED.search(reply) or _LABELLED.search(reply)
    value = fallback
    if match is not None:
        number = float(match.group(1).replace(",", "").replace("_", ""))
        value = round(number) if math.isfinite(number) else high
    return min(max(value, low), high)


def output_cap(budget: int, slack: float = TALE_SLACK) -> int:
    """``max_tokens`` for a stated budget: ``ceil(budget x slack)``."""
    return max(1, math.ceil(budget * slack))


async def estimate_budget(
    llm: LLM,
    question: str,
    *,
    templates: Templates | None = None,
    meter: LLMMeter | None = None,
    trace: Trace | None = None,
    low: int = DEFAULT_RANGE[0],
    high: int = DEFAULT_RANGE[1],
    fallback: int = FALLBACK_BUDGET,
) -> int:
    """Ask ``llm`` how many tokens an answer to ``question`` needs (TALE's zero-shot estimator).

    The prompt is the template folder's ``estimator.jinja``. The call is a span of kind
    ``"estimator"`` and counts towards the run's budget when ``meter`` is given.

    Returns:
        The parsed budget (see :func:`parse_budget`).
    """
    templates = templates or Templates()
    content = templates.render("estimator.jinja", question=question)
    messages: list[Message] = [{"role": "user", "content": content}]
    options = GenerateOptions(max_tokens=32, temperature=0.0)
    async with metered_stream(
        llm, messages, options, kind="estimator", label="estimate", trace=trace, meter=meter
    ) as reply:
        text = await reply.read()
    return parse_budget(text, low=low, high=high, fallback=fallback)
