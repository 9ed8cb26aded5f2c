"""Observers of finished runs: how :mod:`llmc.otel` sees every run without a parameter.

The compiler (for each question) and the scheduler (for each plan run that is not part of a
question) report a run here when it ends, answered or not. With no observer, which is the
default, a report costs one check of an empty list.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog

if TYPE_CHECKING:
    from .compiler import Answer
    from .result import Result
    from .trace import Trace

__all__ = ["FinishedRun", "add_observer", "observers", "remove_observer", "report"]

_logger = structlog.get_logger("llmc.observe")


@dataclass(frozen=True, slots=True)
class FinishedRun:
    """A run that ended, as an observer sees it.

    Attributes:
        trace: everything the run did.
        question: the question, for a compiler run.
        answer: the compiler's answer (partial when ``error`` is a budget's), if any.
        result: the plan run's result, for a run of a plan alone.
        error: what ended the run early, or None.
    """

    trace: Trace
    question: str | None = None
    answer: Answer | None = None
    result: Result | None = None
    error: BaseException | None = None


#: The observers, in the order they were added. Read it, change it with the functions.
observers: list[Callable[[FinishedRun], Any]] = []


def add_observer(observer: Callable[[FinishedRun], Any]) -> None:
    """Call ``observer`` with every run that ends from now on (once, however often added)."""
    if observer not in observers:
        observers.append(observer)


def remove_observer(observer: Callable[[FinishedRun], Any]) -> None:
    """Stop calling ``observer``; nothing happens if it was not added."""
    if observer in observers:
        observers.remove(observer)


def report(run: FinishedRun) -> None:
    """Tell every observer that ``run`` ended. An observer's error is logged, never raised:
    telemetry must not change what a run returns."""
    for observer in list(observers):
        try:
            observer(run)
        except Exception as exc:
            if structlog.is_configured():
                _logger.warning("run observer failed", observer=repr(observer), error=repr(exc))
