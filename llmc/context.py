"""What the parts of one run share: its id, its trace, its meter and where its events go.

A compiler run hands one :class:`RunContext` to the planner and the joiner instead of
threading a trace, a meter and callbacks through every call; each part records its LLM calls
in the trace, meters them, and emits its own events (plan text, joiner text, answer text).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .budget import Meter
from .trace import Event, Trace


@dataclass(frozen=True, slots=True)
class RunContext:
    """One run's shared parts; every one is optional (a planner or joiner used alone).

    Attributes:
        run_id: the run's id, on every event.
        trace: where LLM calls are recorded as spans (None: not recorded).
        meter: the run's budget meter: each LLM call is checked and recorded there (None:
            not metered; a joiner then meters with its own budget).
        on_event: called with every event the run's parts emit (None: no one listens).
    """

    run_id: str = ""
    trace: Trace | None = None
    meter: Meter | None = None
    on_event: Callable[[Event], object] | None = None

    def emit(self, event: Event) -> None:
        """Pass ``event`` on to ``on_event``, if anyone listens."""
        if self.on_event is not None:
            self.on_event(event)
