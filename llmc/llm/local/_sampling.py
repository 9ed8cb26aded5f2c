"""Picking tokens: greedy or random sampling, constrained by a grammar, and the settings.

Sampling goes through llama.cpp's sampler C API (``llama_sampler_*``, token data arrays,
``llama_get_logits_ith``) and llama-cpp-python's private ``_internals.LlamaTokenDataArray``:
``Llama``'s public API samples only inside its own generation loop, which cannot check a
grammar lazily or confirm speculative drafts. Like ``_cpp``, this module is where those
private parts are used, so nothing else depends on them.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable, Mapping
from typing import Any

from ...errors import LLMError

#: The ``GenerateOptions.extra`` keys Local understands: llama.cpp's sampler settings, with
#: their defaults (used when the temperature is above 0).
SAMPLING: dict[str, float] = {"top_k": 40, "top_p": 0.95, "min_p": 0.05, "typical_p": 1.0}

#: How many parsed grammars a model keeps: a few toolboxes' and replans' grammars.
GRAMMARS_KEPT = 32


def sampling(extra: Mapping[str, Any]) -> dict[str, float]:
    """llama.cpp sampling settings from ``GenerateOptions.extra``; unknown keys are errors."""
    unknown = sorted(set(extra) - set(SAMPLING))
    if unknown:
        raise LLMError(
            f"Local() does not know the option(s) {', '.join(unknown)}; its extra options "
            f"are llama.cpp sampling settings: {', '.join(SAMPLING)}"
        )
    return {**SAMPLING, **{key: float(value) for key, value in extra.items()}}


# -- grammars ----------------------------------------------------------------------------------


def grammar_sampler(llama: Any, grammar: str, *, model: str = "") -> Any:
    """llama.cpp's grammar sampler for ``grammar`` (GBNF, start rule ``root``), checked.

    llama-cpp-python does not check grammars itself, and a grammar llama.cpp rejects would
    crash the process once sampling starts, so every grammar passes through here first.
    Free the sampler with ``llama_cpp.llama_sampler_free``.

    Args:
        llama: a loaded ``llama_cpp.Llama`` (the parser needs its vocabulary).
        grammar: the GBNF text.
        model: the model's name, for the error.

    Raises:
        LLMError: the grammar does not parse (llama.cpp prints why on stderr).
    """
    import llama_cpp

    vocab = llama_cpp.llama_model_get_vocab(llama.model)
    sampler = llama_cpp.llama_sampler_init_grammar(vocab, grammar.encode("utf-8"), b"root")
    if not sampler:
        raise LLMError(
            "llama.cpp rejected the grammar (its parser printed the reason on stderr): check "
            "the GBNF text; llmc.grammar's plan_grammar() and joiner_grammar() show the form",
            model=model,
        )
    return sampler


class Grammars:
    """One model's grammar samplers, each GBNF text parsed once (the oldest freed first)."""

    def __init__(self, model: str) -> None:
        self.model = model
        self._samplers: dict[str, Any] = {}  # GBNF text -> llama.cpp grammar sampler

    def get(self, llama: Any, text: str | None) -> Any:
        """The sampler for ``text``, reset to the grammar's start (None for no grammar)."""
        import llama_cpp

        if text is None:
            return None
        found = self._samplers.get(text)
        if found is None:
            found = grammar_sampler(llama, text, model=self.model)
            if len(self._samplers) >= GRAMMARS_KEPT:
                llama_cpp.llama_sampler_free(self._samplers.pop(next(iter(self._samplers))))
            self._samplers[text] = found
        llama_cpp.llama_sampler_reset(found)
        return found

    def clear(self) -> None:
        """Free every sampler (before the model they were made for is freed)."""
        if self._samplers:
            import llama_cpp

            for sampler in self._samplers.values():
                llama_cpp.llama_sampler_free(sampler)
            self._samplers.clear()


# -- the sampler -------------------------------------------------------------------------------


def candidates(llama: Any) -> Any:
    """The vocabulary-sized buffer samplers work in (one per model, reused by every call)."""
    from llama_cpp._internals import LlamaTokenDataArray

    return LlamaTokenDataArray(n_vocab=llama.n_vocab())


class Sampler:
    """Picks each next token: greedy or llama.cpp's sampler chain, the grammar checked lazily.

    Masking the whole vocabulary with a grammar costs milliseconds per token (each of ~50k
    tokens is matched against the grammar), and most of the time the model's own pick is
    allowed anyway. So the pick is made first and checked alone; only a refused pick pays
    for the full mask and a second pick (as llama.cpp's own common sampler does). Picking
    again from the masked distribution is rejection sampling: the result is distributed as
    if the mask had come first, for greedy and random sampling alike.
    """

    def __init__(
        self,
        llama: Any,
        candidates: Any,
        *,
        temperature: float,
        sampling: Mapping[str, float],
        grammar: Any,
        lazy: bool,
        seed: int,
        follow: Callable[[str], Any] | None = None,
    ) -> None:
        import llama_cpp

        self.follow = follow  # the grammar for the output so far, at each line's end
        self.detokenize = llama.detokenize
        self.output = b""
        self.ctx = llama.ctx
        self.n_vocab = int(llama.n_vocab())
        self.candidates = candidates
        self.grammar = grammar
        self.lazy = lazy
        self.chain = None if temperature <= 0 else _sampler_chain(temperature, sampling, seed)
        self._one = (llama_cpp.llama_token_data * 1)()
        self._one_array = llama_cpp.llama_token_data_array(
            data=ctypes.cast(self._one, llama_cpp.llama_token_data_p), size=1, sorted=False
        )

    def sample(self, row: int) -> int:
        """The next token, from the logits of ``row`` of the last batch (-1: its last)."""
        import llama_cpp
        import numpy as np

        pointer = llama_cpp.llama_get_logits_ith(self.ctx, row)
        logits = np.ctypeslib.as_array(pointer, shape=(self.n_vocab,))
        token = self._choose(logits)
        if self.grammar is not None:
            if not self.allowed(token):
                raise LLMError("the grammar allows no token here: it cannot be completed")
            llama_cpp.llama_sampler_accept(self.grammar, token)
            if self.follow is not None:
                self.output += self.detokenize([token])
                if self.output.endswith(b"\n"):
                    self.grammar = (
                        self.follow(self.output.decode("utf-8", "replace")) or self.grammar
                    )
        if self.chain is not None:
            llama_cpp.llama_sampler_accept(self.chain, token)
        return token

    def _choose(self, logits: Any) -> int:
        """The token to write: the model's pick if the grammar allows it, else a masked pick."""
        if self.grammar is not None and not self.lazy:
            return self._pick(logits, masked=True)
        token = int(logits.argmax()) if self.chain is None else self._pick(logits, masked=False)
        if self.grammar is not None and not self.allowed(token):
            token = self._pick(logits, masked=True)
        return token

    def allowed(self, token: int) -> bool:
        """Whether the grammar, in its current state, lets ``token`` come next."""
        import llama_cpp

        self._one[0] = llama_cpp.llama_token_data(token, 0.0, 0.0)
        self._one_array.size, self._one_array.selected = 1, -1
        llama_cpp.llama_sampler_apply(self.grammar, ctypes.byref(self._one_array))
        return bool(self._one[0].logit != float("-inf"))

    def _pick(self, logits: Any, *, masked: bool) -> int:
        """A token from the whole vocabulary, masked by the grammar or not."""
        import llama_cpp

        self.candidates.copy_logits(logits)
        array = ctypes.byref(self.candidates.candidates)
        if masked:
            llama_cpp.llama_sampler_apply(self.grammar, array)
        if self.chain is None:
            return int(
                self.candidates.candidates_data.id[self.candidates.candidates_data.logit.argmax()]
            )
        llama_cpp.llama_sampler_apply(self.chain, array)
        return int(self.candidates.candidates_data.id[self.candidates.candidates.selected])

    def close(self) -> None:
        """Free the sampler chain (the grammar belongs to :class:`Grammars`)."""
        if self.chain is not None:
            import llama_cpp

            llama_cpp.llama_sampler_free(self.chain)
            self.chain = None


def _sampler_chain(temperature: float, sampling: Mapping[str, float], seed: int) -> Any:
    """llama.cpp's usual random sampling: top-k, typical, top-p, min-p, temperature, draw."""
    import llama_cpp

    chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
    for sampler in (
        llama_cpp.llama_sampler_init_top_k(int(sampling["top_k"])),
        llama_cpp.llama_sampler_init_typical(sampling["typical_p"], 1),
        llama_cpp.llama_sampler_init_top_p(sampling["top_p"], 1),
        llama_cpp.llama_sampler_init_min_p(sampling["min_p"], 1),
        llama_cpp.llama_sampler_init_temp(temperature),
        llama_cpp.llama_sampler_init_dist(seed),
    ):
        llama_cpp.llama_sampler_chain_add(chain, sampler)
    return chain
