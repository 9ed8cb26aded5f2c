"""Which LLM a Compiler uses when none is given."""

from __future__ import annotations

import os

from ..errors import LLMError
from .base import LLM

__all__ = ["default_llm"]


def default_llm() -> LLM:
    """The model the environment configures: an OpenAI-compatible endpoint.

    ``OPENAI_MODEL`` names the model; ``OPENAI_BASE_URL`` (a local server: vLLM, Ollama,
    llama.cpp server, LM Studio) or ``OPENAI_API_KEY`` (OpenAI itself) says where it is.

    Raises:
        LLMError: nothing is configured; the message says how to configure a model.
    """
    model = os.environ.get("OPENAI_MODEL")
    endpoint = os.environ.get("OPENAI_BASE_URL") or os.environ.get("OPENAI_API_KEY")
    if not model or not endpoint:
        raise LLMError(
            "no LLM is configured: pass llm=llmc.OpenAI('MODEL', base_url='http://host/v1'), "
            "or set OPENAI_MODEL and OPENAI_BASE_URL (or OPENAI_API_KEY for OpenAI)"
        )
    from .openai_compat import OpenAI

    return OpenAI(model)
