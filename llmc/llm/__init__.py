"""Language models: the :class:`LLM` protocol and its backends."""

# Exported from llmc, their one public home; importable here too.
from .base import LLM as LLM
from .base import Chunk, Completion, Message, generate, open_stream
from .base import GenerateOptions as GenerateOptions
from .base import Usage as Usage
from .local import Local as Local
from .local import ModelLoadError as ModelLoadError
from .openai_compat import OpenAI as OpenAI

__all__ = [
    "Chunk",
    "Completion",
    "Message",
    "generate",
    "open_stream",
]
