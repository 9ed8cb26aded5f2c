"""The llama.cpp surface :class:`~llmc.llm.Local` stands on, outside sampling.

llama-cpp-python's high-level ``Llama`` API cannot do what :class:`Local` needs (save and
restore one sequence's KV cells, decode a batch with logits for every row, forget the last
tokens of the context, load with fields of ``llama_model_params`` it has no argument for), so
some calls go to llama.cpp's C functions (``llama_cpp.llama_*``) and to ``Llama``'s private
attributes (``_ctx``, ``_batch``, ``_requires_eval``). Those are the parts most likely to
change between llama-cpp-python releases, so they are all here and in ``_sampling`` (the
sampler and grammar C API), and nowhere else: an upgrade that breaks them is fixed in two
files. The other modules use only ``Llama``'s public attributes (``tokenize``, ``eval``,
``reset``, ``input_ids``, ``n_tokens``, ...) and the functions below.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Callable, Generator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from ..._extras import require
from ...errors import ModelLoadError

#: A saved KV state of one sequence: bytes that only the same model and context can load.
State = ctypes.Array[ctypes.c_uint8]


def import_llama_cpp() -> Any:
    """The ``llama_cpp`` module, or a one-line error saying how to install it."""
    return require(
        "llama_cpp",
        extra="local",
        needed_by="The local model",
        package="llama-cpp-python",
        error=ModelLoadError,
    )


# -- loading -----------------------------------------------------------------------------------


def cpu_has_amx() -> bool:
    """Whether this CPU reports Intel AMX (``amx_*`` flags in /proc/cpuinfo; False elsewhere).

    llama.cpp 0.3.x repacks weights into AMX tile buffers on such CPUs and then crashes
    (SIGSEGV) in the first decode, so :class:`~llmc.llm.Local` loads without repacking there.
    """
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            return any(line.startswith("flags") and " amx_" in line for line in cpuinfo)
    except OSError:
        return False


_PARAMS_LOCK = threading.Lock()


@contextmanager
def model_params(
    llama_cpp: Any, fields: Mapping[str, Any], *, model: str
) -> Generator[None, None, None]:
    """Load models with some fields of ``llama_model_params`` set (``use_extra_bufts``:
    weight repacking on or off, and the caller's ``model_params``).

    ``llama_cpp.Llama`` builds its model parameters from ``llama_model_default_params()``
    and offers no argument for several fields, so the defaults are swapped for the
    duration of the load (under a lock: loads in other threads see their own setting).
    """
    module = llama_cpp.llama_cpp
    defaults = module.llama_model_default_params
    known = {name for name, *_ in defaults()._fields_}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise ModelLoadError(
            f"llama_model_params has no field {', '.join(unknown)}; its fields are "
            f"{', '.join(sorted(known))}",
            model=model,
        )

    def params() -> Any:
        value = defaults()
        for name, setting in fields.items():
            setattr(value, name, setting)
        return value

    with _PARAMS_LOCK:
        module.llama_model_default_params = params
        try:
            yield
        finally:
            module.llama_model_default_params = defaults


# -- the vocabulary ----------------------------------------------------------------------------


def count_tokens(llama: Any, text: str) -> int:
    """How many tokens ``text`` is (special-token text as one token), without a token list."""
    import llama_cpp

    data = text.encode("utf-8")
    vocab = llama_cpp.llama_model_get_vocab(llama.model)
    # With no room for tokens llama.cpp returns minus the count: nothing is copied.
    return abs(int(llama_cpp.llama_tokenize(vocab, data, len(data), None, 0, False, True)))


def token_text(llama: Any) -> Callable[[int], str]:
    """A function from a token to its text in the vocabulary ("" for -1: no such token)."""
    import llama_cpp

    vocab = llama_cpp.llama_model_get_vocab(llama.model)
    return lambda token: "" if token < 0 else llama_cpp.llama_vocab_get_text(vocab, token).decode()


def eog_check(llama: Any) -> Callable[[int], bool]:
    """A test for the model's end-of-generation tokens (EOS, end of turn, ...)."""
    import llama_cpp

    vocab = llama_cpp.llama_model_get_vocab(llama.model)
    return lambda token: bool(llama_cpp.llama_vocab_is_eog(vocab, token))


# -- the context -------------------------------------------------------------------------------


def evaluate(llama: Any, tokens: Sequence[int], *, every_row: bool = False) -> None:
    """Compute ``tokens`` after the context; logits for the last row, or for every row."""
    for start in range(0, len(tokens), llama.n_batch):
        part = list(tokens[start : start + llama.n_batch])
        llama._batch.set_batch(batch=part, n_past=llama.n_tokens, logits_all=every_row)
        llama._ctx.decode(llama._batch)
        llama.input_ids[llama.n_tokens : llama.n_tokens + len(part)] = part
        llama.n_tokens += len(part)


def truncate(llama: Any, count: int) -> None:
    """Forget the last ``count`` tokens of the context (their KV cells too)."""
    if count > 0:
        llama.n_tokens -= count
    llama._ctx.kv_cache_seq_rm(-1, llama.n_tokens, -1)


def save_state(llama: Any) -> State | None:
    """The KV cells of sequence 0 (not the logits buffers), or None if llama.cpp wrote none.

    A few MB per thousand tokens for a small model, copied in milliseconds.
    """
    import llama_cpp

    size = llama_cpp.llama_state_seq_get_size(llama.ctx, 0)
    buffer = (ctypes.c_uint8 * size)()
    written = llama_cpp.llama_state_seq_get_data(llama.ctx, buffer, size, 0)
    return buffer if written > 0 else None


def restore_state(llama: Any, tokens: Sequence[int], state: State) -> bool:
    """Make the context hold ``tokens`` from their saved ``state``; False if llama.cpp refuses
    it (the context is then empty)."""
    import llama_cpp

    llama._ctx.kv_cache_seq_rm(-1, 0, -1)
    if not llama_cpp.llama_state_seq_set_data(llama.ctx, state, len(state), 0):
        llama.reset()
        return False
    llama.input_ids[: len(tokens)] = tokens
    llama.n_tokens = len(tokens)
    llama._requires_eval = True  # logits are stale: generate() must decode first
    return True
