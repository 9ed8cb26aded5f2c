"""The decode loop: a reply's tokens one by one, with prompt-lookup drafts when asked."""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable, Sequence
from typing import Any

from ._cpp import evaluate, truncate
from ._sampling import Sampler


def decode(
    llama: Any,
    prompt: list[int],
    sampler: Sampler,
    draft: Callable[[Any], Any] | None,
    room: int,
) -> Generator[int, None, None]:
    """The reply's tokens, one by one, with speculative decoding when ``draft`` is given.

    The context must already hold what it can reuse of ``prompt`` (see
    :class:`~llmc.llm.local._prefix.PrefixStore`); the rest is computed here. With a drafter,
    each step computes the last token together with the drafter's guesses of the next ones,
    in one batch, and keeps the guesses the sampler confirms, up to the first it would not
    have picked: the reply is exactly what plain decoding gives, in fewer (larger) steps.
    """
    try:
        held = min(common_prefix(llama.input_ids[: llama.n_tokens], prompt), len(prompt) - 1)
        truncate(llama, llama.n_tokens - held)
        evaluate(llama, prompt[held:])
        token = sampler.sample(-1)
        written = 0
        while True:
            yield token
            written += 1
            guesses = _guesses(llama, draft, token, room - written - 1)
            evaluate(llama, [token, *guesses], every_row=bool(guesses))
            for row, guess in enumerate(guesses):
                token = sampler.sample(row)
                if token != guess:
                    truncate(llama, len(guesses) - row)  # the rest were computed for nothing
                    break
                yield token
                written += 1
            else:
                token = sampler.sample(len(guesses))
    finally:
        sampler.close()


def _guesses(llama: Any, draft: Callable[[Any], Any] | None, token: int, room: int) -> list[int]:
    """The drafter's guesses of the tokens after ``token`` (none without a drafter)."""
    room = min(room, llama.n_ctx() - llama.n_tokens - 2)
    if draft is None or room <= 0:
        return []
    llama.input_ids[llama.n_tokens] = token
    return [int(t) for t in draft(llama.input_ids[: llama.n_tokens + 1])[:room]]


def common_prefix(a: Iterable[int], b: Sequence[int]) -> int:
    """How many leading tokens two sequences share."""
    count = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        count += 1
    return count
