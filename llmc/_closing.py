"""Objects that ``with`` closes (``close()``) and that ``async with`` closes (``aclose()``).

One base per kind, so that every executor, cache, pool and LLM backend ends its block the same
way and none writes ``__enter__``/``__exit__`` again.
"""

from __future__ import annotations

from typing import Self


class Closing:
    """Closed by ``with``: ``__exit__`` calls ``close()``, which a subclass defines."""

    def close(self) -> None:
        """Release what the object holds."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncClosing:
    """Closed by ``async with``: ``__aexit__`` awaits ``aclose()``, which a subclass defines."""

    async def aclose(self) -> None:
        """Release what the object holds (connections, a loaded model)."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
