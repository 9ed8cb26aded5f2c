"""Event capture: :class:`EventRecorder`, an ``on_event`` callback that keeps what it gets."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TypeVar

from ..trace import Event

E = TypeVar("E", bound=Event)


class EventRecorder:
    """Collects the events of runs: pass it as ``on_event`` and read ``events`` afterwards.

    Example::

        events = EventRecorder()
        await llmc.run_plan(plan, tools=[...], on_event=events)
        assert [e.task_id for e in events.of_type(llmc.TaskStarted)] == [1, 2]

    Attributes:
        events: every event received, in order.
    """

    def __init__(self) -> None:
        """Start with no events."""
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        """Record one event (the ``on_event`` callback)."""
        self.events.append(event)

    def of_type(self, kind: type[E]) -> list[E]:
        """The events that are instances of ``kind``, in order."""
        return [e for e in self.events if isinstance(e, kind)]

    def types(self) -> list[str]:
        """The class names of the events, in order: handy to compare with a list."""
        return [type(e).__name__ for e in self.events]

    def clear(self) -> None:
        """Forget the events recorded so far."""
        self.events.clear()

    def __iter__(self) -> Iterator[Event]:
        return iter(self.events)

    # No __len__ on purpose: an empty recorder must stay truthy, for ``callback or other``.
