"""Token counts of requests and replies, the same for every framework.

The simulator counts tokens itself from what each framework actually sends, so cost ratios
between frameworks are real even though no model runs. Two tokenizers:

- ``chars``: one token per four characters, rounded up (llmc.testing's estimate; always
  available, deterministic);
- ``tiktoken``: OpenAI's ``o200k_base`` or ``cl100k_base`` BPE, used only when the
  ``tiktoken`` package is installed *and* an encoding file is already on disk (tiktoken
  downloads them on first use, which this machine cannot; LlamaIndex ships
  ``cl100k_base``). ``auto`` takes it when it can and ``chars`` otherwise.

A chat request counts as OpenAI's cookbook ("How to count tokens with tiktoken") describes:
3 tokens per message plus its content, the name and arguments of each tool call in it, and
3 tokens that prime the reply. Tool definitions count as their JSON text, a slight
overestimate of the compact form OpenAI renders them in.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from llmc.budget import Tiktoken

__all__ = ["Tokenizer", "chars_tokenizer", "completion_tokens", "get_tokenizer", "prompt_tokens"]

TOKENS_PER_MESSAGE = 3
TOKENS_PER_TOOL_CALL = 3


@dataclass(frozen=True, slots=True)
class Tokenizer:
    """Counts tokens of text.

    Attributes:
        name: ``"chars/4"`` or the tiktoken encoding's name.
        count: the number of tokens of a text.
    """

    name: str
    count: Callable[[str], int]


def chars_tokenizer() -> Tokenizer:
    """One token per four characters, rounded up."""
    return Tokenizer("chars/4", lambda text: (len(text) + 3) // 4)


def _tiktoken() -> Tokenizer | None:
    """llmc's tiktoken counter, when an encoding is on disk already, or None (never downloads)."""
    for name in ("o200k_base", "cl100k_base"):
        try:
            counter = Tiktoken(name)
        except ValueError:  # tiktoken missing, or this encoding not on disk
            continue
        return Tokenizer(name, counter.count)
    return None


def get_tokenizer(kind: str = "auto") -> Tokenizer:
    """The tokenizer named ``kind``: ``"chars"``, ``"tiktoken"`` or ``"auto"``.

    Raises:
        ValueError: ``tiktoken`` was asked for but no encoding is available offline.
    """
    if kind == "chars":
        return chars_tokenizer()
    if kind not in ("auto", "tiktoken"):
        raise ValueError(f"unknown tokenizer {kind!r}: use chars, tiktoken or auto")
    found = _tiktoken()
    if found is not None:
        return found
    if kind == "tiktoken":
        raise ValueError(
            "no tiktoken encoding is available offline (install tiktoken and put "
            "cl100k_base or o200k_base in TIKTOKEN_CACHE_DIR), or use --tokenizer chars"
        )
    return chars_tokenizer()


def content_text(content: Any) -> str:
    """The text of a message's content: a string, or the text parts of a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, Mapping))
    return ""


def prompt_tokens(body: Mapping[str, Any], tokenizer: Tokenizer) -> int:
    """The prompt tokens of a chat completion request: messages, their tool calls, tools."""
    total = TOKENS_PER_MESSAGE  # priming the reply
    for message in body.get("messages") or ():
        if not isinstance(message, Mapping):
            continue
        total += TOKENS_PER_MESSAGE + tokenizer.count(content_text(message.get("content")))
        for call in message.get("tool_calls") or ():
            if not isinstance(call, Mapping):
                continue
            function = call.get("function") or {}
            total += TOKENS_PER_TOOL_CALL + tokenizer.count(str(function.get("name", "")))
            total += tokenizer.count(str(function.get("arguments", "")))
    tools = body.get("tools")
    if tools:
        total += tokenizer.count(json.dumps(tools, separators=(",", ":")))
    return total


def completion_tokens(
    text: str | None, tool_calls: list[tuple[str, str]], tokenizer: Tokenizer
) -> int:
    """The completion tokens of a reply: its text, and each tool call's name and arguments."""
    total = tokenizer.count(text or "")
    for name, arguments in tool_calls:
        total += TOKENS_PER_TOOL_CALL + tokenizer.count(name) + tokenizer.count(arguments)
    return total
