"""An :class:`~llmc.llm.LLM` that runs a GGUF model in-process with llama.cpp: :class:`Local`."""

from ._model import (
    DEFAULT_MODEL,
    MODEL_PATH_ENV,
    Local,
    ModelLoadError,
    cpu_has_amx,
    grammar_sampler,
)

__all__ = [
    "DEFAULT_MODEL",
    "MODEL_PATH_ENV",
    "Local",
    "ModelLoadError",
    "cpu_has_amx",
    "grammar_sampler",
]
