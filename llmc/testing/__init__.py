"""Test helpers for code built on llmc: scripted LLMs, a scripted OpenAI server, event capture."""

from ._doubles import (
    EventRecorder,
    RecordedRequest,
    Reply,
    ScriptedCall,
    ScriptedLLM,
    ScriptedOpenAIServer,
    ScriptExhaustedError,
    estimate_tokens,
)

__all__ = [
    "EventRecorder",
    "RecordedRequest",
    "Reply",
    "ScriptExhaustedError",
    "ScriptedCall",
    "ScriptedLLM",
    "ScriptedOpenAIServer",
    "estimate_tokens",
]
