"""Example tools for the plans in ``examples/plans``: a simulated search over a small table of
facts, and a comparison of two named quantities.

``search`` answers with a number after a wait like a network call's, so a plan's parallel
branches visibly overlap. Load the pack by path next to the ready-made ``math`` pack::

    llmc exec examples/plans/parallelqa.plan --tools math examples/tools/facts.py
"""

import asyncio

import llmc

#: What ``search`` knows: query -> (value in metres, seconds the lookup takes).
FACTS = {
    "Eiffel Tower height": (330.0, 0.30),
    "Statue of Liberty height": (93.0, 0.22),
    "Mariana Trench depth": (10994.0, 0.28),
    "Puerto Rico Trench depth": (8376.0, 0.25),
}


@llmc.tool(pure=True)
async def search(query: str) -> float:
    """Look a number up, in metres: heights and depths of famous places
    (e.g. "Eiffel Tower height" -> 330.0).

    Args:
        query: the place and what to know, e.g. "Mariana Trench depth".
    """
    try:
        value, delay = FACTS[query]
    except KeyError:
        known = ", ".join(repr(name) for name in FACTS)
        raise ValueError(f"no fact for {query!r}; known: {known}") from None
    await asyncio.sleep(delay)
    return value


@llmc.tool(pure=True)
async def compare(name_a: str, a: float, name_b: str, b: float) -> str:
    """Say which of two named quantities is larger, e.g. "Eiffel Tower (363 against 186)".

    Args:
        name_a: the first one's name.
        a: its value.
        name_b: the second one's name.
        b: its value.
    """
    await asyncio.sleep(0.05)
    return f"{name_a if a >= b else name_b} ({max(a, b):g} against {min(a, b):g})"
