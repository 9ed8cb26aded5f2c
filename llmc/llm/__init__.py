"""Language models: the :class:`LLM` protocol and its backends."""

from .base import (
    LLM,
    Chunk,
    Completion,
    GenerateOptions,
    Message,
    Usage,
    generate,
    open_stream,
)
from .local import Local, ModelLoadError
from .openai_compat import OpenAI

__all__ = [
    "LLM",
    "Chunk",
    "Completion",
    "GenerateOptions",
    "Local",
    "Message",
    "ModelLoadError",
    "OpenAI",
    "Usage",
    "generate",
    "open_stream",
]
