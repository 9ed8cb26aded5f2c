"""Counting tokens: exactly where a tokenizer is at hand, by a calibrated estimate elsewhere.

Three counters, all :class:`TokenCounter`:

- :class:`BackendCounter`: the model's own tokenizer, for backends that have a
  ``count_tokens(text)`` method (:class:`~llmc.llm.Local` counts with llama.cpp). Exact.
- :class:`Tiktoken`: OpenAI's BPE encodings, when the ``tiktoken`` package is installed and
  the encoding's file is on disk already (tiktoken's cache, LlamaIndex's copy, or a path you
  give). Exact for OpenAI models. llmc never downloads an encoding.
- :class:`Estimate`: a linear formula over characters, extra UTF-8 bytes, digits and spaces,
  fitted to cl100k_base on a mixed corpus (prose, code, JSON, numbers, seven languages) and
  scaled up to err on the high side; see ``docs/budgets.md`` for its measured error.

:func:`counter_for` picks the best one for a model, and wraps it in :class:`CachedCounter`.
:func:`count_upto` answers "is this text over N tokens?" without tokenizing all of a huge text.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from ..llm.base import Message

#: Tokens a chat message costs besides its content (role markers, separators). OpenAI
#: documents 3 per message plus 3 priming the reply; ChatML templates (SmolLM2, Qwen) spend
#: 5 per message. The larger is used, so counts err high.
MESSAGE_OVERHEAD = 5
#: Tokens that prime the reply (the assistant's header).
REPLY_PRIMING = 3

#: The context window assumed for a model that does not say and is not in the table.
DEFAULT_CONTEXT_WINDOW = 8192

#: Context windows of common hosted models, by model-name prefix (the longest prefix wins).
#: From the providers' model pages; a backend's own ``context_window`` takes precedence.
KNOWN_CONTEXT_WINDOWS: dict[str, int] = {
    "gpt-4o": 128_000,
    "gpt-4o-mini": 128_000,
    "gpt-4.1": 1_047_576,
    "gpt-4-turbo": 128_000,
    "gpt-4": 8_192,
    "gpt-3.5-turbo": 16_385,
    "o1": 200_000,
    "o3": 200_000,
    "o4-mini": 200_000,
    "claude-3": 200_000,
    "claude-sonnet-4": 200_000,
    "claude-opus-4": 200_000,
    "llama-3.1": 131_072,
    "llama-3.2": 131_072,
    "llama-3.3": 131_072,
    "llama-3": 8_192,
    "qwen2.5": 32_768,
    "mistral-large": 131_072,
    "gemini-1.5": 1_048_576,
    "gemini-2": 1_048_576,
}


@runtime_checkable
class TokenCounter(Protocol):
    """Counts the tokens of a text.

    Attributes:
        name: what counts, in words (``"SmolLM2-135M-Instruct tokenizer"``, ``"cl100k_base"``,
            ``"estimate"``): a run's usage says which counter it used.
        exact: True when the count is the model's own tokenizer's.
    """

    @property
    def name(self) -> str:
        """What counts, in words."""
        ...

    @property
    def exact(self) -> bool:
        """Whether the count is the model's own tokenizer's."""
        ...

    def count(self, text: str) -> int:
        """The number of tokens of ``text``."""
        ...


# -- the estimate ------------------------------------------------------------------------------

_DIGITS = "0123456789"


@dataclass(frozen=True, slots=True)
class Estimate:
    """Tokens estimated from the text's shape, in a few fast passes (hundreds of MB/s).

    ``tokens = scale * (per_char * chars + per_extra_byte * (utf8_bytes - chars)
    + per_digit * digits + per_space * (spaces + newlines))``, rounded up. Extra bytes make
    non-Latin scripts count more (a CJK character is about one token), digits make numbers
    count more (tokenizers split them into groups of 1-3), and spaces make prose count a
    little less per character than code. The default coefficients (:data:`ESTIMATE`) were
    fitted to cl100k_base; ``scale`` lifts them so that about nine texts in ten are not
    underestimated, since a budget that undercounts overflows.

    Attributes:
        name: ``"estimate"`` unless given.
        per_char: tokens per character.
        per_extra_byte: tokens per UTF-8 byte beyond the first of each character.
        per_digit: tokens per ASCII digit, on top of its character.
        per_space: tokens per space or newline, on top of its character (negative: a space
            usually joins the word after it).
        scale: a safety factor on the whole.
    """

    name: str = "estimate"
    per_char: float = 0.25
    per_extra_byte: float = 0.0
    per_digit: float = 0.0
    per_space: float = 0.0
    scale: float = 1.0
    exact: bool = False

    def count(self, text: str) -> int:
        """Estimated tokens of ``text`` (0 for ``""``, at least 1 otherwise)."""
        if not text:
            return 0
        chars = len(text)
        extra = 0 if text.isascii() else len(text.encode("utf-8", "surrogatepass")) - chars
        digits = 0
        if self.per_digit:
            count = text.count
            digits = sum(count(digit) for digit in _DIGITS)
        spaces = text.count(" ") + text.count("\n") if self.per_space else 0
        value = (
            self.per_char * chars
            + self.per_extra_byte * extra
            + self.per_digit * digits
            + self.per_space * spaces
        )
        return max(1, int(self.scale * value + 0.999))


#: The default estimate: fitted to cl100k_base with ``benchmarks/budget.py --calibrate``.
ESTIMATE = Estimate(
    per_char=0.2894,
    per_extra_byte=0.3413,
    per_digit=0.3825,
    per_space=-0.248,
    scale=1.15,
)


# -- exact counters ----------------------------------------------------------------------------


class BackendCounter:
    """Counts with a backend's own tokenizer: its ``count_tokens(text)`` method.

    Args:
        llm: a backend with a ``count_tokens`` method (e.g. :class:`~llmc.llm.Local`).

    Raises:
        TypeError: the backend cannot count tokens.
    """

    exact = True

    def __init__(self, llm: Any) -> None:
        count = getattr(llm, "count_tokens", None)
        if not callable(count):
            raise TypeError(f"{type(llm).__name__} has no count_tokens(text) method")
        self._count: Callable[[str], int] = count
        self.name = f"{getattr(llm, 'model', type(llm).__name__)} tokenizer"

    def count(self, text: str) -> int:
        """The backend's token count of ``text``."""
        return int(self._count(text)) if text else 0

    def __repr__(self) -> str:
        return f"BackendCounter({self.name!r})"


_TIKTOKEN_URLS = {
    "o200k_base": "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
    "cl100k_base": "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
}
_env_lock = threading.Lock()


class Tiktoken:
    """Counts with a tiktoken encoding that is available offline.

    Args:
        encoding: ``"o200k_base"`` (GPT-4o, o1, o3) or ``"cl100k_base"`` (GPT-4, GPT-3.5).
        path: the encoding's ``.tiktoken`` file, when it is not in a cache llmc knows
            (``$TIKTOKEN_CACHE_DIR``, tiktoken's default cache, LlamaIndex's bundled copy).

    Raises:
        ValueError: tiktoken is not installed, the encoding is unknown, or its file is not on
            disk (llmc does not download it); the message says where it looked.
    """

    exact = True

    def __init__(self, encoding: str = "o200k_base", *, path: str | os.PathLike[str] | None = None):
        if encoding not in _TIKTOKEN_URLS:
            raise ValueError(
                f"unknown tiktoken encoding {encoding!r}: use {', '.join(_TIKTOKEN_URLS)}"
            )
        try:
            import tiktoken
        except ImportError:
            raise ValueError("tiktoken is not installed: pip install tiktoken") from None
        url = _TIKTOKEN_URLS[encoding]
        folder = _link_folder(url, Path(path)) if path is not None else _cached_folder(url)
        if folder is None:
            raise ValueError(
                f"the {encoding} encoding is not on disk and llmc does not download it: put "
                f"its file in $TIKTOKEN_CACHE_DIR, or pass Tiktoken({encoding!r}, path=...)"
            )
        with _env_lock:
            before = os.environ.get("TIKTOKEN_CACHE_DIR")
            os.environ["TIKTOKEN_CACHE_DIR"] = str(folder)
            try:
                self._encoding = tiktoken.get_encoding(encoding)
            except Exception as exc:
                raise ValueError(
                    f"tiktoken could not load {encoding} from {folder}: {exc}"
                ) from exc
            finally:
                if before is None:
                    del os.environ["TIKTOKEN_CACHE_DIR"]
                else:
                    os.environ["TIKTOKEN_CACHE_DIR"] = before
        self.name = encoding

    def count(self, text: str) -> int:
        """The encoding's token count of ``text`` (special tokens read as plain text)."""
        return len(self._encoding.encode_ordinary(text)) if text else 0

    def __repr__(self) -> str:
        return f"Tiktoken({self.name!r})"


def _cache_key(url: str) -> str:
    return hashlib.sha1(url.encode()).hexdigest()


def _cached_folder(url: str) -> Path | None:
    """A folder where tiktoken's cache already holds the file of ``url``, if any."""
    candidates = [os.environ.get("TIKTOKEN_CACHE_DIR"), os.environ.get("DATA_GYM_CACHE_DIR")]
    candidates.append(str(Path(tempfile.gettempdir()) / "data-gym-cache"))
    try:  # LlamaIndex ships cl100k_base beside its code (found without importing it)
        spec = importlib.util.find_spec("llama_index.core")
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.origin:
        candidates.append(str(Path(spec.origin).parent / "_static" / "tiktoken_cache"))
    key = _cache_key(url)
    for folder in candidates:
        if folder and (Path(folder) / key).is_file():
            return Path(folder)
    return None


def _link_folder(url: str, path: Path) -> Path | None:
    """A private cache folder in which ``path`` stands under tiktoken's name for ``url``."""
    path = path.expanduser()
    if not path.is_file():
        return None
    folder = Path(tempfile.mkdtemp(prefix="llmc-tiktoken-"))
    (folder / _cache_key(url)).symlink_to(path.resolve())
    return folder


def _tiktoken_for(model: str) -> Tiktoken | None:
    """The offline tiktoken counter of an OpenAI model's own encoding, if there is one."""
    if importlib.util.find_spec("tiktoken") is None:
        return None
    import tiktoken

    try:
        encoding = tiktoken.encoding_name_for_model(model)
    except KeyError:
        return None
    if encoding not in _TIKTOKEN_URLS or _cached_folder(_TIKTOKEN_URLS[encoding]) is None:
        return None
    try:
        return Tiktoken(encoding)
    except ValueError:
        return None


# -- caching -----------------------------------------------------------------------------------


class CachedCounter:
    """Remembers the counts of texts it has seen (least recently used ones go first).

    The planner's and joiner's system prompts, and observations counted again on a replan,
    are counted once. Texts shorter than ``min_chars`` are counted every time: for them a
    lookup costs as much as counting.

    Args:
        inner: the counter to remember.
        max_chars: the most characters of text the cache holds (it keeps the texts).
        min_chars: shorter texts are not cached.
    """

    def __init__(
        self, inner: TokenCounter, *, max_chars: int = 16_000_000, min_chars: int = 256
    ) -> None:
        self.inner = inner
        self.name = inner.name
        self.exact = inner.exact
        self.max_chars = max_chars
        self.min_chars = min_chars
        self._counts: OrderedDict[str, int] = OrderedDict()
        self._chars = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def count(self, text: str) -> int:
        """The count of ``text``, from the cache when it was counted before."""
        if len(text) < self.min_chars:
            return self.inner.count(text)
        with self._lock:
            found = self._counts.get(text)
            if found is not None:
                self._counts.move_to_end(text)
                self.hits += 1
                return found
        value = self.inner.count(text)
        self._remember(text, value)
        return value

    def _remember(self, text: str, value: int) -> None:
        if len(text) > self.max_chars:
            return
        with self._lock:
            self.misses += 1
            if text in self._counts:
                return
            self._counts[text] = value
            self._chars += len(text)
            while self._chars > self.max_chars:
                old, _ = self._counts.popitem(last=False)
                self._chars -= len(old)

    def __repr__(self) -> str:
        return f"CachedCounter({self.inner!r}, {len(self._counts)} texts)"


# -- choosing a counter; windows ---------------------------------------------------------------


def counter_for(llm: Any | None, counter: TokenCounter | None = None) -> CachedCounter:
    """The best counter for a model, cached: its own tokenizer, tiktoken, or the estimate.

    Args:
        llm: the model (any object with a ``model`` name; a ``count_tokens`` method wins).
        counter: a counter to use instead of choosing one.
    """
    if isinstance(counter, CachedCounter):
        return counter
    if counter is None and llm is not None:
        if callable(getattr(llm, "count_tokens", None)):
            counter = BackendCounter(llm)
        else:
            counter = _tiktoken_for(str(getattr(llm, "model", "")))
    return CachedCounter(counter or ESTIMATE)


def context_window_of(llm: Any | None, default: int = DEFAULT_CONTEXT_WINDOW) -> int:
    """A model's context window in tokens: its own ``context_window``, the table, or ``default``."""
    own = getattr(llm, "context_window", None)
    if isinstance(own, int) and own > 0:
        return own
    model = str(getattr(llm, "model", "")).lower().rsplit("/", 1)[-1]
    best = ""
    for prefix in KNOWN_CONTEXT_WINDOWS:
        if model.startswith(prefix) and len(prefix) > len(best):
            best = prefix
    return KNOWN_CONTEXT_WINDOWS[best] if best else default


def count_messages(counter: TokenCounter, messages: Sequence[Message]) -> int:
    """Prompt tokens of a chat: each message's content and overhead, and the reply's priming."""
    total = REPLY_PRIMING
    for message in messages:
        total += MESSAGE_OVERHEAD + counter.count(message["content"])
    return total


def count_upto(counter: TokenCounter, text: str, cap: int) -> int:
    """The tokens of ``text`` if they are at most ``cap``; else some number above ``cap``.

    An exact tokenizer is slow on huge texts (llama.cpp reads about 3 MB/s), and a budget
    only needs to know whether a text fits. So a long text is counted in pieces, cut at line
    starts (where byte-level BPE tokenizers split anyway), until the count passes ``cap``:
    a 1 MB observation with a 500-token share costs a few kilobytes of tokenizing.
    """
    if not text:
        return 0
    if not counter.exact:
        return counter.count(text)  # the estimate is cheap on any text
    size = len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
    step = max(4096, cap * 8)
    cached = getattr(counter, "_counts", None)
    if size <= cap or len(text) <= step or (cached is not None and text in cached):
        return counter.count(text)  # it fits (a token is at least a byte), or it is short
    raw: TokenCounter = getattr(counter, "inner", counter)  # pieces stay out of the cache
    total = 0
    start = 0
    while start < len(text):
        end = _line_cut(text, start + step)
        total += raw.count(text[start:end])
        if total > cap:
            return total
        start = end
    return total


def _line_cut(text: str, at: int) -> int:
    """A position near ``at`` where a line starts (or ``at`` itself, or the end)."""
    if at >= len(text):
        return len(text)
    newline = text.rfind("\n", at - 2048, at)
    return newline + 1 if newline > 0 else at
