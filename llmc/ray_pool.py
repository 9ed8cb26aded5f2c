"""Many questions on a Ray cluster: :class:`RayPool`, a pool of actors that each hold a Compiler.

Each actor builds its own :class:`~llmc.compiler.Compiler` once, from a factory (a function
without arguments that Ray can pickle: a module-level function, or ``functools.partial`` of
one), and answers up to ``per_actor`` questions at once on its event loop. The driver sends
each question to the least busy actor and yields :class:`~llmc.mapping.Outcome` objects as
they finish, as :meth:`llmc.Compiler.map` does on one process. Outcomes carry the figures
(text, tokens, cost, latency), not the whole answer, which stays on the actor.

A pool's processes share nothing but what the factory shares: give its LLM a
:class:`~llmc.redis_limits.RedisRateLimiter` so that the actors together keep to the
endpoint's rate, and the batch a :class:`~llmc.redis_limits.RedisLedger`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from typing import TYPE_CHECKING, Any

from ._closing import Closing
from ._extras import require
from .errors import BudgetExceeded, WorkerLostError
from .mapping import Outcome, answer_all, outcome_of
from .result import error_text

if TYPE_CHECKING:
    from .compiler import Compiler
    from .redis_limits import RedisLedger

ray = require("ray", extra="ray", needed_by="RayPool")
cloudpickle = ray.cloudpickle


class RayPool(Closing):
    """A pool of Ray actors answering questions, each with a Compiler from ``factory``.

    Args:
        factory: builds the compiler, on each actor (called once per actor).
        size: how many actors.
        per_actor: questions one actor answers at once.
        num_cpus: CPUs each actor reserves on the cluster (its tools' Ray tasks, if any,
            reserve their own).
        address: the cluster, as for :class:`~llmc.executors.ray.RayExecutor` (None: start a
            local one unless this process is connected already).
        **init_options: passed to ``ray.init`` when the pool connects.

    Use it as a context manager, or call :meth:`close`: that kills the actors (and
    disconnects, when the pool connected).
    """

    def __init__(
        self,
        factory: Callable[[], Compiler],
        size: int = 2,
        *,
        per_actor: int = 8,
        num_cpus: float = 1.0,
        address: str | None = None,
        **init_options: Any,
    ) -> None:
        if size < 1 or per_actor < 1:
            raise ValueError("RayPool needs size >= 1 and per_actor >= 1")
        self.size = size
        self.per_actor = per_actor
        self._owns_ray = not ray.is_initialized()
        if self._owns_ray:
            ray.init(address=address, **init_options)
        options = {"num_cpus": num_cpus, "max_concurrency": per_actor, "max_restarts": 0}
        self._actors: list[Any] = [
            _Answerer.options(**options).remote(factory) for _ in range(size)
        ]
        self._busy = [0] * size
        self._closed = False

    async def map(
        self,
        questions: Iterable[str],
        *,
        concurrency: int | None = None,
        ledger: RedisLedger | None = None,
    ) -> AsyncIterator[Outcome]:
        """Answer the questions on the pool, yielding outcomes as they finish.

        Args:
            questions: the questions.
            concurrency: questions in flight at once (default: ``size * per_actor``).
            ledger: a shared ledger of the batch's spending (see :meth:`llmc.Compiler.map`).
        """
        if self._closed:
            raise RuntimeError("this RayPool is closed; create a new one")

        async def one(index: int, question: str) -> Outcome:
            slot = min(range(self.size), key=self._busy.__getitem__)
            self._busy[slot] += 1
            try:
                outcome: Outcome = await self._actors[slot].answer.remote(index, question)
                return outcome
            except ray.exceptions.RayActorError as error:
                raise WorkerLostError(
                    f"the Ray actor answering question {index + 1} died "
                    f"({type(error).__name__}); the pool has one actor fewer"
                ) from error
            finally:
                self._busy[slot] -= 1

        limit = concurrency or self.size * self.per_actor
        async for outcome in answer_all(questions, one, concurrency=limit, ledger=ledger):
            yield outcome

    def close(self) -> None:
        """Kill the actors; disconnect from Ray if the pool connected."""
        if self._closed:
            return
        self._closed = True
        for actor in self._actors:
            ray.kill(actor)
        if self._owns_ray:
            ray.shutdown()

    def __repr__(self) -> str:
        return f"RayPool(size={self.size}, per_actor={self.per_actor})"


class _AnswererBody:
    """One actor of a pool: a compiler, answering questions on the actor's event loop."""

    def __init__(self, factory: Callable[[], Compiler]) -> None:
        self.compiler = factory()

    async def answer(self, index: int, question: str) -> Outcome:
        try:
            answer = await self.compiler.run(question)
        except Exception as exc:
            outcome = outcome_of(index, question, None, exc, keep_answer=False)
            outcome.error = _portable(exc)
            return outcome
        return outcome_of(index, question, answer, None, keep_answer=False)


def _portable(error: Exception) -> Exception:
    """An error that can travel back to the driver: itself without its partial answer, or,
    when it cannot make the round trip through pickle, a RuntimeError with its text."""
    if isinstance(error, BudgetExceeded):
        error.answer = error.result = None  # their figures are on the outcome
    try:
        cloudpickle.loads(cloudpickle.dumps(error))
    except Exception:
        return RuntimeError(error_text(error))
    return error


_Answerer = ray.remote(_AnswererBody)
