"""Text in and out of the model: the chat template that writes the prompt, and the reply's
tokens turned into text chunks (UTF-8 across tokens, stop strings, end of generation)."""

from __future__ import annotations

import codecs
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

from ..base import Chunk
from ._cpp import eog_check, token_text

# A chat template for GGUFs that carry none: ChatML, which most instruct models understand.
CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def chat_templates(llama: Any, given: str | None = None, model: str = "") -> tuple[Any, Any]:
    """Formatters for a whole chat (ending in the assistant's turn) and for system messages."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    template = given or llama.metadata.get("tokenizer.chat_template")
    if not template:
        warnings.warn(
            f"{model}: the GGUF carries no chat template, so prompts are written in ChatML, "
            "which a base (not instruction-tuned) model does not follow; pass "
            "Local(chat_template=...) with the model's own template",
            stacklevel=2,
        )
        template = CHATML
    text = token_text(llama)

    def formatter(generation_prompt: bool) -> Any:
        return Jinja2ChatFormatter(
            template=template,
            eos_token=text(llama.token_eos()),
            bos_token=text(llama.token_bos()),
            add_generation_prompt=generation_prompt,
        )

    return formatter(True), formatter(False)


class TextOut:
    """Turns generated tokens into text chunks: UTF-8 across tokens, stop strings, EOG.

    Attributes:
        written: tokens generated so far (end-of-generation tokens not counted).
        first: when the first text went out (:func:`time.perf_counter`), if any has.
    """

    def __init__(
        self, llama: Any, stop: Sequence[str], emit: Callable[[Chunk | BaseException], None]
    ) -> None:
        self.llama = llama
        self.is_eog = eog_check(llama)
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.stops = StopScanner(stop)
        self.emit = emit
        self.written = 0
        self.first: float | None = None

    def add(self, token: int) -> bool:
        """Pass on a token's text; True when the reply has ended (EOG or a stop string)."""
        if self.is_eog(token):
            return True
        self.written += 1
        piece = self.decoder.decode(self.llama.detokenize([token]))
        text, stopped = self.stops.feed(piece)
        self._send(text)
        return stopped

    def finish(self, *, stopped: bool) -> None:
        """Pass on what was held back, unless the reply ended at a stop string or EOG."""
        if not stopped:
            self._send(self.stops.flush(self.decoder.decode(b"", final=True)))

    def _send(self, text: str) -> None:
        if text:
            self.first = self.first or time.perf_counter()
            self.emit(Chunk(text))


class StopScanner:
    """Cuts a streamed text at the first stop string, holding back what might begin one."""

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = stops
        self.hold = max((len(s) for s in stops), default=1) - 1
        self.pending = ""

    def feed(self, text: str) -> tuple[str, bool]:
        """Text that is safe to pass on, and whether a stop string was reached."""
        if not self.stops:
            return text, False
        self.pending += text
        cut = min((i for i in (self.pending.find(s) for s in self.stops) if i >= 0), default=-1)
        if cut >= 0:
            out, self.pending = self.pending[:cut], ""
            return out, True
        safe = max(0, len(self.pending) - self.hold)
        out, self.pending = self.pending[:safe], self.pending[safe:]
        return out, False

    def flush(self, text: str = "") -> str:
        """Whatever is left once the reply has ended without a stop string."""
        out, _ = self.feed(text)
        rest, self.pending = self.pending, ""
        return out + rest
