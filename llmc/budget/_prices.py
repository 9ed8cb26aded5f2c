"""What tokens cost: prices per million tokens, by model.

:data:`DEFAULT_PRICES` is a small table of list prices (US dollars per million tokens, as the
providers published them in the first half of 2025; they change, so pass your own for
anything that matters). Names match by prefix, the longest first: ``gpt-4o-mini-2024-07-18``
is priced as ``gpt-4o-mini``. A model that runs in-process (:class:`~llmc.llm.Local`) is free.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from ..llm.base import Price


class PriceTable(Mapping[str, Price]):
    """Prices by model name; a name matches its longest listed prefix (case-insensitive).

    Args:
        prices: model name (or prefix) -> :class:`Price` (or a ``(prompt, completion)`` or
            ``(prompt, completion, cached)`` tuple).

    Example:
        >>> table = PriceTable({"my-model": (0.5, 1.5)})
        >>> table.find("my-model-v2")
        Price(prompt=0.5, completion=1.5, cached=None)
    """

    def __init__(
        self, prices: Mapping[str, Price | tuple[float, float] | tuple[float, float, float]]
    ) -> None:
        self._prices = {name.lower(): _price(value) for name, value in prices.items()}

    def find(self, model: str) -> Price | None:
        """The price of ``model`` (by its longest listed prefix), or None if it is not listed."""
        name = model.lower().rsplit("/", 1)[-1]
        best = ""
        for prefix in self._prices:
            if name.startswith(prefix) and len(prefix) > len(best):
                best = prefix
        return self._prices[best] if best else None

    def __or__(self, other: Mapping[str, Price]) -> PriceTable:
        """This table with ``other``'s entries added (they win)."""
        return PriceTable({**self._prices, **other})

    def __getitem__(self, model: str) -> Price:
        found = self.find(model)
        if found is None:
            raise KeyError(model)
        return found

    def __iter__(self) -> Iterator[str]:
        return iter(self._prices)

    def __len__(self) -> int:
        return len(self._prices)

    def __repr__(self) -> str:
        return f"PriceTable({len(self)} models)"


def _price(value: Price | tuple[float, ...]) -> Price:
    if isinstance(value, Price):
        return value
    return Price(*value)


#: List prices in US dollars per million tokens (prompt, completion, cached prompt), from
#: the providers' pricing pages in the first half of 2025.
DEFAULT_PRICES = PriceTable(
    {
        "gpt-4o-mini": Price(0.15, 0.60, 0.075),
        "gpt-4o": Price(2.50, 10.00, 1.25),
        "gpt-4.1-nano": Price(0.10, 0.40, 0.025),
        "gpt-4.1-mini": Price(0.40, 1.60, 0.10),
        "gpt-4.1": Price(2.00, 8.00, 0.50),
        "o3-mini": Price(1.10, 4.40, 0.55),
        "o4-mini": Price(1.10, 4.40, 0.275),
        "claude-3-5-haiku": Price(0.80, 4.00, 0.08),
        "claude-3-5-sonnet": Price(3.00, 15.00, 0.30),
        "claude-3-7-sonnet": Price(3.00, 15.00, 0.30),
        "claude-sonnet-4": Price(3.00, 15.00, 0.30),
    }
)
