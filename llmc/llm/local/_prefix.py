"""The prefix cache: KV states of system prompts, restored instead of computed again."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from ._cpp import State, restore_state, save_state
from ._decode import common_prefix


class PrefixStore:
    """KV states of static prompt prefixes (system prompts), least recently used first out.

    Only the KV cache of sequence 0 is saved (:func:`~llmc.llm.local._cpp.save_state`), not
    llama-cpp-python's whole state with its logits buffers: a few MB per thousand tokens for
    a small model, copied in milliseconds.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._states: OrderedDict[tuple[int, ...], State] = OrderedDict()

    def clear(self) -> None:
        """Forget every state (before the context they came from is freed)."""
        self._states.clear()

    def prepare(self, llama: Any, tokens: list[int], prefix: int) -> int:
        """Make the context start with ``tokens[:prefix]``, computing it at most once ever.

        Returns:
            How many tokens were computed here (0 when the prefix was held or restored).
        """
        if prefix <= 0:
            return 0
        held = common_prefix(llama.input_ids[: llama.n_tokens], tokens)
        key = tuple(tokens[:prefix])
        state = self._states.get(key)
        if state is not None:
            self._states.move_to_end(key)
        if held >= prefix:
            return 0  # the context already starts with it (the previous call shared it)
        if state is not None and restore_state(llama, key, state):
            return 0
        llama.n_tokens = held  # keep what the context shares, compute the rest of the prefix
        llama.eval(tokens[held:prefix])
        self._save(llama, key)
        return prefix - held

    def _save(self, llama: Any, key: tuple[int, ...]) -> None:
        """Save the context, which holds exactly the tokens of ``key``, under ``key``."""
        state = save_state(llama)
        if state is None:
            return
        self._states[key] = state
        while len(self._states) > self.capacity:
            self._states.popitem(last=False)
