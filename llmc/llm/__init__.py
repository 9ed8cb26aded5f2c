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
from .openai_compat import OpenAI

__all__ = [
    "LLM",
    "Chunk",
    "Completion",
    "GenerateOptions",
    "Message",
    "OpenAI",
    "Usage",
    "generate",
    "open_stream",
]
